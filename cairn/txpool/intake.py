"""Group commit for admission: raw transactions submitted in the same event-loop turn are
checked together and covered by one journal fsync, then each caller gets its own answer.
"""

from __future__ import annotations

import asyncio

from cairn.txpool.pool import Admitted, TxPool


class Intake:
    def __init__(self, pool: TxPool) -> None:
        self._pool = pool
        self._waiting: list[tuple[bytes, asyncio.Future[Admitted]]] = []
        self._scheduled = False

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
        try:
            results = self._pool.add_many([raw for raw, _ in waiting])
        except Exception as exc:  # journal failure: every caller hears about it, nothing admitted
            for _, future in waiting:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), result in zip(waiting, results, strict=True):
            if not future.done():
                future.set_result(result)
