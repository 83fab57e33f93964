"""A small publish/subscribe hub for chain events, used on the event loop only."""

from __future__ import annotations

import logging
from collections.abc import Callable

from cairn.execution.chain import BlockCommitted

log = logging.getLogger("cairn.events")

Listener = Callable[[BlockCommitted], None]


class ChainEvents:
    def __init__(self) -> None:
        self._listeners: list[Listener] = []

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
