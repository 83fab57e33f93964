"""mDNS alone connects everyone: three hosts on a private LAN (network namespaces on one
bridge), no bootnodes; each finds the others by multicast DNS, and the chain flows."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.chain import transfer
from tests.support.net import log_has, peer_count, peer_id, wait_receipt, wait_same_head
from tests.support.netns import Lan, NetnsNode, netns_unavailable
from tests.support.wait import wait_until

pytestmark = pytest.mark.e2e

WHY_NOT = netns_unavailable()


@pytest.mark.skipif(WHY_NOT is not None, reason=f"network namespaces: {WHY_NOT}")
def test_mdns_alone_connects_everyone(tmp_path: Path) -> None:
    nodes: list[NetnsNode] = []
    with Lan(3) as lan:
        try:
            ns, addr = lan.namespaces[0], lan.addresses[0]
            seq = NetnsNode(
                ns,
                addr,
                tmp_path / "seq",
                "dev",
                "--p2p.port",
                "30333",
                "--p2p.addr",
                addr,
                "--p2p.mdns",
            )
            nodes.append(seq)
            seq.start()
            for i in (1, 2):
                node = NetnsNode(
                    lan.namespaces[i],
                    lan.addresses[i],
                    tmp_path / f"full{i}",
                    "run",
                    "--genesis",
                    str(tmp_path / "seq" / "genesis.json"),
                    "--p2p.port",
                    "30333",
                    "--p2p.addr",
                    lan.addresses[i],
                    "--p2p.mdns",
                )
                nodes.append(node)
                node.start()
            wait_until(
                lambda: all(peer_count(n) == 2 for n in nodes),
                timeout=90,
                interval=0.5,
                message="every host to find both others by mDNS",
            )
            ids = {peer_id(n) for n in nodes}
            for node in nodes:
                for other in ids - {peer_id(node)}:
                    assert log_has(node, f"mDNS: found peer {other}"), node.log()
                peers = node.call("admin_peers")
                assert isinstance(peers, list)
                assert all(
                    p["network"]["remoteAddress"].startswith(f"/ip4/{lan.prefix}.") for p in peers
                )
            tx_hash = str(nodes[2].call("eth_sendRawTransaction", "0x" + transfer(1, 0).hex()))
            receipt = wait_receipt(nodes[0], tx_hash)
            wait_same_head(nodes, at_least=int(str(receipt["blockNumber"]), 16))
        finally:
            for node in reversed(nodes):
                node.stop()
