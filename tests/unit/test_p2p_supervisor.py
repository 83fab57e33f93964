"""Issue 12: a p2p thread that dies anyway is restarted on the same port with back-off, a
bounded number of times; past that the service says "failed" and calls `on_failed`.

Two real `P2PService`s (py-libp2p on loopback, a real chain on LevelDB) in one asyncio
loop. The failure is injected the way an escaped error ends trio: a callback that raises
on the trio thread ends `trio.run` with TrioInternalError.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from prometheus_client import CollectorRegistry

from cairn.node.p2p_wiring import StoreChainView
from cairn.p2p.api import P2PConfig, P2PState
from cairn.p2p.service import P2PService, RestartPolicy
from tests.support.chain import open_chain
from tests.support.wait import wait_until_async


class Ignore:
    """GossipHandlers that relay nothing: these tests are about the thread, not gossip."""

    async def on_block(self, data: bytes) -> bool:
        return False

    async def on_txs(self, data: bytes) -> bool:
        return False

    async def on_consensus(self, data: bytes, origin: str) -> bool:
        return False

    def on_new_peer(self, peer_id: str) -> None:
        pass


class Injected(Exception):
    pass


def _crash(service: P2PService) -> None:
    def boom() -> None:
        raise Injected("injected failure on the p2p thread")

    service.thread.submit(boom)


def test_a_dead_p2p_thread_is_restarted_then_given_up(tmp_path: Path) -> None:
    async def scenario() -> None:
        failed: list[P2PState] = []
        with open_chain(tmp_path / "a") as chain_a, open_chain(tmp_path / "b") as chain_b:
            a = P2PService(
                P2PConfig(tmp_path / "a-p2p", listen_addr="127.0.0.1", port=0),
                StoreChainView(chain_a),
                Ignore(),
                CollectorRegistry(),
                on_failed=failed.append,
                restart_policy=RestartPolicy(max_restarts=2, first_delay=0.1, max_delay=0.2),
            )
            await a.start()
            port = a.network.listen_port
            b = P2PService(
                P2PConfig(
                    tmp_path / "b-p2p",
                    listen_addr="127.0.0.1",
                    port=0,
                    bootnodes=(f"/ip4/127.0.0.1/tcp/{port}/p2p/{a.peer_id}",),
                ),
                StoreChainView(chain_b),
                Ignore(),
                CollectorRegistry(),
            )
            await b.start()
            try:

                async def wait(
                    condition: Callable[[], Awaitable[bool]], within: float, what: str
                ) -> None:
                    try:
                        await wait_until_async(condition, within=within, message=what)
                    except TimeoutError as exc:  # say where the supervisor stood
                        raise AssertionError(f"{exc}; a: {a.state()}, b: {b.state()}") from exc

                async def peered() -> bool:
                    return a.peer_count() == 1 and b.peer_count() == 1

                await wait(peered, 30, "a and b peered")
                assert a.state().status == "running" and a.state().restarts == 0

                async def crash_and_restart() -> None:
                    before = a.thread
                    _crash(a)

                    async def restarted() -> bool:
                        return a.thread is not before and a.state().status == "running"

                    await wait(restarted, 15, "a restarted")

                await crash_and_restart()
                state = a.state()
                assert state.restarts == 1
                assert "Injected" in state.reason or "TrioInternalError" in state.reason
                assert a.network.listen_port == port  # same port: bootnode lists still work
                # The restarted p2p is a working p2p: b reconnects and the handshake passes.
                await wait(peered, 40, "a and b peered again")
                assert a.peers()[0].status_at > 0

                # Two more failures exhaust max_restarts=2: failed, and on_failed is told.
                await crash_and_restart()
                second = a.thread
                _crash(a)

                async def gave_up() -> bool:
                    return a.state().status == "failed" and a.thread is second

                await wait(gave_up, 15, "a to give up")
                assert failed == [a.state()]
                assert a.state().restarts == 3
                assert not a.thread.running
                assert a.peer_count() == 0
            finally:
                await b.stop()
                await a.stop()
            assert a.state().status == "failed"  # stop() keeps the failure visible
            assert b.state().status == "stopped"

    asyncio.run(scenario())
