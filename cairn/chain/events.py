"""What the chain announces: `BlockCommitted` after every new block, `ChainRewound` when a
dev chain's history was cut back (evm_revert), published on the event loop by the applier.

Listeners (filters, subscriptions, relay, mirror, metrics, dev settings, block sync) only
queue work: a listener that raises is logged and the others still run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from cairn.execution.builder import BlockResult
from cairn.execution.reader import StoredBlock

log = logging.getLogger("cairn.events")


@dataclass(frozen=True)
class BlockCommitted:
    """Published after a block is durable. `result` carries computations for tracing."""

    result: BlockResult
    commit: bytes

    @property
    def number(self) -> int:
        return self.result.header.block_number

    @property
    def block_hash(self) -> bytes:
        return self.result.header.hash


@dataclass(frozen=True)
class ChainRewound:
    """Published after blocks above `number` were deleted (dev chains only)."""

    number: int
    block_hash: bytes
    removed: tuple[StoredBlock, ...]  # oldest first


Listener = Callable[[BlockCommitted], None]
RewindListener = Callable[[ChainRewound], None]


class ChainEvents:
    """A small publish/subscribe hub, used on the event loop only."""

    def __init__(self) -> None:
        self._listeners: list[Listener] = []
        self._rewind_listeners: list[RewindListener] = []
        self.published = 0  # BlockCommitted events since start (one per applied block)

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def publish(self, event: BlockCommitted) -> None:
        self.published += 1
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                log.exception("a BlockCommitted listener failed at block %d", event.number)

    def subscribe_rewound(self, listener: RewindListener) -> Callable[[], None]:
        self._rewind_listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._rewind_listeners:
                self._rewind_listeners.remove(listener)

        return unsubscribe

    def publish_rewound(self, event: ChainRewound) -> None:
        for listener in list(self._rewind_listeners):
            try:
                listener(event)
            except Exception:
                log.exception("a ChainRewound listener failed at block %d", event.number)
