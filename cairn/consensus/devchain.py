"""Dev-chain control of the local sequencer: mining on demand, block time, the chain's clock,
state overrides, snapshots and rewinds, and impersonated senders (what evm_*, anvil_* and
hardhat_* drive).

`DevChain` is the sequencer's `ProducerHook`: the one place dev behaviour meets block
production (the clock that picks timestamps, impersonated sends put first in a block). Its
blocks go through the same `BlockApplier` as every other block. The chain is persistent, so
every change here is durable, and every state change is a block:
 - a state override (setBalance, setCode, setNonce, setStorageAt) is committed as a new block
   with no transactions whose dev record holds the override, applied before execution; its
   state root, receipts and header stay consistent and it re-executes from what is stored;
 - a revert deletes the blocks after the snapshot in one synced batch (local history is
   rewritten) and re-checks the txpool;
 - clock settings, impersonated accounts and snapshots are saved in the datadir and restored
   at start.
Must never be wired on a node that is not a dev chain: it rewrites history on request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from concurrent.futures import Executor
from typing import Any

import msgpack
from eth.abc import SignedTransactionAPI
from eth_typing import Address

from cairn.chain.apply import BlockApplier
from cairn.chain.chain import Chain
from cairn.chain.events import BlockCommitted
from cairn.consensus.sequencer import BlockRequest, ProducerConfig, Sequencer
from cairn.errors import InvalidDevRequest, InvalidTransaction
from cairn.execution.devstate import (
    ImpersonatedTx,
    build_impersonated,
    impersonate,
    unwrap,
)
from cairn.execution.overrides import AccountOverride
from cairn.storage.store import ChainStore
from cairn.txpool.pool import TxPool

log = logging.getLogger("cairn.dev")

# Every mined block is executed and fsync'd, so one call may not ask for a million of them.
MAX_MINE_BLOCKS = 10_000
OVERRIDE_EXTRA_DATA = b"cairn dev: state override"


class DevClock:
    """Block timestamps: wall clock plus an offset; dev RPC may pin the next one or fix the
    step between blocks."""

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


class DevChain:
    """Owns the dev chain's sequencer (`self.sequencer`) and is its `ProducerHook`."""

    def __init__(
        self,
        chain: Chain,
        pool: TxPool,
        applier: BlockApplier,
        writer: Executor,
        config: ProducerConfig,
        *,
        networked: bool = False,
    ) -> None:
        self._chain = chain
        # With peers, every block must re-execute from what a full node receives: the
        # transactions alone. State overrides, impersonated sends and rewinds cannot.
        self.networked = networked
        self._store: ChainStore = chain.store
        self._pool = pool
        self._applier = applier
        self.clock = DevClock()
        self.sequencer = Sequencer(chain, pool, applier, writer, config, hook=self)
        self._seq = self.sequencer
        self.impersonated: set[Address] = set()
        self.auto_impersonate = False
        # impersonated sends waiting for a block, oldest first, each with its sender's future
        self._dev_txs: list[tuple[SignedTransactionAPI, asyncio.Future[BlockCommitted]]] = []
        self._queued: list[tuple[tuple[AccountOverride, ...], asyncio.Future[BlockCommitted]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._saved: bytes | None = None
        self._restore_queued: list[Any] = []  # saved impersonated sends, queued at start()
        self._load()

    def _local_only(self, what: str) -> None:
        if self.networked:
            raise InvalidDevRequest(
                f"{what} is not available on a dev chain with p2p: full nodes re-execute every "
                "block from its transactions and could not follow it. Run `cairn dev` without "
                "p2p flags to use it, or fund accounts with transactions"
            )

    # ------------------------------------------------------------ ProducerHook
    def timestamp_for(self, parent_timestamp: int) -> int:
        return self.clock.timestamp_for(parent_timestamp)

    def extra_transactions(self) -> Sequence[SignedTransactionAPI]:
        return [tx for tx, _ in self._dev_txs]

    def produced(self, event: BlockCommitted, offered: Sequence[SignedTransactionAPI]) -> None:
        self.clock.consumed(event.result.header.timestamp)
        if offered:
            self._settle(event, {id(tx) for tx in offered})
        self.save()

    def _settle(self, event: BlockCommitted, offered: set[int]) -> None:
        """Answer the senders of impersonated transactions the block was offered."""
        result = event.result
        included = {tx.hash for tx in result.block.transactions}
        rejected = {r.tx.hash: r.reason for r in result.rejected}
        kept: list[tuple[SignedTransactionAPI, asyncio.Future[BlockCommitted]]] = []
        for tx, future in self._dev_txs:
            if id(tx) not in offered:
                kept.append((tx, future))
            elif tx.hash in included:
                if not future.done():
                    future.set_result(event)
            elif tx.hash in rejected or tx.gas > result.header.gas_limit:
                reason = rejected.get(tx.hash, "exceeds block gas limit")
                log.info("impersonated 0x%s not mined: %s", tx.hash.hex(), reason)
                if not future.done():
                    future.set_exception(InvalidTransaction(reason, tx.hash))
            else:
                kept.append((tx, future))  # deferred: the block was full
        self._dev_txs = kept

    def _submit(self, tx: SignedTransactionAPI) -> asyncio.Future[BlockCommitted]:
        future: asyncio.Future[BlockCommitted] = asyncio.get_running_loop().create_future()
        self._dev_txs.append((tx, future))
        if self._seq.automine:
            self._seq.wake()
        return future

    # ------------------------------------------------------------ persistence
    def _settings(self) -> bytes:
        clock = self.clock
        packed: bytes = msgpack.packb(
            {
                "offset": clock.offset,
                "next": clock.next_timestamp,
                "interval": clock.interval,
                "impersonated": sorted(bytes(a) for a in self.impersonated),
                "auto": self.auto_impersonate,
                # impersonated sends waiting for a block (manual or interval mining)
                "queued": [[unwrap(tx).encode(), bytes(tx.sender)] for tx, _ in self._dev_txs],
            }
        )
        return packed

    def _load(self) -> None:
        raw = self._store.load_dev_settings()
        if raw is None:
            return
        data: dict[str, Any] = msgpack.unpackb(raw)
        clock = self.clock
        clock.offset = int(data.get("offset", 0))
        clock.next_timestamp = data.get("next")
        clock.interval = data.get("interval")
        self.impersonated = {Address(bytes(a)) for a in data.get("impersonated", [])}
        self.auto_impersonate = bool(data.get("auto", False))
        self._restore_queued = data.get("queued", [])
        self._saved = raw
        log.info(
            "dev settings restored: time offset %ds, %d impersonated accounts, "
            "%d impersonated sends waiting",
            clock.offset,
            len(self.impersonated),
            len(self._restore_queued),
        )

    def start(self) -> None:
        """Re-queue saved impersonated sends, then start the sequencer (on the event loop)."""
        for encoded, sender in self._restore_queued:
            tx = impersonate(self._chain.fork.decode_transaction(bytes(encoded)), Address(sender))
            self._submit(tx).add_done_callback(_log_outcome)
        self._restore_queued = []
        self._seq.start()

    def save(self) -> None:
        """Persist clock and impersonation settings if they changed (a synced write)."""
        raw = self._settings()
        if raw != self._saved:
            self._store.save_dev_settings(raw)
            self._saved = raw

    # ------------------------------------------------------------ mining
    @property
    def mining(self) -> tuple[bool, float]:
        """(automine, interval seconds); neither means manual mining."""
        return self._seq.automine, self._seq.config.block_time

    def set_automine(self, enabled: bool) -> None:
        """As Anvil: turning automine off while interval mining keeps the interval."""
        if enabled:
            self._seq.set_mining(automine=True, interval=0)
        elif self._seq.automine:
            self._seq.set_mining(automine=False, interval=0)

    def set_interval_mining(self, seconds: float) -> None:
        """A block every `seconds`; 0 turns interval mining off (manual mining), as Anvil."""
        if seconds < 0:
            raise InvalidDevRequest(f"interval must not be negative, got {seconds}")
        self._seq.set_mining(automine=False, interval=seconds)

    async def mine(self, blocks: int = 1, *, interval: int | None = None) -> list[BlockCommitted]:
        """Mine `blocks` blocks now, with whatever the pool holds; with `interval`, each block
        is stamped exactly that many seconds after its parent (anvil_mine / hardhat_mine)."""
        if blocks < 0:
            raise InvalidDevRequest(f"number of blocks must not be negative, got {blocks}")
        if blocks > MAX_MINE_BLOCKS:
            raise InvalidDevRequest(
                f"at most {MAX_MINE_BLOCKS} blocks per call: every block of this persistent "
                "chain is executed and written to disk; call again to mine more"
            )
        if interval is not None and interval < 0:
            raise InvalidDevRequest(f"interval must not be negative, got {interval}")
        mined: list[BlockCommitted] = []
        for _ in range(blocks):
            if interval:
                self.clock.next_timestamp = self._chain.head.timestamp + interval
            event = await self._seq.produce(BlockRequest(allow_empty=True))
            assert event is not None  # allow_empty always makes a block
            mined.append(event)
        self.save()
        return mined

    # ------------------------------------------------------------ time
    def increase_time(self, seconds: int) -> int:
        """Move the chain's clock forward; return the total offset from wall time."""
        if seconds < 0:
            raise InvalidDevRequest(f"cannot decrease time: {seconds} seconds")
        self.clock.offset += seconds
        self.save()
        return self.clock.offset

    def set_next_timestamp(self, timestamp: int) -> None:
        head = self._chain.head
        if timestamp <= head.timestamp:
            raise InvalidDevRequest(
                f"timestamp {timestamp} is not after the latest block's timestamp "
                f"{head.timestamp} (block #{head.block_number}); each block's timestamp must "
                "be greater than its parent's"
            )
        self.clock.next_timestamp = timestamp
        self.save()

    def set_timestamp_interval(self, seconds: int | None) -> None:
        """Each next block `seconds` after its parent (None: follow the clock again)."""
        if seconds is not None and seconds < 1:
            raise InvalidDevRequest(f"timestamp interval must be at least 1, got {seconds}")
        self.clock.interval = seconds
        self.save()

    # ------------------------------------------------------------ state
    async def set_state(self, overrides: tuple[AccountOverride, ...]) -> BlockCommitted:
        """Commit `overrides` in a block of their own. Calls that arrive together (a JSON-RPC
        batch) share one block, applied in the order they arrived."""
        self._local_only("setting state (anvil_setBalance, setCode, setNonce, setStorageAt)")
        future: asyncio.Future[BlockCommitted] = asyncio.get_running_loop().create_future()
        self._queued.append((overrides, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_overrides())
        return await future

    async def _flush_overrides(self) -> None:
        while self._queued:
            batch, self._queued = self._queued, []
            merged = tuple(o for overrides, _ in batch for o in overrides)
            try:
                event = await self._seq.produce(
                    BlockRequest(
                        overrides=merged, include_pool=False, extra_data=OVERRIDE_EXTRA_DATA
                    )
                )
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            assert event is not None  # overrides always make a block
            log.info(
                "dev: block #%d carries state overrides for %d accounts",
                event.number,
                len({o.address for o in merged}),
            )
            for _, future in batch:
                if not future.done():
                    future.set_result(event)

    # ------------------------------------------------------------ snapshots
    def snapshot(self) -> int:
        head = self._chain.head
        clock = self.clock
        raw: bytes = msgpack.packb(
            [head.block_number, head.hash, clock.offset, clock.next_timestamp, clock.interval]
        )
        snapshot_id = self._store.save_dev_snapshot(raw)
        log.info("dev: snapshot %d at block #%d", snapshot_id, head.block_number)
        return snapshot_id

    async def revert(self, snapshot_id: int) -> bool:
        """Rewind to the head saved by `snapshot_id`, dropping it and every later snapshot.
        False (nothing changed) when the id is unknown or its block is no longer ours."""
        self._local_only("evm_revert")
        raw = self._store.load_dev_snapshot(snapshot_id)
        if raw is None:
            return False
        number, block_hash, offset, next_timestamp, interval = msgpack.unpackb(raw)
        if self._store.load_number(bytes(block_hash)) != number:
            return False
        await self._rewind(number, drop_snapshots_from=snapshot_id)
        clock = self.clock
        clock.offset, clock.next_timestamp, clock.interval = offset, next_timestamp, interval
        self.save()
        return True

    async def _rewind(self, number: int, *, drop_snapshots_from: int) -> None:
        """Delete the blocks above `number` with no block being produced meanwhile; queued
        impersonated sends are dropped with the history they were sent against."""
        async with self._seq.paused():
            event = await self._applier.rewind(number, drop_snapshots_from=drop_snapshots_from)
        for _, future in self._dev_txs:
            if not future.done():
                future.set_exception(
                    InvalidTransaction("dropped: the chain was reverted before it was mined")
                )
        self._dev_txs = []
        log.warning(
            "dev chain reverted to #%d 0x%s: %d blocks removed; txpool now %d pending, %d queued",
            number,
            event.block_hash.hex()[:16],
            len(event.removed),
            *self._pool.counts(),
        )

    # ------------------------------------------------------------ impersonation
    def impersonate(self, address: Address) -> None:
        self._local_only("impersonating an account")
        self.impersonated.add(address)
        self.save()

    def stop_impersonating(self, address: Address) -> None:
        self.impersonated.discard(address)
        self.save()

    def set_auto_impersonate(self, enabled: bool) -> None:
        if enabled:
            self._local_only("impersonating accounts")
        self.auto_impersonate = enabled
        self.save()

    def is_impersonated(self, address: Address) -> bool:
        return self.auto_impersonate or address in self.impersonated

    def pending_nonce(self, address: Address) -> int:
        """The next nonce for `address`, counting the pool and queued impersonated sends."""
        nonce = self._pool.pending_nonce(address, self._chain.head_view().nonce(address))
        for tx, _ in self._dev_txs:
            if tx.sender == address and tx.nonce >= nonce:
                nonce = tx.nonce + 1
        return nonce

    async def send_impersonated(self, request: ImpersonatedTx) -> bytes:
        """Send as `request.sender` without its key. With automine, answer once it is mined
        (or raise why it was not); otherwise it waits for the next block."""
        if not self.is_impersonated(request.sender):
            raise InvalidTransaction(
                f"0x{request.sender.hex()} is not impersonated: call anvil_impersonateAccount first"
            )
        tx = build_impersonated(self._chain.fork, self._chain.chain_id, request)
        self._validate(tx, request)
        future = self._submit(tx)
        self.save()  # durable before the answer, like the txpool journal
        if self._seq.automine:
            await future
        else:
            future.add_done_callback(_log_outcome)
        return bytes(tx.hash)

    def _validate(self, tx: SignedTransactionAPI, request: ImpersonatedTx) -> None:
        """The pool's stateful checks, with geth's messages (impersonated sends skip it)."""
        view = self._chain.head_view()
        sender = request.sender

        def fail(reason: str) -> InvalidTransaction:
            return InvalidTransaction(reason, bytes(tx.hash))

        if tx.gas > view.gas_limit:
            raise fail(f"exceeds block gas limit: gas {tx.gas}, block gas limit {view.gas_limit}")
        if tx.gas < tx.intrinsic_gas:
            raise fail(f"intrinsic gas too low: gas {tx.gas}, minimum needed {tx.intrinsic_gas}")
        fee_cap = request.gas_price if request.gas_price is not None else request.max_fee
        if fee_cap < view.next_base_fee:
            raise fail(
                f"max fee per gas less than block base fee: address 0x{sender.hex()}, "
                f"maxFeePerGas: {fee_cap}, baseFee: {view.next_base_fee}"
            )
        state_nonce = view.nonce(sender)
        if request.nonce < state_nonce:
            raise fail(
                f"nonce too low: address 0x{sender.hex()}, tx: {request.nonce} state: {state_nonce}"
            )
        balance = view.balance(sender)
        cost = tx.gas * fee_cap + request.value
        if balance < cost:
            raise fail(
                "insufficient funds for gas * price + value: address "
                f"0x{sender.hex()} have {balance} want {cost}"
            )


def _log_outcome(future: asyncio.Future[BlockCommitted]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.info("impersonated transaction not mined: %s", future.exception())
