"""Tracing: committed transactions and calls re-executed by py-evm with instruments attached.

py-evm has no tracer API, so this module replays a block with `BlockExecutor.replay` (the one
execution function that built and imported it, every root checked) on its parent's archived
state, with a computation class of its own: a few opcodes are wrapped to tag each child frame
with the opcode that made it (CALL, STATICCALL, CREATE2 ...), logs remember their position among the
frame's calls, and, when a struct log or an access list is wanted, the opcode loop itself is
replaced by an instrumented copy of py-evm's `BaseComputation.apply_computation`.

Owns geth's callTracer frames, struct-logger steps and the access-list collector behind
eth_createAccessList, all as plain data (`cairn.rpc` turns them into JSON). Every run has a
wall-clock limit (the call module's execution deadline, checked at every frame and jump),
and a struct log a byte budget: each step's JSON size is estimated as it is captured (a
copy of EVM memory counts by its size), and the trace stops with `TraceTooLarge` once the
budget is spent, however few steps that took. Must never write: every run happens on a
throw-away state overlay, and no run touches the live head state.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import cache
from typing import Any, cast

from eth._utils.address import generate_contract_address, generate_safe_contract_address
from eth.abc import (
    BlockAPI,
    BlockHeaderAPI,
    ComputationAPI,
    MessageAPI,
    StateAPI,
    TransactionContextAPI,
)
from eth.chains.base import ChainContext
from eth.exceptions import (
    FullStack,
    Halt,
    InsufficientStack,
    InvalidInstruction,
    OutOfGas,
    Revert,
    VMError,
    WriteProtection,
)
from eth.vm.base import VM
from eth.vm.computation import NO_RESULT, BaseComputation
from eth.vm.forks.frontier.state import FrontierTransactionExecutor
from eth.vm.logic.invalid import InvalidOpcode
from eth.vm.memory import Memory
from eth.vm.stack import Stack
from eth.vm.state import BaseState
from eth_typing import Address

from cairn.errors import ExecutionFailed, ExecutionTimeout, InvalidBlock, NotFound
from cairn.execution.builder import BlockExecutor
from cairn.execution.call import (
    CallParams,
    CallRunner,
    check_deadline,
    deadline_opcodes,
    execution_deadline,
    unpack_revert_reason,
)
from cairn.execution.devstate import NO_EXTRAS, DevExtras
from cairn.execution.reader import ChainReader
from cairn.execution.vmerrors import geth_vm_error

SLOAD, SSTORE, SELFDESTRUCT = 0x54, 0x55, 0xFF
# Opcodes that make a child frame, and the frame type geth's callTracer gives it.
_FRAME_KINDS = {
    0xF0: "CREATE",
    0xF1: "CALL",
    0xF2: "CALLCODE",
    0xF4: "DELEGATECALL",
    0xF5: "CREATE2",
    0xFA: "STATICCALL",
}
_CREATES = frozenset({0xF0, 0xF5})
# What geth's access-list tracer reads from the stack (EIP-2930 semantics).
_TOUCH_TOP_ADDRESS = frozenset({0x31, 0x3B, 0x3C, 0x3F, 0xFF})
_TOUCH_CALL_ADDRESS = frozenset({0xF1, 0xF2, 0xF4, 0xFA})
_ADDRESS_MASK = (1 << 160) - 1
_DEADLINE_EVERY = 2048  # opcode steps between two clock reads
# Estimated JSON bytes of one struct-log step: its fixed fields, each stack value (hex and
# punctuation), each 32-byte memory word ("0x" + 64 hex digits, quotes, comma), each
# storage entry (two such words) and return data (two hex digits a byte).
_STEP_BYTES = 64
_STACK_VALUE_BYTES = 6
_MEMORY_WORD_BYTES = 69
_STORAGE_ENTRY_BYTES = 138


# ------------------------------------------------------------------ options and results
@dataclass(frozen=True)
class StructLogOptions:
    """geth's logger.Config: what each step records."""

    enable_memory: bool = False
    disable_stack: bool = False
    disable_storage: bool = False
    enable_return_data: bool = False
    limit: int = 0  # steps kept; 0 means all


@dataclass(frozen=True)
class TraceOptions:
    """One trace request: `tracer` is "callTracer", or None for the struct logger."""

    tracer: str | None = None
    struct: StructLogOptions = field(default_factory=StructLogOptions)
    only_top_call: bool = False
    with_log: bool = False
    timeout: float = 5.0
    diff_mode: bool = False  # prestateTracer: {pre, post} of what changed


PRESTATE_TRACER = "prestateTracer"


