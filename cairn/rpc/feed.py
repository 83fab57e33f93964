"""`LiveFeed`: one listener on chain events and the txpool, fanned out to filters and
WebSocket subscriptions, plus a slow tick for filter expiry and sync-status changes.

Everything runs on the event loop: listeners are called in block order, synchronously from
the publisher, so no block or transaction can be missed or reordered between them. Must never
block: listeners only queue work (a notification, a reference to a block).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from cairn.chain.events import BlockCommitted, ChainEvents, ChainRewound
from cairn.execution.reader import StoredBlock
from cairn.rpc.logs import LogIndex
from cairn.txpool.admission import DecodedTx
from cairn.txpool.pool import TxPool

log = logging.getLogger("cairn.rpc.feed")

SyncStatus = dict[str, Any] | bool
BlockListener = Callable[[StoredBlock], None]
TxListener = Callable[[Sequence[DecodedTx]], None]
RewindListener = Callable[[ChainRewound], None]
SyncListener = Callable[[SyncStatus], None]
TickListener = Callable[[float], None]
L = TypeVar("L")


class _Listeners(list[L]):
    def add(self, listener: L) -> Callable[[], None]:
        self.append(listener)

        def remove() -> None:
            if listener in self:
                self.remove(listener)

        return remove


class LiveFeed:
    def __init__(
        self,
        events: ChainEvents,
        pool: TxPool,
        syncing: Callable[[], SyncStatus],
        log_index: LogIndex,
        tick_seconds: float = 1.0,
    ) -> None:
        self.log_index = log_index  # the node's formatted logs, shared by filters and subs
        self.blocks: _Listeners[BlockListener] = _Listeners()
        self.txs: _Listeners[TxListener] = _Listeners()
        self.rewinds: _Listeners[RewindListener] = _Listeners()
        self.sync: _Listeners[SyncListener] = _Listeners()
        self.ticks: _Listeners[TickListener] = _Listeners()
        self._syncing = syncing
        self._last_sync: SyncStatus = False
        self._tick_seconds = tick_seconds
        self._task: asyncio.Task[None] | None = None
        self._unhook = [
            events.subscribe(self._on_block),
            events.subscribe_rewound(self._on_rewind),
        ]
        pool.subscribe(self._on_txs)  # the pool outlives the feed; nothing to unhook

    def start(self) -> None:
        self._last_sync = self._syncing()
        self._task = asyncio.create_task(self._tick_loop(), name="rpc-live-feed")

    async def stop(self) -> None:
        for unhook in self._unhook:
            unhook()
        self.txs.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    # ------------------------------------------------------------ fan-out
    def _on_block(self, event: BlockCommitted) -> None:
        result = event.result
        stored = StoredBlock(result.block, result.senders, result.receipts)
        _deliver(self.blocks, stored)
        self._check_sync()

    def _on_rewind(self, event: ChainRewound) -> None:
        _deliver(self.rewinds, event)

    def _on_txs(self, txs: Sequence[DecodedTx]) -> None:
        if txs:
            _deliver(self.txs, txs)

    def _check_sync(self) -> None:
        if not self.sync:
            return
        status = self._syncing()
        if status != self._last_sync:
            self._last_sync = status
            _deliver(self.sync, status)

    async def _tick_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self._tick_seconds)
            _deliver(self.ticks, loop.time())
            self._check_sync()


def _deliver(listeners: list[Callable[[Any], None]], value: Any) -> None:
    for listener in list(listeners):
        try:
            listener(value)
        except Exception:
            log.exception("a live RPC listener failed")
