"""A transaction a full node accepted while it had no peers is not stranded: when the
sequencer comes (back), the full node hands over its pool and the transaction is mined."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.chain import transfer
from tests.support.net import LocalNet, enode, peer_count, wait_receipt
from tests.support.wait import wait_until

pytestmark = pytest.mark.e2e


def test_pool_reaches_a_sequencer_that_joins_later(tmp_path: Path) -> None:
    with LocalNet(tmp_path) as net:
        seq = net.start_sequencer()
        bootnode = enode(seq)
        seq.stop()  # same datadir and port later: same peer id, same address
        full = net.start_fullnode("full", "--bootnodes", bootnode, bootnode=False)
        tx_hash = str(full.call("eth_sendRawTransaction", "0x" + transfer(2, 0).hex()))
        assert peer_count(full) == 0
        assert full.call("eth_getTransactionReceipt", tx_hash) is None
        seq.start()
        wait_until(lambda: peer_count(full) == 1, timeout=60, message="the sequencer back")
        receipt = wait_receipt(full, tx_hash)
        assert receipt["status"] == "0x1"
        assert receipt == wait_receipt(seq, tx_hash)
