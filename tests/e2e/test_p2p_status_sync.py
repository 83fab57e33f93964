"""A follower that receives no gossip at all still reaches a new block within seconds, by
the status exchange (every peer's head every 2 s) and range sync alone.

The full node runs with the test-only switch CAIRN_TEST_P2P_NO_GOSSIP=1 (docs/p2p.md): it
subscribes to no gossip topic, so nothing is pushed to it. The automining sequencer makes
one block and then none.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.chain import transfer
from tests.support.net import LocalNet, log_has, metric, peer_count, wait_receipt
from tests.support.wait import wait_until

pytestmark = pytest.mark.e2e


def test_follower_cut_from_gossip_reaches_the_block_by_status_and_sync(tmp_path: Path) -> None:
    with LocalNet(tmp_path) as net:
        seq = net.start_sequencer()
        cut = net.start_fullnode("cut", env={"CAIRN_TEST_P2P_NO_GOSSIP": "1"})
        wait_until(lambda: peer_count(cut) == 1, timeout=30, message="the cut node peered")
        assert log_has(cut, "not subscribing to gossip (test-only)")
        tx_hash = str(seq.call("eth_sendRawTransaction", "0x" + transfer(2, 0).hex()))
        mined = wait_receipt(seq, tx_hash)
        assert int(str(mined["blockNumber"]), 16) == 1
        # Status refresh (2 s) + the follower's poll (1 s) + one range request.
        wait_until(
            lambda: int(str(cut.call("eth_blockNumber")), 16) == 1,
            timeout=10,
            message="the cut node at block #1",
        )
        assert wait_receipt(cut, tx_hash)["blockHash"] == mined["blockHash"]
        assert metric(cut, "cairn_p2p_sync_blocks_total") == 1
        assert metric(cut, "cairn_p2p_gossip_received_total", topic="blocks") == 0
        wait_until(lambda: cut.call("eth_syncing") is False, timeout=5, message="not syncing")
        # The peer's announced head is what the node reports for it.
        peers = cut.call("admin_peers")
        assert isinstance(peers, list) and len(peers) == 1
        assert peers[0]["protocols"]["cairn"]["number"] == 1
