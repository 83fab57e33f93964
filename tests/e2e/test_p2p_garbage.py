"""Issue 12: one malformed frame never stops a node's p2p.

A real py-libp2p peer passes the status handshake with the sequencer, then writes a bad
frame on one protocol: a varint that never ends and a whole frame of protobuf garbage on
the gossip protocols, an oversized frame, and garbage on the status and sync protocols.
Before, the protobuf garbage raised out of py-libp2p's stream handler and ended the
sequencer's p2p thread for good. Now the stream (and, for anything undecodable, the peer)
is dropped and scored down; after every case the honest full node still exchanges gossip
with the sequencer, and at the end a new full node syncs the chain from it.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
from libp2p.utils.varint import encode_uvarint, encode_varint_prefixed

from cairn.p2p import messages as m
from tests.support.byzantine import send_garbage
from tests.support.chain import CHAIN_ID, transfer
from tests.support.net import LocalNet, log_has, metric, peer_count, wait_receipt, wait_same_head
from tests.support.wait import wait_until

pytestmark = pytest.mark.e2e

# Field 1 (length-delimited) claiming more bytes than follow: no protobuf parser takes it.
PROTOBUF_GARBAGE = b"\x0a\xff\xff\xff\xff\x0f" + bytes(range(64))
CASES = [
    # (protocol, bytes written, is the peer hung up on and penalised?)
    ("/meshsub/1.1.0", b"\xff" * 12, True),  # a length varint longer than 10 bytes
    ("/meshsub/1.0.0", encode_varint_prefixed(PROTOBUF_GARBAGE), True),
    # 64 MiB announced: py-libp2p resets the stream itself before reading it.
    ("/meshsub/1.1.0", encode_uvarint(64 * 1024 * 1024) + b"\x00" * 4096, False),
    (m.STATUS_PROTOCOL, encode_varint_prefixed(b"\xc1 not msgpack"), True),
    (m.sync_protocol(CHAIN_ID), encode_varint_prefixed(PROTOBUF_GARBAGE), True),
]


def test_garbage_on_every_protocol_leaves_p2p_serving(tmp_path: Path) -> None:
    with LocalNet(tmp_path) as net:
        seq = net.start_sequencer()
        full = net.start_fullnode("full")
        wait_until(lambda: peer_count(full) == 1, timeout=30, message="full node peered")
        genesis = seq.call("eth_getBlockByNumber", "0x0", False)
        assert isinstance(genesis, dict)
        genesis_hash = bytes.fromhex(genesis["hash"][2:])
        info = seq.call("admin_nodeInfo")
        assert isinstance(info, dict)
        target = str(info["enode"])
        for nonce, (protocol, payload, hung_up) in enumerate(CASES):
            report = send_garbage(target, CHAIN_ID, genesis_hash, protocol, payload)
            assert report.stream_ended, (protocol, report.log)
            assert report.cut_off == hung_up, (protocol, report.log)
            if hung_up:
                assert wait_until(
                    functools.partial(log_has, seq, f"penalised peer {report.peer_id}"),
                    timeout=10,
                    message=f"the penalty line for garbage on {protocol}",
                )
            # Gossip still flows both ways: a transaction gossiped from the full node to
            # the sequencer, its block gossiped back.
            tx_hash = str(full.call("eth_sendRawTransaction", "0x" + transfer(4, nonce).hex()))
            assert wait_receipt(full, tx_hash, timeout=30) == wait_receipt(seq, tx_hash)
            wait_until(
                lambda: peer_count(full) == 1 and peer_count(seq) == 1,
                timeout=10,
                message="the garbage peer gone, the honest pair still peered",
            )
        assert metric(seq, "cairn_p2p_invalid_messages_total", topic="stream", fault="garbage") == 4
        for node in (seq, full):
            assert not log_has(node, "the p2p thread failed")
            assert not log_has(node, "restarting p2p")
        # And a new peer still syncs the chain from the sequencer by range.
        late = net.start_fullnode("late")
        wait_same_head([seq, full, late], at_least=len(CASES), timeout=60)
