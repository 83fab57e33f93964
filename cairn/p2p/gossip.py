"""Gossip: the `/cairn/<chainid>/{txs,blocks,consensus}/1` gossipsub topics, each with a
validator that hands the message to the core before gossipsub relays it (a `CairnError`
verdict costs the forwarder points), and the publishing outbox (FIFO, one yield after every
message: an unyielding publish loop lost most messages when measured, DESIGN.md).

Test-only: with CAIRN_TEST_P2P_NO_GOSSIP=1 in its environment a node subscribes to no
topic, so nothing is pushed to it (it can still publish); a test uses it to show that a
follower reaches new blocks by status and range sync alone. Read here and nowhere else.

Never decodes a message itself: the core judges them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Coroutine
from typing import Any

import trio
import trio.lowlevel
from libp2p.peer.id import ID

from cairn.errors import CairnError
from cairn.p2p.api import GossipHandlers
from cairn.p2p.bridge import BridgeClosed, TrioThread
from cairn.p2p.peers import PeerLinks, fault_kind
from cairn.p2p.stack import PEER_ERRORS, describe

log = logging.getLogger("cairn.p2p")

# py-libp2p splits or drops outbound RPCs over 1 MiB (its per-peer queue limit), so bigger
# blocks are not gossiped: peers learn the new head from status and fetch it by range.
MAX_GOSSIP_MESSAGE_BYTES = 1_000_000
OUTBOX_SIZE = 4096
TEST_NO_GOSSIP_ENV = "CAIRN_TEST_P2P_NO_GOSSIP"

Outbox = trio.MemoryReceiveChannel[tuple[str, bytes]]
Handler = Callable[..., Coroutine[Any, Any, bool]]  # (data) or, for consensus, (data, origin)


class Gossip:
    def __init__(
        self,
        topics: dict[str, str],
        handlers: GossipHandlers,
        thread: TrioThread,
        links: PeerLinks,
    ) -> None:
        self.topics = topics
        self._handlers = handlers
        self._thread = thread
        self._links = links
        self._me = links.host.get_id()

    async def subscribe(self) -> None:
        """Subscribe to every topic with its validator, and keep the subscriptions read."""
        if os.environ.get(TEST_NO_GOSSIP_ENV) == "1":
            log.warning("%s=1: not subscribing to gossip (test-only)", TEST_NO_GOSSIP_ENV)
            return
        validators: dict[str, Handler] = {
            "blocks": self._handlers.on_block,
            "txs": self._handlers.on_txs,
            "consensus": self._handlers.on_consensus,
        }
        pubsub = self._links.pubsub
        for kind, topic in self.topics.items():
            handler = validators[kind]

            async def validate(
                forwarder: ID, msg: Any, kind: str = kind, handler: Handler = handler
            ) -> bool:
                data = bytes(msg.data)
                if kind == "consensus":  # the core may prove the author faulty: tell it who
                    return await self._validate(kind, forwarder, data, handler, _origin(msg))
                return await self._validate(kind, forwarder, data, handler)

            pubsub.set_topic_validator(topic, validate, True)
            subscription = await pubsub.subscribe(topic)
            self._links.spawn(self._drain, subscription)

    async def _drain(self, subscription: Any) -> None:
        # The validators did the work; the subscription must still be read or it fills up.
        while True:
            await subscription.get()

    async def _validate(
        self, kind: str, forwarder: ID, data: bytes, handler: Handler, *extra: str
    ) -> bool:
        if forwarder == self._me:
            return True  # our own publish: the core made it
        table = self._links.table
        if table.scores.is_banned(forwarder.to_base58()):
            return False
        if forwarder not in table.peers:
            return False  # no handshake yet: not judged, not relayed, not penalised
        table.metrics.gossip_received.labels(kind).inc()
        try:
            accepted = await self._thread.call_core(handler, data, *extra)
        except BridgeClosed:
            return False
        except CairnError as exc:
            self._links.penalise(forwarder, fault_kind(exc), f"{kind} gossip: {exc}", kind)
            return False
        except Exception:  # a bug in the core's handler, not the peer's fault: drop, log
            log.exception("the %s gossip handler failed", kind)
            return False
        return bool(accepted)

    async def publisher(self, outbox: Outbox) -> None:
        table = self._links.table
        async for topic, data in outbox:
            if len(data) > MAX_GOSSIP_MESSAGE_BYTES:
                log.info("not gossiping a %d-byte message; peers fetch it by sync", len(data))
                continue
            try:
                await self._links.pubsub.publish(topic, data)
                table.stats["published"] += 1
            except PEER_ERRORS as exc:
                log.warning("gossip publish on %s failed: %s", topic, describe(exc))
            # Yield between messages: a publish loop that never yields starves the
            # per-peer writers and py-libp2p drops the overflow (measured, DESIGN.md).
            await trio.lowlevel.checkpoint()


def _origin(msg: Any) -> str:
    """The base58 id of the peer that published `msg` (strict signing: it signed it)."""
    try:
        return ID(bytes(msg.from_id)).to_base58()
    except (ValueError, TypeError):
        return ""
