"""The sequencer: one producer key makes every block and signs its commit.

`block_time == 0` mines as soon as transactions are executable (Anvil's automine; one block
takes everything pending that fits); `block_time > 0` mines on a fixed period; a dev chain may
also switch to manual mining (only evm_mine makes blocks). Execution and the commit run on the
writer thread; the pool and events are touched on the event loop only.
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
from cairn.errors import InvalidBlock, InvalidTransaction
from cairn.execution.builder import BlockEnv
from cairn.execution.chain import BlockCommitted, Chain
from cairn.execution.devstate import AccountOverride
from cairn.execution.events import ChainEvents, ChainRewound
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
        # Dev chains: impersonated transactions (they bypass the signed-only pool), oldest
        # first, each with the future its sender waits on.
        self._dev_txs: list[tuple[SignedTransactionAPI, asyncio.Future[BlockCommitted]]] = []
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
            if self.config.block_time != period:  # dev RPC changed the mining mode
                period = self.config.block_time
                next_slot = time.monotonic() + period
            if self.automine:
                await self._wake.wait()
                self._wake.clear()
                while self._should_mine_now():
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
                if self._pool.has_executable() or self._dev_txs or self.config.empty_blocks:
                    await self.produce(allow_empty=self.config.empty_blocks)

    def _should_mine_now(self) -> bool:
        return (
            self.automine
            and not self._stopping
            and (self._pool.has_executable() or bool(self._dev_txs))
        )

    def set_interval(self, seconds: float) -> None:
        """Switch between automine (0) and a fixed block time, as evm_setIntervalMining does."""
        self.set_mining(automine=seconds == 0, interval=seconds)

    def set_mining(self, *, automine: bool, interval: float) -> None:
        """Dev chains: automine, a fixed block time (`interval` > 0), or manual (neither)."""
        self.config = ProducerConfig(
            key=self.config.key,
            coinbase=self.config.coinbase,
            gas_limit=self.config.gas_limit,
            block_time=0 if automine else interval,
            empty_blocks=self.config.empty_blocks or interval > 0,
            extra_data=self.config.extra_data,
        )
        self.automine = automine
        self._wake.set()
        if self._task is not None and self._task.done():
            self._task = asyncio.create_task(self._run(), name="sequencer")

    def submit_impersonated(self, tx: SignedTransactionAPI) -> asyncio.Future[BlockCommitted]:
        """Queue a dev chain's impersonated transaction for the next block; the future is
        the block that includes it, or `InvalidTransaction` if the builder rejected it."""
        future: asyncio.Future[BlockCommitted] = asyncio.get_running_loop().create_future()
        self._dev_txs.append((tx, future))
        if self.automine:
            self._wake.set()
        return future

    def impersonated_pending(self) -> list[SignedTransactionAPI]:
        return [tx for tx, _ in self._dev_txs]

    async def produce(
        self,
        *,
        allow_empty: bool = False,
        overrides: tuple[AccountOverride, ...] = (),
        include_pool: bool = True,
        extra_data: bytes | None = None,
    ) -> BlockCommitted | None:
        """Build, sign and commit one block from the pool; None if there was nothing to do.

        Dev chains may add account `overrides` (applied before the transactions) and leave
        the pool out, so that a state-setting helper's block carries only that change.
        """
        async with self._lock:
            head = self._chain.head
            base_fee = self._chain.head_view().next_base_fee
            dev_txs = list(self._dev_txs) if include_pool else []
            candidates = self._candidates(base_fee) if include_pool else []
            if not candidates and not dev_txs and not overrides and not allow_empty:
                return None
            timestamp = self.clock.timestamp_for(head.timestamp)
            env = BlockEnv(
                parent=head,
                timestamp=timestamp,
                coinbase=self.config.coinbase,
                gas_limit=self.config.gas_limit,
                extra_data=self.config.extra_data if extra_data is None else extra_data,
                overrides=overrides,
            )
            txs = [tx for tx, _ in dev_txs] + [c.tx for c in candidates]
            loop = asyncio.get_running_loop()
            event = await loop.run_in_executor(self._writer, self._build_and_commit, env, txs)
            self.clock.consumed(timestamp)
            result = event.result
            if dev_txs:
                self._settle_dev_txs(event, dev_txs)
            self._pool.on_block(
                included=(tx.hash for tx in result.block.transactions),
                # overridden accounts too: their nonce or balance may have changed
                senders=(*result.senders, *(o.address for o in overrides)),
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

    def _settle_dev_txs(
        self,
        event: BlockCommitted,
        offered: list[tuple[SignedTransactionAPI, asyncio.Future[BlockCommitted]]],
    ) -> None:
        result = event.result
        included = {tx.hash for tx in result.block.transactions}
        rejected = {r.tx.hash: r.reason for r in result.rejected}
        settled: set[int] = set()
        for tx, future in offered:
            if tx.hash in included:
                settled.add(id(tx))
                if not future.done():
                    future.set_result(event)
            elif tx.hash in rejected or tx.gas > result.header.gas_limit:
                reason = rejected.get(tx.hash, "exceeds block gas limit")
                settled.add(id(tx))
                log.info("impersonated 0x%s not mined: %s", tx.hash.hex(), reason)
                if not future.done():
                    future.set_exception(InvalidTransaction(reason, tx.hash))
        self._dev_txs = [(tx, f) for tx, f in self._dev_txs if id(tx) not in settled]

    async def rewind(self, number: int, *, drop_snapshots_from: int | None = None) -> ChainRewound:
        """Dev chains (evm_revert): delete the blocks above `number`, then re-check the pool.

        Runs under the production lock, so no block is being built meanwhile.
        """
        async with self._lock:
            loop = asyncio.get_running_loop()
            removed = await loop.run_in_executor(
                self._writer,
                lambda: self._chain.rewind(number, drop_snapshots_from=drop_snapshots_from),
            )
            for _, future in self._dev_txs:
                if not future.done():
                    future.set_exception(
                        InvalidTransaction("dropped: the chain was reverted before it was mined")
                    )
            self._dev_txs = []
            kept, dropped = self._pool.reset()
            head = self._chain.head
            event = ChainRewound(number, head.hash, removed)
            self._events.publish_rewound(event)
            log.warning(
                "dev chain reverted to #%d 0x%s: %d blocks removed; txpool kept %d, dropped %d",
                number,
                head.hash.hex()[:16],
                len(removed),
                kept,
                dropped,
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
