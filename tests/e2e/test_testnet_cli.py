"""`cairn testnet init --sequencer --fullnodes 2` writes a network; `cairn testnet up
--local` runs it as processes, shows heads and peers, and stops them all on Ctrl-C."""

from __future__ import annotations

import json
import random
import signal
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from cairn.genesis.parse import load_genesis
from cairn.p2p.identity import peer_id_of
from tests.support import rpc
from tests.support.chain import transfer
from tests.support.proc import REPO, run_cli
from tests.support.wait import wait_until

pytestmark = pytest.mark.e2e
UP_ARGS = ("--interval", "1")


def _free_run(count: int) -> int:
    """A first port such that `count` consecutive ports are free on loopback."""
    for _ in range(200):
        base = random.randrange(20_000, 60_000)
        try:
            sockets = []
            for port in range(base, base + count):
                s = socket.socket()
                sockets.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError("no run of free ports found")


def test_init_writes_a_consistent_network(tmp_path: Path) -> None:
    root = tmp_path / "tn"
    done = run_cli("testnet", "init", "--sequencer", "--fullnodes", "2", "--dir", str(root))
    assert done.returncode == 0, done.stderr
    genesis = load_genesis(root / "genesis.json")
    manifest = json.loads((root / "testnet.json").read_text())
    assert [n["name"] for n in manifest["nodes"]] == ["sequencer", "fullnode-1", "fullnode-2"]
    assert genesis.consensus.mode == "sequencer"
    assert "0x" + genesis.consensus.producers[0].hex() == manifest["producer"].lower()
    keystore = json.loads(next((root / "sequencer" / "keystore").iterdir()).read_text())
    assert keystore["address"].lower() == manifest["producer"].lower()[2:]
    seq_id = peer_id_of(bytes.fromhex((root / "sequencer/p2p/nodekey").read_text().strip()))
    assert manifest["nodes"][0]["peerId"] == seq_id
    for name in ("fullnode-1", "fullnode-2"):
        local = tomllib.loads((root / name / "config.toml").read_text())
        docker = tomllib.loads((root / name / "config.docker.toml").read_text())
        assert local["bootnodes"].endswith(f"/p2p/{seq_id}")
        assert docker["bootnodes"] == f"/ip4/172.28.0.10/tcp/30333/p2p/{seq_id}"
        assert docker["p2p.mdns"] is True and "producer.keystore" not in docker
    compose = yaml.safe_load((root / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"sequencer", "fullnode-1", "fullnode-2", "postgres", "prometheus", "grafana"} <= set(
        services
    )
    assert services["fullnode-2"]["networks"]["cairn"]["ipv4_address"] == "172.28.0.12"
    assert services["sequencer"]["command"] == [
        "run",
        "--config",
        "/testnet/sequencer/config.docker.toml",
    ]
    assert "profiles" not in services["postgres"]  # wired to fullnode-1's mirror
    assert services["prometheus"]["profiles"] == ["observability"]
    again = run_cli("testnet", "init", "--sequencer", "--fullnodes", "2", "--dir", str(root))
    assert again.returncode != 0 and "nothing was changed" in again.stderr


def test_up_local_runs_the_network_and_stops_it(tmp_path: Path) -> None:
    root = tmp_path / "tn"
    p2p, http = _free_run(3), _free_run(3)
    done = run_cli(
        "testnet",
        "init",
        "--sequencer",
        "--fullnodes",
        "2",
        "--dir",
        str(root),
        "--p2p-port",
        str(p2p),
        "--http-port",
        str(http),
    )
    assert done.returncode == 0, done.stderr
    urls = [f"http://127.0.0.1:{http + i}" for i in range(3)]
    out = (tmp_path / "up.out").open("wb")
    up = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cairn",
            "testnet",
            "up",
            "--local",
            "--dir",
            str(root),
            "--interval",
            "0.5",
        ],
        stdout=out,
        stderr=subprocess.STDOUT,
        cwd=REPO,
    )
    try:

        def view() -> str:
            return (tmp_path / "up.out").read_text(errors="replace")

        wait_until(
            lambda: view().count("peers 2") >= 3 and "in sync" in view(),
            timeout=90,
            interval=0.5,
            message="the status view to show three nodes with two peers each",
        )
        tx_hash = rpc.call(urls[1], "eth_sendRawTransaction", "0x" + transfer(0, 0).hex())
        hashes = wait_until(
            lambda: (lambda hs: hs if len(hs) == 1 and None not in hs else None)(
                {
                    (rpc.call(u, "eth_getTransactionReceipt", tx_hash) or {}).get("blockHash")
                    for u in urls
                }
            ),
            timeout=60,
            message="the transaction mined and seen on all three nodes",
        )
        assert len(hashes) == 1
        wait_until(lambda: "head #1" in view(), timeout=30, message="head #1 in the view")
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGINT)
        code = up.wait(timeout=60)
        out.close()
    assert code == 0, view()
    text = view()
    for name in ("sequencer", "fullnode-1", "fullnode-2"):
        assert f"{name} stopped (exit 0)" in text
    for url in urls:
        with pytest.raises(OSError):
            rpc.call(url, "eth_chainId", timeout=2)


