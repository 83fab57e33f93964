"""One sequencer and three full nodes as separate processes on loopback.

Full nodes know only the sequencer (one bootnode) and find each other by peer exchange.
Transactions sent to any node are mined; every node ends on the same head with the same
balances; peer figures are right; a full node killed with -9 catches up with no gap.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.chain import ADDRESSES, DEAD, transfer
from tests.support.net import (
    LocalNet,
    head,
    peer_count,
    peer_id,
    wait_receipt,
    wait_same_head,
)
from tests.support.proc import NodeProcess
from tests.support.wait import wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNet]:
    with LocalNet(tmp_path_factory.mktemp("p2pnet")) as network:
        network.start_sequencer()
        for i in range(1, 4):
            network.start_fullnode(f"full{i}")
        nodes = network.nodes
        wait_until(
            lambda: all(peer_count(n) == 3 for n in nodes),
            timeout=60,
            interval=0.5,
            message="every node to see the 3 others (one bootnode + peer exchange)",
        )
        yield network


def test_every_node_reaches_every_other_through_one_bootnode(net: LocalNet) -> None:
    ids = {peer_id(n): n for n in net.nodes}
    assert len(ids) == 4
    for own_id, node in ids.items():
        peers = node.call("admin_peers")
        assert isinstance(peers, list)
        assert {p["id"] for p in peers} == set(ids) - {own_id}
        assert int(str(node.call("net_peerCount")), 16) == len(peers) == 3
        for p in peers:
            assert p["enode"].endswith("/p2p/" + p["id"])
            assert p["protocols"]["cairn"]["number"] >= 0
            assert p["network"]["remoteAddress"].startswith("/ip4/127.0.0.1/tcp/")
        info = node.call("admin_nodeInfo")
        assert isinstance(info, dict) and info["id"] == own_id
        assert info["protocols"]["cairn"]["network"] == 31337


def test_transactions_sent_to_any_node_are_mined_everywhere(net: LocalNet) -> None:
    sent: list[tuple[NodeProcess, str]] = []
    # Key i sends through node i (key 0 through the sequencer, 1..3 through full nodes).
    for index, node in enumerate(net.nodes):
        nonce = int(
            str(node.call("eth_getTransactionCount", "0x" + ADDRESSES[index].hex(), "pending")), 16
        )
        for k in range(3):
            raw = transfer(index, nonce + k, value=10**15 + k)
            sent.append((node, str(node.call("eth_sendRawTransaction", "0x" + raw.hex()))))
    receipts = {}
    for node, tx_hash in sent:
        for other in net.nodes:
            receipts[(other.url, tx_hash)] = wait_receipt(other, tx_hash)
        assert len({receipts[(o.url, tx_hash)]["blockHash"] for o in net.nodes}) == 1
        assert receipts[(node.url, tx_hash)]["status"] == "0x1"
    number = max(int(str(r["blockNumber"]), 16) for r in receipts.values())
    tip = wait_same_head(net.nodes, at_least=number)
    assert tip.startswith("0x")
    for address in [*ADDRESSES[:4], bytes.fromhex(DEAD[2:])]:
        balances = {
            str(n.call("eth_getBalance", "0x" + address.hex(), "latest")) for n in net.nodes
        }
        assert len(balances) == 1, f"balances of 0x{address.hex()} differ: {balances}"
    dead = int(str(net.nodes[0].call("eth_getBalance", DEAD, "latest")), 16)
    assert dead >= 12 * 10**15


def test_killed_fullnode_catches_up_with_no_gap(net: LocalNet) -> None:
    victim = net.nodes[2]
    seq = net.nodes[0]
    victim.kill9()
    nonce = int(str(seq.call("eth_getTransactionCount", "0x" + ADDRESSES[5].hex(), "pending")), 16)
    last = ""
    for k in range(8):  # blocks made while the victim is down
        raw = transfer(5, nonce + k)
        last = str(seq.call("eth_sendRawTransaction", "0x" + raw.hex()))
        wait_receipt(seq, last)
    down_head, _ = head(seq)
    victim.start()
    wait_same_head([seq, victim], at_least=down_head, timeout=60)
    for number in range(0, down_head + 1):
        mine = victim.call("eth_getBlockByNumber", hex(number), False)
        theirs = seq.call("eth_getBlockByNumber", hex(number), False)
        assert isinstance(mine, dict) and isinstance(theirs, dict), f"block {number} missing"
        assert mine["hash"] == theirs["hash"], f"block {number} differs"
    assert wait_receipt(victim, last)["status"] == "0x1"
    # And it follows again: a new block reaches it by gossip.
    raw = transfer(5, nonce + 8)
    tx_hash = str(victim.call("eth_sendRawTransaction", "0x" + raw.hex()))
    receipt = wait_receipt(victim, tx_hash)
    assert receipt == wait_receipt(seq, tx_hash)
    wait_until(lambda: peer_count(victim) == 3, timeout=30, message="victim back with 3 peers")