@dataclass
class AccountState:
    """One account as geth's prestateTracer shows it."""

    balance: int
    nonce: int
    code: bytes
    storage: dict[int, int] = field(default_factory=dict)

    @property
    def is_empty(self) -> bool:
        return not (self.balance or self.nonce or self.code or any(self.storage.values()))


@dataclass(frozen=True)
class AccountChange:
    """An account's fields after a transaction, those that changed only (None: unchanged)."""

    balance: int | None
    nonce: int | None
    code: bytes | None
    storage: dict[int, int]


@dataclass(frozen=True)
class PrestateResult:
    """geth's prestateTracer: the state a transaction read before it ran (`post` is None), or
    in diff mode what it changed: `pre` (whole accounts, changed slots) and `post`."""

    pre: dict[bytes, AccountState]
    post: dict[bytes, AccountChange] | None = None


class PrestateCollector:
    """Accounts and slots a transaction touches, each read from the state the first time it
    is seen (before the opcode that touches it runs), as geth's prestateTracer does."""

    def __init__(self) -> None:
        self.accounts: dict[bytes, AccountState] = {}
        self.created: set[bytes] = set()

    def lookup(self, state: StateAPI, address: bytes) -> None:
        if address in self.accounts:
            return
        who = Address(address)
        self.accounts[address] = AccountState(
            balance=state.get_balance(who), nonce=state.get_nonce(who), code=state.get_code(who)
        )

    def lookup_slot(self, state: StateAPI, address: bytes, slot: int) -> None:
        self.lookup(state, address)
        account = self.accounts.get(address)
        if account is not None and slot not in account.storage:
            account.storage[slot] = state.get_storage(Address(address), slot)

    def on_opcode(self, computation: BaseComputation, op: int, values: list[int | bytes]) -> None:
        state = computation.state
        if op in (SLOAD, SSTORE) and values:
            self.lookup_slot(state, bytes(computation.msg.storage_address), _as_int(values[-1]))
        elif op in _TOUCH_TOP_ADDRESS and values:
            self.lookup(state, _as_address(values[-1]))
        elif op in _TOUCH_CALL_ADDRESS and len(values) >= 5:
            self.lookup(state, _as_address(values[-2]))
        elif op in _CREATES:
            creator = computation.msg.storage_address
            if op == 0xF0:
                created = generate_contract_address(creator, state.get_nonce(creator))
            elif len(values) >= 4:
                offset, size = _as_int(values[-2]), _as_int(values[-3])
                memory = cast(Memory, computation._memory)._bytes
                init = bytes(memory[offset : offset + size]).ljust(size, b"\x00")
                created = generate_safe_contract_address(creator, _as_int(values[-4]), init)
            else:
                return
            self.lookup(state, bytes(created))
            self.created.add(bytes(created))

    def result(self, state: StateAPI, diff_mode: bool, deleted: set[bytes]) -> PrestateResult:
        """After the transaction: drop created accounts that did not exist before; in diff
        mode keep only what changed, with the new values in `post`."""
        pre = {a: s for a, s in self.accounts.items() if not (a in self.created and s.is_empty)}
        if not diff_mode:
            return PrestateResult(pre)
        kept: dict[bytes, AccountState] = {}
        post: dict[bytes, AccountChange] = {}
        for address, before in sorted(self.accounts.items()):
            if address in deleted:
                kept[address] = before
                continue
            who = Address(address)
            after = AccountState(state.get_balance(who), state.get_nonce(who), state.get_code(who))
            changed_storage = {
                slot: value
                for slot, value in before.storage.items()
                if state.get_storage(who, slot) != value
            }
            modified = (
                after.balance != before.balance
                or after.nonce != before.nonce
                or after.code != before.code
                or bool(changed_storage)
            )
            if not modified:
                continue
            post_storage = {
                slot: state.get_storage(who, slot)
                for slot in changed_storage
                if state.get_storage(who, slot)
            }
            post[address] = AccountChange(
                balance=after.balance if after.balance != before.balance else None,
                nonce=after.nonce if after.nonce != before.nonce else None,
                code=after.code if after.code != before.code else None,
                storage=post_storage,
            )
            # geth leaves slots that were empty before out of `pre`
            pre_storage = {k: v for k, v in changed_storage.items() if v}
            kept[address] = AccountState(before.balance, before.nonce, before.code, pre_storage)
        pre = {a: s for a, s in kept.items() if not (a in self.created and s.is_empty)}
        return PrestateResult(pre, post)


@dataclass(frozen=True)
class FrameLog:
    address: bytes
    topics: tuple[bytes, ...]
    data: bytes
    index: int
    position: int


@dataclass
class CallFrame:
    """One callTracer frame; None fields are left out of geth's JSON."""

    kind: str
    sender: bytes
    to: bytes | None
    value: int | None
    gas: int
    gas_used: int
    input: bytes
    output: bytes = b""
    error: str | None = None
    revert_reason: str | None = None
    calls: list[CallFrame] = field(default_factory=list)
    logs: list[FrameLog] = field(default_factory=list)


