"""Sender recovery on the second core.

Recovering a transaction's sender (secp256k1 public-key recovery) is the largest part of
admission, and CPU-bound Python holds the GIL: done in the node process it competes with
block execution. Batches are sent to a worker process instead, which returns each sender
(or None when recovery fails; the normal admission path then produces the precise error).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from cairn.execution.worker_process import die_with_parent

log = logging.getLogger("cairn.txpool")

# Below this many transactions the round trip to the worker costs more than it saves.
MIN_BATCH = 8


def _recover_batch(fork_name: str, raws: Sequence[bytes]) -> list[bytes | None]:
    from cairn.execution.forks import fork_named

    fork = fork_named(fork_name)
    senders: list[bytes | None] = []
    for raw in raws:
        try:
            senders.append(bytes(fork.decode_transaction(raw).sender))
        except Exception:  # any failure is re-diagnosed, with its proper message, by admission
            senders.append(None)
    return senders


class SenderRecovery:
    def __init__(self, fork_name: str, workers: int = 1) -> None:
        self._fork_name = fork_name
        self._workers = workers
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        # spawn: the node process has threads, so forking it is unsafe; and a spawned worker's
        # parent is the node itself, which the parent-death signal needs.
        context = multiprocessing.get_context("spawn")
        return ProcessPoolExecutor(
            max_workers=self._workers,
            mp_context=context,
            initializer=die_with_parent,
            initargs=(os.getpid(),),
        )

    async def warm_up(self) -> None:
        await self.recover([])

    async def recover(self, raws: Sequence[bytes]) -> list[bytes | None]:
        loop = asyncio.get_running_loop()
        pool = self._pool
        try:
            return await loop.run_in_executor(pool, _recover_batch, self._fork_name, list(raws))
        except BrokenProcessPool:
            # The worker died (killed, out of memory): this batch is recovered by the caller,
            # and the next ones by a fresh worker, not by the node process from now on.
            if self._pool is pool:
                log.warning("sender recovery worker stopped; starting another")
                pool.shutdown(wait=False, cancel_futures=True)
                self._pool = self._new_pool()
            raise

    def pids(self) -> list[int]:
        """Process ids of the running workers (for /metrics: their resident memory)."""
        # ProcessPoolExecutor keeps its workers in `_processes` (pid -> process) and has no
        # public accessor; None until the first task has started them.
        processes = getattr(self._pool, "_processes", None) or {}
        return sorted(processes)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
