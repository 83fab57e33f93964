"""Dev-chain control of the local sequencer: mining on demand, block time, state overrides,
snapshots and rewinds, and impersonated senders (what evm_*, anvil_* and hardhat_* drive).

The chain is persistent, so every change here is durable, and every state change is a block:
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
from typing import Any

import msgpack
from eth.abc import SignedTransactionAPI
from eth_typing import Address

from cairn.consensus.sequencer import Sequencer
from cairn.errors import InvalidDevRequest, InvalidTransaction
from cairn.execution.chain import BlockCommitted, Chain
from cairn.execution.devstate import (
    AccountOverride,
    ImpersonatedTx,
    build_impersonated,
    impersonate,
    unwrap,
)
from cairn.execution.events import ChainEvents
from cairn.storage.store import ChainStore
from cairn.txpool.pool import TxPool

log = logging.getLogger("cairn.dev")

# Every mined block is executed and fsync'd, so one call may not ask for a million of them.
MAX_MINE_BLOCKS = 10_000
OVERRIDE_EXTRA_DATA = b"cairn dev: state override"


class DevChain:
    def __init__(
        self,
        chain: Chain,
        store: ChainStore,
        sequencer: Sequencer,
        pool: TxPool,
        events: ChainEvents,
    ) -> None:
        self._chain = chain
        self._store = store
        self._seq = sequencer
        self._pool = pool
        self.impersonated: set[Address] = set()
        self.auto_impersonate = False
        self._queued: list[tuple[tuple[AccountOverride, ...], asyncio.Future[BlockCommitted]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._saved: bytes | None = None
        self._load()
        events.subscribe(self._on_block)

    # ------------------------------------------------------------ persistence
    def _settings(self) -> bytes:
        clock = self._seq.clock
        packed: bytes = msgpack.packb(
            {
                "offset": clock.offset,
                "next": clock.next_timestamp,
                "interval": clock.interval,
                "impersonated": sorted(bytes(a) for a in self.impersonated),
                "auto": self.auto_impersonate,
                # impersonated sends waiting for a block (manual or interval mining)
                "queued": [
                    [unwrap(tx).encode(), bytes(tx.sender)]
                    for tx in self._seq.impersonated_pending()
                ],
            }
        )
        return packed

    def _load(self) -> None:
        raw = self._store.load_dev_settings()
        if raw is None:
            return
        data: dict[str, Any] = msgpack.unpackb(raw)
        clock = self._seq.clock
        clock.offset = int(data.get("offset", 0))
        clock.next_timestamp = data.get("next")
        clock.interval = data.get("interval")
        self.impersonated = {Address(bytes(a)) for a in data.get("impersonated", [])}
        self.auto_impersonate = bool(data.get("auto", False))
        queued = data.get("queued", [])
        for encoded, sender in queued:
            tx = impersonate(self._chain.fork.decode_transaction(bytes(encoded)), Address(sender))
            self._seq.submit_impersonated(tx).add_done_callback(_log_outcome)
        self._saved = raw
        log.info(
            "dev settings restored: time offset %ds, %d impersonated accounts, "
            "%d impersonated sends waiting",
            clock.offset,
            len(self.impersonated),
            len(queued),
        )

    def save(self) -> None:
        """Persist clock and impersonation settings if they changed (a synced write)."""
        raw = self._settings()
        if raw != self._saved:
            self._store.save_dev_settings(raw)
            self._saved = raw

    def _on_block(self, event: BlockCommitted) -> None:
        # a block may have consumed evm_setNextBlockTimestamp (moving the clock offset) or
        # mined queued impersonated sends
        self.save()

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
                self._seq.clock.next_timestamp = self._chain.head.timestamp + interval
            event = await self._seq.produce(allow_empty=True)
            assert event is not None  # allow_empty always makes a block
            mined.append(event)
        self.save()
        return mined

    # ------------------------------------------------------------ time
    def increase_time(self, seconds: int) -> int:
        """Move the chain's clock forward; return the total offset from wall time."""
        if seconds < 0:
            raise InvalidDevRequest(f"cannot decrease time: {seconds} seconds")
        self._seq.clock.offset += seconds
        self.save()
        return self._seq.clock.offset

    def set_next_timestamp(self, timestamp: int) -> None:
        head = self._chain.head
        if timestamp <= head.timestamp:
            raise InvalidDevRequest(
                f"timestamp {timestamp} is not after the latest block's timestamp "
                f"{head.timestamp} (block #{head.block_number}); each block's timestamp must "
                "be greater than its parent's"
            )
        self._seq.clock.next_timestamp = timestamp
        self.save()

    def set_timestamp_interval(self, seconds: int | None) -> None:
        """Each next block `seconds` after its parent (None: follow the clock again)."""
        if seconds is not None and seconds < 1:
            raise InvalidDevRequest(f"timestamp interval must be at least 1, got {seconds}")
        self._seq.clock.interval = seconds
        self.save()

    # ------------------------------------------------------------ state
    async def set_state(self, overrides: tuple[AccountOverride, ...]) -> BlockCommitted:
        """Commit `overrides` in a block of their own. Calls that arrive together (a JSON-RPC
        batch) share one block, applied in the order they arrived."""
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
                    overrides=merged, include_pool=False, extra_data=OVERRIDE_EXTRA_DATA
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
        clock = self._seq.clock
        raw: bytes = msgpack.packb(
            [head.block_number, head.hash, clock.offset, clock.next_timestamp, clock.interval]
        )
        snapshot_id = self._store.save_dev_snapshot(raw)
        log.info("dev: snapshot %d at block #%d", snapshot_id, head.block_number)
        return snapshot_id

    async def revert(self, snapshot_id: int) -> bool:
        """Rewind to the head saved by `snapshot_id`, dropping it and every later snapshot.
        False (nothing changed) when the id is unknown or its block is no longer ours."""
        raw = self._store.load_dev_snapshot(snapshot_id)
        if raw is None:
            return False
        number, block_hash, offset, next_timestamp, interval = msgpack.unpackb(raw)
        if self._store.load_number(bytes(block_hash)) != number:
            return False
        await self._seq.rewind(number, drop_snapshots_from=snapshot_id)
        clock = self._seq.clock
        clock.offset, clock.next_timestamp, clock.interval = offset, next_timestamp, interval
        self.save()
        return True

    # ------------------------------------------------------------ impersonation
    def impersonate(self, address: Address) -> None:
        self.impersonated.add(address)
        self.save()

    def stop_impersonating(self, address: Address) -> None:
        self.impersonated.discard(address)
        self.save()

    def set_auto_impersonate(self, enabled: bool) -> None:
        self.auto_impersonate = enabled
        self.save()

    def is_impersonated(self, address: Address) -> bool:
        return self.auto_impersonate or address in self.impersonated

    def pending_nonce(self, address: Address) -> int:
        """The next nonce for `address`, counting the pool and queued impersonated sends."""
        nonce = self._pool.pending_nonce(address, self._chain.head_view().nonce(address))
        for tx in self._seq.impersonated_pending():
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
        future = self._seq.submit_impersonated(tx)
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