@dataclass(slots=True)
class StructStep:
    pc: int
    op: int
    gas: int
    gas_cost: int
    depth: int
    refund: int
    stack: list[int] | None = None
    memory: bytes | None = None
    return_data: bytes | None = None
    storage: dict[int, int] | None = None
    error: str | None = None


@dataclass(frozen=True)
class StructResult:
    gas: int
    failed: bool
    return_value: bytes
    steps: list[StructStep]


TraceResult = CallFrame | StructResult | PrestateResult


@dataclass(frozen=True)
class TxTrace:
    tx_hash: bytes
    result: TraceResult


@dataclass(frozen=True)
class AccessListResult:
    access_list: tuple[tuple[Address, tuple[int, ...]], ...]
    gas_used: int
    error: str | None


class TraceTooLarge(ExecutionFailed):
    """A struct log outgrew its byte budget. Raised from inside py-evm's run, and not a
    VMError, so no frame swallows it."""


@dataclass
class _Budget:
    """The bytes one request's struct logs may still take (a block's traces share one)."""

    limit: int
    used: int = 0


# ------------------------------------------------------------------ the probe
class AccessCollector:
    """geth's AccessListTracer: addresses and slots touched by opcodes, minus exclusions."""

    def __init__(
        self,
        seed: Sequence[tuple[Address, Sequence[int]]],
        exclude: frozenset[bytes],
    ) -> None:
        self.exclude = exclude
        self.touched: dict[bytes, set[int]] = {}
        for address, slots in seed:
            if address in exclude:
                continue
            self.touched.setdefault(bytes(address), set()).update(slots)

    def add_address(self, address: bytes) -> None:
        if address not in self.exclude:
            self.touched.setdefault(address, set())

    def add_slot(self, address: bytes, slot: int) -> None:
        self.touched.setdefault(address, set()).add(slot)

    def as_list(self) -> tuple[tuple[Address, tuple[int, ...]], ...]:
        return tuple(
            (Address(address), tuple(sorted(self.touched[address])))
            for address in sorted(self.touched)
        )


