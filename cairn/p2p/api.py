"""What the p2p layer needs from the node and what it reports back: small Protocols and
frozen records. The core side never sees py-libp2p types; p2p never sees blocks decoded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol


class ChainView(Protocol):
    """Committed-chain reads the p2p thread may do (thread-safe, immutable data)."""

    @property
    def chain_id(self) -> int: ...

    @property
    def genesis_hash(self) -> bytes: ...

    def head(self) -> tuple[int, bytes]: ...

    def load_bundle(self, number: int) -> bytes | None:
        """The encoded `BlockBundle` of canonical block `number`, or None."""
        ...


class GossipHandlers(Protocol):
    """Core coroutines judging gossip before it is relayed. Return True to relay, False to
    drop quietly; raise a `CairnError` (InvalidBlock, InvalidCommit, InvalidTransaction,
    PeerMessageError) to drop *and* penalise the peer who sent it."""

    async def on_block(self, data: bytes) -> bool: ...

    async def on_txs(self, data: bytes) -> bool: ...

    async def on_consensus(self, data: bytes, origin: str) -> bool:
        """`origin`: the peer id that published the message (gossipsub signs it), which
        the core may penalise itself when it proves the author faulty."""
        ...

    def on_new_peer(self, peer_id: str) -> None:
        """A peer passed the handshake (called on the core loop)."""
        ...


@dataclass(frozen=True)
class P2PConfig:
    datadir: Path
    listen_addr: str = "0.0.0.0"
    port: int = 30333
    bootnodes: tuple[str, ...] = ()
    max_peers: int = 25
    discovery: bool = True
    mdns: bool = False
    client: str = "cairn"


@dataclass(frozen=True)
class PeerSummary:
    """One connected peer that passed the status handshake."""

    peer_id: str
    remote_addr: str
    listen_addr: str
    inbound: bool
    client: str
    head: int
    head_hash: bytes
    score: float
    connected_at: float
    status_at: float = 0.0  # wall-clock time of its last status answer (handshake or refresh)


@dataclass(frozen=True)
class NodeSummary:
    peer_id: str
    listen_addrs: tuple[str, ...]
    port: int
    banned: tuple[str, ...] = ()
    stats: dict[str, int] = field(default_factory=dict)
    banned_ips: tuple[str, ...] = ()


P2PStatus = Literal["running", "restarting", "failed", "stopped"]


@dataclass(frozen=True)
class P2PState:
    """Whether the p2p thread is serving, for health endpoints.

    `status` is "running", "restarting" (it ended unasked; a restart is scheduled),
    "failed" (restarts exhausted: the node must not go on as if it had p2p) or "stopped";
    `since` is wall-clock time, `reason` what ended it last, `restarts` how many times it
    ended unasked within the restart window."""

    status: P2PStatus
    since: float
    reason: str = ""
    restarts: int = 0
