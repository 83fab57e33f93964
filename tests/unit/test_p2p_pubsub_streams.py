"""Issue 16: one honest node's pubsub stream must never carry interleaved RPCs.

Two real py-libp2p hosts built by `cairn.p2p.stack` (TCP + Noise + yamux on loopback, our
gossipsub settings). A holds large messages in its message cache when B connects and
subscribes, so A replays them to B from one task per topic while its per-peer sending loop
writes too; py-libp2p 0.8.1 let those writers interleave yamux frames on the one stream,
and B failed with `DecodeError: Error parsing message with type 'pubsub.pb.RPC'`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import multiaddr
import pytest
import trio
from libp2p.abc import IHost
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.pubsub.gossipsub import GossipSub
from libp2p.tools.anyio_service import background_trio_service

from cairn.p2p.stack import GuardedPubsub, build_gossip, build_host

TOPICS = ("/cairn/31337/txs/1", "/cairn/31337/blocks/1", "/cairn/31337/consensus/1")
# Over yamux's 64 KiB frame: each message is written as several frames.
MESSAGE_BYTES = 100_000
PER_TOPIC = 6


def _payload(topic: int, index: int) -> bytes:
    head = bytes([topic, index])
    return head + bytes([(topic * 31 + index) % 251]) * (MESSAGE_BYTES - 2)


@asynccontextmanager
async def _node(faults: list[str]) -> AsyncIterator[tuple[IHost, GuardedPubsub, GossipSub]]:
    """A host with our gossip stack; any pubsub stream it drops as broken lands in `faults`."""
    listen = multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")
    host = build_host(create_new_key_pair(), listen, max_peers=8)
    router, pubsub = build_gossip(
        host, TOPICS, lambda peer, reason: faults.append(f"{peer}: {reason}")
    )
    async with (
        host.run([listen]),
        background_trio_service(pubsub),
        background_trio_service(router),
    ):
        await pubsub.wait_until_ready()
        yield host, pubsub, router


async def _connect(dialer: IHost, target: IHost) -> None:
    addr = f"{target.get_addrs()[0]}"
    if "/p2p/" not in addr:
        addr += f"/p2p/{target.get_id().to_base58()}"
    await dialer.connect(info_from_p2p_addr(multiaddr.Multiaddr(addr)))


async def _replay_scenario(publish_while_connecting: int) -> tuple[int, int, list[str]]:
    """A publishes PER_TOPIC large messages per topic, then B connects and subscribes (and
    A keeps publishing `publish_while_connecting` more per topic). Returns (expected,
    received, problems)."""
    problems: list[str] = []
    received: set[bytes] = set()
    all_received = trio.Event()
    async with _node(problems) as (a, pub_a, _), _node(problems) as (b, pub_b, _):
        for topic in TOPICS:
            await pub_a.subscribe(topic)
        for t, topic in enumerate(TOPICS):
            for i in range(PER_TOPIC):
                await pub_a.publish(topic, _payload(t, i))
        subscriptions = [await pub_b.subscribe(topic) for topic in TOPICS]
        expected = len(TOPICS) * (PER_TOPIC + publish_while_connecting)

        async def drain(index: int) -> None:
            while True:
                msg = await subscriptions[index].get()
                data = bytes(msg.data)
                if data != _payload(data[0], data[1]):
                    problems.append(f"corrupt message on {TOPICS[index]}")
                received.add(data[:2])
                if len(received) == expected:
                    all_received.set()

        async def publish_more() -> None:
            for i in range(PER_TOPIC, PER_TOPIC + publish_while_connecting):
                for t, topic in enumerate(TOPICS):
                    await pub_a.publish(topic, _payload(t, i))
                await trio.lowlevel.checkpoint()

        with trio.move_on_after(30):
            async with trio.open_nursery() as nursery:
                for index in range(len(TOPICS)):
                    nursery.start_soon(drain, index)
                await _connect(b, a)
                await pub_b.wait_for_peer(a.get_id(), timeout=10)
                if publish_while_connecting:
                    for topic in TOPICS:
                        await pub_a.wait_for_subscription(b.get_id(), topic, timeout=10)
                    nursery.start_soon(publish_more)
                await all_received.wait()
                nursery.cancel_scope.cancel()
        # The streams between A and B are still the ones both sides registered: none was
        # reset for garbage.
        if a.get_id() not in pub_b.peers or b.get_id() not in pub_a.peers:
            problems.append("the pubsub stream between A and B was torn down")
    return expected, len(received), problems


@pytest.mark.parametrize("publish_while_connecting", [0, 4], ids=["replay", "replay+publish"])
def test_message_cache_replay_to_a_new_peer_arrives_whole(publish_while_connecting: int) -> None:
    expected, received, problems = trio.run(_replay_scenario, publish_while_connecting)
    assert problems == []
    assert received == expected


async def _churn_scenario() -> tuple[int, list[str]]:
    """B unsubscribes and resubscribes two topics while A publishes large messages on all
    three: every resubscription makes A replay its cache again, concurrently with new
    publishes. Returns (whole messages B read on the steady topic, problems)."""
    problems: list[str] = []
    steady_received = 0
    async with _node(problems) as (a, pub_a, _), _node(problems) as (b, pub_b, _):
        for topic in TOPICS:
            await pub_a.subscribe(topic)
        steady = await pub_b.subscribe(TOPICS[2])
        for topic in TOPICS[:2]:
            await pub_b.subscribe(topic)
        await _connect(b, a)
        await pub_a.wait_for_peer(b.get_id(), timeout=10)
        for topic in TOPICS:
            await pub_a.wait_for_subscription(b.get_id(), topic, timeout=10)
        stop = trio.Event()

        async def publish() -> None:
            i = 0
            while not stop.is_set():
                for t, topic in enumerate(TOPICS):
                    await pub_a.publish(topic, _payload(t, i % 250))
                i += 1
                await trio.sleep(0.02)

        async def churn() -> None:
            for _ in range(6):
                for topic in TOPICS[:2]:
                    await pub_b.unsubscribe(topic)
                    await pub_b.subscribe(topic)
                await trio.sleep(0.3)
            stop.set()

        async def read_steady() -> None:
            nonlocal steady_received
            while True:
                data = bytes((await steady.get()).data)
                if data != _payload(data[0], data[1]):
                    problems.append("corrupt message on the steady topic")
                steady_received += 1

        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(read_steady)
                nursery.start_soon(publish)
                await churn()
                nursery.cancel_scope.cancel()
        if a.get_id() not in pub_b.peers or b.get_id() not in pub_a.peers:
            problems.append("the pubsub stream between A and B was torn down")
    return steady_received, problems


def test_subscription_churn_during_large_publishes_keeps_the_stream_whole() -> None:
    steady_received, problems = trio.run(_churn_scenario)
    assert problems == []
    assert steady_received > 0
