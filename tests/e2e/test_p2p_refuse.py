"""Nodes of another network are refused at the handshake, with a log line naming both
sides' chain id and genesis hash, and never counted as peers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.net import LocalNet, enode, log_has, metric, peer_count, peer_id
from tests.support.proc import NodeProcess
from tests.support.wait import wait_until

pytestmark = pytest.mark.e2e


def _genesis_hash(node: NodeProcess) -> str:
    block = node.call("eth_getBlockByNumber", "0x0", False)
    assert isinstance(block, dict)
    return str(block["hash"])


@pytest.mark.parametrize(
    ("label", "flags"),
    [
        ("other-chain-id", ["--chain-id", "31338"]),
        ("other-genesis", ["--accounts", "3"]),  # same chain id 31337, other alloc
    ],
)
def test_foreign_node_is_refused(tmp_path: Path, label: str, flags: list[str]) -> None:
    with LocalNet(tmp_path) as net:
        seq = net.start_sequencer()
        honest = net.start_fullnode("honest")
        wait_until(lambda: peer_count(seq) == 1, timeout=30, message="the honest peer")
        foreign = NodeProcess(
            tmp_path / label,
            "dev",
            "--p2p.port",
            "0",
            "--p2p.addr",
            "127.0.0.1",
            "--bootnodes",
            enode(seq),
            *flags,
        )
        net.nodes.append(foreign)
        foreign.start()
        ours = json.loads((tmp_path / "sequencer" / "genesis.json").read_text())
        theirs = json.loads((tmp_path / label / "genesis.json").read_text())
        our_id, their_id = ours["config"]["chainId"], theirs["config"]["chainId"]
        our_hash, their_hash = _genesis_hash(seq), _genesis_hash(foreign)
        # A chain id is not part of the genesis header: either may differ alone.
        assert (our_id, our_hash) != (their_id, their_hash)
        # Both sides say why, naming both sides' values.
        wait_until(
            lambda: log_has(foreign, "network mismatch"),
            timeout=30,
            message="the foreign node's refusal line",
        )
        wait_until(
            lambda: log_has(seq, f"refused peer {peer_id(foreign)}"),
            timeout=30,
            message="the sequencer's refusal line",
        )
        seq_line = next(
            line for line in seq.log_path.read_text().splitlines() if "network mismatch" in line
        )
        assert f"ours chain id {our_id} genesis {our_hash}" in seq_line
        assert f"theirs chain id {their_id} genesis {their_hash}" in seq_line
        foreign_line = next(
            line for line in foreign.log_path.read_text().splitlines() if "network mismatch" in line
        )
        assert f"ours chain id {their_id} genesis {their_hash}" in foreign_line
        assert metric(seq, "cairn_p2p_refused_peers_total", reason="network-mismatch") >= 1
        # Never a peer, on either side; the honest pair is untouched.
        assert peer_count(foreign) == 0
        assert peer_count(seq) == 1
        peers = seq.call("admin_peers")
        assert isinstance(peers, list)
        assert [p["id"] for p in peers] == [peer_id(honest)]


def test_maxpeers_is_enforced(tmp_path: Path) -> None:
    with LocalNet(tmp_path) as net:
        seq = net.start_sequencer("--p2p.maxpeers", "1")
        first = net.start_fullnode("first")
        wait_until(lambda: peer_count(seq) == 1, timeout=30, message="the first peer")
        second = net.start_fullnode("second")
        wait_until(
            lambda: (
                log_has(seq, f"refused peer {peer_id(second)}")
                and "(--p2p.maxpeers)" in seq.log_path.read_text()
            ),
            timeout=30,
            message="the sequencer refusing a second peer",
        )
        assert metric(seq, "cairn_p2p_refused_peers_total", reason="too-many-peers") >= 1
        peers = seq.call("admin_peers")
        assert isinstance(peers, list)
        assert [p["id"] for p in peers] == [peer_id(first)]

        # The second node still joins the network through the first (peer exchange), and
        # was told the sequencer is full rather than being cut off again and again.
        def second_peers() -> list[str]:
            peers = second.call("admin_peers")
            assert isinstance(peers, list)
            return [p["id"] for p in peers]

        wait_until(
            lambda: second_peers() == [peer_id(first)], timeout=60, message="second via first"
        )
        assert log_has(second, f"peer {peer_id(seq)} at")
        assert "is at its peer limit" in second.log_path.read_text()
        assert peer_count(seq) == 1
