"""geth's eth_simulateV1 engine: run calls in a chain of made-up blocks on top of a stored
block, each block's state following from the one before, and return the blocks as if mined.

Owns the block headers a simulation makes (geth's defaults: number + 1, time + 12, the
parent's coinbase and gas limit, base fee 0 unless `validation`), the geth checks a simulated
call must pass (nonce, fee cap, funds, intrinsic gas, block gas) with the codes of the
execution-apis spec, and the logs each call leaves (ERC-7528 ETH transfer logs with
`trace_transfers`). Everything runs on an in-memory overlay over the state database: it must
never write storage, and nothing of a simulation outlives it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from functools import cache
from typing import Any, Protocol, cast

from eth.abc import (
    BlockAPI,
    BlockHeaderAPI,
    ComputationAPI,
    MessageAPI,
    ReceiptAPI,
    SignedTransactionAPI,
    StateAPI,
    TransactionContextAPI,
)
from eth.chains.base import ChainContext
from eth.consensus.context import ConsensusContext
from eth.db.backends.base import BaseDB
from eth.exceptions import Halt, Revert
from eth.vm.base import VM
from eth.vm.computation import BaseComputation
from eth.vm.forks.london.headers import calculate_expected_base_fee_per_gas
from eth.vm.forks.london.transactions import LondonTransactionBuilder
from eth.vm.forks.shanghai.withdrawals import Withdrawal
from eth.vm.state import BaseState, BaseTransactionExecutor
from eth_typing import Address
from eth_utils import ValidationError, to_checksum_address

from cairn.errors import ExecutionTimeout, SimulationRejected
from cairn.execution.call import (
    BlockOverrides,
    DeadlineComputation,
    deadline_opcodes,
    execution_deadline,
    revert_message,
)
from cairn.execution.devstate import impersonate
from cairn.execution.evmdb import EvmChainDB, HeaderSource, StateOverlay
from cairn.execution.forks import Fork
from cairn.execution.overrides import AccountOverride, apply_overrides
from cairn.execution.vmerrors import geth_vm_error

MAX_BLOCKS = 256  # geth's maxSimulateBlocks
MAX_CALLS_PER_BLOCK = 5_000
MAX_CALLS = 10_000
TIMESTAMP_INCREMENT = 12
MAX_INITCODE_SIZE = 49_152  # EIP-3860
ZERO_HASH = b"\x00" * 32
ZERO_ADDRESS = Address(b"\x00" * 20)
# ERC-7528: the address ETH transfer logs are emitted from, and ERC-20's Transfer topic.
TRANSFER_LOG_ADDRESS = Address(bytes.fromhex("eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee"))
TRANSFER_TOPIC = int("ddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef", 16)

# The codes of execution-apis' eth_simulateV1 (geth's internal/ethapi/errors.go).
NONCE_TOO_LOW = -38010
NONCE_TOO_HIGH = -38011
BASE_FEE_TOO_LOW = -38012
INTRINSIC_GAS = -38013
INSUFFICIENT_FUNDS = -38014
BLOCK_GAS_LIMIT_REACHED = -38015
BLOCK_NUMBER_INVALID = -38020
BLOCK_TIMESTAMP_INVALID = -38021
MAX_INITCODE_SIZE_EXCEEDED = -38025
CLIENT_LIMIT_EXCEEDED = -38026
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
SERVER_ERROR = -32000
VM_ERROR = -32015
REVERTED = 3


# ------------------------------------------------------------------ inputs
@dataclass(frozen=True)
class SimCall:
    """geth's TransactionArgs as a simulated call reads them; None is 'not given'."""

    sender: Address = ZERO_ADDRESS
    to: Address | None = None
    gas: int | None = None
    gas_price: int | None = None
    max_fee_per_gas: int | None = None
    max_priority_fee_per_gas: int | None = None
    value: int = 0
    data: bytes = b""
    nonce: int | None = None
    chain_id: int | None = None
    access_list: tuple[tuple[Address, tuple[int, ...]], ...] | None = None


@dataclass(frozen=True)
class SimBlockOverrides(BlockOverrides):
    """eth_call's block fields, and what only a simulated block may also set."""

    beacon_root: bytes | None = None
    # (index, validator index, address, amount in gwei), applied after the block's calls
    withdrawals: tuple[tuple[int, int, Address, int], ...] = ()


