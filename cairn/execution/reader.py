"""`ChainReader`: committed blocks, receipts and state decoded into py-evm objects.

Reads are lock-free: committed data is immutable and the head moves only after the batch
that wrote it is durable. Decoded headers and blocks are cached, each cache bounded by an
estimate of its bytes (a share of `--cache`), never by a number of blocks: a decoded block
costs ~2 KB per transfer it holds, so a count of blocks is no bound. Nothing here writes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from eth.abc import BlockAPI, BlockHeaderAPI, ReceiptAPI, SignedTransactionAPI, StateAPI
from eth.chains.base import ChainContext
from eth.db.backends.base import BaseDB
from eth_typing import Address

from cairn.execution.evmdb import EvmChainDB, StateOverlay
from cairn.execution.forks import Fork
from cairn.memory import DEFAULT_BUDGET, Footprint, MemoryBudget, SizedLru
from cairn.storage.store import ChainStore

# Bytes a decoded object holds, measured with tracemalloc (tests/unit/test_memory.py checks
# them): a header ~1.7 KB; a block ~1.2 KB per transaction beside its encoded transaction
# (held about three times over once decoded, hashed and formatted) and receipt (twice).
HEADER_BYTES = 1_800
BLOCK_BYTES = 4_096
TX_BYTES = 1_200


def estimate_block_bytes(transactions: tuple[bytes, ...], receipts: tuple[bytes, ...]) -> int:
    """Estimated bytes of a decoded block, from its encoded transactions and receipts."""
    return (
        BLOCK_BYTES
        + TX_BYTES * len(transactions)
        + 3 * sum(len(t) for t in transactions)
        + 2 * sum(len(r) for r in receipts)
    )


@dataclass(frozen=True)
class StoredBlock:
    """A canonical block with its transactions' senders and receipts."""

    block: BlockAPI
    senders: tuple[Address, ...]
    receipts: tuple[ReceiptAPI, ...]
    # estimated bytes held once decoded (what the block cache counts); 0 when not known
    size_estimate: int = field(default=0, compare=False)

    @property
    def header(self) -> BlockHeaderAPI:
        return self.block.header

    @property
    def transactions(self) -> tuple[SignedTransactionAPI, ...]:
        return tuple(self.block.transactions)


class ChainReader:
    def __init__(
        self,
        store: ChainStore,
        fork: Fork,
        chain_id: int,
        budget: MemoryBudget = DEFAULT_BUDGET,
    ) -> None:
        self.store = store
        self.fork = fork
        self.chain_id = chain_id
        self._chain_context = ChainContext(chain_id)
        # Caches are keyed by (generation, number): a dev-chain rewind bumps the generation,
        # so a block read concurrently with the rewind can never be served for its number.
        self._generation = 0
        self._headers: SizedLru[tuple[int, int], BlockHeaderAPI] = SizedLru(
            "headers", budget.headers, lambda _: HEADER_BYTES
        )
        self._blocks: SizedLru[tuple[int, int], StoredBlock] = SizedLru(
            "blocks", budget.blocks, lambda b: b.size_estimate
        )

    def forget_cached(self) -> None:
        """Drop cached blocks after history was rewritten (dev-chain rewinds only)."""
        self._generation += 1
        self._headers.clear()
        self._blocks.clear()

    def footprints(self) -> list[Footprint]:
        return [self._headers.footprint(), self._blocks.footprint()]

    # ---------------------------------------------------------------- headers
    def _load_header(self, number: int) -> BlockHeaderAPI:
        raw = self.store.load_header(number)
        if raw is None:
            raise KeyError(number)
        return self.fork.decode_header(raw)

    def header_by_number(self, number: int) -> BlockHeaderAPI | None:
        if number < 0 or number > self.store.head.number:
            return None
        key = (self._generation, number)
        header = self._headers.get(key)
        if header is None:
            try:
                header = self._load_header(number)
            except KeyError:
                return None
            self._headers.put(key, header)
        return header

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
    def _load_block(self, number: int) -> StoredBlock:
        header = self._load_header(number)
        body = self.store.load_body(number)
        receipts_raw = self.store.load_receipts(number)
        if body is None or receipts_raw is None:
            raise KeyError(number)
        txs = [self.fork.decode_transaction(raw) for raw in body.transactions]
        block_class = self.fork.vm_class.get_block_class()
        withdrawals = [self.fork.decode_withdrawal(raw) for raw in body.withdrawals]
        block = block_class(header, transactions=txs, uncles=[], withdrawals=withdrawals)
        return StoredBlock(
            block=block,
            senders=tuple(Address(s) for s in body.senders),
            receipts=tuple(self.fork.decode_receipt(r) for r in receipts_raw),
            size_estimate=estimate_block_bytes(body.transactions, receipts_raw),
        )

    def block_by_number(self, number: int) -> StoredBlock | None:
        if number < 0 or number > self.store.head.number:
            return None
        key = (self._generation, number)
        stored = self._blocks.get(key)
        if stored is None:
            try:
                stored = self._load_block(number)
            except KeyError:
                return None
            self._blocks.put(key, stored)
        return stored

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
