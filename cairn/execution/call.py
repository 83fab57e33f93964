"""eth_call, eth_estimateGas and access-list creation: run a message on a block's state
without a signature and without keeping any change, within a wall-clock limit.

The limit (geth's --rpc.evmtimeout) is a per-thread deadline that the computation classes
built here check where execution can go on for long: at every frame (CALL, CREATE,
precompile) and at every JUMP/JUMPI (any loop). Straight-line code between two jumps is at
most one contract's code. Past it, `ExecutionTimeout` leaves py-evm (it is not a VMError,
so no frame swallows it) and the state the call ran on is thrown away.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Protocol, cast

from eth.abc import (
    BlockHeaderAPI,
    ComputationAPI,
    SignedTransactionAPI,
    StateAPI,
    UnsignedTransactionAPI,
)
from eth.chains.base import ChainContext
from eth.consensus.context import ConsensusContext
from eth.db.backends.base import BaseDB
from eth.exceptions import Revert
from eth.vm.base import VM
from eth.vm.computation import BaseComputation
from eth.vm.forks.berlin.transactions import BerlinTransactionBuilder
from eth.vm.spoof import SpoofTransaction
from eth.vm.state import BaseState, BaseTransactionExecutor
from eth_typing import Address, Hash32
from eth_utils import ValidationError

from cairn.errors import ExecutionFailed, ExecutionTimeout, TransactionReverted
from cairn.execution.evmdb import EvmChainDB, StateOverlay
from cairn.execution.forks import Fork
from cairn.execution.overrides import AccountOverride, apply_overrides
from cairn.execution.vmerrors import geth_vm_error

ZERO_ADDRESS = Address(b"\x00" * 20)
TRANSFER_GAS = 21_000
DEFAULT_TIMEOUT = 5.0  # geth's --rpc.evmtimeout
JUMP, JUMPI = 0x56, 0x57


# ------------------------------------------------------------------ the deadline
class _Deadline(threading.local):
    at = 0.0  # time.monotonic() past which execution stops; 0 is none
    timeout = 0.0


_DEADLINE = _Deadline()


@contextmanager
def execution_deadline(timeout: float) -> Iterator[None]:
    """Execution on this thread inside the block raises `ExecutionTimeout` once `timeout`
    seconds have passed (0: no limit of its own). Inside another block, the earlier of the
    two deadlines holds, and the outer one is back when this block ends."""
    outer_at, outer_timeout = _DEADLINE.at, _DEADLINE.timeout
    if timeout > 0:
        at = time.monotonic() + timeout
        if not outer_at or at < outer_at:
            _DEADLINE.at, _DEADLINE.timeout = at, timeout
    try:
        yield
    finally:
        _DEADLINE.at, _DEADLINE.timeout = outer_at, outer_timeout


def check_deadline() -> None:
    at = _DEADLINE.at
    if at and time.monotonic() > at:
        raise ExecutionTimeout(_DEADLINE.timeout)


class _DeadlineJump:
    """JUMP/JUMPI, checking the deadline first: every loop passes here."""

    __slots__ = ("gas_cost", "inner", "mnemonic")

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.mnemonic = getattr(inner, "mnemonic", "JUMP")
        self.gas_cost = getattr(inner, "gas_cost", 0)

    def __call__(self, computation: Any) -> None:
        at = _DEADLINE.at
        if at and time.monotonic() > at:
            raise ExecutionTimeout(_DEADLINE.timeout)
        self.inner(computation=computation)


def deadline_opcodes(opcodes: dict[int, Any]) -> dict[int, Any]:
    """`opcodes` with JUMP and JUMPI checking the execution deadline."""
    checked = dict(opcodes)
    for value in (JUMP, JUMPI):
        if value in checked and not isinstance(checked[value], _DeadlineJump):
            checked[value] = _DeadlineJump(checked[value])
    return checked


class DeadlineComputation(BaseComputation):
    """Mixed into a fork's computation class: every frame checks the deadline first."""

    @classmethod
    def apply_computation(
        cls,
        state: StateAPI,
        message: Any,
        transaction_context: Any,
        parent_computation: ComputationAPI | None = None,
    ) -> ComputationAPI:
        check_deadline()
        return super().apply_computation(
            state, message, transaction_context, parent_computation=parent_computation
        )


