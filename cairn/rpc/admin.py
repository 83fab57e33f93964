"""The admin namespace's read-only peer methods, in geth's shapes: admin_peers and
admin_nodeInfo. Fed by a `PeerSource` Protocol wired in cairn/node; never imports p2p.

Peers are libp2p nodes, so where geth puts an enode URL Cairn puts the peer's multiaddr.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from cairn.chain.chain import Chain
from cairn.rpc.dispatch import rpc_method


class PeerRecord(Protocol):
    @property
    def peer_id(self) -> str: ...
    @property
    def remote_addr(self) -> str: ...
    @property
    def listen_addr(self) -> str: ...
    @property
    def inbound(self) -> bool: ...
    @property
    def client(self) -> str: ...
    @property
    def head(self) -> int: ...
    @property
    def head_hash(self) -> bytes: ...
    @property
    def score(self) -> float: ...


class NodeRecord(Protocol):
    @property
    def peer_id(self) -> str: ...
    @property
    def listen_addrs(self) -> tuple[str, ...]: ...
    @property
    def port(self) -> int: ...


class PeerSource(Protocol):
    def peers(self) -> Sequence[PeerRecord]: ...

    def node_info(self) -> NodeRecord: ...


class AdminNamespace:
    def __init__(self, source: PeerSource, chain: Chain, client_version: str) -> None:
        self._source = source
        self._chain = chain
        self._client = client_version

    def _protocol_info(self) -> dict[str, Any]:
        head = self._chain.store.head
        return {
            "network": self._chain.chain_id,
            "genesis": "0x" + self._chain.genesis_hash.hex(),
            "head": "0x" + head.block_hash.hex(),
            "number": head.number,
        }

    @rpc_method("admin_nodeInfo")
    async def node_info(self) -> dict[str, Any]:
        node = self._source.node_info()
        addrs = list(node.listen_addrs)
        return {
            "id": node.peer_id,
            "name": self._client,
            "enode": addrs[0] if addrs else "",
            "enr": "",
            "ip": addrs[0].split("/")[2] if addrs else "",
            "ports": {"discovery": node.port, "listener": node.port},
            "listenAddr": addrs[0] if addrs else "",
            "listenAddrs": addrs,
            "protocols": {"cairn": self._protocol_info()},
        }

    @rpc_method("admin_peers")
    async def peers(self) -> list[dict[str, Any]]:
        answer = []
        for peer in self._source.peers():
            answer.append(
                {
                    "id": peer.peer_id,
                    "name": peer.client,
                    "enode": peer.listen_addr,
                    "caps": ["cairn/1"],
                    "network": {
                        "localAddress": "",
                        "remoteAddress": peer.remote_addr,
                        "inbound": peer.inbound,
                        "trusted": False,
                        "static": False,
                    },
                    "protocols": {
                        "cairn": {
                            "version": 1,
                            "head": "0x" + peer.head_hash.hex(),
                            "number": peer.head,
                            "score": round(peer.score, 2),
                        }
                    },
                }
            )
        return answer
