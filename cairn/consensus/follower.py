"""`Follower`: how a node without the producer key keeps up with the chain.

Every block, whether it arrives by gossip or by range sync, is checked the same way: the
commit must prove it against the genesis producer set (`validate_commit`), then the block is
re-executed (`BlockExecutor.import_block`) and committed through `Chain.commit` — the same
atomic path the sequencer uses — and `BlockCommitted` is published. Invalid data raises from
the error tree so the transport can penalise whoever sent it; it never reaches storage.

The transport is a `BlockSource` Protocol; this module never imports p2p.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from concurrent.futures import Executor
from typing import Any, Protocol

from eth.abc import BlockAPI, BlockHeaderAPI

from cairn.consensus.commit import Commit, validate_commit
from cairn.errors import CairnError, InvalidBlock
from cairn.execution.chain import BlockCommitted, Chain
from cairn.execution.events import ChainEvents
from cairn.execution.wire import BlockBundle
from cairn.txpool.pool import TxPool

log = logging.getLogger("cairn.follower")

RANGE_SIZE = 64
# A gossiped block one ahead of a block still in flight waits this long for its parent
# before it is parked for the sync loop (gossip validators run concurrently).
PARENT_WAIT_SECONDS = 2.0
MAX_PENDING = 1024
PROGRESS_EVERY_SECONDS = 2.0


class BlockSource(Protocol):
    """The network, as the follower sees it."""

    def best_head(self) -> int: ...

    async def fetch_range(self, start: int, count: int) -> tuple[str, list[bytes]]: ...

    def penalise(self, peer: str, error: CairnError) -> None: ...

    def count_synced(self, blocks: int) -> None: ...


class Follower:
    def __init__(
        self,
        chain: Chain,
        pool: TxPool,
        events: ChainEvents,
        writer: Executor,
        *,
        importing: bool,
    ) -> None:
        self._chain = chain
        self._pool = pool
        self._events = events
        self._writer = writer
        self.importing = importing
        consensus = chain.genesis.consensus
        self._producers = frozenset(consensus.producers)
        self._threshold = consensus.threshold
        self._lock = asyncio.Lock()
        self._head_changed = asyncio.Event()
        self._wake = asyncio.Event()
        self._pending: dict[int, BlockBundle] = {}
        self._source: BlockSource | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.highest_seen = 0
        self._sync_start: int | None = None
        self._sync_target = 0

    def attach(self, source: BlockSource) -> None:
        self._source = source

    def start(self) -> None:
        if self.importing:
            self._task = asyncio.create_task(self._run(), name="follower")

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        async with self._lock:
            pass  # an import in flight finishes (and commits) before the node closes storage

    # ------------------------------------------------------------ checks
    def verify(self, bundle: BlockBundle) -> BlockHeaderAPI:
        """Decode the header and prove the commit; raise InvalidBlock/InvalidCommit."""
        header = bundle.decode_header(self._chain.fork)
        commit = Commit.decode(bundle.commit)
        validate_commit(
            commit,
            chain_id=self._chain.chain_id,
            number=header.block_number,
            block_hash=header.hash,
            producers=self._producers,
            threshold=self._threshold,
        )
        return header

    def _is_canonical(self, header: BlockHeaderAPI) -> bool:
        return self._chain.store.load_number(header.hash) == header.block_number

    # ------------------------------------------------------------ gossip
    async def on_gossip_block(self, data: bytes) -> bool:
        """Judge (and when it is next, import) a gossiped block before it is relayed."""
        bundle = BlockBundle.decode(data)
        header = self.verify(bundle)
        number = header.block_number
        self.highest_seen = max(self.highest_seen, number)
        if number <= self._chain.store.head.number:
            return self._is_canonical(header)
        if not self.importing:
            return False
        if number > self._chain.store.head.number + 1:
            await self._wait_for_head(number - 1, PARENT_WAIT_SECONDS)
        async with self._lock:
            head = self._chain.store.head.number
            if number <= head:
                return self._is_canonical(header)
            if number == head + 1:
                await self._import(bundle, header)
                return True
        # Still ahead (lost gossip before it): authentic by its commit, imported after sync.
        if len(self._pending) < MAX_PENDING:
            self._pending[number] = bundle
        self._wake.set()
        return True

    async def _wait_for_head(self, number: int, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while self._chain.store.head.number < number:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            event = self._head_changed
            try:
                await asyncio.wait_for(event.wait(), remaining)
            except TimeoutError:
                return

    # ------------------------------------------------------------ import (lock held)
    async def _import(self, bundle: BlockBundle, header: BlockHeaderAPI) -> BlockCommitted:
        block = bundle.to_block(self._chain.fork, header)
        loop = asyncio.get_running_loop()
        event = await loop.run_in_executor(self._writer, self._import_and_commit, block, bundle)
        result = event.result
        self._pool.on_block(
            included=(tx.hash for tx in result.block.transactions),
            senders=result.senders,
            rejected=(),
            head=self._chain.head_view(),
        )
        self._events.publish(event)
        self._head_changed.set()
        self._head_changed = asyncio.Event()
        return event

    def _import_and_commit(self, block: BlockAPI, bundle: BlockBundle) -> BlockCommitted:
        result = self._chain.executor.import_block(block)
        return self._chain.commit(result, bundle.commit)

    # ------------------------------------------------------------ sync
    def syncing(self) -> dict[str, Any] | bool:
        """eth_syncing's answer: False when caught up, else the range being synced."""
        if self._sync_start is None:
            return False
        return {
            "startingBlock": hex(self._sync_start),
            "currentBlock": hex(self._chain.store.head.number),
            "highestBlock": hex(self._sync_target),
        }

    async def _run(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 1.0)
            self._wake.clear()
            try:
                await self._import_pending()
                source = self._source
                if source is None:
                    continue
                target = max(source.best_head(), self.highest_seen)
                if target > self._chain.store.head.number:
                    await self._sync_to(source, target)
                    await self._import_pending()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("sync round failed; retrying")

    async def _import_pending(self) -> None:
        head = self._chain.store.head.number
        for number in [n for n in self._pending if n <= head]:
            del self._pending[number]
        while (bundle := self._pending.pop(head + 1, None)) is not None:
            async with self._lock:
                if self._chain.store.head.number != head:
                    break
                try:
                    await self._import(bundle, self.verify(bundle))
                except CairnError as exc:
                    log.warning("dropping parked block #%d: %s", head + 1, exc)
                    break
            head += 1

    async def _sync_to(self, source: BlockSource, target: int) -> None:
        start_head = self._chain.store.head.number
        started = time.monotonic()
        last_report = started
        imported_blocks = imported_txs = 0
        self._sync_start, self._sync_target = start_head, target
        log.info(
            "sync: head #%d, best peer #%d: syncing %d blocks",
            start_head,
            target,
            target - start_head,
        )
        next_fetch: asyncio.Task[tuple[str, list[bytes]]] | None = None
        try:
            while not self._stopping:
                head = self._chain.store.head.number
                target = max(target, source.best_head(), self.highest_seen)
                self._sync_target = target
                if head >= target:
                    break
                if next_fetch is not None and not next_fetch.done():
                    fetch = next_fetch
                else:
                    fetch = asyncio.ensure_future(
                        source.fetch_range(head + 1, min(RANGE_SIZE, target - head))
                    )
                next_fetch = None
                try:
                    peer, raws = await fetch
                except CairnError as exc:
                    log.info("sync: %s; retrying", exc)
                    return
                if not raws:
                    return
                expected_next = head + 1 + len(raws)
                if expected_next <= target:
                    # Overlap the next request with re-executing this batch.
                    next_fetch = asyncio.ensure_future(
                        source.fetch_range(
                            expected_next, min(RANGE_SIZE, target - expected_next + 1)
                        )
                    )
                count, txs = await self._import_range(source, peer, raws)
                imported_blocks += count
                imported_txs += txs
                source.count_synced(count)
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

    async def _import_range(
        self, source: BlockSource, peer: str, raws: list[bytes]
    ) -> tuple[int, int]:
        count = txs = 0
        for raw in raws:
            try:
                bundle = BlockBundle.decode(raw)
                header = self.verify(bundle)
                async with self._lock:
                    head = self._chain.store.head.number
                    if header.block_number <= head and self._is_canonical(header):
                        count += 1
                        continue
                    if header.block_number != head + 1:
                        raise InvalidBlock(
                            header.block_number,
                            header.hash,
                            f"range answer out of order: expected #{head + 1}",
                        )
                    await self._import(bundle, header)
            except CairnError as exc:
                log.warning("sync: block from peer %s rejected: %s", peer, exc)
                source.penalise(peer, exc)
                return count, txs
            count += 1
            txs += len(bundle.transactions)
        return count, txs

    def _report(
        self, blocks: int, txs: int, started: float, target: int, *, done: bool = False
    ) -> None:
        elapsed = max(time.monotonic() - started, 1e-6)
        head = self._chain.store.head.number
        rate = blocks / elapsed
        eta = (target - head) / rate if rate > 0 else float("inf")
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
            log.info(
                "sync: #%d of #%d, %.0f blocks/s, %.0f tx/s, ETA %.0fs",
                head,
                target,
                rate,
                txs / elapsed,
                eta,
            )
