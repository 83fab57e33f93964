"""A small publish/subscribe hub for chain events, used on the event loop only.

`BlockCommitted` for every new block; `ChainRewound` when a dev chain's history was cut
back (evm_revert), so that filters, subscriptions and mirrors drop what no longer exists.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from cairn.execution.chain import BlockCommitted
from cairn.execution.reader import StoredBlock

log = logging.getLogger("cairn.events")

Listener = Callable[[BlockCommitted], None]


@dataclass(frozen=True)
class ChainRewound:
    """Published after blocks above `number` were deleted (dev chains only)."""

    number: int
    block_hash: bytes
    removed: tuple[StoredBlock, ...]  # oldest first


RewindListener = Callable[[ChainRewound], None]


class ChainEvents:
    def __init__(self) -> None:
        self._listeners: list[Listener] = []
        self._rewind_listeners: list[RewindListener] = []

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def publish(self, event: BlockCommitted) -> None:
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
