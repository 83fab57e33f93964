"""Host set-up: the py-libp2p stack a Cairn node runs (TCP + Noise + yamux, gossipsub and
pubsub with our tuning) and the corrections we apply to py-libp2p 0.8.1 from outside it,
in `GuardedPubsub`, `contained` and `hang_up_all`:
  - writes on one pubsub stream are serialised (issue 16);
  - whatever a peer's bytes make a stream handler raise stays in that stream: the stream is
    reset and the peer reported through a callback, instead of the exception unwinding the
    connection's nursery and with it the host and the whole p2p thread (issue 12);
  - message numbers start from the clock in nanoseconds, so a restarted node's messages
    are not taken by its peers for ones they have already seen;
  - stopping p2p closes every connection, so peers see us leave at once.

`contained` is the one place allowed to catch `Exception` around py-libp2p code that parses
a peer's bytes; everything else in the package names what it catches. This module owns
py-libp2p construction only: no peer table, no Cairn protocols. py-libp2p is used as
installed; nothing here patches its classes or modules in place.
"""

from __future__ import annotations

import logging
import socket
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import multiaddr
import trio
from google.protobuf.message import DecodeError
from libp2p import new_host
from libp2p.abc import IHost, IMuxedConn, INetConn, INetStream
from libp2p.crypto.keys import KeyPair
from libp2p.crypto.x25519 import create_new_key_pair as x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.exceptions import BaseLibp2pError, ParseError
from libp2p.io.exceptions import IncompleteReadError, IOException, MessageTooLarge
from libp2p.network.config import ConnectionConfig
from libp2p.network.stream.exceptions import StreamError
from libp2p.peer.id import ID
from libp2p.pubsub.gossipsub import GossipSub
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.exceptions import MuxedStreamError
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux
from libp2p.utils.varint import read_varint_prefixed_bytes_limited

from cairn.p2p.messages import PeerMessageError

log = logging.getLogger("cairn.p2p")

GOSSIP_PROTOCOLS = (TProtocol("/meshsub/1.1.0"), TProtocol("/meshsub/1.0.0"))
# gossipsub tuning. py-libp2p 0.8.1 defaults are a 120 s heartbeat (meshes form slowly) and
# 10 messages per topic per second per forwarder, counted for our own publishes too: an
# automining sequencer makes more blocks than that and would silently drop its own. 200/s
# still bounds a flooding peer; our transaction batches stay near 13/s (one per 75 ms).
GOSSIP_RATE_PER_TOPIC = 200.0
GOSSIP_HEARTBEAT_SECONDS = 1
GOSSIP_DEGREE = (6, 4, 12)
MAX_GOSSIP_RPC_BYTES = 4 * 1024 * 1024
# Our own validation re-executes blocks; the default 5 s would fail a big block on a busy
# machine, and a timeout counts against the (honest) sender.
VALIDATION_TIMEOUT_SECONDS = 30.0
# Closing every connection when p2p stops: yamux sends GO_AWAY, then waits 0.1 s per
# connection; all are closed at once.
HANG_UP_SECONDS = 5.0

# What reading or writing a stream raises when the other side or the connection goes away
# (reset, EOF, closed, incomplete frame). Not the peer's fault as such.
STREAM_ERRORS: tuple[type[Exception], ...] = (IOException, MuxedStreamError)
# What a call that talks to a peer (dial, open a stream, hang up) raises when the peer or the
# connection fails: py-libp2p's error tree, and the socket errors it lets through.
PEER_ERRORS: tuple[type[Exception], ...] = (
    BaseLibp2pError,
    OSError,
    trio.BrokenResourceError,
    trio.ClosedResourceError,
)

StreamHandler = Callable[[INetStream], Awaitable[None]]
# Told which peer broke a stream and why (on the trio thread): the peer table scores it
# down and hangs up.
FaultReport = Callable[[ID, str], None]


def describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def read_frame(stream: INetStream, limit: int) -> bytes:
    """One varint-length-prefixed frame; a bad length prefix or one over `limit` is the
    peer's fault (`PeerMessageError`), a dropped stream is one of `STREAM_ERRORS`."""
    try:
        return await read_varint_prefixed_bytes_limited(stream, limit)
    except (ParseError, MessageTooLarge) as exc:
        raise PeerMessageError(f"bad frame: {describe(exc)}") from exc


async def close_stream(stream: INetStream) -> None:
    """Close our side; a stream the peer already reset or dropped needs nothing more."""
    try:
        await stream.close()
    except STREAM_ERRORS as exc:
        log.debug("closing a stream: %s", describe(exc))