class _Probe:
    """What one traced transaction collects while py-evm runs it (one thread, one run)."""

    def __init__(
        self,
        *,
        steps: StructLogOptions | None = None,
        access: AccessCollector | None = None,
        budget: _Budget | None = None,
        prestate: PrestateCollector | None = None,
    ) -> None:
        self.steps_options = steps
        self.budget = budget
        self.access = access
        self.prestate = prestate
        self.steps: list[StructStep] = []
        self.storage: dict[bytes, dict[int, int]] = {}
        # running frames with the refunds their finished children have settled
        self.frames: list[tuple[BaseComputation, list[int]]] = []
        self.counter = 0

    @property
    def instruments_opcodes(self) -> bool:
        return (
            self.steps_options is not None or self.access is not None or self.prestate is not None
        )

    def refund(self) -> int:
        total = 0
        for frame, settled in self.frames:
            total += frame._gas_meter.gas_refunded + settled[0]
        if self.frames:
            total += self.frames[0][0].msg.refund
        return max(total, 0)

    def before(self, computation: BaseComputation, pc: int, op: int, gas: int) -> StructStep | None:
        self.counter += 1
        if self.counter % _DEADLINE_EVERY == 0:
            check_deadline()
        values = _stack_values(computation)
        if self.access is not None:
            self._collect_access(computation, op, values)
        if self.prestate is not None:
            self.prestate.on_opcode(computation, op, values)
        options = self.steps_options
        if options is None or (options.limit and len(self.steps) >= options.limit):
            return None
        size = _STEP_BYTES
        step = StructStep(pc, op, gas, 0, computation.msg.depth + 1, self.refund())
        if not options.disable_stack:
            stack = [v if isinstance(v, int) else int.from_bytes(v, "big") for v in values]
            size += _STACK_VALUE_BYTES * len(stack) + sum(v.bit_length() for v in stack) // 4
            step.stack = stack
        if options.enable_memory:
            memory = cast(Memory, computation._memory)._bytes
            # Counted before it is copied: the copy is what a hostile trace multiplies.
            self._spend(len(memory) // 32 * _MEMORY_WORD_BYTES)
            step.memory = bytes(memory)
        if options.enable_return_data:
            step.return_data = bytes(computation.return_data)
            size += 2 * len(step.return_data)
        if not options.disable_storage and op in (SLOAD, SSTORE):
            self._record_storage(computation, op, values, step)
            size += _STORAGE_ENTRY_BYTES * len(step.storage or ())
        self._spend(size)
        self.steps.append(step)
        return step

    def _spend(self, size: int) -> None:
        budget = self.budget
        if budget is None:
            return
        budget.used += size
        if budget.used > budget.limit:
            raise TraceTooLarge(
                f"trace too large: the struct log passed {budget.limit} bytes at step "
                f"{len(self.steps) + 1} (--rpc.max-response); pass limit (the most steps to "
                "keep), leave enableMemory off, or use callTracer"
            )

    def _record_storage(
        self,
        computation: BaseComputation,
        op: int,
        values: list[int | bytes],
        step: StructStep,
    ) -> None:
        address = bytes(computation.msg.storage_address)
        seen = self.storage.setdefault(address, {})
        if op == SLOAD and values:
            slot = _as_int(values[-1])
            seen[slot] = computation.state.get_storage(computation.msg.storage_address, slot)
        elif op == SSTORE and len(values) >= 2:
            seen[_as_int(values[-1])] = _as_int(values[-2])
        else:
            return
        step.storage = dict(seen)

    def _collect_access(
        self, computation: BaseComputation, op: int, values: list[int | bytes]
    ) -> None:
        access = self.access
        assert access is not None
        if op in (SLOAD, SSTORE) and values:
            access.add_slot(bytes(computation.msg.storage_address), _as_int(values[-1]))
        elif op in _TOUCH_TOP_ADDRESS and values:
            access.add_address(_as_address(values[-1]))
        elif op in _TOUCH_CALL_ADDRESS and len(values) >= 5:
            access.add_address(_as_address(values[-2]))

    def after(
        self,
        computation: BaseComputation,
        step: StructStep | None,
        op: int,
        gas_before: int,
        children_before: int,
    ) -> None:
        spent = gas_before - computation._gas_meter.gas_remaining
        if len(computation.children) > children_before:
            child = computation.children[-1]
            if self.frames:
                self.frames[-1][1][0] += child.get_gas_refund()
            leftover = child.get_gas_remaining()
            # geth counts the gas a CALL forwards as the CALL's cost, but not a CREATE's.
            spent += leftover - child.msg.gas if op in _CREATES else leftover
        if step is not None:
            step.gas_cost = spent

    def fail(self, step: StructStep | None, opcode_fn: Any, error: VMError) -> None:
        if step is None:
            return
        # geth marks a step only when it fails before running (gas, stack, static checks).
        if isinstance(error, OutOfGas | InsufficientStack | FullStack | WriteProtection):
            step.error = geth_vm_error(error)
            step.gas_cost = step.gas_cost or int(getattr(opcode_fn, "gas_cost", 0) or 0)
        elif isinstance(error, InvalidInstruction):
            step.error = geth_vm_error(error)


def _stack_values(computation: BaseComputation) -> list[int | bytes]:
    return cast(Stack, computation._stack).values


def _as_int(value: int | bytes) -> int:
    return value if isinstance(value, int) else int.from_bytes(value, "big")


def _as_address(value: int | bytes) -> bytes:
    return (_as_int(value) & _ADDRESS_MASK).to_bytes(20, "big")


# Traces run on the RPC read threads; each thread traces one transaction at a time.
_ACTIVE = threading.local()


def _active_probe() -> _Probe | None:
    probe: _Probe | None = getattr(_ACTIVE, "probe", None)
    return probe


class _Attached:
    """`with _Attached(probe):` — the probe sees every frame run on this thread meanwhile."""

    def __init__(self, probe: _Probe | None) -> None:
        self.probe = probe

    def __enter__(self) -> None:
        _ACTIVE.probe = self.probe

    def __exit__(self, *exc: object) -> None:
        _ACTIVE.probe = None


# ------------------------------------------------------------------ the traced computation
@dataclass(frozen=True)
class _SelfDestruct:
    beneficiary: bytes
    balance: int


class _TracedComputation(BaseComputation):
    """Mixed into the fork's computation class; inert unless a probe is attached."""

    def __init__(
        self,
        state: StateAPI,
        message: MessageAPI,
        transaction_context: TransactionContextAPI,
    ) -> None:
        super().__init__(state, message, transaction_context)
        self.kind = "CREATE" if message.is_create else "CALL"
        self.next_kind = "CALL"
        self.log_positions: list[int] = []
        self.selfdestructs: list[_SelfDestruct] = []

    @classmethod
    def apply_computation(
        cls,
        state: StateAPI,
        message: MessageAPI,
        transaction_context: TransactionContextAPI,
        parent_computation: ComputationAPI | None = None,
    ) -> ComputationAPI:
        check_deadline()
        probe = _active_probe()
        if probe is None or not probe.instruments_opcodes:
            return super().apply_computation(
                state, message, transaction_context, parent_computation=parent_computation
            )
        return _run_instrumented(
            cls, probe, state, message, transaction_context, parent_computation
        )

    def apply_child_computation(self, child_msg: MessageAPI) -> ComputationAPI:
        child = super().apply_child_computation(child_msg)
        if isinstance(child, _TracedComputation):
            child.kind = self.next_kind
        self.next_kind = "CALL"
        return child

    def add_log_entry(self, account: Address, topics: tuple[int, ...], data: bytes) -> None:
        super().add_log_entry(account, topics, data)
        self.log_positions.append(len(self.children))


class _FrameTag:
    """Wraps CALL/CREATE-family opcodes: the next child frame gets this opcode's name."""

    def __init__(self, inner: Callable[..., None], kind: str) -> None:
        self.inner = inner
        self.kind = kind
        self.mnemonic = getattr(inner, "mnemonic", kind)
        self.gas_cost = getattr(inner, "gas_cost", 0)

    def __call__(self, computation: ComputationAPI) -> None:
        if isinstance(computation, _TracedComputation):
            computation.next_kind = self.kind
        self.inner(computation=computation)


class _SelfDestructWatch:
    """Wraps SELFDESTRUCT: geth's callTracer shows it as a frame (beneficiary, balance)."""

    def __init__(self, inner: Callable[..., None]) -> None:
        self.inner = inner
        self.mnemonic = getattr(inner, "mnemonic", "SELFDESTRUCT")
        self.gas_cost = getattr(inner, "gas_cost", 0)

    def __call__(self, computation: ComputationAPI) -> None:
        traced = computation if isinstance(computation, _TracedComputation) else None
        values = _stack_values(cast(BaseComputation, computation))
        beneficiary = _as_address(values[-1]) if values else b"\x00" * 20
        balance = computation.state.get_balance(computation.msg.storage_address)
        try:
            self.inner(computation=computation)
        except Halt:
            if traced is not None:
                traced.selfdestructs.append(_SelfDestruct(beneficiary, balance))
            raise


def _run_instrumented(
    cls: type[_TracedComputation],
    probe: _Probe,
    state: StateAPI,
    message: MessageAPI,
    transaction_context: TransactionContextAPI,
    parent_computation: ComputationAPI | None,
) -> ComputationAPI:
    """py-evm 0.12's `BaseComputation.apply_computation`, with the probe around each opcode."""
    with cls(state, message, transaction_context) as entered:
        computation = cast(_TracedComputation, entered)
        if computation.is_origin_computation:
            computation.contracts_created = []
            if message.is_create:
                cls.consume_initcode_gas_cost(computation)
        if parent_computation is not None:
            computation.contracts_created = parent_computation.contracts_created
        if message.is_create:
            computation.contracts_created.append(message.storage_address)
        precompile = computation.precompiles.get(message.code_address, NO_RESULT)
        if precompile is not NO_RESULT:
            if not message.is_delegation:
                precompile(computation)
            return computation
        probe.frames.append((computation, [0]))
        try:
            _step(computation, probe)
        finally:
            probe.frames.pop()
    return computation


def _step(computation: _TracedComputation, probe: _Probe) -> None:
    code = computation.code
    lookup = computation.opcodes
    meter = computation._gas_meter
    opcodes = iter(code)
    while True:
        pc = code.program_counter
        opcode = next(opcodes)
        opcode_fn: Any = lookup.get(opcode) or InvalidOpcode(opcode)
        gas = meter.gas_remaining
        children = len(computation.children)
        step = probe.before(computation, pc, opcode, gas)
        try:
            opcode_fn(computation=computation)
        except Halt:
            probe.after(computation, step, opcode, gas, children)
            return
        except VMError as exc:
            probe.after(computation, step, opcode, gas, children)
            probe.fail(step, opcode_fn, exc)
            raise
        probe.after(computation, step, opcode, gas, children)


@cache
def traced_vm_class(vm_class: type[VM]) -> type[VM]:
    """`vm_class` with the traced computation in its state; built once per fork."""
    state_class = cast(type[BaseState], vm_class.get_state_class())
    base = cast(type[BaseComputation], state_class.computation_class)
    opcodes: dict[int, Any] = deadline_opcodes(dict(base.opcodes))
    for value, kind in _FRAME_KINDS.items():
        if value in opcodes:
            opcodes[value] = _FrameTag(opcodes[value], kind)
    if SELFDESTRUCT in opcodes:
        opcodes[SELFDESTRUCT] = _SelfDestructWatch(opcodes[SELFDESTRUCT])
    computation_class = type(
        f"Traced{base.__name__}", (_TracedComputation, base), {"opcodes": opcodes}
    )
    traced_state = type(
        f"Traced{state_class.__name__}", (state_class,), {"computation_class": computation_class}
    )
    traced_vm = type(f"Traced{vm_class.__name__}", (vm_class,), {"_state_class": traced_state})
    return cast(type[VM], traced_vm)


# ------------------------------------------------------------------ frames from computations
def call_frame(
    computation: ComputationAPI,
    *,
    gas: int,
    gas_used: int,
    sender: bytes,
    options: TraceOptions,
    log_offset: int = 0,
) -> CallFrame:
    """geth's callTracer result for one transaction whose top computation is `computation`."""
    kept = {entry[0]: i for i, entry in enumerate(computation.get_raw_log_entries())}
    top = _frame(computation, kept, log_offset, options, depth=0)
    top.sender = sender
    top.gas = gas
    top.gas_used = gas_used
    if options.with_log:
        _clear_failed_logs(top, parent_failed=False)
    return top


def _frame(
    computation: ComputationAPI,
    kept: dict[int, int],
    log_offset: int,
    options: TraceOptions,
    depth: int,
) -> CallFrame:
    msg = computation.msg
    kind = computation.kind if isinstance(computation, _TracedComputation) else "CALL"
    if depth == 0 and msg.is_create:
        kind = "CREATE"
    if kind in ("DELEGATECALL", "CALLCODE"):
        sender, to = bytes(msg.storage_address), bytes(msg.code_address)
    else:
        sender, to = bytes(msg.sender), bytes(msg.storage_address)
    frame = CallFrame(
        kind=kind,
        sender=sender,
        to=to,
        value=None if kind == "STATICCALL" else int(msg.value),
        gas=int(msg.gas),
        gas_used=int(computation.get_gas_used()),
        input=bytes(msg.code) if msg.is_create else bytes(msg.data),
    )
    _finish(frame, computation)
    if not options.only_top_call:
        frame.calls = [
            _frame(child, kept, log_offset, options, depth + 1) for child in computation.children
        ]
        if isinstance(computation, _TracedComputation):
            # SELFDESTRUCT halts its frame, so its pseudo-frame is always the last one.
            frame.calls.extend(
                _selfdestruct_frame(computation, sd) for sd in computation.selfdestructs
            )
    if options.with_log and isinstance(computation, _TracedComputation):
        for (counter, address, topics, data), position in zip(
            computation._log_entries, computation.log_positions, strict=True
        ):
            frame.logs.append(
                FrameLog(
                    address=bytes(address),
                    topics=tuple(t.to_bytes(32, "big") for t in topics),
                    data=bytes(data),
                    index=log_offset + kept.get(counter, 0),
                    position=0 if options.only_top_call else position,
                )
            )
    return frame


def _selfdestruct_frame(computation: ComputationAPI, sd: _SelfDestruct) -> CallFrame:
    return CallFrame(
        kind="SELFDESTRUCT",
        sender=bytes(computation.msg.storage_address),
        to=sd.beneficiary,
        value=sd.balance,
        gas=0,
        gas_used=0,
        input=b"",
    )


def _finish(frame: CallFrame, computation: ComputationAPI) -> None:
    """geth's `processOutput`: output on success; error, revert data and reason on failure."""
    output = bytes(computation.output)
    if not computation.is_error:
        frame.output = output
        return
    error = computation.error
    frame.error = geth_vm_error(error)
    if frame.kind in ("CREATE", "CREATE2"):
        frame.to = None
    if not isinstance(error, Revert) or not output:
        return
    frame.output = output
    frame.revert_reason = unpack_revert_reason(output)


def _clear_failed_logs(frame: CallFrame, *, parent_failed: bool) -> None:
    failed = parent_failed or frame.error is not None
    if failed:
        frame.logs = []
    for child in frame.calls:
        _clear_failed_logs(child, parent_failed=failed)


# ------------------------------------------------------------------ running
@dataclass(frozen=True)
class _Ran:
    sender: bytes
    computation: ComputationAPI
    gas_used: int
    log_offset: int
    prestate: PrestateResult | None = None


class Tracer:
    """Replays committed blocks and runs calls with geth's tracers attached."""

    def __init__(
        self,
        reader: ChainReader,
        calls: CallRunner,
        *,
        max_bytes: int = 0,
        max_seconds: float = 0.0,
    ) -> None:
        """`max_bytes` bounds the struct logs of one request by their estimated JSON size
        (0: no bound), so that a trace that could never be sent stops before it fills
        memory; `max_seconds` bounds one request's whole run, replayed transactions
        included (0: only each traced transaction's own timeout)."""
        self.reader = reader
        self.calls = calls
        self.max_bytes = max_bytes
        self.max_seconds = max_seconds
        self._chain_context = ChainContext(reader.chain_id)

    # ---------------------------------------------------------------- blocks
    def trace_block(self, number: int, options: TraceOptions) -> list[TxTrace]:
        """Every transaction of canonical block `number`, in order."""
        stored = self.reader.block_by_number(number)
        if stored is None:
            raise NotFound(f"block #{number} not found")
        if number == 0:
            raise NotFound("genesis is not traceable")
        with self._request():
            return list(self._replay(number, range(len(stored.transactions)), options))

    def trace_transaction(self, tx_hash: bytes, options: TraceOptions) -> TraceResult:
        location = self.reader.tx_location(tx_hash)
        if location is None:
            raise NotFound("transaction not found")
        number, index = location
        if number == 0:
            raise NotFound("genesis is not traceable")
        with self._request():
            traces = list(self._replay(number, range(index, index + 1), options))
        return traces[0].result

    @contextmanager
    def _request(self) -> Iterator[None]:
        """One request's wall-clock cap; a timeout reads as geth's "execution timeout"."""
        try:
            with execution_deadline(self.max_seconds):
                yield
        except ExecutionTimeout:
            raise ExecutionFailed("execution timeout") from None

    def trace_raw_block(self, block: BlockAPI, options: TraceOptions) -> list[TxTrace]:
        """debug_traceBlock: a block given whole (canonical or not) replayed on its parent's
        state; its every root must come out as it claims."""
        number = self.reader.store.load_number(block.header.hash)
        if number is not None:
            return self.trace_block(number, options)
        with self._request():
            wanted = range(len(block.transactions))
            return list(self._replay_block(block, NO_EXTRAS, wanted, options))

    def _replay(self, number: int, wanted: range, options: TraceOptions) -> Iterator[TxTrace]:
        stored = self.reader.block_by_number(number)
        if stored is None or number == 0:
            raise NotFound(f"block #{number} not found")
        raw_extras = self.reader.store.load_dev_extras(number)
        extras = DevExtras.decode(raw_extras) if raw_extras else NO_EXTRAS
        return self._replay_block(stored.block, extras, wanted, options)

    def _replay_block(
        self, block: BlockAPI, extras: DevExtras, wanted: range, options: TraceOptions
    ) -> Iterator[TxTrace]:
        """Replay `block` with `BlockExecutor.replay` — the execution that built and imported
        it — instrumented, probes attached to the transactions in `wanted`."""
        number = block.header.block_number
        budget = _Budget(self.max_bytes) if self.max_bytes else None
        probes = {index: self._probe(options, budget) for index in wanted}

        prestates: dict[int, PrestateResult] = {}
        coinbase = bytes(block.header.coinbase)

        @contextmanager
        def around(index: int, state: StateAPI) -> Iterator[None]:
            probe = probes.get(index)
            collector = probe.prestate if probe is not None else None
            if collector is not None:  # geth's OnTxStart: sender, recipient, coinbase
                tx = block.transactions[index]
                for address in (bytes(tx.sender), coinbase):
                    collector.lookup(state, address)
                if tx.to:
                    collector.lookup(state, bytes(tx.to))
                else:
                    created = bytes(generate_contract_address(tx.sender, tx.nonce))
                    collector.lookup(state, created)
                    collector.created.add(created)
            with _Attached(probe), execution_deadline(options.timeout if probe else 0.0):
                yield
            if collector is not None:
                prestates[index] = collector.result(state, options.diff_mode, set())

        vm_class = traced_vm_class(self.reader.fork.vm_class)
        try:
            result = BlockExecutor(self.reader).replay(
                block, extras, vm_class=vm_class, around_tx=around
            )
        except InvalidBlock as exc:
            # A trace of anything but what the chain holds would be a lie: refuse it.
            raise ExecutionFailed(f"replaying block #{number} diverged: {exc.reason}") from exc
        previous_gas = 0
        log_offset = 0
        for index, receipt in enumerate(result.receipts[: wanted.stop]):
            if index in wanted:
                ran = _Ran(
                    sender=bytes(result.senders[index]),
                    computation=result.computations[index],
                    gas_used=receipt.gas_used - previous_gas,
                    log_offset=log_offset,
                    prestate=prestates.get(index),
                )
                tx = block.transactions[index]
                yield TxTrace(tx.hash, self._result(ran, probes[index], options, gas=tx.gas))
            previous_gas = receipt.gas_used
            log_offset += len(receipt.logs)

    @staticmethod
    def _probe(options: TraceOptions, budget: _Budget | None) -> _Probe:
        if options.tracer is None:
            return _Probe(steps=options.struct, budget=budget)
        if options.tracer == PRESTATE_TRACER:
            return _Probe(prestate=PrestateCollector())
        return _Probe()

    @staticmethod
    def _result(ran: _Ran, probe: _Probe, options: TraceOptions, *, gas: int) -> TraceResult:
        computation = ran.computation
        if probe.prestate is not None and ran.prestate is not None:
            return ran.prestate
        if options.tracer is None:
            failed = computation.is_error
            output = bytes(computation.output)
            if failed and not isinstance(computation.error, Revert):
                output = b""
            return StructResult(ran.gas_used, failed, output, probe.steps)
        return call_frame(
            computation,
            gas=gas,
            gas_used=ran.gas_used,
            sender=ran.sender,
            options=options,
            log_offset=ran.log_offset,
        )

    # ---------------------------------------------------------------- calls
    def trace_call(
        self, header: BlockHeaderAPI, params: CallParams, options: TraceOptions
    ) -> TraceResult:
        """debug_traceCall: `params` run on the state after `header`, nothing kept."""
        gas = self._call_gas(params)
        budget = _Budget(self.max_bytes) if self.max_bytes else None
        probe = self._probe(options, budget)
        collector = probe.prestate
        prestates: list[PrestateResult] = []

        @contextmanager
        def around(state: StateAPI) -> Iterator[None]:
            if collector is not None:  # as for a mined transaction: sender, recipient, coinbase
                for address in (bytes(params.sender), bytes(state.coinbase)):
                    collector.lookup(state, address)
                if params.to is not None:
                    collector.lookup(state, bytes(params.to))
                else:
                    nonce = state.get_nonce(params.sender)
                    created = bytes(generate_contract_address(params.sender, nonce))
                    collector.lookup(state, created)
                    collector.created.add(created)
            yield
            if collector is not None:
                prestates.append(collector.result(state, options.diff_mode, set()))

        vm_class = traced_vm_class(self.reader.fork.vm_class)
        with self._request(), _Attached(probe), execution_deadline(options.timeout):
            outcome = self.calls.run(
                header, replace(params, gas=gas), vm_class=vm_class, around=around
            )
        gas_used = final_gas_used(vm_class, outcome.computation, gas)
        ran = _Ran(
            sender=bytes(params.sender),
            computation=outcome.computation,
            gas_used=gas_used,
            log_offset=0,
            prestate=prestates[0] if prestates else None,
        )
        return self._result(ran, probe, options, gas=gas)

    def _call_gas(self, params: CallParams) -> int:
        cap = self.calls.gas_cap
        return min(params.gas, cap) if params.gas is not None else cap

    def create_access_list(
        self, header: BlockHeaderAPI, params: CallParams, *, max_rounds: int = 32
    ) -> AccessListResult:
        """geth's eth_createAccessList: run, collect what was touched, re-run until stable;
        every run together within the call runner's timeout (--rpc.evmtimeout)."""
        with execution_deadline(self.calls.timeout):
            return self._create_access_list(header, params, max_rounds)

    def _create_access_list(
        self, header: BlockHeaderAPI, params: CallParams, max_rounds: int
    ) -> AccessListResult:
        gas = self._call_gas(params)
        state = self.reader.state_at(header)
        vm_class = traced_vm_class(self.reader.fork.vm_class)
        if params.to is not None:
            to = bytes(params.to)
        else:
            to = bytes(generate_contract_address(params.sender, state.get_nonce(params.sender)))
        precompiles = cast(type[BaseComputation], vm_class.get_state_class().computation_class)
        exclude = frozenset(
            {bytes(params.sender), to, *(bytes(a) for a in precompiles.get_precompiles())}
        )
        previous = AccessCollector(params.access_list, exclude).as_list()
        for _ in range(max_rounds):
            collector = AccessCollector(previous, exclude)
            probe = _Probe(access=collector)
            with _Attached(probe):
                outcome = self.calls.run(
                    header, replace(params, gas=gas, access_list=previous), vm_class=vm_class
                )
            found = collector.as_list()
            if found == previous:
                computation = outcome.computation
                error = geth_vm_error(computation.error) if computation.is_error else None
                used = final_gas_used(vm_class, computation, gas)
                return AccessListResult(previous, used, error)
            previous = found
        raise ExecutionFailed(
            f"access list did not settle after {max_rounds} runs; pass an accessList to start from"
        )


def final_gas_used(vm_class: type[VM], computation: ComputationAPI, gas: int) -> int:
    """What the receipt would say: gas spent, minus the refund, raised to the EIP-7623 floor."""
    state_class = cast(type[BaseState], vm_class.get_state_class())
    executor = cast(type[FrontierTransactionExecutor], state_class.transaction_executor_class)
    used = gas - computation.get_gas_remaining()
    refund = int(executor.calculate_gas_refund(computation, used))
    floor = int(getattr(computation, "data_floor_gas", 0) or 0)
    return used - refund + floor
