"""Build a block from transactions, import one made elsewhere, or replay a stored one (for
tracing too), with py-evm.

All run one function, `BlockExecutor._execute`, the steps py-evm's `VM.import_block` runs
(pre-processing, transactions, withdrawals, post-processing, finalisation); building skips
transactions that turn out invalid, importing and replaying reject the block instead and then
check every root against the header it was given. Tracing only swaps in an instrumented VM
class and a hook around each transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

from eth.abc import (
    BlockAPI,
    BlockHeaderAPI,
    ComputationAPI,
    ReceiptAPI,
    SignedTransactionAPI,
    StateAPI,
    WithdrawalAPI,
)
from eth.chains.base import ChainContext
from eth.consensus.context import ConsensusContext
from eth.vm.base import VM
from eth_typing import Address
from eth_utils import ValidationError

from cairn.errors import InvalidBlock
from cairn.execution.devstate import (
    NO_EXTRAS,
    DevExtras,
    impersonated_sender,
    unwrap,
    with_impersonation,
)
from cairn.execution.evmdb import StateOverlay
from cairn.execution.forks import encode_header
from cairn.execution.overrides import AccountOverride, apply_overrides
from cairn.execution.reader import ChainReader
from cairn.storage.store import BlockRecord

ZERO_HASH = b"\x00" * 32
BLOB_TX_TYPE = 3
# A context entered around the execution of transaction `index` of a replayed block, given
# the state it runs on (read-only for the hook).
TxHook = Callable[[int, StateAPI], AbstractContextManager[None]]
# Header fields a producer chooses; everything else follows from parent and execution.
_CHOSEN_FIELDS = (
    "timestamp",
    "coinbase",
    "gas_limit",
    "extra_data",
    "mix_hash",
    "parent_beacon_block_root",
)
_CHECKED_FIELDS = (
    "state_root",
    "receipt_root",
    "transaction_root",
    "gas_used",
    "bloom",
    "base_fee_per_gas",
    "blob_gas_used",
    "excess_blob_gas",
    "requests_hash",
    "withdrawals_root",
    "uncles_hash",
    "difficulty",
    "nonce",
)


@dataclass(frozen=True)
class BlockEnv:
    """What a producer decides about the next block; the rest is derived."""

    parent: BlockHeaderAPI
    timestamp: int
    coinbase: Address
    gas_limit: int
    extra_data: bytes = b""
    prev_randao: bytes = ZERO_HASH
    parent_beacon_root: bytes = ZERO_HASH
    # Dev chains only: account changes applied before the block's transactions.
    overrides: tuple[AccountOverride, ...] = ()


@dataclass(frozen=True)
class Rejected:
    tx: SignedTransactionAPI
    reason: str


@dataclass(frozen=True)
class BlockResult:
    """An executed block and everything the commit needs; nothing is on disk yet."""

    block: BlockAPI
    receipts: tuple[ReceiptAPI, ...]
    senders: tuple[Address, ...]
    computations: tuple[ComputationAPI, ...]
    state_writes: Mapping[bytes, bytes]
    rejected: tuple[Rejected, ...] = ()
    deferred: tuple[SignedTransactionAPI, ...] = field(default=())
    # Accounts execution read or wrote (py-evm's meta witness), internal transfers included.
    touched: tuple[Address, ...] = ()
    dev_extras: DevExtras = NO_EXTRAS

    @property
    def header(self) -> BlockHeaderAPI:
        return self.block.header

    def to_record(self, commit: bytes) -> BlockRecord:
        txs = self.block.transactions
        return BlockRecord(
            number=self.header.block_number,
            block_hash=self.header.hash,
            header=encode_header(self.header),
            transactions=tuple(tx.encode() for tx in txs),
            tx_hashes=tuple(tx.hash for tx in txs),
            senders=tuple(bytes(s) for s in self.senders),
            receipts=tuple(r.encode() for r in self.receipts),
            commit=commit,
            withdrawals=tuple(w.encode() for w in getattr(self.block, "withdrawals", ())),
            state_writes=self.state_writes,
            touched=tuple(bytes(a) for a in self.touched),
            dev_extras=self.dev_extras.encode() if self.dev_extras else b"",
        )


class BlockExecutor:
    """Runs blocks on top of the committed chain that `reader` sees."""

    def __init__(self, reader: ChainReader) -> None:
        self.reader = reader
        self.vm_class: type[VM] = reader.fork.vm_class
        self._chain_context = ChainContext(reader.chain_id)

    def build(self, env: BlockEnv, candidates: Iterable[SignedTransactionAPI]) -> BlockResult:
        """Execute as many candidates as fit; invalid ones are reported, not fatal."""
        template = self.vm_class.create_header_from_parent(
            env.parent,
            timestamp=env.timestamp,
            coinbase=env.coinbase,
            gas_limit=env.gas_limit,
            extra_data=env.extra_data,
            mix_hash=env.prev_randao,
            parent_beacon_block_root=env.parent_beacon_root,
        )
        try:
            return self._execute(template, candidates, strict=False, overrides=env.overrides)
        except ValidationError as exc:
            raise InvalidBlock(template.block_number, ZERO_HASH, str(exc)) from exc

    def import_block(self, block: BlockAPI) -> BlockResult:
        """Re-execute a block made elsewhere; raise `InvalidBlock` unless every root matches.
        What full nodes and validators run: the block's transactions and nothing else."""
        return self._reexecute(block, NO_EXTRAS)

    def replay(
        self,
        block: BlockAPI,
        extras: DevExtras,
        *,
        vm_class: type[VM] | None = None,
        around_tx: TxHook | None = None,
    ) -> BlockResult:
        """Re-execute one of this node's stored blocks with the dev record stored beside it
        (state overrides, impersonated senders; empty for every ordinary block).

        Tracing replays this way: `vm_class` is the fork's VM with instruments attached, and
        `around_tx(index)` a context entered around each transaction's execution. Every root
        is checked as on import, so a trace is always of the block the chain holds."""
        return self._reexecute(block, extras, vm_class, around_tx)

    def _reexecute(
        self,
        block: BlockAPI,
        extras: DevExtras,
        vm_class: type[VM] | None = None,
        around_tx: TxHook | None = None,
    ) -> BlockResult:
        claimed = block.header
        parent = self.reader.header_by_hash(claimed.parent_hash)
        if parent is None:
            raise InvalidBlock(
                claimed.block_number, claimed.hash, "unknown parent 0x" + claimed.parent_hash.hex()
            )
        if claimed.block_number != parent.block_number + 1:
            raise InvalidBlock(
                claimed.block_number,
                claimed.hash,
                f"number {claimed.block_number} does not follow parent #{parent.block_number}",
            )
        fields = {name: getattr(claimed, name) for name in _CHOSEN_FIELDS if hasattr(claimed, name)}
        try:
            template = (vm_class or self.vm_class).create_header_from_parent(parent, **fields)
            txs = with_impersonation(
                claimed.block_number, claimed.hash, block.transactions, extras.impersonated
            )
            result = self._execute(
                template,
                txs,
                strict=True,
                overrides=extras.overrides,
                withdrawals=tuple(getattr(block, "withdrawals", ())),
                vm_class=vm_class,
                around_tx=around_tx,
            )
        except ValidationError as exc:
            raise InvalidBlock(claimed.block_number, claimed.hash, str(exc)) from exc
        computed = result.header
        if computed.hash != claimed.hash:
            for name in _CHECKED_FIELDS:
                mine, theirs = getattr(computed, name, None), getattr(claimed, name, None)
                if mine != theirs:
                    raise InvalidBlock(
                        claimed.block_number,
                        claimed.hash,
                        f"{name} mismatch: block says {_show(theirs)}, "
                        f"re-execution gives {_show(mine)}",
                    )
            raise InvalidBlock(
                claimed.block_number,
                claimed.hash,
                f"header hash mismatch: re-execution gives 0x{computed.hash.hex()}",
            )
        return result

    def _execute(
        self,
        template: BlockHeaderAPI,
        candidates: Iterable[SignedTransactionAPI],
        *,
        strict: bool,
        overrides: tuple[AccountOverride, ...] = (),
        withdrawals: tuple[WithdrawalAPI, ...] = (),
        vm_class: type[VM] | None = None,
        around_tx: TxHook | None = None,
    ) -> BlockResult:
        """The one execution of a block's transactions: building, importing, replaying and
        tracing all run it."""
        overlay = StateOverlay(self.reader.store.state_db())
        chaindb = self.reader.evm_chaindb(overlay)
        vm = (vm_class or self.vm_class)(
            header=template,
            chaindb=chaindb,
            chain_context=self._chain_context,
            consensus_context=ConsensusContext(overlay.db),
        )
        vm.block_preprocessing(vm.get_block())
        if overrides:
            apply_overrides(vm.state, overrides)

        header = vm.get_header()
        applied: list[SignedTransactionAPI] = []
        receipts: list[ReceiptAPI] = []
        computations: list[ComputationAPI] = []
        senders: list[Address] = []
        rejected: list[Rejected] = []
        deferred: list[SignedTransactionAPI] = []
        held_back: set[Address] = set()
        impersonated: list[tuple[int, Address]] = []

        for tx in candidates:
            sender = tx.sender
            if not strict:
                if sender in held_back:
                    deferred.append(tx)
                    continue
                if tx.gas > header.gas_limit - header.gas_used:
                    held_back.add(sender)
                    deferred.append(tx)
                    continue
            # Validate first: py-evm's apply_transaction locks the state's journal before
            # it validates, so a snapshot taken here could not be reverted to afterwards, and
            # a transaction that fails validation has changed nothing to revert.
            try:
                vm.validate_transaction_against_header(header, tx)
                vm.state.validate_transaction(tx)
            except ValidationError as exc:
                if strict:
                    raise ValidationError(
                        f"transaction 0x{tx.hash.hex()} (index {len(applied)}): {exc}"
                    ) from exc
                held_back.add(sender)
                rejected.append(Rejected(tx, str(exc)))
                continue
            # Past validation nothing may fail quietly: a half-applied transaction would be in
            # the state but not the block. An error here fails the whole block.
            if around_tx is None:
                receipt, computation = vm.apply_transaction(header, tx)
            else:
                with around_tx(len(applied), vm.state):
                    receipt, computation = vm.apply_transaction(header, tx)
            header = vm.add_receipt_to_header(header, receipt)
            if tx.type_id == BLOB_TX_TYPE:  # a header copy per transaction is costly; skip it
                header = vm.increment_blob_gas_used(header, tx)
            spoofed_as = impersonated_sender(tx)
            if spoofed_as is not None:
                impersonated.append((len(applied), spoofed_as))
            applied.append(unwrap(tx))
            receipts.append(receipt)
            computations.append(computation)
            senders.append(sender)

        if withdrawals:  # Cairn producers make none; blocks of other clients carry them
            vm.apply_all_withdrawals(withdrawals)
        filled = vm.set_block_transactions_and_withdrawals(
            vm.get_block(), header, applied, receipts, withdrawals=withdrawals
        )
        mined, witness = vm.mine_block(vm.block_postprocessing(filled))
        return BlockResult(
            block=mined,
            receipts=tuple(receipts),
            senders=tuple(senders),
            computations=tuple(computations),
            state_writes=overlay.pending(),
            rejected=tuple(rejected),
            deferred=tuple(deferred),
            touched=tuple(sorted(witness.accounts_queried)),
            dev_extras=DevExtras(overrides, tuple(impersonated)),
        )


def _show(value: object) -> str:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return repr(value)
