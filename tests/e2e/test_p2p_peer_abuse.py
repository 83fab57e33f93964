"""Issue 12: a peer that costs more than its budget, next to honest peers.

- Sync serving: a peer that asks the sequencer for the same 128 blocks over and over, as
  fast as it is answered, is refused past its per-peer budget (no answer), scored down
  and hung up on; a full node that joins meanwhile syncs the whole chain from the
  sequencer as usual. Before the fix every request was answered.
- Transaction gossip: a peer that floods the txs topic with junk (another chain's
  transactions, undecodable bytes) is scored down and banned, while transactions sent to
  the honest full node still reach the sequencer by gossip and are mined.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path

import pytest

from cairn.p2p import messages as m
from cairn.p2p.limits import SERVE_REQUEST_BURST, SERVE_REQUESTS_PER_SECOND
from tests.support.chain import CHAIN_ID, transfer
from tests.support.net import (
    LocalNet,
    enode,
    log_count,
    log_has,
    metric,
    peer_count,
    wait_receipt,
    wait_same_head,
)
from tests.support.rogue import RoguePeer
from tests.support.wait import wait_until

pytestmark = pytest.mark.e2e


def _genesis_hash(node: object) -> bytes:
    block = node.call("eth_getBlockByNumber", "0x0", False)  # type: ignore[attr-defined]
    assert isinstance(block, dict)
    return bytes.fromhex(block["hash"][2:])


def test_sync_requests_past_the_budget_are_refused_honest_sync_unaffected(
    tmp_path: Path,
) -> None:
    with LocalNet(tmp_path) as net:
        seq = net.start_sequencer()
        for nonce in range(3):
            raw = "0x" + transfer(6, nonce).hex()
            wait_receipt(seq, str(seq.call("eth_sendRawTransaction", raw)))
        with RoguePeer(CHAIN_ID, _genesis_hash(seq)) as hog:
            seq_id = hog.connect(enode(seq))
            answered, ended = hog.flood(seq_id, m.SyncRequest("range", 0, 128), 1000, 8)
            refused_at = time.monotonic()
            assert SERVE_REQUEST_BURST * 0.9 <= answered < 1000, (answered, ended)
            assert hog.gone.wait(10), "the sequencer kept the over-budget peer"
            assert wait_until(
                functools.partial(log_has, seq, f"penalised peer {hog.peer_id}"),
                timeout=10,
                message="the over-budget penalty",
            )
            assert log_has(seq, "sync requests over budget")
            # It comes back for more: refused again at once (its budget refills slowly),
            # and banned once its score is spent.
            rounds = 1
            while not log_has(seq, f"banned peer {hog.peer_id}") and rounds < 8:
                hog.connect(enode(seq))
                again, _ = hog.flood(seq_id, m.SyncRequest("range", 0, 128), 1000, 8)
                # No fresh burst for the same id: only what its budget refilled since it was
                # last refused (a loaded machine takes seconds between rounds).
                refilled = SERVE_REQUESTS_PER_SECOND * (time.monotonic() - refused_at)
                assert again <= refilled + 5, (again, refilled)
                refused_at = time.monotonic()
                assert hog.gone.wait(10)
                rounds += 1
            assert log_has(seq, f"banned peer {hog.peer_id}"), rounds
            # Every request past the budget is refused (lanes in flight when the first was
            # refused are refused too); the peer is charged once per connection.
            assert metric(seq, "cairn_p2p_sync_refused_total") >= rounds
            assert log_count(seq, f"penalised peer {hog.peer_id}") == rounds
            # An honest newcomer syncs the chain from the same sequencer.
            full = net.start_fullnode("full")
            wait_same_head([seq, full], at_least=3, timeout=30)
            assert peer_count(seq) == 1


def test_a_peer_flooding_junk_transactions_is_banned_honest_gossip_flows(
    tmp_path: Path,
) -> None:
    with LocalNet(tmp_path) as net:
        seq = net.start_sequencer()
        full = net.start_fullnode("full")
        wait_until(lambda: peer_count(seq) == 1, timeout=30, message="the full node peered")
        with RoguePeer(CHAIN_ID, _genesis_hash(seq), gossip=True) as flooder:
            seq_id = flooder.connect(enode(seq))
            flooder.wait_subscribed(seq_id, "txs")
            junk = [
                [transfer(7, n, chain_id=999) for n in range(50)],  # another chain's
                [b"\xf8\xff" + bytes([n]) * 20 for n in range(50)],  # undecodable
            ]
            sent = 0
            while not flooder.gone.is_set() and sent < 200:
                flooder.publish("txs", m.encode_txs(junk[sent % 2]))
                sent += 1
            assert flooder.gone.wait(15), f"still connected after {sent} junk batches"
            wait_until(
                functools.partial(log_has, seq, f"banned peer {flooder.peer_id}"),
                timeout=10,
                message="the flooder banned",
            )
        assert metric(seq, "cairn_p2p_invalid_messages_total", topic="txs", fault="bad-tx") >= 10
        # Honest transactions still flow: sent to the full node, gossiped, mined.
        for nonce in range(3):
            tx_hash = str(full.call("eth_sendRawTransaction", "0x" + transfer(8, nonce).hex()))
            assert wait_receipt(seq, tx_hash, timeout=20) == wait_receipt(full, tx_hash)
        assert peer_count(seq) == 1 and peer_count(full) == 1
        assert not log_has(seq, "the p2p thread failed")
