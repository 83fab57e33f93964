"""A byzantine peer gossips a block with a bad commit, a block whose state root is wrong
(under a commit the producer key really signed) and garbage bytes. Each is rejected before
relay and costs the peer score; the third gets it banned (logged, counted in /metrics,
reconnection refused). None of its data reaches storage and the honest nodes carry on."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from eth_keys.datatypes import PrivateKey

from cairn.chain.bundle import BlockBundle
from cairn.chain.commit import make_commit
from cairn.execution.builder import BlockEnv
from cairn.execution.forks import encode_header
from tests.support.byzantine import run_byzantine
from tests.support.chain import CHAIN_ID, PRODUCER, open_chain, transfer
from tests.support.net import LocalNet, log_has, metric, peer_count, wait_receipt
from tests.support.wait import wait_until

pytestmark = pytest.mark.e2e


def _forged_blocks(tmp: Path) -> tuple[list[bytes], list[str]]:
    """Block #1 of the dev chain with a bad commit, and with a wrong state root."""
    with open_chain(tmp / "forge") as chain:
        head = chain.head
        txs = [chain.fork.decode_transaction(transfer(3, 0, value=7))]
        env = BlockEnv(head, head.timestamp + 1, chain.genesis.coinbase, head.gas_limit)
        block = chain.executor.build(env, txs).block
    header = block.header
    raws = tuple(tx.encode() for tx in block.transactions)
    stranger = PrivateKey(os.urandom(32))
    bad_commit = BlockBundle(
        encode_header(header),
        raws,
        make_commit(stranger, CHAIN_ID, 1, header.hash).encode(),
    )
    lying = header.copy(state_root=b"\x11" * 32)
    bad_root = BlockBundle(
        encode_header(lying),
        raws,
        make_commit(PRODUCER, CHAIN_ID, 1, lying.hash).encode(),
    )
    return [bad_commit.encode(), bad_root.encode()], [
        "0x" + header.hash.hex(),
        "0x" + lying.hash.hex(),
    ]


def test_forged_blocks_and_garbage_get_the_sender_banned(tmp_path: Path) -> None:
    forged, forged_hashes = _forged_blocks(tmp_path)
    garbage = os.urandom(333)
    with LocalNet(tmp_path) as net:
        seq = net.start_sequencer()
        full = net.start_fullnode("full")
        wait_until(lambda: peer_count(full) == 1, timeout=30, message="full node peered")
        genesis = full.call("eth_getBlockByNumber", "0x0", False)
        assert isinstance(genesis, dict)
        info = full.call("admin_nodeInfo")
        assert isinstance(info, dict)
        report = run_byzantine(
            str(info["enode"]), CHAIN_ID, bytes.fromhex(genesis["hash"][2:]), [*forged, garbage]
        )
        assert report.published == 3, report.log
        assert report.cut_off, report.log
        assert report.reconnect_refused, report.log
        byz = report.peer_id
        wait_until(lambda: log_has(full, f"banned peer {byz}"), timeout=10, message="ban line")
        for fault in ("bad-commit", "bad-block", "garbage"):
            assert (
                metric(full, "cairn_p2p_invalid_messages_total", topic="blocks", fault=fault) == 1
            )
        assert metric(full, "cairn_p2p_bans_total") == 1
        lines = [line for line in full.log_path.read_text().splitlines() if f"peer {byz}" in line]
        assert sum("penalised" in line for line in lines) == 3
        assert any("state_root mismatch" in line for line in lines)
        assert any("who is not a producer" in line for line in lines)
        assert any("undecodable block message" in line for line in lines)
        # Nothing forged is stored; the byzantine peer is not a peer.
        assert full.call("eth_getBlockByNumber", "0x1", False) is None
        for block_hash in forged_hashes:
            assert full.call("eth_getBlockByHash", block_hash, False) is None
        peers = full.call("admin_peers")
        assert isinstance(peers, list) and byz not in {p["id"] for p in peers}
        # Forged data was never relayed to the sequencer.
        assert metric(seq, "cairn_p2p_gossip_received_total", topic="blocks") == 0
        # The honest nodes carry on.
        tx_hash = str(full.call("eth_sendRawTransaction", "0x" + transfer(3, 0, value=7).hex()))
        receipt = wait_receipt(full, tx_hash)
        assert receipt["blockHash"] == wait_receipt(seq, tx_hash)["blockHash"]
        assert receipt["blockHash"] not in forged_hashes
        assert peer_count(full) == 1
