"""`Network`: the py-libp2p host and everything that runs on its trio thread — TCP + Noise +
yamux, the status handshake, gossipsub topics with validators, the sync protocol (server and
client), discovery (bootnodes, peer exchange, mDNS), peer limits, scores and bans.

Runs only inside `TrioThread`; reaches the core only through the bridge and the Protocols in
`cairn.p2p.api`. It never decodes blocks or transactions itself: the core judges them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from typing import Any

import multiaddr
import trio
import trio.lowlevel
from libp2p.abc import INetConn, INetStream, INetwork, INotifee
from libp2p.crypto.ed25519 import create_new_key_pair as ed25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.discovery.events.peerDiscovery import peerDiscovery
from libp2p.discovery.mdns.mdns import MDNSDiscovery, create_mdns_discovery
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo, info_from_p2p_addr
from libp2p.tools.anyio_service import background_trio_service
from libp2p.utils.varint import encode_varint_prefixed, read_varint_prefixed_bytes_limited

from cairn.errors import CairnError, InvalidBlock, InvalidCommit, InvalidTransaction
from cairn.p2p import messages as m
from cairn.p2p.api import ChainView, GossipHandlers, NodeSummary, P2PConfig, PeerSummary
from cairn.p2p.bridge import BridgeClosed, TrioThread
from cairn.p2p.identity import load_or_create_nodekey
from cairn.p2p.metrics import P2PMetrics
from cairn.p2p.scoring import BAN_THRESHOLD, PeerScores
from cairn.p2p.stack import (
    STREAM_ERRORS,
    advertised_ip,
    build_gossip,
    build_host,
    close_stream,
    contained,
    describe,
    read_frame,
    stop_auto_connector,
)

log = logging.getLogger("cairn.p2p")

# py-libp2p splits or drops outbound RPCs over 1 MiB (its per-peer queue limit), so bigger
# blocks are not gossiped: peers learn the new head from status and fetch it by range.
MAX_GOSSIP_MESSAGE_BYTES = 1_000_000
OUTBOX_SIZE = 4096
HANDSHAKE_TIMEOUT = 10.0
REQUEST_TIMEOUT = 30.0
DIAL_TIMEOUT = 5.0
DISCOVERY_INTERVAL = 2.0
PEER_EXCHANGE_INTERVAL = 10.0
STATUS_REFRESH_INTERVAL = 2.0
REFUSED_BACKOFF = 60.0
# Test-only switch, read here and nowhere else: "1" leaves every gossip topic unsubscribed.
TEST_NO_GOSSIP_ENV = "CAIRN_TEST_P2P_NO_GOSSIP"
FULL_PEER_BACKOFF = 30.0


class NoPeer(CairnError):
    """No connected peer can answer this request."""


@dataclass(frozen=True)
class _Peer:
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


def _fault_kind(exc: CairnError) -> str:
    if isinstance(exc, InvalidCommit):
        return "bad-commit"
    if isinstance(exc, InvalidBlock):
        return "garbage" if exc.number < 0 else "bad-block"
    if isinstance(exc, InvalidTransaction):
        return "bad-tx"
    return "garbage"


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
        self.metrics = metrics
        self.scores = scores if scores is not None else PeerScores()
        self.topics = m.topic_names(chain.chain_id)
        self.sync_protocol = TProtocol(m.sync_protocol(chain.chain_id))
        key_pair = ed25519_key_pair(load_or_create_nodekey(config.datadir))
        self.key_pair = key_pair
        self.peer_id = ID.from_pubkey(key_pair.public_key)
        self.me = self.peer_id.to_base58()
        # Only state below is touched from the trio thread; the core reads the snapshots.
        self._peers: dict[ID, _Peer] = {}
        self._handshaking: set[ID] = set()
        self._status_ok: set[ID] = set()  # sent us a matching status (their handshake)
        self._known: dict[ID, str] = {}  # dialable addresses learned from PX and mDNS
        self._refused: dict[ID, float] = {}
        self._dial_backoff: dict[ID, tuple[int, float]] = {}
        self._bootnodes: list[PeerInfo] = []
        self._nursery: trio.Nursery | None = None
        self._mdns: MDNSDiscovery | None = None
        self._outbox_send, self._outbox_recv = trio.open_memory_channel[tuple[str, bytes]](
            OUTBOX_SIZE
        )
        self.listen_port = 0
        self.listen_addrs: tuple[str, ...] = ()
        self.peer_snapshot: tuple[PeerSummary, ...] = ()
        self.node_snapshot = NodeSummary(self.me, (), 0)
        self.stats: dict[str, int] = {
            "published": 0,
            "dropped_outbox": 0,
            "refused_mismatch": 0,
            "penalties": 0,
            "bans": 0,
        }
        for addr in config.bootnodes:
            try:
                self._bootnodes.append(info_from_p2p_addr(multiaddr.Multiaddr(addr)))
            except Exception as exc:
                raise m.PeerMessageError(
                    f"--bootnodes: {addr!r} is not a multiaddr with /p2p/<peer id>: {exc}"
                ) from exc

    # ------------------------------------------------------------ main
    async def run(self, started: Callable[[BaseException | None], None]) -> None:
        """Build the host, listen, and serve until cancelled. `started` is called once."""
        try:
            listen = multiaddr.Multiaddr(f"/ip4/{self.config.listen_addr}/tcp/{self.config.port}")
            host = build_host(self.key_pair, listen, self.config.max_peers)
            router, pubsub = build_gossip(host, self.topics.values(), self._on_stream_fault)
        except Exception as exc:
            started(exc)
            return
        self.host = host
        self.pubsub = pubsub
        host.set_stream_handler(
            TProtocol(m.STATUS_PROTOCOL),
            contained(self._serve_status, m.STATUS_PROTOCOL, self._on_stream_fault),
        )
        host.set_stream_handler(
            self.sync_protocol,
            contained(self._serve_sync, self.sync_protocol, self._on_stream_fault),
        )
        host.get_network().register_notifee(_Notifee(self))
        try:
            async with (
                host.run([listen]),
                background_trio_service(pubsub),
                background_trio_service(router),
                trio.open_nursery() as nursery,
            ):
                self._nursery = nursery
                await stop_auto_connector(host)
                await pubsub.wait_until_ready()
                await self._subscribe_topics()
                self._record_listen_addrs()
                if self.config.mdns:
                    self._start_mdns()
                nursery.start_soon(self._publisher)
                nursery.start_soon(self._discovery_loop)
                nursery.start_soon(self._status_loop)
                started(None)
                log.info(
                    "p2p listening on %s (peer id %s)",
                    ", ".join(self.listen_addrs),
                    self.me,
                )
                await trio.sleep_forever()
        except Exception as exc:
            started(exc)
            raise
        finally:
            self._nursery = None
            if self._mdns is not None:
                peerDiscovery.unregister_peer_discovered_handler(self._on_mdns_peer)
                try:
                    self._mdns.stop()
                except Exception as exc:
                    log.debug("stopping mDNS: %s", exc)
                self._mdns = None

    def _start_mdns(self) -> None:
        ip = advertised_ip(self.config.listen_addr)
        # Advertise a dialable address: py-libp2p would advertise the 0.0.0.0 listener
        # itself, and peers would dial their own host.
        self._mdns = create_mdns_discovery(
            self.host.get_network(),
            port=self.listen_port,
            listen_addrs=[f"/ip4/{ip}/tcp/{self.listen_port}"],
            private_network_fingerprint=f"cairn{self.chain.chain_id}",
        )
        peerDiscovery.register_peer_discovered_handler(self._on_mdns_peer)
        self._mdns.start()
        log.info("mDNS discovery on, advertising /ip4/%s/tcp/%d", ip, self.listen_port)

    def _record_listen_addrs(self) -> None:
        addrs = [str(a) for a in self.host.get_addrs()]
        # A 0.0.0.0 listener is reachable at the host's own address; show that one, so
        # admin_nodeInfo's enode can be pasted into another node's --bootnodes.
        unspecified = "/ip4/0.0.0.0/"
        addrs = [
            a.replace(unspecified, f"/ip4/{advertised_ip('0.0.0.0')}/", 1)
            if a.startswith(unspecified)
            else a
            for a in addrs
        ]
        self.listen_addrs = tuple(addrs)
        for addr in self.host.get_addrs():
            port = addr.value_for_protocol("tcp")
            if port:
                self.listen_port = int(port)
                break
        self._update_snapshots()

    async def _subscribe_topics(self) -> None:
        if os.environ.get(TEST_NO_GOSSIP_ENV) == "1":
            # Test-only (docs/p2p.md): this node receives no gossip, so a test can prove a
            # follower reaches new blocks by status and range sync alone.
            log.warning("%s=1: not subscribing to gossip (test-only)", TEST_NO_GOSSIP_ENV)
            return
        validators: dict[str, Callable[[bytes], Coroutine[Any, Any, bool]]] = {
            "blocks": self.handlers.on_block,
            "txs": self.handlers.on_txs,
            "consensus": self.handlers.on_consensus,
        }
        for kind, topic in self.topics.items():
            handler = validators[kind]

            async def validate(
                forwarder: ID, msg: Any, kind: str = kind, handler: Any = handler
            ) -> bool:
                return await self._validate(kind, forwarder, bytes(msg.data), handler)

            self.pubsub.set_topic_validator(topic, validate, True)
            subscription = await self.pubsub.subscribe(topic)
            assert self._nursery is not None
            self._nursery.start_soon(self._drain, subscription)

    async def _drain(self, subscription: Any) -> None:
        # The validators did the work; the subscription must still be read or it fills up.
        while True:
            await subscription.get()

    # ------------------------------------------------------------ gossip in
    async def _validate(
        self,
        kind: str,
        forwarder: ID,
        data: bytes,
        handler: Callable[[bytes], Coroutine[Any, Any, bool]],
    ) -> bool:
        if forwarder == self.peer_id:
            return True  # our own publish: the core made it
        pid = forwarder.to_base58()
        if self.scores.is_banned(pid):
            return False
        if forwarder not in self._peers:
            return False  # no handshake yet: not judged, not relayed, not penalised
        self.metrics.gossip_received.labels(kind).inc()
        try:
            accepted = await self.thread.call_core(handler, data)
        except BridgeClosed:
            return False
        except CairnError as exc:
            self.penalise(forwarder, _fault_kind(exc), f"{kind} gossip: {exc}", kind)
            return False
        except Exception:
            log.exception("the %s gossip handler failed", kind)
            return False
        return bool(accepted)

    def penalise(self, peer: ID, kind: str, reason: str, topic: str = "sync") -> None:
        pid = peer.to_base58()
        penalty = self.scores.penalise(pid, kind, reason)
        self.stats["penalties"] += 1
        self.metrics.invalid_messages.labels(topic, kind).inc()
        log.warning(
            "penalised peer %s: %s (%s, score now %.0f)", pid, reason[:300], kind, penalty.score
        )
        if penalty.banned:
            self.stats["bans"] += 1
            self.metrics.bans.inc()
            log.warning(
                "banned peer %s for 1h: score %.0f below %.0f after %s",
                pid,
                penalty.score,
                BAN_THRESHOLD,
                ", ".join(f"{k} x{n}" for k, n in sorted(self.scores.faults(pid).items())),
            )
            self.pubsub.add_to_blacklist(peer)
            self._forget(peer)
            self._drop_peer(peer)
            if self._nursery is not None:
                self._nursery.start_soon(self._disconnect, peer)
        self._update_snapshots()

    def _on_stream_fault(self, peer: ID, reason: str) -> None:
        """A peer's bytes broke one of its streams: score it down and hang up on it."""
        self.penalise(peer, "garbage", reason, "stream")
        if self._nursery is not None:
            self._nursery.start_soon(self._disconnect, peer)

    # ------------------------------------------------------------ gossip out
    def enqueue(self, kind: str, data: bytes) -> None:
        """Called on the trio thread (via the bridge) in publish order."""
        try:
            self._outbox_send.send_nowait((self.topics[kind], data))
        except trio.WouldBlock:
            self.stats["dropped_outbox"] += 1
            log.warning("p2p outbox full: dropped one %s message (peers catch up by sync)", kind)

    async def _publisher(self) -> None:
        async for topic, data in self._outbox_recv:
            if len(data) > MAX_GOSSIP_MESSAGE_BYTES:
                log.info("not gossiping a %d-byte message; peers fetch it by sync", len(data))
                continue
            try:
                await self.pubsub.publish(topic, data)
                self.stats["published"] += 1
            except Exception as exc:
                log.warning("gossip publish on %s failed: %s", topic, exc)
            # Yield between messages: a publish loop that never yields starves the
            # per-peer writers and py-libp2p drops the overflow (measured, DESIGN.md).
            await trio.lowlevel.checkpoint()

    # ------------------------------------------------------------ connections
    def on_connected(self, conn: INetConn) -> None:
        peer = conn.muxed_conn.peer_id
        if self.scores.is_banned(peer.to_base58()):
            if self._nursery is not None:
                self._nursery.start_soon(self._disconnect, peer)
            return
        if self.pubsub.is_peer_blacklisted(peer):
            self.pubsub.remove_from_blacklist(peer)  # its ban has expired
        if peer in self._peers or peer in self._handshaking or self._nursery is None:
            return
        self._handshaking.add(peer)
        self._nursery.start_soon(self._handshake, peer, conn)

    def on_disconnected(self, conn: INetConn) -> None:
        peer = conn.muxed_conn.peer_id
        if self.host.get_network().connections.get(peer):
            return  # another connection to the same peer is still up
        self._status_ok.discard(peer)
        if peer in self._peers:
            self._drop_peer(peer)
            log.info("peer %s disconnected", peer.to_base58())

    def _forget(self, peer: ID) -> None:
        """Drop a peer's addresses so nothing redials it (refused or banned)."""
        self._known.pop(peer, None)
        try:
            self.host.get_peerstore().clear_addrs(peer)
        except Exception as exc:
            log.debug("clearing addresses of %s: %s", peer, exc)

    def _drop_peer(self, peer: ID) -> None:
        if self._peers.pop(peer, None) is not None:
            self.metrics.peers.set(len(self._peers))
            self._update_snapshots()

    async def _disconnect(self, peer: ID, delay: float = 0.0) -> None:
        if delay:
            await trio.sleep(delay)
        try:
            await self.host.disconnect(peer)
        except Exception as exc:
            log.debug("disconnect %s: %s", peer, exc)

    def our_status(self) -> m.Status:
        head, head_hash = self.chain.head()
        return m.Status(
            self.chain.chain_id,
            self.chain.genesis_hash,
            head,
            head_hash,
            self.listen_port,
            self.config.client,
        )

    async def _handshake(self, peer: ID, conn: INetConn) -> None:
        pid = peer.to_base58()
        try:
            with trio.fail_after(HANDSHAKE_TIMEOUT):
                stream = await self.host.new_stream(peer, [TProtocol(m.STATUS_PROTOCOL)])
                try:
                    await stream.write(encode_varint_prefixed(self.our_status().encode()))
                    raw = await read_varint_prefixed_bytes_limited(stream, m.MAX_STATUS_BYTES)
                    remote = stream.get_remote_address()
                finally:
                    await stream.close()
            theirs = m.Status.decode(raw)
        except (Exception, trio.TooSlowError) as exc:
            log.info("status handshake with %s failed: %s; disconnecting", pid, exc)
            self._handshaking.discard(peer)
            await self._disconnect(peer)
            return
        self._handshaking.discard(peer)
        ip = remote[0] if remote else "127.0.0.1"
        remote_addr = f"/ip4/{ip}/tcp/{remote[1]}" if remote else "?"
        mismatch = self.our_status().mismatch(theirs)
        if mismatch is not None:
            self._refused[peer] = time.monotonic()
            self._forget(peer)
            self.stats["refused_mismatch"] += 1
            self.metrics.refused.labels("network-mismatch").inc()
            log.warning(
                "refused peer %s at %s: %s (it runs another network: give every node the "
                "same genesis.json, or drop it from --bootnodes)",
                pid,
                remote_addr,
                mismatch,
            )
            # Give their side a moment to read our status and log the same, then hang up.
            await self._disconnect(peer, delay=0.5)
            return
        if theirs.full:
            failures, _ = self._dial_backoff.get(peer, (0, 0.0))
            self._dial_backoff[peer] = (failures, time.monotonic() + FULL_PEER_BACKOFF)
            log.info(
                "peer %s at %s is at its peer limit; trying again in %.0fs",
                pid,
                remote_addr,
                FULL_PEER_BACKOFF,
            )
            if self.config.discovery:
                await self._exchange_peers(peer)  # a full node still points elsewhere
            await self._disconnect(peer)
            return
        inbound = str(getattr(conn, "direction", "")).lower().endswith("inbound")
        if peer not in self._peers and len(self._peers) >= self.config.max_peers:
            self.metrics.refused.labels("too-many-peers").inc()
            log.info(
                "refused peer %s at %s: already %d peers (--p2p.maxpeers)",
                pid,
                remote_addr,
                len(self._peers),
            )
            # A moment for them to ask us for other peers (they learn we are full).
            await self._disconnect(peer, delay=1.0)
            return
        listen_addr = f"/ip4/{ip}/tcp/{theirs.listen_port}/p2p/{pid}"
        self._dial_backoff.pop(peer, None)
        self._peers[peer] = _Peer(
            peer,
            ip,
            remote_addr,
            listen_addr,
            inbound,
            theirs.client,
            theirs.head,
            theirs.head_hash,
            time.time(),
            time.time(),
        )
        if theirs.listen_port:
            self._known[peer] = listen_addr
        self.metrics.peers.set(len(self._peers))
        self._update_snapshots()
        log.info(
            "peer %s connected at %s (%s, head #%d)",
            pid,
            remote_addr,
            "inbound" if inbound else "outbound",
            theirs.head,
        )
        self.thread.notify_core(self.handlers.on_new_peer, pid)
        if self.config.discovery and self._nursery is not None:
            self._nursery.start_soon(self._exchange_peers, peer)

    async def _serve_status(self, stream: INetStream) -> None:
        peer = stream.muxed_conn.peer_id
        try:
            with trio.fail_after(HANDSHAKE_TIMEOUT):
                theirs = m.Status.decode(await read_frame(stream, m.MAX_STATUS_BYTES))
                full = peer not in self._peers and len(self._peers) >= self.config.max_peers
                ours = replace(self.our_status(), full=full)
                await stream.write(encode_varint_prefixed(ours.encode()))
                if ours.mismatch(theirs) is None:
                    # Our own handshake with them may still be in flight; their sync
                    # requests (peer exchange first of all) are welcome already.
                    self._status_ok.add(peer)
        except m.PeerMessageError as exc:
            self._on_stream_fault(peer, f"status request: {exc}")
        except trio.TooSlowError:
            log.debug("status request from %s timed out", peer)
        except STREAM_ERRORS as exc:
            log.debug("status request from %s failed: %s", peer, describe(exc))
        finally:
            await close_stream(stream)

    # ------------------------------------------------------------ sync protocol
    async def _serve_sync(self, stream: INetStream) -> None:
        peer = stream.muxed_conn.peer_id
        try:
            with trio.fail_after(REQUEST_TIMEOUT):
                request = m.SyncRequest.decode(await read_frame(stream, m.MAX_REQUEST_BYTES))
                if peer not in self._peers and peer not in self._status_ok:
                    return
                if request.kind == "status":
                    answer = self.our_status().encode()
                elif request.kind == "peers":
                    addrs = [p.listen_addr for p in self._peers.values() if p.peer_id != peer]
                    answer = m.encode_peers(addrs)
                else:
                    bundles = await trio.to_thread.run_sync(
                        self._load_range, request.start, request.count
                    )
                    answer = m.encode_blocks(bundles)
                await stream.write(encode_varint_prefixed(answer))
        except m.PeerMessageError as exc:
            self._on_stream_fault(peer, f"sync request: {exc}")
        except trio.TooSlowError:
            log.debug("sync request from %s timed out", peer)
        except STREAM_ERRORS as exc:
            log.debug("sync request from %s failed: %s", peer, describe(exc))
        finally:
            await close_stream(stream)

    def _load_range(self, start: int, count: int) -> list[bytes]:
        bundles: list[bytes] = []
        size = 0
        head, _ = self.chain.head()
        for number in range(start, min(start + count, head + 1)):
            bundle = self.chain.load_bundle(number)
            if bundle is None:
                break
            size += len(bundle)
            if bundles and size > m.MAX_RANGE_RESPONSE_BYTES:
                break
            bundles.append(bundle)
        return bundles

    async def request(self, peer: ID, request: m.SyncRequest, limit: int) -> bytes:
        with trio.fail_after(REQUEST_TIMEOUT):
            stream = await self.host.new_stream(peer, [self.sync_protocol])
            try:
                await stream.write(encode_varint_prefixed(request.encode()))
                return await read_varint_prefixed_bytes_limited(stream, limit)
            finally:
                await stream.close()

    async def fetch_range(self, start: int, count: int) -> tuple[str, list[bytes]]:
        """Blocks `start`.. from the best peer that has them: (peer id, encoded bundles)."""
        candidates = sorted(
            (p for p in self._peers.values() if p.head >= start),
            key=lambda p: (-p.head, random.random()),
        )
        if not candidates:
            raise NoPeer(f"no peer has block #{start}")
        last_error: Exception | None = None
        for peer in candidates[:3]:
            try:
                raw = await self.request(
                    peer.peer_id,
                    m.SyncRequest("range", start, count),
                    m.MAX_RANGE_RESPONSE_BYTES + 1024,
                )
                return peer.peer_id.to_base58(), m.decode_blocks(raw)
            except m.PeerMessageError as exc:
                self.penalise(peer.peer_id, "bad-sync", f"block range answer: {exc}")
                last_error = exc
            except (Exception, trio.TooSlowError) as exc:
                log.info("range request to %s failed: %s", peer.peer_id.to_base58(), exc)
                last_error = exc
        raise NoPeer(f"no peer answered a range request from #{start}: {last_error}")

    def penalise_by_id(self, pid: str, kind: str, reason: str) -> None:
        try:
            peer = ID.from_base58(pid)
        except Exception:
            return
        self.penalise(peer, kind, reason)

    async def _status_loop(self) -> None:
        """Keep every peer's head fresh; the follower syncs toward the best one."""
        while True:
            await trio.sleep(STATUS_REFRESH_INTERVAL)
            for peer in list(self._peers.values()):
                assert self._nursery is not None
                self._nursery.start_soon(self._refresh_status, peer.peer_id)

    async def _refresh_status(self, peer: ID) -> None:
        try:
            raw = await self.request(peer, m.SyncRequest("status"), m.MAX_STATUS_BYTES)
            status = m.Status.decode(raw)
        except m.PeerMessageError as exc:
            self.penalise(peer, "protocol", f"status answer: {exc}")
            return
        except (Exception, trio.TooSlowError):
            return
        current = self._peers.get(peer)
        if current is not None:
            self._peers[peer] = replace(
                current, head=status.head, head_hash=status.head_hash, status_at=time.time()
            )
            self._update_snapshots()

    # ------------------------------------------------------------ discovery
    def _on_mdns_peer(self, info: PeerInfo) -> None:
        # Called on zeroconf's thread: hop onto trio before touching any state.
        with contextlib.suppress(BridgeClosed):
            self.thread.submit(self._learn_mdns, info.peer_id, [str(a) for a in info.addrs])

    def _learn_mdns(self, peer: ID, addrs: list[str]) -> None:
        if peer != self.peer_id and peer not in self._known:
            log.info("mDNS: found peer %s at %s", peer.to_base58(), ", ".join(addrs))
        self._learn(peer, addrs)

    def _learn(self, peer: ID, addrs: list[str]) -> None:
        if peer == self.peer_id or not addrs:
            return
        tcp = [a for a in addrs if "/tcp/" in a and "/ip4/" in a]
        if tcp and peer not in self._known:
            addr = tcp[0] if "/p2p/" in tcp[0] else f"{tcp[0]}/p2p/{peer.to_base58()}"
            self._known[peer] = addr
            log.debug("learned peer %s at %s", peer.to_base58(), addr)

    async def _exchange_peers(self, peer: ID) -> None:
        try:
            raw = await self.request(peer, m.SyncRequest("peers"), 64 * 1024)
            addrs = m.decode_peers(raw)
        except m.PeerMessageError as exc:
            self.penalise(peer, "protocol", f"peer list: {exc}")
            return
        except (Exception, trio.TooSlowError):
            return
        for addr in addrs:
            try:
                info = info_from_p2p_addr(multiaddr.Multiaddr(addr))
            except Exception:
                continue
            self._learn(info.peer_id, [addr])

    async def _discovery_loop(self) -> None:
        last_exchange = time.monotonic()
        while True:
            now = time.monotonic()
            connected = self.host.get_network().connections
            wanted = self.config.max_peers - len(self._peers)
            candidates: list[PeerInfo] = []
            for info in self._bootnodes:
                candidates.append(info)
            if self.config.discovery or self.config.mdns:
                for peer, addr in list(self._known.items()):
                    try:
                        candidates.append(info_from_p2p_addr(multiaddr.Multiaddr(addr)))
                    except Exception:
                        self._known.pop(peer, None)
            seen: set[ID] = set()
            to_dial = []
            for info in candidates:
                peer = info.peer_id
                if peer in seen or peer == self.peer_id or peer in connected:
                    continue
                seen.add(peer)
                if self.scores.is_banned(peer.to_base58()):
                    continue
                refused = self._refused.get(peer)
                if refused is not None and now - refused < REFUSED_BACKOFF:
                    continue
                to_dial.append(info)
            if wanted > 0 and to_dial:
                async with trio.open_nursery() as dials:
                    for info in to_dial[:wanted]:
                        dials.start_soon(self._dial, info)
            if self.config.discovery and now - last_exchange > PEER_EXCHANGE_INTERVAL:
                last_exchange = now
                if self._peers:
                    peer = random.choice(list(self._peers))
                    assert self._nursery is not None
                    self._nursery.start_soon(self._exchange_peers, peer)
            await trio.sleep(DISCOVERY_INTERVAL)

    async def _dial(self, info: PeerInfo) -> None:
        peer = info.peer_id
        failures, not_before = self._dial_backoff.get(peer, (0, 0.0))
        if time.monotonic() < not_before:
            return
        # py-libp2p refuses to redial a peer for 60 s after one failed dial ("negative
        # cache"); a bootnode that starts a second after us would wait a minute. We pace
        # our own redials (2 s doubling to 30 s), so lift its block first.
        network = self.host.get_network()
        unblock = getattr(network, "unblock_peer", None)
        if unblock is not None:
            unblock(peer)
        try:
            with trio.fail_after(DIAL_TIMEOUT):
                await self.host.connect(info)
        except (Exception, trio.TooSlowError) as exc:
            delay = min(DISCOVERY_INTERVAL * 2**failures, 30.0)
            self._dial_backoff[peer] = (failures + 1, time.monotonic() + delay)
            log.debug("dial %s failed (next try in %.0fs): %s", peer.to_base58(), delay, exc)

    def forget_peers(self) -> None:
        """After the thread ended: nobody is connected (called from the core thread)."""
        self._peers.clear()
        self._update_snapshots()

    # ------------------------------------------------------------ snapshots for the core
    def _update_snapshots(self) -> None:
        peers = []
        for p in self._peers.values():
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
        # Replaced, never mutated: the core thread reads these references without a lock.
        self.peer_snapshot = tuple(peers)
        self.node_snapshot = NodeSummary(
            self.me,
            self.listen_addrs,
            self.listen_port,
            tuple(self.scores.banned()),
            dict(self.stats),
        )