# Wraps a call's one transaction, given its state (tracers look before and after it).
AroundCall = Callable[[StateAPI], AbstractContextManager[None]]


@dataclass(frozen=True)
class CallParams:
    sender: Address = ZERO_ADDRESS
    to: Address | None = None
    gas: int | None = None
    gas_price: int | None = None  # legacy gasPrice; or the two EIP-1559 fields below
    max_fee: int | None = None
    max_priority_fee: int | None = None
    value: int = 0
    data: bytes = b""
    access_list: tuple[tuple[Address, tuple[int, ...]], ...] = field(default=())
    # geth's state and block overrides (eth_call's 3rd and 4th parameters, debug_traceCall's
    # stateOverrides / blockOverrides): applied to this call's throw-away state only.
    overrides: CallOverrides | None = None

    @property
    def priced(self) -> bool:
        """A price was given: the call pays for its gas, against the block's base fee (as
        geth: unpriced calls run with base fee 0 and pay nothing)."""
        return any(p for p in (self.gas_price, self.max_fee, self.max_priority_fee))

    def effective_gas_price(self, base_fee: int) -> int:
        if self.gas_price is not None:
            return self.gas_price
        tip = self.max_priority_fee or 0
        cap = self.max_fee if self.max_fee is not None else base_fee + tip
        if cap < tip:
            raise ExecutionFailed(
                f"max priority fee per gas higher than max fee per gas: "
                f"maxPriorityFeePerGas: {tip}, maxFeePerGas: {cap}"
            )
        if cap < base_fee:
            raise ExecutionFailed(
                f"max fee per gas less than block base fee: maxFeePerGas: {cap}, "
                f"baseFee: {base_fee}"
            )
        return min(cap, base_fee + tip)


@dataclass(frozen=True)
class BlockOverrides:
    """geth's BlockOverrides: the execution context's block fields."""

    number: int | None = None
    time: int | None = None
    gas_limit: int | None = None
    fee_recipient: Address | None = None
    prev_randao: bytes | None = None
    base_fee: int | None = None


@dataclass(frozen=True)
class CallOverrides:
    state: tuple[AccountOverride, ...] = ()
    block: BlockOverrides | None = None


def _block_fields(block: BlockOverrides | None) -> dict[str, Any]:
    if block is None:
        return {}
    fields = {
        "block_number": block.number,
        "timestamp": block.time,
        "gas_limit": block.gas_limit,
        "coinbase": block.fee_recipient,
        "mix_hash": block.prev_randao,
    }
    return {k: v for k, v in fields.items() if v is not None}


@dataclass(frozen=True)
class CallOutcome:
    output: bytes
    gas_used: int
    computation: ComputationAPI


class _CallExecutor(BaseTransactionExecutor):
    def finalize_computation(
        self, transaction: SignedTransactionAPI, computation: ComputationAPI
    ) -> ComputationAPI:
        # Nothing of a call is kept: no refund to pay, fee to credit or touched account to
        # clear. The outcome (output, gas left, error) is the computation's, untouched.
        return computation


class _CallState(BaseState):
    def delta_balance(self, address: Address, delta: int) -> None:
        if delta:  # a call buys its gas at price 0: rewriting the sender's account is waste
            super().delta_balance(address, delta)


