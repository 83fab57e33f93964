"""Cairn's subclass of each fork's VM: the same rules, without costs py-evm pays needlessly.

- transactions/receipts roots come from `roots.ordered_trie_root` instead of a HexaryTrie
  whose nodes nobody reads (the receipts are handed to the chain DB view directly, for
  Prague's deposit-request scan);
- blocks and headers are rebuilt with `_replace` instead of rlp's `Serializable.copy`, which
  deep-copies every field it keeps — on a block, all of its transactions, three times;
- `validate_block` keeps the header and blob checks but not the recomputation of the roots
  just computed: for imported blocks the final header comparison in `builder.import_block`
  checks every root against the one the block claims;
- a contract's jump-destination analysis (which positions are PUSH data) is kept per code
  and shared by every computation running that code, instead of redone by each (in a cache
  of CODE_ANALYSIS_BYTES per process);
- the trie library's memo of encoded nodes (an LRU of 4,096 entries keyed by the trie, which
  keeps each block's scratch trie and state overlay alive: ~80 blocks' worth) is emptied once
  a block's state is persisted;
- Prague's requests hash is set on the block without a deep copy of it either;
- a balance or nonce change builds the new account record directly instead of through rlp's
  `Serializable.copy`, which deep-copies every unchanged field (ints and bytes): 4-6 such
  changes per transaction made it ~14% of block building.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from hashlib import sha256
from typing import Any, TypeVar, cast

from eth.abc import (
    BlockAndMetaWitness,
    BlockAPI,
    BlockHeaderAPI,
    ReceiptAPI,
    SignedTransactionAPI,
    WithdrawalAPI,
)
from eth.db.account import AccountDB
from eth.rlp.accounts import Account
from eth.validation import validate_canonical_address, validate_uint64, validate_uint256
from eth.vm.base import VM
from eth.vm.code_stream import CodeStream
from eth.vm.computation import BaseComputation
from eth.vm.interrupt import EVMMissingData
from eth.vm.state import BaseState
from eth_bloom import BloomFilter
from eth_typing import Address
from trie.hexary import HexaryTrie

from cairn.execution.roots import ordered_trie_root
from cairn.memory import Footprint, SizedLru

T = TypeVar("T", BlockAPI, BlockHeaderAPI)


def _replace(obj: T, **changes: Any) -> T:
    """A copy of an (immutable) rlp object with some fields changed, and no deep copy."""
    fields: dict[str, Any] = {name: getattr(obj, name) for name in obj._meta.field_names}  # type: ignore[attr-defined]
    fields.update(changes)
    return type(obj)(**fields)


class _CairnVM(VM):
    def add_receipt_to_header(
        self, old_header: BlockHeaderAPI, receipt: ReceiptAPI
    ) -> BlockHeaderAPI:
        return _replace(
            old_header,
            bloom=int(BloomFilter(old_header.bloom) | receipt.bloom),
            gas_used=receipt.gas_used,
        )

    def set_block_transactions_and_withdrawals(
        self,
        base_block: BlockAPI,
        new_header: BlockHeaderAPI,
        transactions: Sequence[SignedTransactionAPI],
        receipts: Sequence[ReceiptAPI],
        withdrawals: Sequence[WithdrawalAPI] | None = None,
    ) -> BlockAPI:
        receipt_root = ordered_trie_root([r.encode() for r in receipts])
        remember = getattr(self.chaindb, "remember_receipts", None)
        if remember is not None:
            remember(receipt_root, tuple(receipts))
        header_fields: dict[str, Any] = {
            "transaction_root": ordered_trie_root([tx.encode() for tx in transactions]),
            "receipt_root": receipt_root,
        }
        block_fields: dict[str, Any] = {"transactions": tuple(transactions)}
        if withdrawals:
            header_fields["withdrawals_root"] = ordered_trie_root([w.encode() for w in withdrawals])
            block_fields["withdrawals"] = tuple(withdrawals)
        block_fields["header"] = _replace(new_header, **header_fields)
        return _replace(base_block, **block_fields)

    def pack_block(self, block: BlockAPI, *args: Any, **kwargs: Any) -> BlockAPI:
        if args or kwargs:
            return super().pack_block(block, *args, **kwargs)
        return block  # nothing to set: the base class would deep-copy every transaction

    @staticmethod
    def compute_requests_hash(block: BlockAPI) -> BlockAPI:
        """Prague's EIP-7685 requests hash, as py-evm computes it, set without its deep copy
        of the block (every transaction)."""
        digest = sha256()
        for request in getattr(block, "block_requests", ()):
            if len(request) > 1:
                digest.update(sha256(request).digest())
        return _replace(block, header=_replace(block.header, requests_hash=digest.digest()))

    def finalize_block(self, block: BlockAPI) -> BlockAndMetaWitness:
        # VM.finalize_block, rebuilding the block without deep copies.
        if block.number > 0:
            snapshot = self.state.snapshot()
            try:
                self._assign_block_rewards(block)
            except EVMMissingData:
                self.state.revert(snapshot)
                raise
            else:
                self.state.commit(snapshot)
        meta_witness = self.state.persist()
        _forget_trie_memo()
        header = _replace(block.header, state_root=self.state.state_root)
        return BlockAndMetaWitness(_replace(block, header=header), meta_witness)

    def validate_block(self, block: BlockAPI) -> None:
        parent = self.chaindb.get_block_header_by_hash(block.header.parent_hash)
        self.validate_header(block.header, parent)
        validate_blobs = getattr(self, "validate_block_blobs", None)
        if validate_blobs is not None:
            validate_blobs(block)


def _forget_trie_memo() -> None:
    """Empty `HexaryTrie`'s method-level LRU: its keys hold the trie they were made by, and
    through it the block's scratch trie, state overlay and read log."""
    HexaryTrie._cached_create_node_to_db_mapping.cache_clear()