@pytest.mark.slow
def test_a_validator_network_from_init_runs_with_up_local(tmp_path: Path) -> None:
    """`testnet init --validators 4 --fullnodes 1`: BFT genesis, a key per validator, every
    validator bootstrapping from the others; `up --local` runs it, the view shows each node's
    real state, and a transaction sent to the full node is final on all five."""
    root = tmp_path / "tn"
    p2p, http = _free_run(5), _free_run(5)
    done = run_cli(
        "testnet",
        "init",
        "--validators",
        "4",
        "--fullnodes",
        "1",
        "--dir",
        str(root),
        "--p2p-port",
        str(p2p),
        "--http-port",
        str(http),
    )
    assert done.returncode == 0, done.stderr
    genesis = load_genesis(root / "genesis.json")
    assert genesis.consensus.mode == "validators" and len(genesis.consensus.producers) == 4
    assert genesis.consensus.block_time == 1.0 and genesis.consensus.empty_blocks
    manifest = json.loads((root / "testnet.json").read_text())
    assert [n["mode"] for n in manifest["nodes"]] == ["validator"] * 4 + ["fullnode"]
    for i in range(1, 5):
        local = tomllib.loads((root / f"validator-{i}" / "config.toml").read_text())
        assert len(local["bootnodes"].split(",")) == 3  # the other validators
        assert (root / f"validator-{i}" / "password.txt").stat().st_mode & 0o777 == 0o600
    assert (root / "k8s" / "validator.yaml").exists()  # and no sequencer.yaml
    assert not (root / "k8s" / "sequencer.yaml").exists()
    urls = [f"http://127.0.0.1:{http + i}" for i in range(5)]
    out = (tmp_path / "up.out").open("wb")
    up = subprocess.Popen(
        [sys.executable, "-m", "cairn", "testnet", "up", "--local", "--dir", str(root), *UP_ARGS],
        stdout=out,
        stderr=subprocess.STDOUT,
        cwd=REPO,
    )
    try:

        def view() -> str:
            return (tmp_path / "up.out").read_text(errors="replace")

        wait_until(
            lambda: all(int(str(rpc.call(u, "eth_blockNumber")), 16) >= 3 for u in urls),
            timeout=240,
            interval=1,
            message="five nodes at #3",
        )
        assert "validator-1  log " in view()  # where each node's log is
        tx_hash = rpc.call(urls[4], "eth_sendRawTransaction", "0x" + transfer(0, 0).hex())
        wait_until(
            lambda: (
                len(
                    {
                        (rpc.call(u, "eth_getTransactionReceipt", tx_hash) or {}).get("blockHash")
                        for u in urls
                    }
                    - {None}
                )
                == 1
                and all(rpc.call(u, "eth_getTransactionReceipt", tx_hash) for u in urls)
            ),
            timeout=90,
            message="the transaction final on all five nodes",
        )
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGINT)
        code = up.wait(timeout=90)
        out.close()
    assert code == 0, view()
