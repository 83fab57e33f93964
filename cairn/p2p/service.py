"""`P2PService`: the asyncio-facing handle on the p2p thread — start/stop, publish, range
requests, peer figures. Everything crosses through `TrioThread`; nothing here blocks the
core loop for more than a thread hand-off.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from prometheus_client import CollectorRegistry

from cairn.errors import CairnError, ConfigError
from cairn.p2p.api import ChainView, GossipHandlers, NodeSummary, P2PConfig, PeerSummary
from cairn.p2p.bridge import BridgeClosed, TrioThread
from cairn.p2p.host import Network, _fault_kind
from cairn.p2p.metrics import P2PMetrics

log = logging.getLogger("cairn.p2p")

START_TIMEOUT = 30.0


class P2PService:
    def __init__(
        self,
        config: P2PConfig,
        chain: ChainView,
        handlers: GossipHandlers,
        registry: CollectorRegistry,
    ) -> None:
        self.config = config
        self.thread = TrioThread()
        self.metrics = P2PMetrics(registry)
        self.network = Network(config, chain, handlers, self.thread, self.metrics)

    @property
    def peer_id(self) -> str:
        return self.network.me

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        started: asyncio.Future[None] = loop.create_future()

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
            await self.network.run(report)

        self.thread.start(main, loop)
        try:
            await asyncio.wait_for(started, START_TIMEOUT)
        except BaseException as exc:
            await self.stop()
            if isinstance(exc, CairnError):
                raise
            raise ConfigError(
                f"p2p could not listen on {self.config.listen_addr}:{self.config.port}: {exc}. "
                "Pick a free port with --p2p.port (0 picks one), or stop the process using it."
            ) from exc

    async def stop(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.thread.stop)

    # ------------------------------------------------------------ gossip out
    def publish(self, kind: str, data: bytes) -> None:
        """Queue a message for gossip; order is kept; never blocks the core loop."""
        try:
            self.thread.submit(self.network.enqueue, kind, data)
        except BridgeClosed:
            log.debug("p2p stopped: not gossiping a %s message", kind)

    # ------------------------------------------------------------ sync (BlockSource)
    def is_running(self) -> bool:
        return self.thread.running

    def best_head(self) -> int:
        return max((p.head for p in self.network.peer_snapshot), default=0)

    async def fetch_range(self, start: int, count: int) -> tuple[str, list[bytes]]:
        return await self.thread.call(self.network.fetch_range, start, count)

    def penalise(self, peer: str, error: CairnError) -> None:
        with contextlib.suppress(BridgeClosed):
            self.thread.submit(self.network.penalise_by_id, peer, _fault_kind(error), str(error))

    def count_synced(self, blocks: int) -> None:
        self.metrics.sync_blocks.inc(blocks)

    # ------------------------------------------------------------ figures (PeerSource)
    def peer_count(self) -> int:
        return len(self.network.peer_snapshot)

    def peers(self) -> tuple[PeerSummary, ...]:
        return self.network.peer_snapshot

    def node_info(self) -> NodeSummary:
        return self.network.node_snapshot
