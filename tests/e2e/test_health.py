"""Health that means something, against real processes: a `run` sequencer with
`--block-time 1 --empty-blocks` ticks with no traffic; a full node following it is healthy,
turns unhealthy (503, with the reason) when the sequencer stops and its head grows old, and
healthy again when blocks resume."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.support.chain import ADDRESSES
from tests.support.net import enode, head
from tests.support.proc import NodeProcess, run_cli
from tests.support.wait import wait_until

pytestmark = pytest.mark.e2e


def get(url: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _run_sequencer(tmp_path: Path) -> tuple[Path, Path, Path]:
    datadir = tmp_path / "sequencer"
    password = tmp_path / "password.txt"
    password.write_text("tick tock\n")
    created = run_cli("account", "new", "--datadir", str(datadir), "--password", str(password))
    assert created.returncode == 0, created.stderr
    address = created.stdout.split()[1]
    genesis = {
        "config": {"chainId": 31337, "pragueTime": 0},
        "gasLimit": "0x1c9c380",
        "baseFeePerGas": "0x3b9aca00",
        "extraData": "0x" + b"health test".hex(),
        "alloc": {"0x" + ADDRESSES[0].hex(): {"balance": "0xde0b6b3a7640000"}},
        "cairn": {"mode": "sequencer", "producers": [address], "blockTime": 0},
    }
    genesis_path = tmp_path / "genesis.json"
    genesis_path.write_text(json.dumps(genesis))
    return datadir, password, genesis_path


def test_a_stalled_head_makes_a_full_node_unhealthy_until_blocks_resume(tmp_path: Path) -> None:
    datadir, password, genesis = _run_sequencer(tmp_path)
    seq_args = (
        "--genesis",
        str(genesis),
        "--producer.password",
        str(password),
        "--block-time",
        "1",
        "--empty-blocks",
    )
    seq = NodeProcess(datadir, "run", *seq_args).start()
    full: NodeProcess | None = None
    try:
        # ticks with no transactions at all
        wait_until(lambda: head(seq)[0] >= 3, timeout=60, message="three empty blocks")
        status, body = get(seq.url + "/healthz")
        assert status == 200 and body["mode"] == "sequencer" and body["healthy"] is True
        _, chain = get(seq.url + "/health/blockchain")
        assert chain["maxHeadAgeSeconds"] == 13.0  # 3 block times + 10 s

        full = NodeProcess(
            tmp_path / "full",
            "run",
            "--genesis",
            str(genesis),
            "--bootnodes",
            enode(seq),
            "--health.max-head-age",
            "4",
        ).start()
        wait_until(
            lambda: get(full.url + "/healthz")[0] == 200, timeout=90, message="a healthy full node"
        )
        _, body = get(full.url + "/healthz")
        assert body["mode"] == "fullnode" and body["ok"] is True and body["healthy"] is True
        seq.stop()
        # /healthz may go 503 first for the lost peer; the head's age follows within 4 s
        wait_until(
            lambda: get(full.url + "/health/blockchain")[0] == 503,
            timeout=60,
            message="the head reported old after the stall",
        )
        status, chain = get(full.url + "/health/blockchain")
        assert status == 503 and "old" in str(chain["reasons"])
        assert get(full.url + "/healthz")[0] == 503
        status, ready = get(full.url + "/health/ready")
        assert status == 503 and ready["ready"] is False
        status, _ = get(full.url + "/health")
        assert status == 200  # alive all the same: it should not be restarted for this

        seq.start()  # same ports, same node key: the full node finds it again
        wait_until(
            lambda: get(full.url + "/healthz")[0] == 200, timeout=90, message="healthy again"
        )
    finally:
        if full is not None:
            full.stop()
        seq.stop()