@dataclass(frozen=True)
class SimBlock:
    overrides: SimBlockOverrides = SimBlockOverrides()
    state: tuple[AccountOverride, ...] = ()
    calls: tuple[SimCall, ...] = ()
    # geth's movePrecompileToAddress: (precompile, new address), for this block only
    moves: tuple[tuple[Address, Address], ...] = ()


@dataclass(frozen=True)
class SimOptions:
    validation: bool = False
    trace_transfers: bool = False


# ------------------------------------------------------------------ outputs
@dataclass(frozen=True)
class SimLog:
    address: Address
    topics: tuple[int, ...]
    data: bytes
    index: int  # log index in the block, counted as geth's tracer counts (reverted ones too)
    tx_index: int
    tx_hash: bytes


@dataclass(frozen=True)
class CallError:
    code: int
    message: str
    data: bytes | None = None


@dataclass(frozen=True)
class SimCallResult:
    return_data: bytes
    logs: tuple[SimLog, ...]
    gas_used: int
    max_used_gas: int
    status: int
    error: CallError | None


@dataclass(frozen=True)
class SimulatedBlock:
    block: BlockAPI
    senders: tuple[Address, ...]
    receipts: tuple[ReceiptAPI, ...]
    calls: tuple[SimCallResult, ...]

    @property
    def header(self) -> BlockHeaderAPI:
        return self.block.header


class SimSource(HeaderSource, Protocol):
    """What a simulation reads: the chain's headers and state (the node's `ChainReader`)."""

    @property
    def chain_id(self) -> int: ...

    @property
    def fork(self) -> Fork: ...

    def state_db(self) -> BaseDB: ...


# ------------------------------------------------------------------ the VM it runs
_MARK = "_cairn_sim_mark"
_SELFDESTRUCTS = "_cairn_sim_selfdestructs"
SELFDESTRUCT = 0xFF


class _SimComputation(DeadlineComputation):
    """Every frame takes a place in the transaction's log order as it starts, so that an ETH
    transfer log (emitted on entry, as geth's tracer does) sorts among the real logs."""

    @classmethod
    def apply_computation(
        cls,
        state: StateAPI,
        message: MessageAPI,
        transaction_context: TransactionContextAPI,
        parent_computation: ComputationAPI | None = None,
    ) -> ComputationAPI:
        mark = transaction_context.get_next_log_counter()
        computation = super().apply_computation(
            state, message, transaction_context, parent_computation=parent_computation
        )
        setattr(computation, _MARK, mark)
        return computation


class _SelfDestructTransfer:
    """SELFDESTRUCT, noting on its frame the balance it moves, to whom and when: geth's
    tracer logs that as a transfer too."""

    __slots__ = ("gas_cost", "inner", "mnemonic")

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.mnemonic = getattr(inner, "mnemonic", "SELFDESTRUCT")
        self.gas_cost = getattr(inner, "gas_cost", 0)

    def __call__(self, computation: Any) -> None:
        values = computation._stack.values
        top = values[-1] if values else 0
        word = top if isinstance(top, int) else int.from_bytes(top, "big")
        beneficiary = Address((word & (2**160 - 1)).to_bytes(20, "big"))
        balance = computation.state.get_balance(computation.msg.storage_address)
        mark = computation.transaction_context.get_next_log_counter()
        try:
            self.inner(computation=computation)
        except Halt:
            if balance:
                done = getattr(computation, _SELFDESTRUCTS, [])
                done.append((mark, beneficiary, balance))
                setattr(computation, _SELFDESTRUCTS, done)
            raise


class _SimExecutor(BaseTransactionExecutor):
    def validate_transaction(self, transaction: SignedTransactionAPI) -> None:
        # A simulated call is checked by `_check_call` with geth's rules and codes (nonce
        # only with validation, never the sender's code nor a signature: there is none).
        return None


class _SimState(BaseState):
    def get_tip(self, transaction: SignedTransactionAPI) -> int:
        # A call without fees under an overridden base fee would pay the coinbase a negative
        # tip; geth skips the fee payment then (NoBaseFee with zero fee fields).
        return max(0, super().get_tip(transaction))


