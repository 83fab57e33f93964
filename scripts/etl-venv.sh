#!/bin/sh
# Creates .venv-etl: ethereum-etl from PyPI in its own virtualenv (it pins web3 < 6 and
# eth-abi 2, which need Python < 3.11: parsimonious calls inspect.getargspec). Used by
# tests/e2e/test_ethereum_etl.py. Idempotent: when the venv answers `ethereumetl --help`
# with the pinned version it only looks, in about a second.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
venv="$here/.venv-etl"
version="2.4.2"
if [ -x "$venv/bin/ethereumetl" ] && [ -f "$venv/.etl-$version" ]; then exit 0; fi
python=""
# on PATH, or pyenv's installs (its shims answer only for the selected version)
pyenv_root=${PYENV_ROOT:-$HOME/.pyenv}
for candidate in python3.10 python3.9 python3.8 \
  "$pyenv_root"/versions/3.10*/bin/python3.10 "$pyenv_root"/versions/3.9*/bin/python3.9; do
  if "$candidate" -c 'import venv' >/dev/null 2>&1; then
    python=$candidate
    break
  fi
done
if [ -z "$python" ]; then
  echo "etl-venv: ethereum-etl $version needs Python 3.8-3.10 (web3 5, eth-abi 2); none found" >&2
  exit 1
fi
rm -rf "$venv"
"$python" -m venv "$venv"
"$venv/bin/pip" install -q --upgrade pip
"$venv/bin/pip" install -q "ethereum-etl==$version"
touch "$venv/.etl-$version"
