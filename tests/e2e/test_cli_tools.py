"""`cairn version`, `cairn dumpgenesis` and `cairn account import` as a user runs them."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import eth_keyfile
import pytest
from eth_keys.datatypes import PrivateKey
from eth_utils import to_checksum_address

import cairn
from cairn.node.keys import load_keystore
from tests.support.proc import run_cli

pytestmark = pytest.mark.e2e


def test_version() -> None:
    done = run_cli("version")
    assert done.returncode == 0, done.stderr
    assert f"Version: {cairn.__version__}" in done.stdout
    assert re.search(r"^py-evm: \d", done.stdout, re.M)


def test_dumpgenesis_of_dev_chain_and_of_a_datadir(tmp_path: Path) -> None:
    dev = run_cli("dumpgenesis")
    assert dev.returncode == 0, dev.stderr
    data = json.loads(dev.stdout)
    assert data["config"]["chainId"] == 31337 and len(data["alloc"]) == 10
    dev_hash = dev.stderr.strip().removeprefix("genesis hash ")
    # the dumped genesis creates the same chain
    (tmp_path / "g.json").write_text(dev.stdout)
    init = run_cli("init", "--datadir", str(tmp_path / "d"), "--genesis", str(tmp_path / "g.json"))
    assert init.returncode == 0, init.stderr
    assert init.stdout.strip().endswith(f"genesis {dev_hash}")
    again = run_cli("dumpgenesis", "--datadir", str(tmp_path / "d"))
    assert again.returncode == 0 and json.loads(again.stdout) == data
    missing = run_cli("dumpgenesis", "--datadir", str(tmp_path / "nothing"))
    assert missing.returncode == 2
    assert "holds no genesis.json" in missing.stderr


def test_account_import_from_key_file_and_from_keystore(tmp_path: Path) -> None:
    key = PrivateKey(os.urandom(32))
    address = to_checksum_address(key.public_key.to_canonical_address())
    (tmp_path / "key.hex").write_text("0x" + key.to_bytes().hex() + "\n")
    (tmp_path / "pw").write_text("new password\n")
    done = run_cli(
        "account", "import", str(tmp_path / "key.hex"),
        "--datadir", str(tmp_path / "a"), "--password", str(tmp_path / "pw"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"address {address}" in done.stdout
    written = Path(done.stdout.split("keystore ", 1)[1].strip())
    assert written.parent == tmp_path / "a" / "keystore"
    assert written.stat().st_mode & 0o777 == 0o600
    assert load_keystore(written, tmp_path / "pw") == key
    listed = run_cli("account", "list", "--datadir", str(tmp_path / "a"))
    assert address[2:].lower() in listed.stdout

    twice = run_cli(
        "account", "import", str(tmp_path / "key.hex"),
        "--datadir", str(tmp_path / "a"), "--password", str(tmp_path / "pw"),
    )  # fmt: skip
    assert twice.returncode == 2 and f"account {address} already exists" in twice.stderr
    assert len(list((tmp_path / "a" / "keystore").iterdir())) == 1

    # from another keystore (as MetaMask or geth wrote it), re-encrypted with a new password
    (tmp_path / "old-pw").write_text("old password\n")
    other = eth_keyfile.create_keyfile_json(key.to_bytes(), b"old password", kdf="pbkdf2")
    (tmp_path / "old.json").write_text(json.dumps(other))
    base = ["account", "import", str(tmp_path / "old.json"), "--datadir", str(tmp_path / "b")]
    no_source = run_cli(*base, "--password", str(tmp_path / "pw"))
    assert no_source.returncode == 2 and "--source-password" in no_source.stderr
    wrong = run_cli(
        *base, "--password", str(tmp_path / "pw"), "--source-password", str(tmp_path / "pw")
    )
    assert wrong.returncode == 2 and "cannot decrypt keystore" in wrong.stderr
    assert not (tmp_path / "b" / "keystore").exists()
    moved = run_cli(
        *base, "--password", str(tmp_path / "pw"), "--source-password", str(tmp_path / "old-pw")
    )
    assert moved.returncode == 0, moved.stderr
    path = Path(moved.stdout.split("keystore ", 1)[1].strip())
    assert load_keystore(path, tmp_path / "pw") == key

    (tmp_path / "junk").write_text("not a key\n")
    junk = run_cli("account", "import", str(tmp_path / "junk"), "--datadir", str(tmp_path / "c"),
                   "--password", str(tmp_path / "pw"))  # fmt: skip
    assert junk.returncode == 2 and "holds no private key" in junk.stderr