class _SimVM(VM):
    def validate_block(self, block: BlockAPI) -> None:
        # Simulated headers follow the request, not the chain's rules (a base fee of 0, any
        # gas limit or timestamp the overrides ask for), as geth assembles them unchecked.
        return None


@cache
def _sim_vm_class(vm_class: type[VM]) -> type[VM]:
    state = cast(type[BaseState], vm_class.get_state_class())
    base = cast(type[BaseComputation], state.computation_class)
    opcodes = deadline_opcodes(base.opcodes)
    if SELFDESTRUCT in opcodes:
        opcodes[SELFDESTRUCT] = _SelfDestructTransfer(opcodes[SELFDESTRUCT])
    computation = type(f"Sim{base.__name__}", (_SimComputation, base), {"opcodes": opcodes})
    executor = type(
        f"Sim{state.transaction_executor_class.__name__}",
        (_SimExecutor, state.transaction_executor_class),
        {},
    )
    sim_state = type(
        f"Sim{state.__name__}",
        (_SimState, state),
        {"computation_class": computation, "transaction_executor_class": executor},
    )
    return cast(
        type[VM], type(f"Sim{vm_class.__name__}", (_SimVM, vm_class), {"_state_class": sim_state})
    )


class _SimHeaders:
    """The chain's headers plus the blocks simulated so far (for BLOCKHASH and EIP-2935)."""

    def __init__(self, source: HeaderSource) -> None:
        self._source = source
        self._by_hash: dict[bytes, BlockHeaderAPI] = {}
        self._by_number: dict[int, BlockHeaderAPI] = {}

    def add(self, header: BlockHeaderAPI) -> None:
        self._by_hash[header.hash] = header
        self._by_number[header.block_number] = header

    def header_by_hash(self, block_hash: bytes) -> BlockHeaderAPI | None:
        found = self._by_hash.get(block_hash)
        return found if found is not None else self._source.header_by_hash(block_hash)

    def header_by_number(self, number: int) -> BlockHeaderAPI | None:
        found = self._by_number.get(number)
        return found if found is not None else self._source.header_by_number(number)

    def head_header(self) -> BlockHeaderAPI:
        return self._source.head_header()


# ------------------------------------------------------------------ the simulator
def validate_request(blocks: tuple[SimBlock, ...]) -> None:
    """geth's limits on a request, checked before any state is read."""
    if not blocks:
        raise SimulationRejected(INVALID_PARAMS, "empty input")
    if len(blocks) > MAX_BLOCKS:
        raise SimulationRejected(CLIENT_LIMIT_EXCEEDED, "too many blocks")
    total = 0
    for block in blocks:
        if len(block.calls) > MAX_CALLS_PER_BLOCK:
            raise SimulationRejected(
                CLIENT_LIMIT_EXCEEDED,
                f"too many calls in block: {len(block.calls)} > {MAX_CALLS_PER_BLOCK}",
            )
        total += len(block.calls)
        if total > MAX_CALLS:
            raise SimulationRejected(
                CLIENT_LIMIT_EXCEEDED, f"too many calls: {total} > {MAX_CALLS}"
            )


def sanitize_chain(base: BlockHeaderAPI, blocks: tuple[SimBlock, ...]) -> list[SimBlock]:
    """geth's sanitizeChain: numbers and times filled in and strictly increasing, skipped
    numbers filled with empty blocks, at most MAX_BLOCKS past the base."""
    out: list[SimBlock] = []
    prev_number: int = base.block_number
    prev_time: int = base.timestamp
    for block in blocks:
        o = block.overrides
        number = o.number if o.number is not None else prev_number + 1
        if number <= prev_number:
            raise SimulationRejected(
                BLOCK_NUMBER_INVALID, f"block numbers must be in order: {number} <= {prev_number}"
            )
        if number - base.block_number > MAX_BLOCKS:
            raise SimulationRejected(CLIENT_LIMIT_EXCEEDED, "too many blocks")
        for n in range(prev_number + 1, number):
            prev_time += TIMESTAMP_INCREMENT
            out.append(SimBlock(SimBlockOverrides(number=n, time=prev_time)))
        prev_number = number
        if o.time is None:
            timestamp = prev_time + TIMESTAMP_INCREMENT
        else:
            timestamp = o.time
            if timestamp <= prev_time:
                raise SimulationRejected(
                    BLOCK_TIMESTAMP_INVALID,
                    f"block timestamps must be in order: {timestamp} <= {prev_time}",
                )
        prev_time = timestamp
        out.append(replace(block, overrides=replace(o, number=number, time=timestamp)))
    return out


