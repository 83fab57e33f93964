#!/bin/sh
# Installs the system packages the tests need when they are missing (Debian/Ubuntu):
# PostgreSQL server binaries (the mirror tests start their own cluster) and iproute2;
# with the argument `bench`, also wrk (the read-latency load generator of `make bench`).
set -eu
need=""
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$pg_bin" ] || [ ! -x "$pg_bin/initdb" ]; then need="$need postgresql"; fi
command -v ip >/dev/null 2>&1 || need="$need iproute2"
command -v node >/dev/null 2>&1 || need="$need nodejs npm"
if [ "${1:-}" = "bench" ]; then command -v wrk >/dev/null 2>&1 || need="$need wrk"; fi
if [ -n "$need" ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing system packages:$need — install them (sudo apt-get install$need)" >&2
    exit 1
  fi
  echo "installing system packages:$need"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # shellcheck disable=SC2086
  apt-get install -y -qq $need >/dev/null
fi
