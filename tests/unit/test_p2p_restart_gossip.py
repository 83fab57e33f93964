"""A node restarted with the same node key and port is heard again on gossip at once.

Three real `P2PService`s (py-libp2p on loopback, a real chain on LevelDB each) in one asyncio
loop, every one a bootnode of the others, as validators are. C publishes on the consensus
topic faster than one message a second (validators do: votes, proposals, resends), stops,
and starts again with the same node key and port. What it publishes after the restart must
reach A and B within a few gossipsub heartbeats, as theirs reach it.

Two py-libp2p 0.8.1 faults, both corrected in `cairn.p2p.stack` (docs/p2p.md):
  - a host numbers its messages from `int(time.time())` (seconds) and a message is named
    by (publisher, number): the restarted C numbered its messages from where its first life
    had already been, and A and B dropped them as already seen (31 s of silence here with
    120 messages before the restart; minutes for a validator). `GuardedPubsub` starts the
    numbers at `time.time_ns()`, as go-libp2p does;
  - stopping the host left its TCP connections open until the garbage collector closed
    them: A and B never saw C leave, kept the dead pubsub stream, and never learned that
    the restarted C subscribes. `hang_up_all` closes them when p2p stops.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

from prometheus_client import CollectorRegistry

from cairn.node.p2p_wiring import StoreChainView
from cairn.p2p.api import P2PConfig
from cairn.p2p.identity import NODEKEY_FILE, peer_id_of, write_nodekey
from cairn.p2p.service import P2PService
from tests.support.chain import open_chain
from tests.support.proc import free_port
from tests.support.wait import wait_until_async

NAMES = ("a", "b", "c")
# More than one message a second during C's first life: enough that a restart a few seconds
# later would number its messages inside the range it already used.
FIRST_LIFE_MESSAGES = 120
BURST = 10
# Sent after the restart, one every PROBE_INTERVAL s, until every peer heard one.
PROBE_INTERVAL = 0.25
# Heartbeats are 1 s; the peers meet again within one discovery round (2 s).
HEARD_WITHIN = 5.0
# Stopping hangs up on every peer before the p2p thread ends.
GONE_WITHIN = 5.0


class Heard:
    """GossipHandlers that keep every consensus message they are handed (and relay it)."""

    def __init__(self) -> None:
        self.consensus: dict[bytes, str] = {}

    async def on_block(self, data: bytes) -> bool:
        return False

    async def on_txs(self, data: bytes) -> bool:
        return False

    async def on_consensus(self, data: bytes, origin: str) -> bool:
        self.consensus.setdefault(data, origin)
        return True

    def on_new_peer(self, peer_id: str) -> None:
        pass

    def count(self, prefix: bytes) -> int:
        return sum(1 for data in self.consensus if data.startswith(prefix))


class Net:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.ports = {name: free_port() for name in NAMES}
        self.ids: dict[str, str] = {}
        for name in NAMES:
            seed = os.urandom(32)
            write_nodekey(root / f"{name}-p2p" / NODEKEY_FILE, seed)
            self.ids[name] = peer_id_of(seed)
        self.services: dict[str, P2PService] = {}
        self.heard: dict[str, Heard] = {}
        self._stack = AsyncExitStack()

    def config(self, name: str) -> P2PConfig:
        others = tuple(
            f"/ip4/127.0.0.1/tcp/{self.ports[o]}/p2p/{self.ids[o]}" for o in NAMES if o != name
        )
        return P2PConfig(
            self.root / f"{name}-p2p",
            listen_addr="127.0.0.1",
            port=self.ports[name],
            bootnodes=others,
        )

    async def start(self, name: str) -> None:
        chain = self._stack.enter_context(open_chain(self.root / f"{name}-{len(self.heard)}"))
        heard = Heard()
        service = P2PService(self.config(name), StoreChainView(chain), heard, CollectorRegistry())
        await service.start()
        self._stack.push_async_callback(service.stop)
        self.services[name], self.heard[name] = service, heard

    async def wait_meshed(self, what: str) -> None:
        async def everyone_peered() -> bool:
            return all(s.peer_count() == len(NAMES) - 1 for s in self.services.values())

        await wait_until_async(everyone_peered, within=40, message=what)

    async def close(self) -> None:
        await self._stack.aclose()


@asynccontextmanager
async def _net(root: Path) -> AsyncIterator[Net]:
    net = Net(root)
    try:
        yield net
    finally:
        await net.close()


async def _heard_within(net: Net, sender: str, tag: bytes, within: float) -> dict[str, float]:
    """`sender` publishes `tag`-prefixed messages every PROBE_INTERVAL s; returns, for each
    other node that heard one within `within` s, how long that took."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    receivers = [n for n in NAMES if n != sender]
    heard_at: dict[str, float] = {}
    index = 0
    while loop.time() - start < within and len(heard_at) < len(receivers):
        net.services[sender].publish("consensus", tag + b"-%d" % index)
        index += 1
        deadline = loop.time() + PROBE_INTERVAL
        while loop.time() < deadline and len(heard_at) < len(receivers):
            for name in receivers:
                if name not in heard_at and net.heard[name].count(tag) > 0:
                    heard_at[name] = loop.time() - start
            await asyncio.sleep(0.02)  # polling the receivers, not waiting on a peer
    return heard_at


def test_a_restarted_node_is_heard_on_gossip_again(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with _net(tmp_path) as net:
            for name in NAMES:
                await net.start(name)
            await net.wait_meshed("a, b and c to peer")
            # The mesh carries C's messages: A and B hear one within a few heartbeats.
            first = await _heard_within(net, "c", b"warm-up", within=20)
            assert set(first) == {"a", "b"}, f"c's gossip before any restart: {first}"

            # C's first life: many messages, all heard by both peers. In bursts of at most
            # BURST: py-libp2p drops what overflows a peer's outbound queue (32 RPCs).
            for sent in range(BURST, FIRST_LIFE_MESSAGES + 1, BURST):
                for i in range(sent - BURST, sent):
                    net.services["c"].publish("consensus", b"first-life-%d" % i)

                async def all_heard(sent: int = sent) -> bool:
                    return all(net.heard[n].count(b"first-life-") == sent for n in "ab")

                await wait_until_async(all_heard, within=30, message="a and b to hear c")

            await net.services["c"].stop()

            async def c_gone() -> bool:
                return all(net.services[n].peer_count() == 1 for n in "ab")

            # A stopped p2p hangs up: its peers see it leave (as after a kill -9), instead
            # of keeping a connection nobody reads until the garbage collector closes it.
            await wait_until_async(c_gone, within=GONE_WITHIN, message="a and b to see c go")
            await net.start("c")  # the same node key and port: the same peer id and address
            await net.wait_meshed("a and b to reconnect to the restarted c")

            # Their gossip reaches the restarted C ...
            to_c = await _heard_within(net, "a", b"from-a", within=HEARD_WITHIN)
            # ... and C's reaches them.
            from_c = await _heard_within(net, "c", b"after-restart", within=HEARD_WITHIN)
            assert "c" in to_c, f"the restarted c heard nothing from a within {HEARD_WITHIN}s"
            assert set(from_c) == {"a", "b"}, (
                f"within {HEARD_WITHIN}s of meeting again only {sorted(from_c)} heard the "
                f"restarted c (seconds: {from_c}); c heard a after {to_c['c']:.2f}s"
            )
            origins = {o for d, o in net.heard["a"].consensus.items() if d.startswith(b"after")}
            assert origins == {net.ids["c"]}

    asyncio.run(scenario())
