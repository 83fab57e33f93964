"""The peer table every p2p job shares, and what may be done to a peer.

`PeerTable` is bookkeeping on the trio thread: peers past the handshake (with the head
each announced and when), peers being handshaken, addresses learned, refusals and dial
back-offs, scores, counters, and the immutable snapshots the core reads without a lock.
Every map of peers we are not connected to is bounded (`limits.BoundedMap`).
It also carries per-peer signals, so a job can wait for the other side's step (it has
heard our status, it has hung up) instead of sleeping a fixed delay.

`PeerLinks` is the one place that acts on a peer through the host: hang up, forget its
addresses, penalise and ban (by id; by IP once `scoring` says so, never a bootnode).
Neither decodes any message.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

import trio
from libp2p.abc import IHost, INetConn
from libp2p.peer.id import ID

from cairn.errors import CairnError, Equivocation, InvalidBlock, InvalidCommit, InvalidTransaction
from cairn.p2p.api import NodeSummary, PeerSummary
from cairn.p2p.limits import MAX_TRACKED_PEERS, BoundedMap
from cairn.p2p.metrics import P2PMetrics
from cairn.p2p.scoring import BAN_THRESHOLD, IP_BAN_AFTER, PeerScores
from cairn.p2p.stack import PEER_ERRORS, GuardedPubsub, describe, remote_ip

log = logging.getLogger("cairn.p2p")

# Signals a job may wait for (see PeerTable.signal / wait_for).
HEARD_OUR_STATUS = "heard-our-status"  # our status server answered them
GONE = "gone"  # their last connection closed (sets every other signal too)


@dataclass(frozen=True)
class PeerRecord:
    """One peer past the handshake."""

    peer_id: ID
    remote_ip: str
    remote_addr: str
    listen_addr: str
    inbound: bool
    client: str
    head: int
    head_hash: bytes
    connected_at: float
    status_at: float
    # The connection the handshake ran on: when it closes while another connection to
    # the same peer is up, that one is handshaken in its place.
    conn: INetConn | None = field(default=None, compare=False, repr=False)


def fault_kind(exc: CairnError) -> str:
    """The scoring fault a core verdict on a peer's data stands for."""
    if isinstance(exc, InvalidCommit):
        return "bad-commit"
    if isinstance(exc, InvalidBlock):
        return "garbage" if exc.number < 0 else "bad-block"
    if isinstance(exc, InvalidTransaction):
        return "bad-tx"
    if isinstance(exc, Equivocation):
        return "equivocation"
    return "garbage"


class PeerTable:
    def __init__(self, me: str, max_peers: int, scores: PeerScores, metrics: P2PMetrics) -> None:
        self.me = me
        self.max_peers = max_peers
        self.scores = scores
        self.metrics = metrics
        # Bounded by --p2p.maxpeers (the handshake) and the connection manager.
        self.peers: dict[ID, PeerRecord] = {}
        self.handshaking: set[ID] = set()
        # Every other per-peer map is bounded (`BoundedMap`): a peer id costs nothing to
        # make, and peer exchange and mDNS hand us ids we never met.
        # sent us a matching status (their handshake); values unused
        self.status_ok: BoundedMap[ID, None] = BoundedMap(MAX_TRACKED_PEERS)
        # dialable addresses learned from handshakes, PX and mDNS; connected peers' are
        # kept, the oldest of the others evicted first
        self.known: BoundedMap[ID, str] = BoundedMap(
            MAX_TRACKED_PEERS, rank=lambda peer, _addr: 1.0 if peer in self.peers else 0.0
        )
        self.refused: BoundedMap[ID, float] = BoundedMap(MAX_TRACKED_PEERS, rank=lambda _p, t: t)
        self.dial_backoff: BoundedMap[ID, tuple[int, float]] = BoundedMap(MAX_TRACKED_PEERS)
        self._signals: BoundedMap[tuple[ID, str], trio.Event] = BoundedMap(MAX_TRACKED_PEERS)
        self.listen_port = 0
        self.listen_addrs: tuple[str, ...] = ()
        self.stats: dict[str, int] = {
            "published": 0,
            "dropped_outbox": 0,
            "refused_mismatch": 0,
            "penalties": 0,
            "bans": 0,
            "ip_bans": 0,
            "refused_over_budget": 0,
        }
        # Never banned by IP, never refused for sharing an IP with banned ids: bootnodes.
        self.protected: frozenset[ID] = frozenset()
        # Replaced, never mutated: the core thread reads these references without a lock.
        self.peer_snapshot: tuple[PeerSummary, ...] = ()
        self.node_snapshot = NodeSummary(me, (), 0)

    # ------------------------------------------------------------ membership
    def is_full_for(self, peer: ID) -> bool:
        return peer not in self.peers and len(self.peers) >= self.max_peers

    def add(self, record: PeerRecord) -> None:
        self.peers[record.peer_id] = record
        self.dial_backoff.pop(record.peer_id, None)
        self.metrics.peers.set(len(self.peers))
        self.update_snapshots()

    def drop(self, peer: ID) -> bool:
        if self.peers.pop(peer, None) is None:
            return False
        self.metrics.peers.set(len(self.peers))
        self.update_snapshots()
        return True

    def clear(self) -> None:
        """Nobody is connected any more (the p2p thread ended)."""
        self.peers.clear()
        self.handshaking.clear()
        self.status_ok.clear()
        self.metrics.peers.set(0)
        self.update_snapshots()

    def update_head(self, peer: ID, head: int, head_hash: bytes) -> None:
        """A status answer: the peer's head as announced, and when (for the core)."""
        current = self.peers.get(peer)
        if current is not None:
            self.peers[peer] = replace(
                current, head=head, head_hash=head_hash, status_at=time.time()
            )
            self.update_snapshots()

    # ------------------------------------------------------------ signals
    def signal(self, peer: ID, name: str) -> None:
        self._signals.setdefault((peer, name), trio.Event()).set()

    def gone(self, peer: ID) -> None:
        """Their last connection closed: wake everyone waiting on them, then forget."""
        for key in [k for k in self._signals if k[0] == peer]:
            event = self._signals.pop(key)
            if event is not None:
                event.set()
        self.status_ok.pop(peer, None)

    async def wait_for(self, peer: ID, name: str) -> None:
        """Wait until `name` happened for `peer`, or it hung up (callers bound the wait)."""
        await self._signals.setdefault((peer, name), trio.Event()).wait()

    # ------------------------------------------------------------ snapshots for the core
    def update_snapshots(self) -> None:
        peers = []
        for p in self.peers.values():
            pid = p.peer_id.to_base58()
            peers.append(
                PeerSummary(
                    peer_id=pid,
                    remote_addr=p.remote_addr,
                    listen_addr=p.listen_addr,
                    inbound=p.inbound,
                    client=p.client,
                    head=p.head,
                    head_hash=p.head_hash,
                    score=self.scores.score(pid),
                    connected_at=p.connected_at,
                    status_at=p.status_at,
                )
            )
        self.peer_snapshot = tuple(peers)
        self.node_snapshot = NodeSummary(
            self.me,
            self.listen_addrs,
            self.listen_port,
            tuple(self.scores.banned()),
            dict(self.stats),
            tuple(self.scores.banned_ips()),
        )


