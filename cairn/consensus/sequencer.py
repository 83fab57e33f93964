"""The sequencer: one producer key makes every block and signs its commit.

`block_time == 0` mines as soon as transactions are executable (Anvil's automine; one block
takes everything pending that fits); `block_time > 0` mines on a fixed period. Execution and
the commit run on the writer thread; the pool and events are touched on the event loop only.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass

from eth.abc import SignedTransactionAPI
from eth_keys.datatypes import PrivateKey
from eth_typing import Address

from cairn.consensus.commit import make_commit
from cairn.errors import InvalidBlock
from cairn.execution.builder import BlockEnv
from cairn.execution.chain import BlockCommitted, Chain
from cairn.execution.events import ChainEvents
from cairn.txpool.admission import DecodedTx
from cairn.txpool.pool import TxPool

log = logging.getLogger("cairn.sequencer")

# Candidates handed to one block: enough gas-limit headroom that a full block is possible.
CANDIDATE_GAS_FACTOR = 3
MAX_CANDIDATES = 20_000


class BlockClock:
    """Block timestamps: wall clock plus an offset; dev RPC may pin the next one."""

    def __init__(self) -> None:
        self.offset = 0
        self.next_timestamp: int | None = None
        self.interval: int | None = None

    def timestamp_for(self, parent_timestamp: int) -> int:
        if self.next_timestamp is not None:
            chosen = self.next_timestamp
        elif self.interval is not None:
            chosen = parent_timestamp + self.interval
        else:
            chosen = int(time.time()) + self.offset
        return max(chosen, parent_timestamp + 1)

    def consumed(self, timestamp: int) -> None:
        if self.next_timestamp is not None:
            self.offset = timestamp - int(time.time())
            self.next_timestamp = None


@dataclass(frozen=True)
class ProducerConfig:
    key: PrivateKey
    coinbase: Address
    gas_limit: int
    block_time: float
    empty_blocks: bool
    extra_data: bytes = b"cairn"


class Sequencer:
    def __init__(
        self,
        chain: Chain,
        pool: TxPool,
        events: ChainEvents,
        writer: Executor,
        config: ProducerConfig,
    ) -> None:
        self._chain = chain
        self._pool = pool
        self._events = events
        self._writer = writer
        self.config = config
        self.clock = BlockClock()
        self.automine = config.block_time == 0
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        pool.subscribe(self._on_new_txs)

    @property
    def address(self) -> Address:
        return Address(self.config.key.public_key.to_canonical_address())

    def _on_new_txs(self, txs: Sequence[DecodedTx]) -> None:
        if txs and self.automine:
            self._wake.set()

    def start(self) -> None:
        if self._pool.has_executable():
            self._wake.set()
        self._task = asyncio.create_task(self._run(), name="sequencer")

    async def stop(self) -> None:
        """Stop producing; a block in flight is finished and committed first."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def _run(self) -> None:
        period = self.config.block_time
        next_slot = time.monotonic() + period
        while not self._stopping:
            if self.automine:
                await self._wake.wait()
                self._wake.clear()
                while self._should_mine_now():
                    if await self.produce() is None:
                        break
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
                if self._pool.has_executable() or self.config.empty_blocks:
                    await self.produce()

    def _should_mine_now(self) -> bool:
        return self.automine and not self._stopping and self._pool.has_executable()

    def set_interval(self, seconds: float) -> None:
        """Switch between automine (0) and a fixed block time, as evm_setIntervalMining does."""
        self.config = ProducerConfig(
            key=self.config.key,
            coinbase=self.config.coinbase,
            gas_limit=self.config.gas_limit,
            block_time=seconds,
            empty_blocks=self.config.empty_blocks or seconds > 0,
            extra_data=self.config.extra_data,
        )
        self.automine = seconds == 0
        self._wake.set()
        if self._task is not None and self._task.done():
            self._task = asyncio.create_task(self._run(), name="sequencer")

    async def produce(self, *, allow_empty: bool = False) -> BlockCommitted | None:
        """Build, sign and commit one block from the pool; None if there was nothing to do."""
        async with self._lock:
            head = self._chain.head
            base_fee = self._chain.head_view().next_base_fee
            candidates = self._candidates(base_fee)
            if not candidates and not allow_empty:
                return None
            timestamp = self.clock.timestamp_for(head.timestamp)
            env = BlockEnv(
                parent=head,
                timestamp=timestamp,
                coinbase=self.config.coinbase,
                gas_limit=self.config.gas_limit,
                extra_data=self.config.extra_data,
            )
            loop = asyncio.get_running_loop()
            event = await loop.run_in_executor(
                self._writer, self._build_and_commit, env, [c.tx for c in candidates]
            )
            self.clock.consumed(timestamp)
            result = event.result
            self._pool.on_block(
                included=(tx.hash for tx in result.block.transactions),
                senders=result.senders,
                rejected=((r.tx.hash, r.reason) for r in result.rejected),
                head=self._chain.head_view(),
            )
            self._events.publish(event)
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

    def _build_and_commit(self, env: BlockEnv, txs: list[SignedTransactionAPI]) -> BlockCommitted:
        result = self._chain.executor.build(env, txs)
        header = result.header
        commit = make_commit(
            self.config.key, self._chain.chain_id, header.block_number, header.hash
        )
        try:
            return self._chain.commit(result, commit.encode())
        except InvalidBlock:
            log.exception("own block #%d could not be committed", header.block_number)
            raise
