"""Datadirs: kept across restarts, a foreign genesis refused untouched, reset only on purpose."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tests.support.chain import transfer
from tests.support.proc import NodeProcess, run_cli
from tests.support.wait import wait_until


def digest(path: Path) -> dict[str, str]:
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


def test_dev_chain_persists_and_other_genesis_is_refused(tmp_path: Path) -> None:
    datadir = tmp_path / "dev"
    node = NodeProcess(datadir, "dev").start()
    node.call("eth_sendRawTransaction", "0x" + transfer(0, 0).hex())
    wait_until(lambda: node.call("eth_blockNumber") == "0x1", timeout=30, message="block 1")
    block1 = node.call("eth_getBlockByNumber", "0x1", False)
    assert node.stop() == 0
    assert "stopped cleanly" in node.log()

    again = NodeProcess(datadir, "dev").start()
    assert again.call("eth_getBlockByNumber", "0x1", False) == block1
    again.stop()

    # A genesis that differs (gas limit) must be refused without touching a byte.
    other = json.loads((datadir / "genesis.json").read_text())
    other["gasLimit"] = hex(20_000_000)
    other_path = tmp_path / "other-genesis.json"
    other_path.write_text(json.dumps(other))
    before = digest(datadir)
    result = run_cli(
        "run", "--datadir", str(datadir), "--genesis", str(other_path), "--http.port", "0"
    )
    assert result.returncode == 2
    assert "genesis" in result.stderr and "Nothing was changed" in result.stderr
    assert result.stderr.count("0x") >= 2  # names both genesis hashes
    assert digest(datadir) == before

    # dev flags that contradict the stored chain get a clear message, also untouched
    result = run_cli(
        "dev", "--datadir", str(datadir), "--gas-limit", "20000000", "--http.port", "0"
    )
    assert result.returncode == 2
    assert "--gas-limit 20000000 (datadir has 30000000)" in result.stderr
    assert digest(datadir) == before


def test_init_run_and_reset(tmp_path: Path) -> None:
    datadir = tmp_path / "node"
    password = tmp_path / "password.txt"
    password.write_text("correct horse battery staple\n")
    created = run_cli("account", "new", "--datadir", str(datadir), "--password", str(password))
    assert created.returncode == 0, created.stderr
    address = created.stdout.split()[1]
    keystore = next((datadir / "keystore").iterdir())
    assert json.loads(keystore.read_text())["crypto"]["kdf"] == "scrypt"
    assert address[2:].lower() in keystore.name

    genesis = {
        "config": {"chainId": 4242, "pragueTime": 0},
        "gasLimit": "0x1c9c380",
        "baseFeePerGas": "0x3b9aca00",
        "alloc": {"0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266": {"balance": "0xde0b6b3a7640000"}},
        "cairn": {"mode": "sequencer", "producers": [address], "blockTime": 0},
    }
    genesis_path = tmp_path / "genesis.json"
    genesis_path.write_text(json.dumps(genesis))
    init = run_cli("init", "--datadir", str(datadir), "--genesis", str(genesis_path))
    assert init.returncode == 0, init.stderr
    assert "chain 4242" in init.stdout

    node = NodeProcess(datadir, "run", "--producer.password", str(password)).start()
    try:
        assert node.call("eth_chainId") == hex(4242)
        raw = transfer(0, 0, chain_id=4242)
        node.call("eth_sendRawTransaction", "0x" + raw.hex())
        wait_until(lambda: node.call("eth_blockNumber") == "0x1", timeout=30, message="block 1")
    finally:
        node.stop()

    wrong = tmp_path / "wrong.txt"
    wrong.write_text("nope\n")
    bad = NodeProcess(datadir, "run", "--producer.password", str(wrong))
    bad.start(wait=False)
    assert bad.proc is not None
    assert bad.proc.wait(timeout=60) == 2
    assert "wrong password" in bad.log()

    reset = run_cli("db", "reset", "--datadir", str(datadir), "--yes")
    assert reset.returncode == 0
    assert not (datadir / "chaindata").exists()
    assert keystore.exists()
