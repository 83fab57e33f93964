"""`BlockSync`: catching up by range requests, beside the follower (as CometBFT keeps
blocksync beside consensus).

Whenever any peer announces a head above ours (status exchange), or gossip brought a block
further ahead, it fetches the missing blocks in ranges from the network and hands each to
the same `BlockApplier.import_block` gossip uses. An answer must hold the blocks asked for,
in order, from the first one asked: anything else is the answering peer's fault, it is
penalised, and the transport asks peers in good standing first from then on. It also
answers, truthfully, whether this node is in sync: never "in sync" while a connected peer
announces a higher head, nor while the p2p layer is down.

The transport is a `BlockSource` Protocol; this module never imports p2p.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, Protocol

from cairn.chain.apply import BlockApplier
from cairn.chain.bundle import BlockBundle
from cairn.chain.events import BlockCommitted
from cairn.consensus.follower import Follower
from cairn.errors import CairnError, InvalidBlock

log = logging.getLogger("cairn.sync")

RANGE_SIZE = 64
PROGRESS_EVERY_SECONDS = 2.0
# With nothing announced, look at the peers' heads this often anyway.
POLL_INTERVAL_SECONDS = 1.0

SyncStatus = dict[str, Any] | bool


class BlockSource(Protocol):
    """The network, as block sync sees it."""

    def best_head(self) -> int:
        """The highest head a connected peer announced (0 without peers)."""
        ...

    def is_running(self) -> bool:
        """The transport is up (a dead p2p layer can bring nothing)."""
        ...

    async def fetch_range(self, start: int, count: int) -> tuple[str, list[bytes]]: ...

    def penalise(self, peer: str, error: CairnError) -> None: ...

    def count_synced(self, blocks: int) -> None: ...


class EmptyRange(CairnError):
    """A peer that claims a head answered a range request with no blocks."""


class BlockSync:
    def __init__(self, applier: BlockApplier, follower: Follower, source: BlockSource) -> None:
        self._applier = applier
        self._chain = applier.chain
        self._follower = follower
        self._source = source
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._sync_start: int | None = None
        self._sync_target = 0
        self.synced_blocks = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="blocksync")

    async def stop(self) -> None:
        self._stopping = True
        self._follower.wake_sync.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    # ------------------------------------------------------------ status
    def target(self) -> int:
        """The highest block this node knows exists (a peer's head, or a gossiped block)."""
        return max(self._source.best_head(), self._follower.highest_seen)

    def syncing(self) -> SyncStatus:
        """eth_syncing's answer: False only when no known peer or block is ahead of our head
        and the transport is up; otherwise the range (still) to sync."""
        head = self._chain.store.head.number
        target = max(self.target(), self._sync_target)
        behind = target > head or not self._source.is_running()
        if self._sync_start is None and not behind:
            return False
        start = self._sync_start if self._sync_start is not None else head
        return {
            "startingBlock": hex(start),
            "currentBlock": hex(head),
            "highestBlock": hex(max(target, head)),
        }

    # ------------------------------------------------------------ loop
    async def _run(self) -> None:
        wake = self._follower.wake_sync
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), POLL_INTERVAL_SECONDS)
            wake.clear()
            try:
                await self._follower.import_parked()
                if self.target() > self._chain.store.head.number:
                    await self._sync_to(self.target())
                    await self._follower.import_parked()
            except asyncio.CancelledError:
                raise
            except CairnError as exc:
                log.info("sync round ended: %s; retrying", exc)

    async def _sync_to(self, target: int) -> None:
        source = self._source
        start_head = self._chain.store.head.number
        started = last_report = time.monotonic()
        imported_blocks = imported_txs = 0
        self._sync_start, self._sync_target = start_head, target
        log.info(
            "sync: head #%d, best peer #%d: syncing %d blocks",
            start_head,
            target,
            target - start_head,
        )
        next_fetch: asyncio.Task[tuple[str, list[bytes]]] | None = None
        next_start = 0
        try:
            while not self._stopping:
                head = self._chain.store.head.number
                target = max(target, self.target())
                self._sync_target = target
                if head >= target:
                    break
                if next_fetch is not None:
                    fetch, start = next_fetch, next_start
                else:
                    start = head + 1
                    fetch = asyncio.ensure_future(
                        source.fetch_range(start, min(RANGE_SIZE, target - head))
                    )
                next_fetch = None
                peer, raws = await fetch
                if not raws:
                    error = EmptyRange(f"peer answered no blocks from #{start}")
                    source.penalise(peer, error)
                    raise error
                expected_next = head + 1 + len(raws)
                if expected_next <= target:
                    # Overlap the next request with re-executing this batch.
                    next_start = expected_next
                    next_fetch = asyncio.ensure_future(
                        source.fetch_range(
                            expected_next, min(RANGE_SIZE, target - expected_next + 1)
                        )
                    )
                count, txs = await self._import_range(peer, start, raws)
                imported_blocks += count
                imported_txs += txs
                source.count_synced(count)
                self.synced_blocks += count
                if count < len(raws):
                    return
                now = time.monotonic()
                if now - last_report >= PROGRESS_EVERY_SECONDS:
                    last_report = now
                    self._report(imported_blocks, imported_txs, started, target)
        finally:
            if next_fetch is not None:
                next_fetch.cancel()
            self._sync_start = None
            if imported_blocks:
                self._report(imported_blocks, imported_txs, started, target, done=True)

    async def _import_range(self, peer: str, start: int, raws: list[bytes]) -> tuple[int, int]:
        """Import a range answer for blocks `start`..; a block out of place (the answer
        must hold `start`, `start + 1`, ... in order: a peer replaying blocks we have
        would keep us asking it forever) is the peer's fault and ends the range."""
        count = txs = 0
        for i, raw in enumerate(raws):
            try:
                bundle = BlockBundle.decode(raw)
                header = self._follower.verify(bundle)
                if header.block_number != start + i:
                    raise InvalidBlock(
                        header.block_number,
                        header.hash,
                        f"range answer out of order: expected #{start + i}",
                    )
                event: BlockCommitted | None = await self._applier.import_block(
                    bundle.to_block(self._chain.fork, header), bundle.commit
                )
            except CairnError as exc:
                log.warning("sync: block from peer %s rejected: %s", peer, exc)
                self._source.penalise(peer, exc)
                return count, txs
            count += 1
            if event is not None:
                txs += len(bundle.transactions)
        return count, txs

    def _report(
        self, blocks: int, txs: int, started: float, target: int, *, done: bool = False
    ) -> None:
        elapsed = max(time.monotonic() - started, 1e-6)
        head = self._chain.store.head.number
        rate = blocks / elapsed
        if done:
            log.info(
                "sync: done at #%d: %d blocks, %d txs in %.1fs (%.0f blocks/s, %.0f tx/s)",
                head,
                blocks,
                txs,
                elapsed,
                rate,
                txs / elapsed,
            )
        else:
            eta = (target - head) / rate if rate > 0 else float("inf")
            log.info(
                "sync: #%d of #%d, %.0f blocks/s, %.0f tx/s, ETA %.0fs",
                head,
                target,
                rate,
                txs / elapsed,
                eta,
            )