class Simulator:
    """One eth_simulateV1 request; not for reuse or for use from two threads."""

    def __init__(
        self, source: SimSource, base: BlockHeaderAPI, options: SimOptions, gas_cap: int
    ) -> None:
        self.source = source
        self.base = base
        self.options = options
        self.vm_class = _sim_vm_class(source.fork.vm_class)
        self.budget = gas_cap if gas_cap > 0 else 2**64 - 1
        self._chain_context = ChainContext(source.chain_id)
        self._overlay = StateOverlay(source.state_db())
        self._headers = _SimHeaders(source)

    def run(self, blocks: tuple[SimBlock, ...], timeout: float) -> list[SimulatedBlock]:
        """Every block, in order; raises `SimulationRejected` for a request or a call geth
        rejects, `ExecutionTimeout` past `timeout` seconds for the whole simulation."""
        validate_request(blocks)
        try:
            return self._run(blocks, timeout)
        except ExecutionTimeout as exc:
            # geth stops the EVM and answers this one as an internal error (-32603)
            raise SimulationRejected(INTERNAL_ERROR, str(exc)) from exc

    def _run(self, blocks: tuple[SimBlock, ...], timeout: float) -> list[SimulatedBlock]:
        with execution_deadline(timeout):
            results: list[SimulatedBlock] = []
            parent = self.base
            coinbase, gas_limit = self.base.coinbase, self.base.gas_limit
            for block in sanitize_chain(self.base, blocks):
                o = block.overrides
                coinbase = o.fee_recipient if o.fee_recipient is not None else coinbase
                gas_limit = o.gas_limit if o.gas_limit is not None else gas_limit
                done = self._block(block, parent, coinbase, gas_limit)
                self._headers.add(done.header)
                results.append(done)
                parent = done.header
            return results

    def _block_vm_class(self, block: SimBlock) -> type[VM]:
        """The VM for one block: with its precompiles as geth leaves them after the block's
        state overrides (a precompile whose address is overridden is gone; one moved with
        movePrecompileToAddress answers at its new address), or the plain one."""
        state_class = cast(type[BaseState], self.vm_class.get_state_class())
        computation = cast(type[BaseComputation], state_class.computation_class)
        precompiles = dict(computation.get_precompiles())
        overridden = {o.address for o in block.state}
        if not block.moves and not overridden & set(precompiles):
            return self.vm_class
        moved = dict(block.moves)
        dirty: set[Address] = set()
        for address in sorted(overridden | set(moved)):
            if address in dirty:
                raise SimulationRejected(
                    SERVER_ERROR,
                    f"account {to_checksum_address(address)} has already been overridden by a "
                    "precompile",
                )
            target = moved.get(address)
            function = precompiles.get(address)
            if target is not None:
                if function is None:
                    raise SimulationRejected(
                        SERVER_ERROR, f"account {to_checksum_address(address)} is not a precompile"
                    )
                if target in overridden or target in moved:
                    raise SimulationRejected(
                        SERVER_ERROR,
                        f"account {to_checksum_address(target)} is already overridden",
                    )
                precompiles[target] = function
                dirty.add(target)
            if function is not None:
                del precompiles[address]
        moved_computation = type(
            computation.__name__, (computation,), {"_precompiles": precompiles}
        )
        warm = frozenset(computation.get_precompiles())

        def is_address_warm(state: Any, address: Address) -> bool:
            # geth warms the fork's precompile addresses, wherever the code now answers
            return bool(state._account_db.is_address_warm(address)) or address in warm

        moved_state = type(
            state_class.__name__,
            (state_class,),
            {"computation_class": moved_computation, "is_address_warm": is_address_warm},
        )
        return cast(
            type[VM],
            type(self.vm_class.__name__, (self.vm_class,), {"_state_class": moved_state}),
        )

    def _template(
        self, block: SimBlock, parent: BlockHeaderAPI, coinbase: Address, gas_limit: int
    ) -> BlockHeaderAPI:
        o = block.overrides
        assert o.time is not None  # sanitize_chain set it
        header = self.vm_class.create_header_from_parent(
            parent,
            timestamp=o.time,
            coinbase=coinbase,
            gas_limit=gas_limit,
            extra_data=b"",
            mix_hash=o.prev_randao if o.prev_randao is not None else ZERO_HASH,
            parent_beacon_block_root=o.beacon_root if o.beacon_root is not None else ZERO_HASH,
        )
        if o.base_fee is not None:
            base_fee = o.base_fee
        elif self.options.validation:
            base_fee = calculate_expected_base_fee_per_gas(parent)
        else:
            base_fee = 0  # geth: fees only where asked for, so gasPrice < baseFee cannot happen
        return header.copy(base_fee_per_gas=base_fee, difficulty=0)

    def _block(
        self, block: SimBlock, parent: BlockHeaderAPI, coinbase: Address, gas_limit: int
    ) -> SimulatedBlock:
        template = self._template(block, parent, coinbase, gas_limit)
        vm_class = self._block_vm_class(block)
        vm = vm_class(
            header=template,
            chaindb=EvmChainDB(self._overlay.db, self._headers),
            chain_context=self._chain_context,
            consensus_context=ConsensusContext(self._overlay.db),
        )
        if block.state:
            apply_overrides(vm.state, block.state)
        vm.block_preprocessing(vm.get_block())
        header = vm.get_header()
        applied: list[SignedTransactionAPI] = []
        receipts: list[ReceiptAPI] = []
        senders: list[Address] = []
        results: list[SimCallResult] = []
        log_count = 0
        for index, call in enumerate(block.calls):
            tx, capped = self._transaction(vm.state, header, call)
            self._check_call(vm.state, header, call, tx)
            try:
                receipt, computation = vm.apply_transaction(header, impersonate(tx, call.sender))
            except ValidationError as exc:
                raise SimulationRejected(INTERNAL_ERROR, _wrapped(str(exc), tx.gas)) from exc
            used = receipt.gas_used - header.gas_used
            header = vm.add_receipt_to_header(header, receipt)
            if used > self.budget:
                raise SimulationRejected(
                    SERVER_ERROR,
                    f"RPC gas cap exhausted: need {used}, remaining {self.budget}",
                )
            self.budget -= used
            logs, log_count = self._logs(computation, index, tx.hash, log_count)
            results.append(_call_result(computation, tx.gas, used, logs, capped))
            applied.append(tx)
            receipts.append(receipt)
            senders.append(call.sender)
        withdrawals = tuple(
            Withdrawal(index, validator, address, amount)
            for index, validator, address, amount in block.overrides.withdrawals
        )
        if withdrawals:
            vm.apply_all_withdrawals(withdrawals)
        filled = vm.set_block_transactions_and_withdrawals(
            vm.get_block(), header, applied, receipts, withdrawals=withdrawals
        )
        mined, _ = vm.mine_block(vm.block_postprocessing(filled))
        return SimulatedBlock(mined, tuple(senders), tuple(receipts), tuple(results))

    def _transaction(
        self, state: StateAPI, header: BlockHeaderAPI, call: SimCall
    ) -> tuple[SignedTransactionAPI, bool]:
        """geth's sanitizeCall + CallDefaults + ToTransaction: the unsigned transaction a
        call is (v, r, s all 0), and whether the gas budget capped its gas."""
        remaining = header.gas_limit - header.gas_used
        gas = call.gas if call.gas is not None else remaining
        if remaining < gas:
            raise SimulationRejected(
                BLOCK_GAS_LIMIT_REACHED,
                f"block gas limit reached: remaining: {remaining}, required: {gas}",
            )
        capped = min(gas, self.budget)
        if call.gas_price is not None and (
            call.max_fee_per_gas is not None or call.max_priority_fee_per_gas is not None
        ):
            raise SimulationRejected(
                SERVER_ERROR, "both gasPrice and (maxFeePerGas or maxPriorityFeePerGas) specified"
            )
        chain_id = self.source.chain_id
        if call.chain_id is not None and call.chain_id != chain_id:
            raise SimulationRejected(
                SERVER_ERROR,
                f"chainId does not match node's (have={call.chain_id}, want={chain_id})",
            )
        nonce = call.nonce if call.nonce is not None else state.get_nonce(call.sender)
        builder = cast(type[LondonTransactionBuilder], self.vm_class.get_transaction_builder())
        to = call.to if call.to is not None else Address(b"")
        access = call.access_list or ()
        tx: SignedTransactionAPI
        if call.gas_price is not None and call.access_list is None:
            tx = builder.new_transaction(
                nonce=nonce,
                gas_price=call.gas_price,
                gas=capped,
                to=to,
                value=call.value,
                data=call.data,
                v=0,
                r=0,
                s=0,
            )
        else:
            # a typed transaction: with an access list at gasPrice (type 1), or EIP-1559 fees
            typed: dict[str, Any] = {
                "chain_id": chain_id,
                "nonce": nonce,
                "gas": capped,
                "to": to,
                "value": call.value,
                "data": call.data,
                "access_list": access,
                "y_parity": 0,
                "r": 0,
                "s": 0,
            }
            if call.gas_price is not None:
                tx = builder.new_access_list_transaction(gas_price=call.gas_price, **typed)
            else:
                tx = builder.new_dynamic_fee_transaction(
                    max_priority_fee_per_gas=call.max_priority_fee_per_gas or 0,
                    max_fee_per_gas=call.max_fee_per_gas or 0,
                    **typed,
                )
        # The builder's typed constructors make London's class; the fork's block wants its own.
        return builder.decode(tx.encode()), capped < gas

    def _check_call(
        self, state: StateAPI, header: BlockHeaderAPI, call: SimCall, tx: SignedTransactionAPI
    ) -> None:
        """geth's preCheck, buyGas and intrinsic-gas checks, in geth's order and words, as
        geth's simulator wraps them ("err: ... (supplied gas N)")."""
        try:
            self._precheck(state, header, call, tx)
        except SimulationRejected as exc:
            raise SimulationRejected(exc.code, _wrapped(exc.message, tx.gas)) from None

    def _precheck(
        self, state: StateAPI, header: BlockHeaderAPI, call: SimCall, tx: SignedTransactionAPI
    ) -> None:
        who = to_checksum_address(call.sender)  # geth's Address.Hex()
        have_nonce = state.get_nonce(call.sender)
        if self.options.validation:
            if have_nonce == 2**64 - 1:
                raise SimulationRejected(
                    INTERNAL_ERROR, f"nonce has max value: address {who}, nonce: {have_nonce}"
                )
            if have_nonce < tx.nonce:
                raise SimulationRejected(
                    NONCE_TOO_HIGH,
                    f"nonce too high: address {who}, tx: {tx.nonce} state: {have_nonce}",
                )
            if have_nonce > tx.nonce:
                raise SimulationRejected(
                    NONCE_TOO_LOW,
                    f"nonce too low: address {who}, tx: {tx.nonce} state: {have_nonce}",
                )
        fee_cap, tip = tx.max_fee_per_gas, tx.max_priority_fee_per_gas
        base_fee: int = header.base_fee_per_gas or 0
        if self.options.validation or fee_cap or tip:
            if fee_cap < tip:
                raise SimulationRejected(
                    INVALID_PARAMS,
                    "max priority fee per gas higher than max fee per gas: address "
                    f"{who}, maxPriorityFeePerGas: {tip}, maxFeePerGas: {fee_cap}",
                )
            if fee_cap < base_fee:
                raise SimulationRejected(
                    BASE_FEE_TOO_LOW,
                    f"max fee per gas less than block base fee: address {who}, "
                    f"maxFeePerGas: {fee_cap}, baseFee: {base_fee}",
                )
        if not tx.to and len(tx.data) > MAX_INITCODE_SIZE:
            raise SimulationRejected(
                MAX_INITCODE_SIZE_EXCEEDED,
                f"max initcode size exceeded: code size {len(tx.data)}, limit {MAX_INITCODE_SIZE}",
            )
        want = tx.gas * fee_cap + tx.value
        balance = state.get_balance(call.sender)
        if balance < want:
            raise SimulationRejected(
                INSUFFICIENT_FUNDS,
                f"insufficient funds for gas * price + value: address {who} have {balance} "
                f"want {want}",
            )
        intrinsic = tx.intrinsic_gas
        if tx.gas < intrinsic:
            raise SimulationRejected(
                INTRINSIC_GAS, f"intrinsic gas too low: have {tx.gas}, want {intrinsic}"
            )
        floor = _floor_data_gas(self.vm_class, tx)
        if tx.gas < floor:
            raise SimulationRejected(
                INTERNAL_ERROR,
                f"insufficient gas for floor data gas cost: have {tx.gas}, want {floor}",
            )

    def _logs(
        self, computation: ComputationAPI, tx_index: int, tx_hash: bytes, first: int
    ) -> tuple[tuple[SimLog, ...], int]:
        """The call's logs as geth's simulate tracer records them: transfers (if asked) and
        logs in execution order, each numbered as emitted, those of failed frames dropped."""
        entries: list[tuple[int, bool, Address, tuple[int, ...], bytes]] = []
        for frame, alive in _frames(computation):
            msg = frame.msg
            if self.options.trace_transfers and _is_transfer(msg):
                transfer = (TRANSFER_TOPIC, _word(msg.sender), _word(msg.storage_address))
                value = msg.value.to_bytes(32, "big")
                mark: int = getattr(frame, _MARK)
                entries.append((mark, alive, TRANSFER_LOG_ADDRESS, transfer, value))
            if self.options.trace_transfers:
                moved: list[tuple[int, Address, int]] = getattr(frame, _SELFDESTRUCTS, [])
                for at, beneficiary, balance in moved:
                    paid = (TRANSFER_TOPIC, _word(msg.storage_address), _word(beneficiary))
                    value = balance.to_bytes(32, "big")
                    entries.append((at, alive, TRANSFER_LOG_ADDRESS, paid, value))
            # py-evm keeps a frame's own logs in `_log_entries`, each with its place in order
            own: list[tuple[int, Address, tuple[int, ...], bytes]] = frame._log_entries
            for counter, address, topics, data in own:
                entries.append((counter, alive, address, tuple(topics), data))
        entries.sort(key=lambda e: e[0])
        logs = tuple(
            SimLog(address, topics, data, first + i, tx_index, tx_hash)
            for i, (_, alive, address, topics, data) in enumerate(entries)
            if alive
        )
        return logs, first + len(entries)