async def hang_up_all(host: IHost, within: float = HANG_UP_SECONDS) -> None:
    """Close every connection of `host` at once, shielded from the cancellation that is
    stopping it, `within` seconds at most.

    py-libp2p 0.8.1 closes a swarm's connections in `Swarm.run`'s `finally`, inside the
    cancelled scope: `SwarmConn.close` marks the connection closed, then its first await
    raises `Cancelled` before the socket is closed, and every later `SwarmConn.close` returns
    at once. The socket stays open until the garbage collector finds it, so peers keep a
    connection nobody reads; when p2p restarts in the same process (the supervisor), they
    keep the dead pubsub stream on it and never open one on the new connection. Here each
    connection's muxer is closed (GO_AWAY, then the socket), whatever `SwarmConn` did.
    """
    muxers = {
        id(c.muxed_conn): c.muxed_conn for cs in host.get_network().connections.values() for c in cs
    }

    async def close(muxer: IMuxedConn) -> None:
        try:
            await muxer.close()
        except (*PEER_ERRORS, *STREAM_ERRORS) as exc:
            log.debug("closing the connection to %s: %s", muxer.peer_id, describe(exc))

    with trio.CancelScope(shield=True, deadline=trio.current_time() + within) as scope:
        async with trio.open_nursery() as nursery:
            for muxer in muxers.values():
                nursery.start_soon(close, muxer)
    if scope.cancelled_caught:
        log.warning("p2p stopped with connections still closing after %.0fs", within)


def remote_ip(conn: INetConn) -> str:
    """The IP a connection comes from ("" when the transport does not say). py-libp2p
    0.8.1's yamux and mplex connections have `get_remote_address`; `IMuxedConn` does not
    declare it."""
    get = getattr(conn.muxed_conn, "get_remote_address", None)
    remote = get() if get is not None else None
    return str(remote[0]) if remote else ""


def contained(handler: StreamHandler, protocol: str, on_fault: FaultReport) -> StreamHandler:
    """`handler` for one protocol, with anything it raises kept to its own stream.

    py-libp2p 0.8.1 runs each inbound stream's handler in its connection's nursery: an
    exception out of a handler unwinds the connection, the swarm and the host, and ends
    the trio thread ("the p2p thread failed"), so one peer's malformed frame stopped the
    node's p2p for good. Here the stream is reset and the peer reported instead.
    """

    async def run(stream: INetStream) -> None:
        try:
            await handler(stream)
        except Exception as exc:  # the containment boundary: see the docstring
            peer = stream.muxed_conn.peer_id
            log.warning("%s stream from %s failed: %s", protocol, peer, describe(exc))
            await stream.reset()
            on_fault(peer, f"{protocol} stream: {describe(exc)}")

    return run


