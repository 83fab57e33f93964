"""`ChainReader`: committed blocks, receipts and state decoded into py-evm objects.

Reads are lock-free: committed data is immutable and the head moves only after the batch
that wrote it is durable. Decoded headers are cached; nothing here writes.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from eth.abc import BlockAPI, BlockHeaderAPI, ReceiptAPI, SignedTransactionAPI, StateAPI
from eth.chains.base import ChainContext
from eth.db.backends.base import BaseDB
from eth_typing import Address

from cairn.execution.evmdb import EvmChainDB, StateOverlay
from cairn.execution.forks import Fork
from cairn.storage.store import ChainStore


@dataclass(frozen=True)
class StoredBlock:
    """A canonical block with its transactions' senders and receipts."""

    block: BlockAPI
    senders: tuple[Address, ...]
    receipts: tuple[ReceiptAPI, ...]

    @property
    def header(self) -> BlockHeaderAPI:
        return self.block.header

    @property
    def transactions(self) -> tuple[SignedTransactionAPI, ...]:
        return tuple(self.block.transactions)


class ChainReader:
    def __init__(self, store: ChainStore, fork: Fork, chain_id: int) -> None:
        self.store = store
        self.fork = fork
        self.chain_id = chain_id
        self._chain_context = ChainContext(chain_id)
        # Caches are keyed by (generation, number): a dev-chain rewind bumps the generation,
        # so a block read concurrently with the rewind can never be served for its number.
        self._generation = 0
        self._header_cache = functools.lru_cache(maxsize=8192)(self._load_header_cached)
        self._block_cache = functools.lru_cache(maxsize=256)(self._load_block_cached)

    def forget_cached(self) -> None:
        """Drop cached blocks after history was rewritten (dev-chain rewinds only)."""
        self._generation += 1
        self._header_cache.cache_clear()
        self._block_cache.cache_clear()

    # ---------------------------------------------------------------- headers
    def _load_header_cached(self, generation: int, number: int) -> BlockHeaderAPI:
        return self._load_header(number)

    def _load_header(self, number: int) -> BlockHeaderAPI:
        raw = self.store.load_header(number)
        if raw is None:
            raise KeyError(number)
        return self.fork.decode_header(raw)

    def header_by_number(self, number: int) -> BlockHeaderAPI | None:
        if number < 0 or number > self.store.head.number:
            return None
        try:
            return self._header_cache(self._generation, number)
        except KeyError:
            return None

    def header_by_hash(self, block_hash: bytes) -> BlockHeaderAPI | None:
        number = self.store.load_number(block_hash)
        return None if number is None else self.header_by_number(number)

    def head_header(self) -> BlockHeaderAPI:
        header = self.header_by_number(self.store.head.number)
        if header is None:
            raise LookupError("the head block's header is missing from storage")
        return header

    @property
    def head_number(self) -> int:
        return self.store.head.number

    # ---------------------------------------------------------------- blocks
    def _load_block_cached(self, generation: int, number: int) -> StoredBlock:
        return self._load_block(number)

    def _load_block(self, number: int) -> StoredBlock:
        header = self._load_header(number)
        body = self.store.load_body(number)
        receipts_raw = self.store.load_receipts(number)
        if body is None or receipts_raw is None:
            raise KeyError(number)
        txs = [self.fork.decode_transaction(raw) for raw in body.transactions]
        block_class = self.fork.vm_class.get_block_class()
        block = block_class(header, transactions=txs, uncles=[], withdrawals=[])
        return StoredBlock(
            block=block,
            senders=tuple(Address(s) for s in body.senders),
            receipts=tuple(self.fork.decode_receipt(r) for r in receipts_raw),
        )

    def block_by_number(self, number: int) -> StoredBlock | None:
        if number < 0 or number > self.store.head.number:
            return None
        try:
            return self._block_cache(self._generation, number)
        except KeyError:
            return None

    def block_by_hash(self, block_hash: bytes) -> StoredBlock | None:
        number = self.store.load_number(block_hash)
        return None if number is None else self.block_by_number(number)

    def tx_location(self, tx_hash: bytes) -> tuple[int, int] | None:
        return self.store.load_tx_location(tx_hash)

    # ---------------------------------------------------------------- state
    def state_db(self) -> BaseDB:
        return self.store.state_db()

    def evm_chaindb(self, overlay: StateOverlay) -> EvmChainDB:
        return EvmChainDB(overlay.db, self)

    def state_at(self, header: BlockHeaderAPI) -> StateAPI:
        """A throw-away py-evm state after `header`; writes to it never reach disk."""
        overlay = StateOverlay(self.store.state_db())
        state: StateAPI = self.fork.vm_class.build_state(overlay.db, header, self._chain_context)
        return state
