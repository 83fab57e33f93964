"""The sequencer: one producer key makes every block and signs its commit.

`block_time == 0` mines as soon as transactions are executable (Anvil's automine; one block
takes everything pending that fits); `block_time > 0` mines on a fixed period, with or
without empty blocks; with neither (dev chains' manual mining) only `produce` calls make
blocks. Execution runs on the writer thread; every block goes to the chain through
`BlockApplier.apply`, which does the after-commit steps. What a dev chain adds (its clock,
impersonated sends, state overrides) comes in through one `ProducerHook` owned by
consensus/devchain.py; a plain sequencer has none.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, replace
from typing import Protocol

from eth.abc import SignedTransactionAPI
from eth_keys.datatypes import PrivateKey
from eth_typing import Address

from cairn.chain.apply import BlockApplier
from cairn.chain.chain import Chain
from cairn.chain.commit import make_commit
from cairn.chain.events import BlockCommitted
from cairn.execution.builder import BlockEnv, BlockResult
from cairn.execution.overrides import AccountOverride
from cairn.txpool.admission import DecodedTx
from cairn.txpool.pool import TxPool

log = logging.getLogger("cairn.sequencer")

# Candidates handed to one block: enough gas-limit headroom that a full block is possible.
CANDIDATE_GAS_FACTOR = 3
MAX_CANDIDATES = 20_000


class ProducerHook(Protocol):
    """What a dev chain adds to block production; see `consensus/devchain.py`."""

    def timestamp_for(self, parent_timestamp: int) -> int:
        """The next block's timestamp (strictly after its parent's)."""
        ...

    def extra_transactions(self) -> Sequence[SignedTransactionAPI]:
        """Transactions from outside the pool, first in the next block."""
        ...

    def produced(self, event: BlockCommitted, offered: Sequence[SignedTransactionAPI]) -> None:
        """After a block is applied: `offered` are the extra transactions it was given."""
        ...


class WallClock:
    """The hook of a plain sequencer: wall-clock timestamps, nothing from outside the pool."""

    def timestamp_for(self, parent_timestamp: int) -> int:
        return max(int(time.time()), parent_timestamp + 1)

    def extra_transactions(self) -> Sequence[SignedTransactionAPI]:
        return ()

    def produced(self, event: BlockCommitted, offered: Sequence[SignedTransactionAPI]) -> None:
        pass


@dataclass(frozen=True)
class ProducerConfig:
    key: PrivateKey
    coinbase: Address
    gas_limit: int
    block_time: float
    empty_blocks: bool
    extra_data: bytes = b"cairn"


@dataclass(frozen=True)
class BlockRequest:
    """What one `produce` call asks for beyond the defaults (dev helpers use these)."""

    allow_empty: bool = False
    include_pool: bool = True
    # applied before the block's transactions (anvil_setBalance and friends)
    overrides: tuple[AccountOverride, ...] = ()
    extra_data: bytes | None = None


class Sequencer:
    def __init__(
        self,
        chain: Chain,
        pool: TxPool,
        applier: BlockApplier,
        writer: Executor,
        config: ProducerConfig,
        hook: ProducerHook | None = None,
    ) -> None:
        self._chain = chain
        self._pool = pool
        self._applier = applier
        self._writer = writer
        self.config = config
        self.hook: ProducerHook = hook or WallClock()
        self.automine = config.block_time == 0
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.last_block_at: float | None = None  # monotonic time of the last block made
        pool.subscribe(self._on_new_txs)

    @property
    def address(self) -> Address:
        return Address(self.config.key.public_key.to_canonical_address())

    def _on_new_txs(self, txs: Sequence[DecodedTx]) -> None:
        if txs and self.automine:
            self._wake.set()

    def wake(self) -> None:
        """Look for work now (the hook has new transactions, or the mode changed)."""
        self._wake.set()

    def start(self) -> None:
        if self._pool.has_executable() or self.hook.extra_transactions():
            self._wake.set()
        self._task = asyncio.create_task(self._run(), name="sequencer")

    async def stop(self) -> None:
        """Stop producing; a block in flight is finished and committed first."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None

    def _has_work(self) -> bool:
        return self._pool.has_executable() or bool(self.hook.extra_transactions())

    async def _run(self) -> None:
        period = self.config.block_time
        next_slot = time.monotonic() + period
        while not self._stopping:
            if self.config.block_time != period:  # the mining mode changed
                period = self.config.block_time
                next_slot = time.monotonic() + period
            if self.automine:
                await self._wake.wait()
                self._wake.clear()
                while self.automine and not self._stopping and self._has_work():
                    if await self.produce() is None:
                        break
            elif period <= 0:  # manual mining (dev): blocks come from evm_mine only
                await self._wake.wait()
                self._wake.clear()
            else:
                delay = max(0.0, next_slot - time.monotonic())
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=delay)
                    self._wake.clear()
                    continue  # woken to stop, or to re-read the mode
                except TimeoutError:
                    pass
                next_slot += period
                if next_slot < time.monotonic():
                    next_slot = time.monotonic() + period
                if self._has_work() or self.config.empty_blocks:
                    await self.produce(BlockRequest(allow_empty=self.config.empty_blocks))

    def set_mining(self, *, automine: bool, interval: float) -> None:
        """Automine, a fixed block time (`interval` > 0), or manual (neither; dev chains)."""
        self.config = replace(
            self.config,
            block_time=0 if automine else interval,
            empty_blocks=self.config.empty_blocks or interval > 0,
        )
        self.automine = automine
        self._wake.set()
        if self._task is not None and self._task.done() and not self._stopping:
            self._task = asyncio.create_task(self._run(), name="sequencer")

    @contextlib.asynccontextmanager
    async def paused(self) -> AsyncIterator[None]:
        """No block is produced while this is held (dev rewinds)."""
        async with self._lock:
            yield

    async def produce(self, request: BlockRequest = BlockRequest()) -> BlockCommitted | None:
        """Build, sign and apply one block; None if there was nothing to put in it."""
        async with self._lock:
            head = self._chain.head
            extra = list(self.hook.extra_transactions()) if request.include_pool else []
            candidates = (
                self._candidates(self._chain.head_view().next_base_fee)
                if request.include_pool
                else []
            )
            if not candidates and not extra and not request.overrides and not request.allow_empty:
                return None
            env = BlockEnv(
                parent=head,
                timestamp=self.hook.timestamp_for(head.timestamp),
                coinbase=self.config.coinbase,
                gas_limit=self.config.gas_limit,
                extra_data=(
                    self.config.extra_data if request.extra_data is None else request.extra_data
                ),
                overrides=request.overrides,
            )
            txs = extra + [c.tx for c in candidates]
            loop = asyncio.get_running_loop()
            result, commit = await loop.run_in_executor(self._writer, self._build, env, txs)
            event = await self._applier.apply(result, commit)
            self.last_block_at = time.monotonic()
            self.hook.produced(event, extra)
            log.info(
                "sealed block #%d 0x%s txs=%d gas=%d",
                event.number,
                event.block_hash.hex()[:16],
                len(result.block.transactions),
                result.header.gas_used,
            )
            return event

    def _candidates(self, base_fee: int) -> list[DecodedTx]:
        budget = self.config.gas_limit * CANDIDATE_GAS_FACTOR
        chosen: list[DecodedTx] = []
        for tx in self._pool.executable(base_fee):
            chosen.append(tx)
            budget -= tx.gas
            if budget <= 0 or len(chosen) >= MAX_CANDIDATES:
                break
        return chosen

    def _build(self, env: BlockEnv, txs: list[SignedTransactionAPI]) -> tuple[BlockResult, bytes]:
        result = self._chain.executor.build(env, txs)
        header = result.header
        commit = make_commit(
            self.config.key, self._chain.chain_id, header.block_number, header.hash
        )
        return result, commit.encode()
