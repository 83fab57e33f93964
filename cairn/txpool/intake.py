"""Group commit for admission: raw transactions submitted in the same event-loop turn are
checked together and covered by one journal fsync, then each caller gets its own answer.
Large groups have their senders recovered on the second core first (`recovery.py`).
"""

from __future__ import annotations

import asyncio
import logging

from cairn.txpool.pool import Admitted, TxPool
from cairn.txpool.recovery import MIN_BATCH, SenderRecovery

log = logging.getLogger("cairn.txpool")


class Intake:
    def __init__(self, pool: TxPool, recovery: SenderRecovery | None = None) -> None:
        self._pool = pool
        self._recovery = recovery
        self._waiting: list[tuple[bytes, asyncio.Future[Admitted]]] = []
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, raw: bytes) -> Admitted:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Admitted] = loop.create_future()
        self._waiting.append((raw, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        waiting, self._waiting = self._waiting, []
        self._scheduled = False
        if self._recovery is not None and len(waiting) >= MIN_BATCH:
            task = asyncio.create_task(self._admit_recovered(waiting))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            self._admit(waiting, None)

    async def _admit_recovered(self, waiting: list[tuple[bytes, asyncio.Future[Admitted]]]) -> None:
        assert self._recovery is not None
        try:
            senders: list[bytes | None] | None = await self._recovery.recover(
                [raw for raw, _ in waiting]
            )
        except Exception:  # a dead worker must not lose submissions: recover here instead
            log.exception("sender recovery worker failed; recovering in the node process")
            senders = None
        self._admit(waiting, senders)

    def _admit(
        self,
        waiting: list[tuple[bytes, asyncio.Future[Admitted]]],
        senders: list[bytes | None] | None,
    ) -> None:
        try:
            results = self._pool.add_many([raw for raw, _ in waiting], senders=senders)
        except Exception as exc:  # journal failure: every caller hears about it, nothing admitted
            for _, future in waiting:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), result in zip(waiting, results, strict=True):
            if not future.done():
                future.set_result(result)