# Jump-destination memos per contract code, for the whole process (a pure function of the
# code, so nodes and calls may share it). An entry is estimated at three times its code's
# length: the code itself, and the sets of positions checked so far (at most one per byte,
# ~60 bytes each, though a run checks only its jump targets).
CODE_ANALYSIS_BYTES = 16 * 1024 * 1024
_analyses: SizedLru[bytes, tuple[set[int], set[int]]] = SizedLru(
    "code_analysis", CODE_ANALYSIS_BYTES
)


def _code_analysis(code: bytes) -> tuple[set[int], set[int]]:
    """The (valid, invalid) jump-target memo of one contract's code, filled as it runs."""
    memo = _analyses.get(code)
    if memo is None:
        memo = (set(), set())
        _analyses.put(code, memo, 256 + 3 * len(code))
    return memo


def code_analysis_footprint() -> Footprint:
    return _analyses.footprint()


class _AnalysedCodeStream(CodeStream):
    """py-evm's CodeStream whose position memo is shared by all runs of the same code: the
    memo is a pure function of the bytes, and py-evm otherwise rebuilds it for every call."""

    __slots__ = ()

    def __init__(self, code_bytes: bytes) -> None:
        self.program_counter = 0
        self._raw_code_bytes = code_bytes
        self._length_cache = len(code_bytes)
        self.valid_positions, self.invalid_positions = _code_analysis(code_bytes)


class _CairnAccountDB(AccountDB):
    def set_balance(self, address: Address, balance: int) -> None:
        validate_canonical_address(address, title="Storage Address")
        validate_uint256(balance, title="Account Balance")
        old = self._get_account(address)
        self._set_account(address, Account(old.nonce, balance, old.storage_root, old.code_hash))

    def set_nonce(self, address: Address, nonce: int) -> None:
        validate_canonical_address(address, title="Storage Address")
        validate_uint64(nonce, title="Nonce")
        old = self._get_account(address)
        self._set_account(address, Account(nonce, old.balance, old.storage_root, old.code_hash))


class _CairnComputation(BaseComputation):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.code = _AnalysedCodeStream(self.msg.code)


@cache
def cairn_vm(base: type[VM]) -> type[VM]:
    """`base` with Cairn's faster block assembly; behaviour and results are identical."""
    state = cast(type[BaseState], base.get_state_class())
    computation = type(
        f"Cairn{state.computation_class.__name__}", (_CairnComputation, state.computation_class), {}
    )
    fields: dict[str, Any] = {"computation_class": computation}
    if state.account_db_class is AccountDB:
        fields["account_db_class"] = _CairnAccountDB
    cairn_state = type(f"Cairn{state.__name__}", (state,), fields)
    return type(f"Cairn{base.__name__}", (_CairnVM, base), {"_state_class": cairn_state})