@cache
def call_state_class(vm_class: type[VM]) -> type[BaseState]:
    """The fork's state for calls that are thrown away: the same execution, without the
    bookkeeping whose only effect is on the state a call discards, under the deadline."""
    state = cast(type[BaseState], vm_class.get_state_class())
    executor = type(
        f"Call{state.transaction_executor_class.__name__}",
        (_CallExecutor, state.transaction_executor_class),
        {},
    )
    base = cast(type[BaseComputation], state.computation_class)
    computation = type(
        f"Call{base.__name__}",
        (DeadlineComputation, base),
        {"opcodes": deadline_opcodes(dict(base.opcodes))},
    )
    return type(
        f"Call{state.__name__}",
        (_CallState, state),
        {"transaction_executor_class": executor, "computation_class": computation},
    )


class CallSource(Protocol):
    """What calls read: the node's `ChainReader`, or a call worker's view of it."""

    @property
    def chain_id(self) -> int: ...

    @property
    def fork(self) -> Fork: ...

    def state_db(self) -> BaseDB: ...

    def evm_chaindb(self, overlay: StateOverlay) -> EvmChainDB: ...

    def state_at(self, header: BlockHeaderAPI) -> StateAPI: ...


class CallRunner:
    def __init__(
        self,
        reader: CallSource,
        gas_cap: int,
        timeout: float = DEFAULT_TIMEOUT,
        *,
        next_block: bool = True,
    ) -> None:
        """`timeout`: the wall-clock limit of one call or estimate, unless one is passed.
        `next_block`: a call on block N runs in the context of the block after it (number
        N+1, the next timestamp and base fee), as Anvil and Hardhat do; otherwise in N's own
        context, as geth does. Either way it runs on the state after N, base fee 0."""
        self.reader = reader
        self.next_block = next_block
        self.gas_cap = gas_cap
        self.timeout = timeout
        self._chain_context = ChainContext(reader.chain_id)
        # One warm state per (block, second), reused by every call with snapshot/revert: its
        # account and trie caches make the second call on a contract far cheaper than the first.
        self._warm: tuple[tuple[bytes, int], StateAPI] | None = None
        self._warm_lock = threading.Lock()

    def _costless_state(
        self,
        header: BlockHeaderAPI,
        overrides: CallOverrides | None = None,
        traced: type[VM] | None = None,
        priced: bool = False,
    ) -> StateAPI:
        """The state after `header` in the context of the next block (what py-evm's
        `VM.in_costless_state` builds) or of `header` itself (`next_block`), base fee 0 unless
        the call is `priced`; with `overrides`, their block fields in the context and their
        accounts in the state."""
        overlay = StateOverlay(self.reader.state_db())
        vm_class = self.reader.fork.vm_class
        vm = vm_class(
            header=header,
            chaindb=self.reader.evm_chaindb(overlay),
            chain_context=self._chain_context,
            consensus_context=ConsensusContext(overlay.db),
        )
        fields = _block_fields(overrides.block if overrides is not None else None)
        if not priced:
            fields["base_fee_per_gas"] = 0
        previous: Iterable[Hash32]
        if self.next_block:
            child = vm.generate_block_from_parent_header_and_coinbase(header, header.coinbase)
            free_header = child.header.copy(**fields)
            previous = itertools.chain((header.hash,), vm.previous_hashes or ())
        else:
            free_header = header.copy(**fields)
            previous = vm.previous_hashes or ()
        context = vm_class.create_execution_context(free_header, previous, self._chain_context)
        state_class = call_state_class(vm_class) if traced is None else traced.get_state_class()
        state: StateAPI = state_class(overlay.db, context, free_header.state_root)
        if overrides is not None:
            apply_overrides(state, overrides.state)
        return state

    def _run(
        self,
        header: BlockHeaderAPI,
        params: CallParams,
        gas: int,
        vm_class: type[VM] | None = None,
        around: AroundCall | None = None,
    ) -> CallOutcome:
        if params.overrides is not None or params.priced:
            # Overrides and a base fee change the state and context: a fresh state, never the
            # warm one.
            state = self._costless_state(header, params.overrides, vm_class, params.priced)
            return self._apply(vm_class or self.reader.fork.vm_class, state, params, gas, around)
        if vm_class is None:
            with self._warm_lock:
                key = (bytes(header.hash), int(time.time()))
                if self._warm is None or self._warm[0] != key:
                    self._warm = (key, self._costless_state(header))
                state = self._warm[1]
                snapshot = state.snapshot()
                try:
                    return self._apply(self.reader.fork.vm_class, state, params, gas, around)
                except ExecutionTimeout:
                    self._warm = None  # stopped mid-run: start the next call from scratch
                    raise
                finally:
                    state.revert(snapshot)
        state = self._costless_state(header, traced=vm_class)
        return self._apply(vm_class, state, params, gas, around)

    def _apply(
        self,
        vm_class: type[VM],
        state: StateAPI,
        params: CallParams,
        gas: int,
        around: AroundCall | None = None,
    ) -> CallOutcome:
        nonce = state.get_nonce(params.sender)
        price = params.effective_gas_price(state.base_fee) if params.priced else 0
        builder = cast(type[BerlinTransactionBuilder], vm_class.get_transaction_builder())
        to = params.to if params.to is not None else Address(b"")
        unsigned: UnsignedTransactionAPI
        if params.access_list:
            unsigned = builder.new_unsigned_access_list_transaction(
                chain_id=self.reader.chain_id,
                nonce=nonce,
                gas_price=price,
                gas=gas,
                to=to,
                value=params.value,
                data=params.data,
                access_list=params.access_list,
            )
        else:
            unsigned = builder.create_unsigned_transaction(
                nonce=nonce, gas_price=price, gas=gas, to=to, value=params.value, data=params.data
            )
        spoofed = SpoofTransaction(unsigned, from_=params.sender)
        try:
            with around(state) if around is not None else nullcontext():
                computation = state.apply_transaction(spoofed)  # type: ignore[arg-type]
        except ValidationError as exc:
            message = str(exc)
            if "insufficient" in message.lower() or "balance" in message.lower():
                raise ExecutionFailed(f"insufficient funds for transfer: {message}") from exc
            raise ExecutionFailed(message) from exc
        return CallOutcome(computation.output, gas - computation.get_gas_remaining(), computation)

    def run(
        self,
        header: BlockHeaderAPI,
        params: CallParams,
        *,
        vm_class: type[VM] | None = None,
        around: AroundCall | None = None,
    ) -> CallOutcome:
        """Run `params` as it is (gas capped) and return the outcome, failed or not.

        `vm_class` lets tracing run the same message through an instrumented VM, and
        `around` look at the state just before and after it.
        """
        gas = min(params.gas, self.gas_cap) if params.gas is not None else self.gas_cap
        return self._run(header, params, gas, vm_class, around)

    def call(
        self, header: BlockHeaderAPI, params: CallParams, *, timeout: float | None = None
    ) -> CallOutcome:
        """Run `params` on the state after `header`; raise on revert or failure, and with
        `ExecutionTimeout` past `timeout` seconds (default: this runner's)."""
        gas = min(params.gas, self.gas_cap) if params.gas is not None else self.gas_cap
        with execution_deadline(self.timeout if timeout is None else timeout):
            outcome = self._run(header, params, gas)
        raise_for(outcome.computation)
        return outcome

    def estimate_gas(
        self, header: BlockHeaderAPI, params: CallParams, *, timeout: float | None = None
    ) -> int:
        """The lowest gas limit with which `params` succeeds (binary search, as geth), the
        whole search within `timeout` seconds (default: this runner's)."""
        with execution_deadline(self.timeout if timeout is None else timeout):
            return self._estimate_gas(header, params)

    def _estimate_gas(self, header: BlockHeaderAPI, params: CallParams) -> int:
        hi = min(params.gas, self.gas_cap) if params.gas is not None else self.gas_cap
        fee_cap = params.gas_price or params.max_fee or 0
        if fee_cap:
            # As geth: a priced estimate searches no higher than the sender's funds allow.
            overridden = [
                o.balance
                for o in (params.overrides.state if params.overrides else ())
                if o.address == params.sender and o.balance is not None
            ]
            balance = (
                overridden[-1]
                if overridden
                else self.reader.state_at(header).get_balance(params.sender)
            )
            available = balance - params.value
            if available < 0:
                raise ExecutionFailed("insufficient funds for transfer")
            hi = min(hi, available // fee_cap)
        if params.to is not None and not params.data and not params.access_list:
            state = self.reader.state_at(header)
            if not state.get_code(params.to):
                if hi < TRANSFER_GAS:
                    raise ExecutionFailed(f"gas required exceeds allowance ({hi})")
                self.call(header, CallParams(**{**params.__dict__, "gas": TRANSFER_GAS}))
                return TRANSFER_GAS
        first = self._run(header, params, hi)
        if first.computation.is_error:
            if isinstance(first.computation.error, Revert):
                raise_for(first.computation)
            raise ExecutionFailed(f"gas required exceeds allowance ({hi})")
        lo = max(first.gas_used - 1, TRANSFER_GAS - 1)
        # Most calls succeed at used * 64/63 (the EIP-150 reserve); try that first.
        optimistic = min(hi, (first.gas_used + 2300) * 64 // 63)
        if optimistic < hi and self._succeeds(header, params, optimistic):
            hi = optimistic
        while lo + 1 < hi:
            mid = (lo + hi) // 2
            if self._succeeds(header, params, mid):
                hi = mid
            else:
                lo = mid
        return hi

    def _succeeds(self, header: BlockHeaderAPI, params: CallParams, gas: int) -> bool:
        try:
            return not self._run(header, params, gas).computation.is_error
        except ExecutionTimeout:
            raise  # not a verdict on this gas limit: the whole estimate is out of time
        except ExecutionFailed:
            return False


def raise_for(computation: ComputationAPI) -> None:
    if not computation.is_error:
        return
    error = computation.error
    if isinstance(error, Revert):
        raise TransactionReverted(computation.output, revert_message(computation.output))
    raise ExecutionFailed(geth_vm_error(error))


def revert_message(output: bytes) -> str:
    """geth's wording: 'execution reverted', plus the Error(string) or Panic reason."""
    reason = unpack_revert_reason(output)
    return "execution reverted" if reason is None else f"execution reverted: {reason}"


_PANIC_REASONS = {
    0x00: "generic panic",
    0x01: "assert(false)",
    0x11: "arithmetic underflow or overflow",
    0x12: "division or modulo by zero",
    0x21: "enum overflow",
    0x22: "invalid encoded storage byte array accessed",
    0x31: "out-of-bounds array access; popping on an empty array",
    0x32: "out-of-bounds access of an array or bytesN",
    0x41: "out of memory",
    0x51: "uninitialized function",
}


def unpack_revert_reason(output: bytes) -> str | None:
    """geth's `abi.UnpackRevert`: the Error(string) message or the Panic(uint256) reason,
    None for anything else (custom errors, empty output)."""
    if len(output) < 4:
        return None
    selector, body = output[:4], output[4:]
    if selector == bytes.fromhex("08c379a0"):
        if len(body) < 64:
            return None
        offset = int.from_bytes(body[:32], "big")
        if offset + 32 > len(body):
            return None
        length = int.from_bytes(body[offset : offset + 32], "big")
        raw = body[offset + 32 : offset + 32 + length]
        if len(raw) != length:
            return None
        return raw.decode("utf-8", "replace")
    if selector == bytes.fromhex("4e487b71"):
        if len(body) < 32:
            return None
        code = int.from_bytes(body[:32], "big")
        return _PANIC_REASONS.get(code, f"unknown panic code: {code:#x}")
    return None