def _wrapped(message: str, gas: int) -> str:
    return f"err: {message} (supplied gas {gas})"


def _frames(
    computation: ComputationAPI, alive: bool = True
) -> Iterator[tuple[ComputationAPI, bool]]:
    here = alive and not computation.is_error
    yield computation, here
    for child in computation.children:
        yield from _frames(child, here)


def _is_transfer(msg: MessageAPI) -> bool:
    """A frame that moves ETH: value > 0, not DELEGATECALL (no transfer) nor CALLCODE (to
    itself), as geth's tracer counts them."""
    if not msg.should_transfer_value or not msg.value:
        return False
    callcode = msg.sender == msg.storage_address and msg.code_address != msg.storage_address
    return not callcode


def _word(address: bytes) -> int:
    return int.from_bytes(address, "big")


def _floor_data_gas(vm_class: type[VM], tx: SignedTransactionAPI) -> int:
    """EIP-7623's floor (Prague on): 21,000 + 10 per calldata token."""
    state = cast(type[BaseState], vm_class.get_state_class())
    if not hasattr(state.transaction_executor_class, "calc_data_floor_gas"):
        return 0
    zeros = tx.data.count(0)
    tokens = zeros + (len(tx.data) - zeros) * 4
    return 21_000 + 10 * tokens


def _call_result(
    computation: ComputationAPI,
    gas: int,
    used: int,
    logs: tuple[SimLog, ...],
    capped: bool,
) -> SimCallResult:
    peak = max(gas - computation.get_gas_remaining(), used)
    if not computation.is_error:
        return SimCallResult(computation.output, logs, used, peak, 1, None)
    error = computation.error
    if isinstance(error, Revert):
        failure = CallError(REVERTED, revert_message(computation.output), computation.output)
    else:
        message = geth_vm_error(error)
        if capped:
            message += " (gas limit was capped by the RPC server's global gas cap)"
        failure = CallError(VM_ERROR, message)
    return SimCallResult(b"", (), used, peak, 0, failure)
