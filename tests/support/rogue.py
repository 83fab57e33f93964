"""A misbehaving peer that stays up while a test drives it: a real py-libp2p host (TCP +
Noise + yamux, gossipsub) on its own trio thread, which passes Cairn's status handshake
with whatever head it is told to claim, answers range requests as the test decides, and
can publish on any topic and send any sync request.

Like `tests/support/byzantine.py` it is built from py-libp2p directly, never from
`cairn.p2p`, so it behaves like any third-party peer; it borrows only Cairn's message
encoders. Every wait has a deadline.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, TypeVar

import multiaddr
import trio
import trio.lowlevel
from libp2p import new_host
from libp2p.abc import INetStream
from libp2p.crypto.ed25519 import create_new_key_pair as ed25519_key_pair
from libp2p.crypto.x25519 import create_new_key_pair as x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.exceptions import BaseLibp2pError
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.pubsub.gossipsub import GossipSub
from libp2p.pubsub.pubsub import Pubsub
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux
from libp2p.tools.anyio_service import background_trio_service
from libp2p.utils.varint import encode_varint_prefixed, read_varint_prefixed_bytes_limited

from cairn.p2p import messages as m
from tests.support.p2pwatch import DisconnectWatch

T = TypeVar("T")
# The answer to a range request; None: never answer (hold the stream open).
RangeAnswer = Callable[[m.SyncRequest], bytes | None]


def empty_range(_request: m.SyncRequest) -> bytes:
    return m.encode_blocks([])


class RoguePeer:
    """Use as a context manager. `head` is the head claimed in every status; `range_answer`
    makes the answer to each range request (the count is in `range_requests`)."""

    def __init__(
        self,
        chain_id: int,
        genesis_hash: bytes,
        *,
        head: int = 0,
        range_answer: RangeAnswer = empty_range,
        gossip: bool = False,
        client: str = "rogue/0.0",
        status_answer: bytes | None = None,
        peers_answer: bytes | None = None,
    ) -> None:
        self.chain_id = chain_id
        self.status = m.Status(chain_id, genesis_hash, head, genesis_hash, 0, client)
        self.range_answer = range_answer
        # raw answers instead of honest ones (garbage tests)
        self.status_answer = status_answer
        self.peers_answer = peers_answer
        self.range_requests = 0
        self.disconnects = 0
        self.gone = threading.Event()  # the target hung up on us (at least once)
        self._gossip = gossip
        self._accepted: dict[ID, trio.Event] = {}
        self._ready = threading.Event()
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        self._error: BaseException | None = None
        key_pair = ed25519_key_pair()
        self._listen = multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")
        self.host = new_host(
            key_pair=key_pair,
            sec_opt={
                NOISE_PROTOCOL_ID: NoiseTransport(
                    key_pair, noise_privkey=x25519_key_pair().private_key
                )
            },
            muxer_opt={TProtocol(YAMUX_PROTOCOL_ID): Yamux},
            listen_addrs=[self._listen],
        )
        self.peer_id = self.host.get_id().to_base58()
        self._thread = threading.Thread(target=self._run, name="rogue-peer", daemon=True)
        self.pubsub: Pubsub | None = None

    # ------------------------------------------------------------ lifecycle
    def __enter__(self) -> RoguePeer:
        self._thread.start()
        if not self._ready.wait(30):
            raise TimeoutError("the rogue peer did not start")
        if self._error is not None:
            raise self._error
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._token is not None and self._stop is not None:
            with contextlib.suppress(trio.RunFinishedError):
                trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
        self._thread.join(30)

    def _run(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as exc:  # reported to the test thread by __enter__
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._stop = trio.Event()
        host = self.host
        host.set_stream_handler(TProtocol(m.STATUS_PROTOCOL), self._serve_status)
        host.set_stream_handler(TProtocol(m.sync_protocol(self.chain_id)), self._serve_sync)
        host.get_network().register_notifee(DisconnectWatch(self._hung_up))
        async with host.run([self._listen]):
            # py-libp2p's auto-connector would redial whoever hung up on us: the test dials.
            connector = getattr(host.get_network(), "auto_connector", None)
            if connector is not None:
                await connector.stop()
            if self._gossip:
                router = GossipSub(
                    [TProtocol("/meshsub/1.1.0")],
                    degree=6,
                    degree_low=4,
                    degree_high=12,
                    heartbeat_interval=1,
                    max_messages_per_topic_per_second=100_000,
                    eclipse_protection_enabled=False,
                )
                self.pubsub = Pubsub(host, router, strict_signing=True)
                async with background_trio_service(self.pubsub), background_trio_service(router):
                    await self.pubsub.wait_until_ready()
                    self._ready.set()
                    await self._stop.wait()
                    await self._hang_up()
            else:
                self._ready.set()
                await self._stop.wait()
                await self._hang_up()

    async def _hang_up(self) -> None:
        # py-libp2p 0.8.1 leaves connections open when a host stops (cairn/p2p/stack.py,
        # `hang_up_all`): close them, so the target sees us leave.
        with trio.move_on_after(5):
            for peer in list(self.host.get_network().connections):
                await self.host.disconnect(peer)

    def _hung_up(self) -> None:
        self.disconnects += 1
        self.gone.set()

    def call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run `fn(*args)` on the rogue's trio thread; its result."""
        assert self._token is not None
        return trio.from_thread.run(fn, *args, trio_token=self._token)

    # ------------------------------------------------------------ serving
    async def _serve_status(self, stream: INetStream) -> None:
        await read_varint_prefixed_bytes_limited(stream, m.MAX_STATUS_BYTES)
        answer = self.status_answer if self.status_answer is not None else self.status.encode()
        await stream.write(encode_varint_prefixed(answer))
        await stream.close()

    async def _serve_sync(self, stream: INetStream) -> None:
        request = m.SyncRequest.decode(
            await read_varint_prefixed_bytes_limited(stream, m.MAX_REQUEST_BYTES)
        )
        if request.kind == "peers":
            self._accepted.setdefault(stream.muxed_conn.peer_id, trio.Event()).set()
            answer = self.peers_answer if self.peers_answer is not None else m.encode_peers([])
        elif request.kind == "status":
            answer = self.status.encode()
        else:
            self.range_requests += 1
            ranged = self.range_answer(request)
            if ranged is None:
                await trio.sleep_forever()  # until the asker gives up, or we stop
            answer = ranged or b""
        await stream.write(encode_varint_prefixed(answer))
        await stream.close()

    # ------------------------------------------------------------ acting
    def connect(self, target: str, timeout: float = 30.0) -> str:
        """Dial `target` (a multiaddr with /p2p/) and wait until it took us as a peer (it
        asks a new peer for its peers right after the handshake); its peer id."""

        async def run() -> str:
            info = info_from_p2p_addr(multiaddr.Multiaddr(target))
            accepted = self._accepted[info.peer_id] = trio.Event()
            with trio.fail_after(timeout):
                await self.host.connect(info)
                await accepted.wait()
            return info.peer_id.to_base58()

        self.gone.clear()
        return self.call(run)

    def request(self, target: str, request: m.SyncRequest, limit: int = 16 << 20) -> bytes:
        """One sync request to `target` (a peer id); the answer frame."""

        async def run() -> bytes:
            with trio.fail_after(30):
                stream = await self.host.new_stream(
                    ID.from_base58(target), [TProtocol(m.sync_protocol(self.chain_id))]
                )
                try:
                    await stream.write(encode_varint_prefixed(request.encode()))
                    return await read_varint_prefixed_bytes_limited(stream, limit)
                finally:
                    await stream.close()

        return self.call(run)

    def flood(
        self, target: str, request: m.SyncRequest, times: int, parallel: int = 1
    ) -> tuple[int, str]:
        """Send `request` to `target` up to `times` times, `parallel` at a time, each as
        soon as the previous one on its lane is answered; (how many were answered, what
        ended it: "" if all were). Lanes make the rate independent of how slowly a loaded
        node answers."""

        async def run() -> tuple[int, str]:
            answered = 0
            ended = ""
            left = times
            peer = ID.from_base58(target)
            protocol = TProtocol(m.sync_protocol(self.chain_id))

            async def lane(cancel: trio.CancelScope) -> None:
                nonlocal answered, ended, left
                while left > 0:
                    left -= 1
                    try:
                        with trio.fail_after(10):
                            stream = await self.host.new_stream(peer, [protocol])
                            await stream.write(encode_varint_prefixed(request.encode()))
                            await read_varint_prefixed_bytes_limited(stream, 16 << 20)
                            await stream.close()
                    except (BaseLibp2pError, OSError, trio.TooSlowError) as exc:
                        ended = ended or f"{type(exc).__name__}: {exc}"
                        cancel.cancel()
                        return
                    answered += 1

            async with trio.open_nursery() as nursery:
                for _ in range(parallel):
                    nursery.start_soon(lane, nursery.cancel_scope)
            return answered, ended

        return self.call(run)

    def wait_subscribed(self, target: str, kind: str, timeout: float = 30.0) -> None:
        async def run() -> None:
            assert self.pubsub is not None
            topic = m.topic_names(self.chain_id)[kind]
            await self.pubsub.wait_for_subscription(ID.from_base58(target), topic, timeout)

        self.call(run)

    def publish(self, kind: str, data: bytes) -> None:
        async def run() -> None:
            assert self.pubsub is not None
            await self.pubsub.publish(m.topic_names(self.chain_id)[kind], data)

        self.call(run)

    def is_connected(self, target: str) -> bool:
        return bool(self.host.get_network().connections.get(ID.from_base58(target)))
