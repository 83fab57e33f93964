"""Byzantine peers: real py-libp2p hosts (TCP + Noise + yamux) that pass Cairn's status
handshake honestly and then misbehave: `run_byzantine` gossips forged data on the blocks
topic; `send_garbage` writes raw bad frames on one protocol's stream.

It is deliberately built from py-libp2p directly, not from `cairn.p2p`, so it behaves like
any third-party peer speaking the protocol; it only borrows Cairn's message encoders.
Every wait has a deadline (`trio.fail_after`), none is a sleep.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import multiaddr
import trio
from libp2p import new_host
from libp2p.abc import INetStream
from libp2p.crypto.ed25519 import create_new_key_pair as ed25519_key_pair
from libp2p.crypto.x25519 import create_new_key_pair as x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.io.exceptions import IOException
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.pubsub.gossipsub import GossipSub
from libp2p.pubsub.pubsub import Pubsub
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.exceptions import MuxedStreamError
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux
from libp2p.tools.anyio_service import background_trio_service
from libp2p.utils.varint import encode_varint_prefixed, read_varint_prefixed_bytes_limited

from cairn.p2p import messages as m
from tests.support.p2pwatch import DisconnectWatch


@dataclass
class ByzantineReport:
    peer_id: str = ""
    published: int = 0
    cut_off: bool = False
    reconnect_refused: bool = False
    log: list[str] = field(default_factory=list)


def run_byzantine(
    target: str, chain_id: int, genesis_hash: bytes, forged: list[bytes]
) -> ByzantineReport:
    """Connect to `target` (a multiaddr with /p2p/), pass the handshake, gossip `forged`
    on the blocks topic, and report whether the target cut us off and refuses us after."""
    report = ByzantineReport()
    trio.run(_scenario, target, chain_id, genesis_hash, forged, report)
    return report


async def _scenario(
    target: str, chain_id: int, genesis_hash: bytes, forged: list[bytes], report: ByzantineReport
) -> None:
    key_pair = ed25519_key_pair()
    listen = multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")
    host = new_host(
        key_pair=key_pair,
        sec_opt={
            NOISE_PROTOCOL_ID: NoiseTransport(key_pair, noise_privkey=x25519_key_pair().private_key)
        },
        muxer_opt={TProtocol(YAMUX_PROTOCOL_ID): Yamux},
        listen_addrs=[listen],
    )
    router = GossipSub(
        [TProtocol("/meshsub/1.1.0")],
        degree=6,
        degree_low=4,
        degree_high=12,
        heartbeat_interval=1,
        max_messages_per_topic_per_second=1000,
        eclipse_protection_enabled=False,
    )
    pubsub = Pubsub(host, router, strict_signing=True)
    report.peer_id = host.get_id().to_base58()
    status = m.Status(chain_id, genesis_hash, 0, genesis_hash, 0, "byzantine/0.0")
    accepted = trio.Event()  # the target counts us as a peer once it asks for our peers

    async def serve_status(stream: INetStream) -> None:
        await read_varint_prefixed_bytes_limited(stream, m.MAX_STATUS_BYTES)
        await stream.write(encode_varint_prefixed(status.encode()))
        await stream.close()

    async def serve_sync(stream: INetStream) -> None:
        request = m.SyncRequest.decode(
            await read_varint_prefixed_bytes_limited(stream, m.MAX_REQUEST_BYTES)
        )
        if request.kind == "peers":
            accepted.set()
            answer = m.encode_peers([])
        elif request.kind == "status":
            answer = status.encode()
        else:
            answer = m.encode_blocks([])
        await stream.write(encode_varint_prefixed(answer))
        await stream.close()

    host.set_stream_handler(TProtocol(m.STATUS_PROTOCOL), serve_status)
    host.set_stream_handler(TProtocol(m.sync_protocol(chain_id)), serve_sync)
    watch = DisconnectWatch()
    host.get_network().register_notifee(watch)
    topic = m.topic_names(chain_id)["blocks"]
    info = info_from_p2p_addr(multiaddr.Multiaddr(target))
    node: ID = info.peer_id
    async with (
        host.run([listen]),
        background_trio_service(pubsub),
        background_trio_service(router),
    ):
        await pubsub.wait_until_ready()
        with trio.fail_after(30):
            await host.connect(info)
            await accepted.wait()
            await pubsub.wait_for_subscription(node, topic, timeout=30)
        report.log.append("handshake passed; target subscribed to " + topic)
        for data in forged:
            await pubsub.publish(topic, data)
            report.published += 1
        try:
            with trio.fail_after(60):
                await watch.gone.wait()
            report.cut_off = True
        except trio.TooSlowError:
            report.log.append("the target never disconnected us")
            return
        # Try again: a banned peer is hung up on as soon as it connects.
        watch.renew()
        with trio.fail_after(30):
            try:
                await host.connect(info)
            except Exception as exc:
                report.log.append(f"reconnect failed: {exc!r}")
            if host.get_network().connections.get(node):
                await watch.gone.wait()
        report.reconnect_refused = not host.get_network().connections.get(node)


# ---------------------------------------------------------------- raw garbage on a stream
@dataclass
class GarbageReport:
    peer_id: str = ""
    stream_ended: bool = False  # the target reset or closed the stream we wrote to
    cut_off: bool = False  # the target hung up on us
    log: list[str] = field(default_factory=list)


def send_garbage(
    target: str, chain_id: int, genesis_hash: bytes, protocol: str, payload: bytes
) -> GarbageReport:
    """Connect to `target`, pass the status handshake honestly, then open a stream on
    `protocol` and write `payload` (raw bytes: a bad frame, not a message). Report whether
    the target ended that stream and whether it disconnected us (waits up to 15 s)."""
    report = GarbageReport()
    trio.run(_garbage_scenario, target, chain_id, genesis_hash, protocol, payload, report)
    return report


async def _garbage_scenario(
    target: str,
    chain_id: int,
    genesis_hash: bytes,
    protocol: str,
    payload: bytes,
    report: GarbageReport,
) -> None:
    key_pair = ed25519_key_pair()
    listen = multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")
    host = new_host(
        key_pair=key_pair,
        sec_opt={
            NOISE_PROTOCOL_ID: NoiseTransport(key_pair, noise_privkey=x25519_key_pair().private_key)
        },
        muxer_opt={TProtocol(YAMUX_PROTOCOL_ID): Yamux},
        listen_addrs=[listen],
    )
    report.peer_id = host.get_id().to_base58()
    status = m.Status(chain_id, genesis_hash, 0, genesis_hash, 0, "garbage/0.0")
    accepted = trio.Event()

    async def serve_status(stream: INetStream) -> None:
        await read_varint_prefixed_bytes_limited(stream, m.MAX_STATUS_BYTES)
        await stream.write(encode_varint_prefixed(status.encode()))
        await stream.close()

    async def serve_sync(stream: INetStream) -> None:
        request = m.SyncRequest.decode(
            await read_varint_prefixed_bytes_limited(stream, m.MAX_REQUEST_BYTES)
        )
        if request.kind == "peers":
            accepted.set()
        answer = {"peers": m.encode_peers([]), "status": status.encode()}.get(
            request.kind, m.encode_blocks([])
        )
        await stream.write(encode_varint_prefixed(answer))
        await stream.close()

    host.set_stream_handler(TProtocol(m.STATUS_PROTOCOL), serve_status)
    host.set_stream_handler(TProtocol(m.sync_protocol(chain_id)), serve_sync)
    watch = DisconnectWatch()
    host.get_network().register_notifee(watch)
    info = info_from_p2p_addr(multiaddr.Multiaddr(target))
    async with host.run([listen]):
        with trio.fail_after(30):
            await host.connect(info)
            await accepted.wait()
        report.log.append("handshake passed")
        stream = await host.new_stream(info.peer_id, [TProtocol(protocol)])
        await stream.write(payload)
        report.log.append(f"wrote {len(payload)} bytes on {protocol}")

        try:
            with trio.move_on_after(15):
                while await stream.read(65536):
                    pass
                report.log.append("the target closed the stream")
                report.stream_ended = True
        except (IOException, MuxedStreamError) as exc:  # reset, EOF or a dropped connection
            report.log.append(f"the stream ended: {exc!r}")
            report.stream_ended = True
        # A target that hangs up does so as it ends the stream: give it 5 s.
        with trio.move_on_after(5):
            await watch.gone.wait()
            report.cut_off = True
        if not report.cut_off:
            report.log.append("still connected; hanging up")
            await host.disconnect(info.peer_id)
