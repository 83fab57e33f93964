"""`P2PService`: the asyncio-facing handle on the p2p thread — start/stop, publish, range
requests, peer figures — and its supervisor.

The p2p thread is supervised: if it ends without being asked to (an error that escaped
every stream's containment), it is rebuilt and restarted on the same port with a growing
delay, at most `RestartPolicy.max_restarts` times within `window_seconds`; past that the
state is `failed` and `on_failed` is called, whose default stops the node (SIGTERM to our
own process) rather than leave it serving RPC with no p2p. `state()` tells health endpoints
which of running / restarting / failed / stopped holds, since when and why.

Everything crosses to the p2p thread through `TrioThread`; nothing here blocks the core
loop for more than a thread hand-off, and nothing here imports trio.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from prometheus_client import CollectorRegistry

from cairn.errors import CairnError, ConfigError
from cairn.p2p.api import (
    ChainView,
    GossipHandlers,
    NodeSummary,
    P2PConfig,
    P2PState,
    P2PStatus,
    PeerSummary,
)
from cairn.p2p.banlist import BANS_FILE, load_bans, save_bans
from cairn.p2p.bridge import BridgeClosed, TrioThread
from cairn.p2p.metrics import P2PMetrics
from cairn.p2p.network import Network
from cairn.p2p.peers import fault_kind
from cairn.p2p.scoring import PeerScores

log = logging.getLogger("cairn.p2p")

START_TIMEOUT = 30.0


@dataclass(frozen=True)
class RestartPolicy:
    max_restarts: int = 5
    window_seconds: float = 600.0
    first_delay: float = 1.0
    max_delay: float = 30.0


def _stop_own_process(state: P2PState) -> None:
    log.critical(
        "p2p failed for good (%s); stopping the node rather than serve with no p2p",
        state.reason,
    )
    os.kill(os.getpid(), signal.SIGTERM)


class P2PService:
    def __init__(
        self,
        config: P2PConfig,
        chain: ChainView,
        handlers: GossipHandlers,
        registry: CollectorRegistry,
        *,
        on_failed: Callable[[P2PState], None] | None = None,
        restart_policy: RestartPolicy = RestartPolicy(),
    ) -> None:
        self.config = config
        self._chain = chain
        self._handlers = handlers
        self._on_failed = on_failed or _stop_own_process
        self._policy = restart_policy
        self.metrics = P2PMetrics(registry)
        # Kept across p2p restarts, and in the datadir across process restarts: a ban
        # outlives a crash.
        self.scores = PeerScores(on_ban=self._save_bans)
        restored = self.scores.restore_bans(load_bans(config.datadir), time.time())
        if restored:
            log.info("restored %d running bans from %s", restored, config.datadir / BANS_FILE)
        self.thread = TrioThread()
        self.network = Network(config, chain, handlers, self.thread, self.metrics, self.scores)
        self._state = P2PState("stopped", time.time())
        self._stopping = False
        self._crashes: list[float] = []
        self._restart_task: asyncio.Task[None] | None = None

    def _save_bans(self) -> None:
        try:
            save_bans(self.config.datadir, self.scores.running_bans(time.time()))
        except OSError as exc:
            log.warning("could not save the bans to %s: %s", self.config.datadir, exc)

    @property
    def peer_id(self) -> str:
        return self.network.me

    def state(self) -> P2PState:
        """running / restarting / failed / stopped, since when and why (for health)."""
        return self._state

    def _set_state(self, status: P2PStatus, reason: str = "") -> None:
        self._state = P2PState(status, time.time(), reason, len(self._crashes))

    async def start(self) -> None:
        self._stopping = False
        await self._start_thread()
        self._set_state("running")

    async def _start_thread(self) -> None:
        loop = asyncio.get_running_loop()
        started: asyncio.Future[None] = loop.create_future()
        thread, network = self.thread, self.network

        def settle(error: BaseException | None) -> None:
            if started.done():
                return
            if error is None:
                started.set_result(None)
            else:
                started.set_exception(error)

        def report(error: BaseException | None) -> None:
            loop.call_soon_threadsafe(settle, error)

        async def main() -> None:
            await network.run(report)

        def exited(error: BaseException | None) -> None:
            self._thread_exited(thread, error)

        thread.start(main, loop, exited)
        try:
            await asyncio.wait_for(started, START_TIMEOUT)
        except BaseException as exc:
            await loop.run_in_executor(None, thread.stop)
            if isinstance(exc, CairnError):
                raise
            raise ConfigError(
                f"p2p could not listen on {self.config.listen_addr}:{self.config.port}: {exc}. "
                "Pick a free port with --p2p.port (0 picks one), or stop the process using it."
            ) from exc

    async def stop(self) -> None:
        self._stopping = True
        if self._restart_task is not None:
            self._restart_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._restart_task
            self._restart_task = None
        await asyncio.get_running_loop().run_in_executor(None, self.thread.stop)
        if self._state.status != "failed":
            self._set_state("stopped")

    # ------------------------------------------------------------ supervision
    def _thread_exited(self, thread: TrioThread, error: BaseException | None) -> None:
        """On the core loop: the p2p thread ended. Unless we stopped it, restart it."""
        if self._stopping or thread is not self.thread or self._state.status != "running":
            return
        reason = f"{type(error).__name__}: {error}" if error is not None else "it returned"
        self._crash(f"the p2p thread ended: {reason}")

    def _crash(self, reason: str) -> None:
        self.network.forget_peers()  # the thread is gone: no peer is connected any more
        now = time.monotonic()
        self._crashes = [t for t in self._crashes if now - t < self._policy.window_seconds]
        self._crashes.append(now)
        if len(self._crashes) > self._policy.max_restarts:
            self._set_state("failed", reason)
            log.error(
                "p2p failed %d times within %.0fs; not restarting it: %s",
                len(self._crashes),
                self._policy.window_seconds,
                reason,
            )
            self._on_failed(self._state)
            return
        delay = min(
            self._policy.first_delay * 2 ** (len(self._crashes) - 1), self._policy.max_delay
        )
        self._set_state("restarting", reason)
        log.error("%s; restarting p2p in %.0fs", reason, delay)
        self._restart_task = asyncio.get_running_loop().create_task(self._restart(delay))

    async def _restart(self, delay: float) -> None:
        await asyncio.sleep(delay)  # back-off between restarts, not coordination with a peer
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.thread.stop)  # joins the ended thread
        config = self.config
        if config.port == 0 and self.network.listen_port:
            # Keep the port we had: peers and bootnode lists know us by it.
            config = replace(config, port=self.network.listen_port)
        self.thread = TrioThread()
        self.network = Network(
            config, self._chain, self._handlers, self.thread, self.metrics, self.scores
        )
        try:
            await self._start_thread()
        except CairnError as exc:
            self._restart_task = None
            self._crash(f"p2p restart failed: {exc}")  # counts as another failure
            return
        self._restart_task = None
        self._set_state("running", f"restarted after: {self._state.reason}")
        log.info(
            "p2p restarted (%d restarts in the last %.0fs)",
            len(self._crashes),
            self._policy.window_seconds,
        )

    # ------------------------------------------------------------ gossip out
    def publish(self, kind: str, data: bytes) -> None:
        """Queue a message for gossip; order is kept; never blocks the core loop."""
        try:
            self.thread.submit(self.network.enqueue, kind, data)
        except BridgeClosed:
            log.debug("p2p not running: not gossiping a %s message", kind)

    # ------------------------------------------------------------ sync (BlockSource)
    def is_running(self) -> bool:
        """The p2p thread is serving (False while it restarts, once failed, or stopped)."""
        return self._state.status == "running" and self.thread.running

    def best_head(self) -> int:
        """The highest head a connected peer announced (status handshake or refresh)."""
        return max((p.head for p in self.network.peer_snapshot), default=0)

    async def fetch_range(self, start: int, count: int) -> tuple[str, list[bytes]]:
        return await self.thread.call(self.network.fetch_range, start, count)

    def penalise(self, peer: str, error: CairnError) -> None:
        with contextlib.suppress(BridgeClosed):
            self.thread.submit(self.network.penalise_by_id, peer, fault_kind(error), str(error))

    def count_synced(self, blocks: int) -> None:
        self.metrics.sync_blocks.inc(blocks)

    # ------------------------------------------------------------ figures (PeerSource)
    def peer_count(self) -> int:
        return len(self.network.peer_snapshot)

    def peers(self) -> tuple[PeerSummary, ...]:
        """Peers past the handshake, each with its announced head and when it said so."""
        return self.network.peer_snapshot

    def node_info(self) -> NodeSummary:
        return self.network.node_snapshot
