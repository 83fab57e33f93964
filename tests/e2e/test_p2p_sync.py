"""A full node started after 1,000+ blocks syncs them by range (with progress output), then
follows gossip."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import rpc
from tests.support.chain import transfer
from tests.support.net import LocalNet, head, log_has, wait_receipt, wait_same_head
from tests.support.wait import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TARGET_BLOCKS = 1_000
SENDERS = 8


def test_late_fullnode_syncs_1000_blocks_then_follows(tmp_path: Path) -> None:
    with LocalNet(tmp_path) as net:
        seq = net.start_sequencer()
        # Automine: each transaction sent one after another gets (nearly always) its own
        # block; keep sending until the chain is long enough.
        nonces = [0] * SENDERS
        sent = 0
        while head(seq)[0] < TARGET_BLOCKS:
            batch = []
            for _ in range(20):
                sender = sent % SENDERS
                raw = transfer(sender, nonces[sender])
                nonces[sender] += 1
                sent += 1
                batch.append(rpc.call(seq.url, "eth_sendRawTransaction", "0x" + raw.hex()))
            wait_receipt(seq, str(batch[-1]))
        made, _ = head(seq)
        assert made >= TARGET_BLOCKS

        late = net.start_fullnode("late")
        wait_same_head([seq, late], at_least=made, timeout=240)
        assert wait_until(
            lambda: log_has(late, "sync: done at"), timeout=10, message="the sync summary line"
        )
        text = late.log_path.read_text()
        assert "blocks/s" in text and "tx/s" in text
        # Every block is the sequencer's block, none missing.
        for number in range(0, made + 1, 1):
            mine = late.call("eth_getBlockByNumber", hex(number), False)
            assert isinstance(mine, dict), f"block {number} missing on the late node"
            if number % 50 == 0 or number == made:
                theirs = seq.call("eth_getBlockByNumber", hex(number), False)
                assert isinstance(theirs, dict) and mine["hash"] == theirs["hash"]
        assert late.call("eth_syncing") is False

        # Then it follows: a transaction sent to the late node is mined and reaches it.
        raw = transfer(0, nonces[0])
        tx_hash = str(late.call("eth_sendRawTransaction", "0x" + raw.hex()))
        receipt = wait_receipt(late, tx_hash)
        assert receipt["blockHash"] == wait_receipt(seq, tx_hash)["blockHash"]
        assert int(str(receipt["blockNumber"]), 16) > made