class GuardedPubsub(Pubsub):
    """py-libp2p's `Pubsub` whose RPC writes on one stream never interleave (issue 16),
    whose inbound streams fail alone (issue 12), and whose message numbers a restart does
    not reuse.

    py-libp2p 0.8.1 writes to a peer's pubsub stream from several tasks at once: the
    per-peer sending loop (`Pubsub.handle_sending_messages`), and directly, bypassing that
    queue, `GossipSub.send_recent_messages` (the message-cache replay to a peer that just
    subscribed: one task per topic, spawned by `Pubsub.handle_subscription`, plus one from
    `Pubsub._handle_new_peer`) and `GossipSub.flush_pending_messages`. `YamuxStream.write`
    cuts a write into frames of at most 64 KiB and at most the peer's send window (256 KiB
    at first) and lets go of the stream between frames, while it awaits the connection's
    frame writer or a window update. Two writers' frames then interleave, and the receiver
    reads a corrupt length-prefixed RPC: `DecodeError: Error parsing message with type
    'pubsub.pb.RPC'` in `continuously_read_stream`, raised out of the stream handler, which
    stopped the receiving node's p2p. One honest sender that replays a large message cache
    to a new peer breaks every peer it connects to at that moment.

    go-yamux holds a per-stream lock for a whole `Write`, and go-libp2p-pubsub writes a
    peer's stream from its queue only. Here every RPC write takes a per-stream lock, so
    each length-prefixed RPC reaches the stream as one contiguous run of frames. (The
    hello RPC that `_handle_new_peer` writes with `stream.write` goes out before the stream
    is registered, when nothing else can write to it.)

    Inbound: `Pubsub.stream_handler` lets `DecodeError` (a frame of protobuf garbage) and
    anything else the router raises on a peer's RPC escape; here the stream is reset, the
    peer dropped from pubsub and reported to `on_fault`. (An oversized frame py-libp2p
    already handles itself: it resets the stream and drops the peer from pubsub.)

    Message numbers: a message is named by (publisher, seqno) in every peer's seen cache
    (120 s, renewed on each hit), validation cache (300 s: a cached "valid" skips our
    validator, which is how the core receives gossip) and gossipsub's equivocation table.
    py-libp2p starts seqno at `int(time.time())` and adds one per publish; a validator
    publishes several messages a second, so after a restart its seqnos run through numbers
    its first life had used shortly before, and every peer dropped them as seen: the
    restarted node heard everyone and nobody heard it until its counter passed the old one
    (31 s in `tests/unit/test_p2p_restart_gossip.py`). It bites a node restarted within a
    few minutes of its previous start, or by the supervisor (1 s); after a long run the
    reused numbers have left the caches. go-libp2p-pubsub starts from
    `time.Now().UnixNano()`; so do we.
    """

    def __init__(self, *args: Any, on_fault: FaultReport, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.counter = time.time_ns()  # seqno: see the class docstring
        self._on_fault = on_fault
        self._write_locks: weakref.WeakKeyDictionary[INetStream, trio.Lock] = (
            weakref.WeakKeyDictionary()
        )

    async def write_msg(self, stream: INetStream, rpc_msg: rpc_pb2.RPC) -> bool:
        lock = self._write_locks.get(stream)
        if lock is None:
            lock = self._write_locks[stream] = trio.Lock()
        async with lock:
            ok: bool = await super().write_msg(stream, rpc_msg)
            return ok

    async def stream_handler(self, stream: INetStream) -> None:
        peer = stream.muxed_conn.peer_id
        try:
            await self.continuously_read_stream(stream)
        except (StreamError, IncompleteReadError) as exc:
            # The connection went away mid-frame: nobody's fault (py-libp2p's own handling).
            log.debug("pubsub stream from %s closed: %s", peer, describe(exc))
            await stream.reset()
            self._handle_dead_peer(peer)
        except (ParseError, DecodeError) as exc:
            self._drop_bad_stream(peer, f"undecodable pubsub RPC: {describe(exc)}")
            await stream.reset()
        except Exception as exc:  # the containment boundary (see `contained`)
            await stream.reset()
            if not self.manager.is_running:
                # Shutting down: py-libp2p's task nursery refuses new work; no one's fault.
                log.debug("pubsub stream from %s ended at shutdown: %s", peer, describe(exc))
                return
            self._drop_bad_stream(peer, f"pubsub RPC made py-libp2p fail: {describe(exc)}")

    def _drop_bad_stream(self, peer: ID, reason: str) -> None:
        log.warning("pubsub stream from %s dropped: %s", peer, reason)
        self._handle_dead_peer(peer)
        self._on_fault(peer, reason)


def connection_limits(max_peers: int) -> ConnectionConfig:
    # py-libp2p's connection manager aims for 150-250 connections. Scale it to
    # --p2p.maxpeers: it prunes only well above the limit (its auto-connector is stopped,
    # see stop_auto_connector), and our handshake enforces the exact limit.
    return ConnectionConfig(
        max_connections=2 * max_peers + 8,
        min_connections=0,
        low_watermark=0,
        high_watermark=2 * max_peers,
        max_connections_per_peer=2,
    )


def build_host(key_pair: KeyPair, listen: multiaddr.Multiaddr, max_peers: int) -> IHost:
    """A host on TCP + Noise + yamux only (plaintext, SECIO and TLS are not negotiable)."""
    security = {
        NOISE_PROTOCOL_ID: NoiseTransport(key_pair, noise_privkey=x25519_key_pair().private_key)
    }
    host: IHost = new_host(
        key_pair=key_pair,
        sec_opt=security,
        muxer_opt={TProtocol(YAMUX_PROTOCOL_ID): Yamux},
        listen_addrs=[listen],
        connection_config=connection_limits(max_peers),
    )
    return host


def build_gossip(
    host: IHost, topics: Iterable[str], on_fault: FaultReport
) -> tuple[GossipSub, GuardedPubsub]:
    """The gossipsub router and its pubsub on `host`, accepting only `topics`; a peer whose
    pubsub stream breaks is reported to `on_fault`."""
    router = GossipSub(
        list(GOSSIP_PROTOCOLS),
        degree=GOSSIP_DEGREE[0],
        degree_low=GOSSIP_DEGREE[1],
        degree_high=GOSSIP_DEGREE[2],
        heartbeat_interval=GOSSIP_HEARTBEAT_SECONDS,
        max_messages_per_topic_per_second=GOSSIP_RATE_PER_TOPIC,
        # All peers share one IP on loopback and in compose; diversity rules would keep
        # honest peers out of the mesh.
        eclipse_protection_enabled=False,
        do_px=False,
    )
    pubsub = GuardedPubsub(
        host,
        router,
        on_fault=on_fault,
        strict_signing=True,
        max_inbound_rpc_size=MAX_GOSSIP_RPC_BYTES,
        validation_timeout=VALIDATION_TIMEOUT_SECONDS,
        allowed_topics=set(topics),
    )
    return router, pubsub


async def stop_auto_connector(host: IHost) -> None:
    # py-libp2p's auto-connector redials every peer in the peerstore, ignoring our
    # backoffs, refusals and --p2p.maxpeers; our discovery loop is the only dialer.
    connector = getattr(host.get_network(), "auto_connector", None)
    if connector is not None:
        await connector.stop()


def advertised_ip(listen_addr: str) -> str:
    """The IP other hosts on the LAN reach us at, when we listen on every interface."""
    if listen_addr not in ("0.0.0.0", ""):
        return listen_addr
    # A UDP connect sends nothing; it only asks the kernel which source IP the mDNS group
    # would be reached from.
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("224.0.0.251", 5353))
            ip: str = probe.getsockname()[0]
            if ip and not ip.startswith("0."):
                return ip
    except OSError:
        pass
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"