class PeerLinks:
    """Acting on peers through the host: hang up, forget, penalise, ban; and spawning the
    trio tasks the jobs start (all in the network's nursery)."""

    def __init__(
        self, host: IHost, pubsub: GuardedPubsub, table: PeerTable, nursery: trio.Nursery
    ) -> None:
        self.host = host
        self.pubsub = pubsub
        self.table = table
        self._nursery = nursery

    def spawn(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        self._nursery.start_soon(fn, *args)

    async def disconnect(self, peer: ID) -> None:
        """Close each of the peer's connections. Not `host.disconnect`: py-libp2p 0.8.1's
        `Swarm.close_peer` ends by dropping the peer's whole entry from the swarm's table,
        so a connection the peer opened while the old one was closing (it redials at once)
        stays up untracked: never handshaken, and out of reach of the next hang-up."""
        for conn in list(self.host.get_network().connections.get(peer, ())):
            try:
                await conn.close()
            except PEER_ERRORS as exc:
                log.debug("disconnect %s: %s", peer, describe(exc))

    async def hang_up_after(self, peer: ID, signal: str, within: float) -> None:
        """Hang up once the other side has done `signal` (or left), waiting `within` s at
        most: the step we wait for is theirs, and they may never take it."""
        if not self.host.get_network().connections.get(peer):
            return  # it left already
        with trio.move_on_after(within):
            await self.table.wait_for(peer, signal)
        await self.disconnect(peer)

    def forget(self, peer: ID) -> None:
        """Drop a peer's addresses so nothing redials it (refused or banned)."""
        self.table.known.pop(peer, None)
        try:
            self.host.get_peerstore().clear_addrs(peer)
        except KeyError as exc:  # PeerStoreError: it had none
            log.debug("clearing addresses of %s: %s", peer, exc)

    def remote_ip(self, peer: ID) -> str:
        """The IP `peer` reaches us from ("" when not connected)."""
        record = self.table.peers.get(peer)
        if record is not None:
            return record.remote_ip
        for conn in self.host.get_network().connections.get(peer, ()):
            ip = remote_ip(conn)
            if ip:
                return ip
        return ""

    def penalise(self, peer: ID, kind: str, reason: str, topic: str = "sync") -> None:
        table = self.table
        pid = peer.to_base58()
        ip = "" if peer in table.protected else self.remote_ip(peer)
        penalty = table.scores.penalise(pid, kind, reason, ip)
        table.stats["penalties"] += 1
        table.metrics.invalid_messages.labels(topic, kind).inc()
        log.warning(
            "penalised peer %s: %s (%s, score now %.0f)", pid, reason[:300], kind, penalty.score
        )
        if penalty.banned:
            table.stats["bans"] += 1
            table.metrics.bans.inc()
            log.warning(
                "banned peer %s for 1h: score %.0f below %.0f after %s",
                pid,
                penalty.score,
                BAN_THRESHOLD,
                ", ".join(f"{k} x{n}" for k, n in sorted(table.scores.faults(pid).items())),
            )
            self.pubsub.add_to_blacklist(peer)
            self.forget(peer)
            table.drop(peer)
            self.spawn(self.disconnect, peer)
        if penalty.ip_banned:
            table.stats["ip_bans"] += 1
            table.metrics.ip_bans.inc()
            log.warning(
                "banned IP %s for 1h: %d peer ids from it banned or over their sync budget "
                "within the hour; new connections from it are refused (bootnodes excepted), "
                "connected peers kept",
                penalty.ip_banned,
                IP_BAN_AFTER,
            )
        table.update_snapshots()

    def on_stream_fault(self, peer: ID, reason: str) -> None:
        """A peer's bytes broke one of its streams: score it down and hang up on it."""
        self.penalise(peer, "garbage", reason, "stream")
        self.spawn(self.disconnect, peer)
