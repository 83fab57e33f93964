"""`Network`: one run of the p2p stack on the trio thread. It builds the host (`stack`),
wires the jobs around one shared peer table — `handshake` (status), `gossip` (topics and
outbox), `sync` (requests both ways, head refresh), `discovery` (dialing, peer exchange,
mDNS) — registers their stream handlers behind `stack.contained`, follows connections
(a banned peer, or a new one from a banned IP other than a bootnode, is hung up on), and
serves until cancelled.

Runs only inside `TrioThread`; reaches the core only through the bridge and the Protocols
in `cairn.p2p.api`; `P2PService` builds a new `Network` for every (re)start. It never
decodes blocks or transactions itself: the core judges them.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass

import multiaddr
import trio
from libp2p.abc import INetConn, INetStream, INetwork, INotifee
from libp2p.crypto.ed25519 import create_new_key_pair as ed25519_key_pair
from libp2p.peer.id import ID
from libp2p.tools.anyio_service import background_trio_service

from cairn.p2p import messages as m
from cairn.p2p.api import ChainView, GossipHandlers, NodeSummary, P2PConfig, PeerSummary
from cairn.p2p.bridge import TrioThread
from cairn.p2p.discovery import Discovery, parse_bootnodes
from cairn.p2p.gossip import OUTBOX_SIZE, Gossip
from cairn.p2p.handshake import STATUS_PROTOCOL, Handshake, our_status
from cairn.p2p.identity import load_or_create_nodekey
from cairn.p2p.metrics import P2PMetrics
from cairn.p2p.peers import PeerLinks, PeerTable
from cairn.p2p.scoring import PeerScores
from cairn.p2p.stack import (
    advertised_ip,
    build_gossip,
    build_host,
    contained,
    hang_up_all,
    remote_ip,
    stop_auto_connector,
)
from cairn.p2p.sync import NoPeer, SyncProtocol

log = logging.getLogger("cairn.p2p")


@dataclass(frozen=True)
class _Jobs:
    links: PeerLinks
    handshake: Handshake
    sync: SyncProtocol
    gossip: Gossip
    discovery: Discovery


class _Notifee(INotifee):
    def __init__(self, network: Network) -> None:
        self._network = network

    async def opened_stream(self, network: INetwork, stream: INetStream) -> None:
        pass

    async def closed_stream(self, network: INetwork, stream: INetStream) -> None:
        pass

    async def connected(self, network: INetwork, conn: INetConn) -> None:
        self._network.on_connected(conn)

    async def disconnected(self, network: INetwork, conn: INetConn) -> None:
        self._network.on_disconnected(conn)

    async def listen(self, network: INetwork, multiaddr: multiaddr.Multiaddr) -> None:
        pass

    async def listen_close(self, network: INetwork, multiaddr: multiaddr.Multiaddr) -> None:
        pass


class Network:
    def __init__(
        self,
        config: P2PConfig,
        chain: ChainView,
        handlers: GossipHandlers,
        thread: TrioThread,
        metrics: P2PMetrics,
        scores: PeerScores | None = None,
    ) -> None:
        self.config = config
        self.chain = chain
        self.handlers = handlers
        self.thread = thread
        self.key_pair = ed25519_key_pair(load_or_create_nodekey(config.datadir))
        self.peer_id = ID.from_pubkey(self.key_pair.public_key)
        self.me = self.peer_id.to_base58()
        self.topics = m.topic_names(chain.chain_id)
        self.bootnodes = parse_bootnodes(config.bootnodes)
        self.table = PeerTable(
            self.me, config.max_peers, scores if scores is not None else PeerScores(), metrics
        )
        self.table.protected = frozenset(info.peer_id for info in self.bootnodes)
        self._outbox_send, self._outbox_recv = trio.open_memory_channel[tuple[str, bytes]](
            OUTBOX_SIZE
        )
        self._jobs: _Jobs | None = None  # while run() serves

    # ------------------------------------------------------------ figures for the service
    @property
    def listen_port(self) -> int:
        return self.table.listen_port

    @property
    def peer_snapshot(self) -> tuple[PeerSummary, ...]:
        return self.table.peer_snapshot

    @property
    def node_snapshot(self) -> NodeSummary:
        return self.table.node_snapshot

    # ------------------------------------------------------------ main
    async def run(self, started: Callable[[BaseException | None], None]) -> None:
        """Build the host, listen, and serve until cancelled. `started` is told once: None
        when listening, else what stopped it; a later failure ends the thread (and the
        service's supervisor restarts it)."""
        config = self.config
        jobs: _Jobs | None = None

        def on_fault(peer: ID, reason: str) -> None:
            if jobs is not None:
                jobs.links.on_stream_fault(peer, reason)

        try:
            listen = multiaddr.Multiaddr(f"/ip4/{config.listen_addr}/tcp/{config.port}")
            host = build_host(self.key_pair, listen, config.max_peers)
            router, pubsub = build_gossip(host, self.topics.values(), on_fault)
            async with trio.open_nursery() as nursery:
                links = PeerLinks(host, pubsub, self.table, nursery)
                status = functools.partial(our_status, self.chain, self.table, config.client)
                sync = SyncProtocol(self.chain, links, status)
                discovery = Discovery(
                    config, self.chain.chain_id, self.bootnodes, self.thread, links, sync.request
                )
                handshake = Handshake(
                    config, self.handlers, self.thread, links, status, discovery.exchange_peers
                )
                gossip = Gossip(self.topics, self.handlers, self.thread, links)
                jobs = self._jobs = _Jobs(links, handshake, sync, gossip, discovery)
                host.set_stream_handler(
                    STATUS_PROTOCOL, contained(handshake.serve, STATUS_PROTOCOL, on_fault)
                )
                host.set_stream_handler(
                    sync.protocol, contained(sync.serve, sync.protocol, on_fault)
                )
                host.get_network().register_notifee(_Notifee(self))
                try:
                    async with (
                        host.run([listen]),
                        background_trio_service(pubsub),
                        background_trio_service(router),
                    ):
                        await stop_auto_connector(host)
                        await pubsub.wait_until_ready()
                        await gossip.subscribe()
                        self._record_listen_addrs()
                        if config.mdns:
                            discovery.start_mdns()
                        nursery.start_soon(gossip.publisher, self._outbox_recv)
                        nursery.start_soon(discovery.loop)
                        nursery.start_soon(sync.status_loop)
                        started(None)
                        log.info(
                            "p2p listening on %s (peer id %s)",
                            ", ".join(self.table.listen_addrs),
                            self.me,
                        )
                        try:
                            await trio.sleep_forever()
                        finally:
                            # Before py-libp2p's services are cancelled: peers must see
                            # us go now, not when the garbage collector closes the sockets.
                            await hang_up_all(host)
                finally:
                    discovery.stop_mdns()
                    self._jobs = None
        except BaseException as exc:  # told to the starter (ignored once started), re-raised
            started(exc)
            raise

    def _record_listen_addrs(self) -> None:
        assert self._jobs is not None
        host = self._jobs.links.host
        # A 0.0.0.0 listener is reachable at the host's own address; show that one, so
        # admin_nodeInfo's enode can be pasted into another node's --bootnodes.
        unspecified = "/ip4/0.0.0.0/"
        addrs = [str(a) for a in host.get_addrs()]
        self.table.listen_addrs = tuple(
            a.replace(unspecified, f"/ip4/{advertised_ip('0.0.0.0')}/", 1)
            if a.startswith(unspecified)
            else a
            for a in addrs
        )
        for addr in host.get_addrs():
            port = addr.value_for_protocol("tcp")
            if port:
                self.table.listen_port = int(port)
                break
        self.table.update_snapshots()

    # ------------------------------------------------------------ connections
    def on_connected(self, conn: INetConn) -> None:
        jobs = self._jobs
        if jobs is None:
            return
        peer = conn.muxed_conn.peer_id
        if self.table.scores.is_banned(peer.to_base58()):
            jobs.links.spawn(jobs.links.disconnect, peer)
            return
        if peer not in self.table.protected and peer not in self.table.peers:
            ip = remote_ip(conn)
            if ip and self.table.scores.is_ip_banned(ip):
                self.table.metrics.refused.labels("ip-banned").inc()
                log.info("refused peer %s: its IP %s is banned", peer.to_base58(), ip)
                jobs.links.spawn(jobs.links.disconnect, peer)
                return
        if jobs.links.pubsub.is_peer_blacklisted(peer):
            jobs.links.pubsub.remove_from_blacklist(peer)  # its ban has expired
        record = self.table.peers.get(peer)
        if record is not None and record.conn is not None and record.conn.is_closed:
            # It reconnected before the close of the connection we handshook on reached
            # `on_disconnected`: a new peer, handshaken on this connection.
            self.table.drop(peer)
        jobs.handshake.start(peer, conn)

    def on_disconnected(self, conn: INetConn) -> None:
        jobs = self._jobs
        if jobs is None:
            return
        peer = conn.muxed_conn.peer_id
        record = self.table.peers.get(peer)
        handshaken_on = record.conn if record is not None else None
        if handshaken_on is not None and handshaken_on is not conn and not handshaken_on.is_closed:
            return  # an older connection closed; the one the peer was handshaken on is up
        others = [
            c for c in jobs.links.host.get_network().connections.get(peer, ()) if c is not conn
        ]
        live = [c for c in others if not c.is_closed]
        if live:
            # Another connection to the same peer is still up (it reconnected before this
            # one's close reached us): the peer is handshaken again on it, as
            # `on_connected` skipped it while the closed one was its record.
            if record is not None and record.conn is conn:
                self.table.drop(peer)
                jobs.handshake.start(peer, live[-1])
            return
        self.table.gone(peer)
        if self.table.drop(peer):
            log.info("peer %s disconnected", peer.to_base58())

    # ------------------------------------------------------------ called by the service
    def enqueue(self, kind: str, data: bytes) -> None:
        """Called on the trio thread (via the bridge) in publish order."""
        try:
            self._outbox_send.send_nowait((self.topics[kind], data))
        except trio.WouldBlock:
            self.table.stats["dropped_outbox"] += 1
            log.warning("p2p outbox full: dropped one %s message (peers catch up by sync)", kind)

    async def fetch_range(self, start: int, count: int) -> tuple[str, list[bytes]]:
        jobs = self._jobs
        if jobs is None:
            raise NoPeer("p2p is not running")
        return await jobs.sync.fetch_range(start, count)

    def penalise_by_id(self, pid: str, kind: str, reason: str) -> None:
        jobs = self._jobs
        if jobs is None:
            return
        try:
            peer = ID.from_base58(pid)
        except ValueError:
            log.debug("not a peer id to penalise: %r", pid)
            return
        jobs.links.penalise(peer, kind, reason)

    def forget_peers(self) -> None:
        """After the thread ended: nobody is connected (called from the core thread)."""
        self.table.clear()
