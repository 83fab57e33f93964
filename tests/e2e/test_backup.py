"""`cairn backup` of a running node under load: the copy starts as a node that serves the
block the backup names, with the same hash, state and balances as the original at that
block; the same command copies a stopped node's datadir; bad targets are refused clearly."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from eth_utils import keccak

from tests.support import rpc
from tests.support.chain import ADDRESSES, DEAD, transfer
from tests.support.proc import NodeProcess, run_cli
from tests.support.wait import wait_until

pytestmark = pytest.mark.e2e


class Load:
    """Transfers from three accounts, one after another, until stopped."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        nonces = [0, 0, 0]
        while not self._stop.is_set():
            sender = self.sent % 3
            raw = transfer(sender, nonces[sender], value=1 + self.sent)
            rpc.call(self.url, "eth_sendRawTransaction", "0x" + raw.hex())
            nonces[sender] += 1
            self.sent += 1

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def balances(node: NodeProcess, block: str) -> list[str]:
    who = [DEAD, *("0x" + a.hex() for a in ADDRESSES[:4])]
    return [str(node.call("eth_getBalance", a, block)) for a in who]


def test_backup_of_running_node_under_load_restores(tmp_path: Path) -> None:
    node = NodeProcess(tmp_path / "live", "dev").start()
    try:
        with Load(node.url) as load:
            wait_until(lambda: load.sent >= 20, timeout=60, message="load under way")
            done = run_cli("backup", "--datadir", str(node.datadir), "--out", str(tmp_path / "b1"))
            assert done.returncode == 0, done.stderr
            sent_during = load.sent
            wait_until(lambda: load.sent >= sent_during + 10, timeout=60, message="more load")
        assert "taken by the running node" in done.stdout
        manifest = json.loads((tmp_path / "b1" / "BACKUP.json").read_text())
        number = manifest["blockNumber"]
        assert number >= 20
        tag = hex(number)
        block = node.call("eth_getBlockByNumber", tag, False)
        assert isinstance(block, dict) and block["hash"] == manifest["blockHash"]
        expected = balances(node, tag)
        head_after = int(str(node.call("eth_blockNumber")), 16)
        assert head_after > number  # the node kept committing while (and after) it copied
        later = {
            tx
            for n in range(number + 1, head_after + 1)
            for tx in node.call("eth_getBlockByNumber", hex(n), False)["transactions"]  # type: ignore[index]
        }
        # a target that is not empty is refused while the node runs, and nothing is written
        again = run_cli("backup", "--datadir", str(node.datadir), "--out", str(tmp_path / "b1"))
        assert again.returncode == 2 and "not an empty directory" in again.stderr
    finally:
        node.stop()

    restored = NodeProcess(tmp_path / "b1", "dev").start()
    try:
        assert restored.call("eth_getBlockByNumber", tag, False) == block
        assert balances(restored, tag) == expected
        # the copy holds the txpool journal too: transactions the node had accepted but not
        # mined at the snapshot are mined again on top, each one the original mined as well
        head = int(str(restored.call("eth_blockNumber")), 16)
        assert head >= number
        restored.call("eth_sendRawTransaction", "0x" + transfer(5, 0).hex())
        wait_until(
            lambda: int(str(restored.call("eth_blockNumber")), 16) > head,
            timeout=30,
            message="a new block on the restored chain",
        )
        head = int(str(restored.call("eth_blockNumber")), 16)
        replayed = {
            tx
            for n in range(number + 1, head + 1)
            for tx in restored.call("eth_getBlockByNumber", hex(n), False)["transactions"]  # type: ignore[index]
        }
        assert len(replayed) >= 1 and replayed - later == {"0x" + keccak(transfer(5, 0)).hex()}
    finally:
        restored.stop()

    # with the node stopped, the command copies the datadir itself
    offline = run_cli("backup", "--datadir", str(node.datadir), "--out", str(tmp_path / "b2"))
    assert offline.returncode == 0, offline.stderr
    assert "no node running" in offline.stdout
    assert json.loads((tmp_path / "b2" / "BACKUP.json").read_text())["blockNumber"] == head_after
    inside = run_cli("backup", "--datadir", str(node.datadir), "--out", str(node.datadir / "x"))
    assert inside.returncode == 2 and "inside the datadir" in inside.stderr
