"""`Chain`: the committed chain as one object — reads, the head view, execution on top of
it, and the synced write.

`write_block` and `rewind` are the only ways the head moves; both run on the writer thread and
are called by `BlockApplier` only (cairn/chain/apply.py), which checks the commit before and
does every after-commit step after.
"""

from __future__ import annotations

import threading
from pathlib import Path

from eth.abc import BlockHeaderAPI, StateAPI
from eth.vm.forks.london.headers import calculate_expected_base_fee_per_gas
from eth_typing import Address

from cairn.errors import InvalidBlock
from cairn.execution.builder import BlockExecutor, BlockResult
from cairn.execution.forks import Fork
from cairn.execution.genesis import genesis_block
from cairn.execution.reader import ChainReader, StoredBlock
from cairn.genesis.model import Genesis
from cairn.memory import DEFAULT_BUDGET, MemoryBudget
from cairn.storage.store import BlockKeys, ChainIdentity, ChainStore, Head

# A head view is rebuilt after this many uses even if the head has not moved: py-evm's state
# logs every account and trie node it reads (for block witnesses), ~310 bytes per distinct
# account, so a view kept for hours on an idle chain would grow with every account read.
HEAD_VIEW_USES = 10_000


class HeadView:
    """The head block's state, as the txpool and RPC's "latest" read it."""

    def __init__(self, header: BlockHeaderAPI, state: StateAPI) -> None:
        self.header = header
        self.state = state
        self.number = header.block_number
        self.gas_limit = header.gas_limit
        self.next_base_fee = calculate_expected_base_fee_per_gas(header)

    def nonce(self, address: Address) -> int:
        return self.state.get_nonce(address)

    def balance(self, address: Address) -> int:
        return self.state.get_balance(address)


def open_store(
    path: Path, genesis: Genesis, fork: Fork, budget: MemoryBudget = DEFAULT_BUDGET
) -> ChainStore:
    """Open the chain directory for `genesis`, refusing (untouched) one of another chain."""
    identity = ChainIdentity(genesis_block(genesis, fork).header.hash, genesis.chain_id)
    return ChainStore(path, identity, block_cache_bytes=budget.leveldb)


class Chain:
    def __init__(
        self,
        store: ChainStore,
        genesis: Genesis,
        fork: Fork,
        budget: MemoryBudget = DEFAULT_BUDGET,
    ) -> None:
        self.store = store
        self.genesis = genesis
        self.fork = fork
        self.chain_id = genesis.chain_id
        genesis_result = genesis_block(genesis, fork)
        self.genesis_hash = genesis_result.header.hash
        store.validate_genesis(self.genesis_hash, genesis.chain_id)
        if not store.is_initialized:
            store.initialize(genesis_result.to_record(b""), genesis.chain_id)
        self.reader = ChainReader(store, fork, genesis.chain_id, budget)
        self.executor = BlockExecutor(self.reader)
        self._commit_lock = threading.Lock()
        self._head_view: HeadView | None = None
        self._head_view_uses = 0

    @property
    def head(self) -> BlockHeaderAPI:
        return self.reader.head_header()

    def head_view(self) -> HeadView:
        header = self.reader.head_header()
        view = self._head_view
        self._head_view_uses += 1
        if view is None or view.header.hash != header.hash or self._head_view_uses > HEAD_VIEW_USES:
            view = HeadView(header, self.reader.state_at(header))
            self._head_view = view
            self._head_view_uses = 0
        return view

    def write_block(self, result: BlockResult, commit: bytes) -> None:
        """Write `result` and its commit in one synced batch; refuse anything but head + 1."""
        header = result.header
        with self._commit_lock:
            head = self.store.head
            if header.parent_hash != head.block_hash or header.block_number != head.number + 1:
                raise InvalidBlock(
                    header.block_number,
                    header.hash,
                    f"does not extend the head #{head.number} 0x{head.block_hash.hex()}",
                )
            self.store.commit_block(result.to_record(commit))

    def rewind(
        self, number: int, *, drop_snapshots_from: int | None = None
    ) -> tuple[StoredBlock, ...]:
        """Delete the blocks above `number` (dev chains: evm_revert) in one synced batch and
        return them, oldest first. This rewrites local history; callers refuse it elsewhere."""
        with self._commit_lock:
            head = self.store.head
            if number < 0 or number > head.number:
                raise ValueError(f"cannot rewind to #{number}: the head is #{head.number}")
            target = self.reader.header_by_number(number)
            if target is None:
                raise LookupError(f"block #{number} is missing from storage")
            removed: list[StoredBlock] = []
            for n in range(number + 1, head.number + 1):
                stored = self.reader.block_by_number(n)
                if stored is None:
                    raise LookupError(f"block #{n} is missing from storage")
                removed.append(stored)
            self.store.rewind(
                Head(number, target.hash),
                [
                    BlockKeys(
                        b.header.block_number, b.header.hash, tuple(t.hash for t in b.transactions)
                    )
                    for b in removed
                ],
                drop_snapshots_from=drop_snapshots_from,
            )
            self.reader.forget_cached()
            self._head_view = None
        return tuple(removed)
