"""The trace namespace (OpenEthereum/Parity style, as Erigon, Nethermind and Besu serve it),
and the flat shapes geth's `flatCallTracer` and `4byteTracer` return.

`trace_block`, `trace_transaction`, `trace_replayBlockTransactions` and
`trace_replayTransaction` (the "trace" kind only) are what ethereum-etl's `export_traces` and
Blockscout's Erigon/Nethermind/Besu variants call; `trace_get` and `trace_filter` complete the
namespace. Every one is built from the callTracer frames `cairn.execution.trace.Tracer` makes
by replaying the block with the execution that built it; this module only reshapes them.
Must never change chain state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from eth._utils.numeric import ceil32
from eth.abc import SignedTransactionAPI
from eth.vm.base import VM
from eth.vm.forks.shanghai.constants import INITCODE_WORD_COST

from cairn.execution.trace import CallFrame, TraceOptions, Tracer, TraceTooLarge
from cairn.rpc import params
from cairn.rpc.backend import Backend
from cairn.rpc.blocks import BlockResolver
from cairn.rpc.dispatch import rpc_method
from cairn.rpc.errors import LIMIT_EXCEEDED, SERVER_ERROR, RpcError, invalid_params
from cairn.rpc.format import addr, hexb, q

T = TypeVar("T")
CALLS = TraceOptions(tracer="callTracer")
# geth's tracer error strings -> OpenEthereum's
_PARITY_ERRORS = {
    "execution reverted": "Reverted",
    "out of gas": "Out of gas",
    "invalid jump destination": "Bad jump destination",
    "stack underflow": "Stack underflow",
    "stack limit reached 1024": "Out of stack",
    "write protection": "Mutable Call In Static Context",
    "max call depth exceeded": "Out of stack",
    "insufficient balance for transfer": "Insufficient balance",
    "contract address collision": "Contract address collision",
}


@dataclass(frozen=True)
class TxPlace:
    """Where a traced transaction sits; all None for a call."""

    block_hash: bytes | None = None
    block_number: int | None = None
    tx_hash: bytes | None = None
    position: int | None = None


def parity_error(error: str) -> str:
    if error.startswith("invalid opcode"):
        return "Bad instruction"
    return _PARITY_ERRORS.get(error, error[:1].upper() + error[1:])


def flat_traces(top: CallFrame, place: TxPlace, *, intrinsic_gas: int = 0) -> list[dict[str, Any]]:
    """The call tree as OpenEthereum's flat list: depth first, each entry with its
    `traceAddress` (child indexes from the top) and number of `subtraces`. The top frame's
    gas and gas used leave out the intrinsic gas, as OpenEthereum's do."""
    out: list[dict[str, Any]] = []

    def walk(frame: CallFrame, address: list[int], top_level: bool) -> None:
        out.append(_entry(frame, address, place, intrinsic_gas if top_level else 0))
        for i, child in enumerate(frame.calls):
            walk(child, [*address, i], False)

    walk(top, [], True)
    return out


def _entry(frame: CallFrame, address: list[int], place: TxPlace, intrinsic: int) -> dict[str, Any]:
    kind = frame.kind
    gas = max(frame.gas - intrinsic, 0)
    gas_used = max(frame.gas_used - intrinsic, 0)
    action: dict[str, Any]
    result: dict[str, Any] | None
    if kind in ("CREATE", "CREATE2"):
        trace_type = "create"
        action = {
            "creationMethod": kind.lower(),
            "from": addr(frame.sender),
            "gas": q(gas),
            "init": hexb(frame.input),
            "value": q(frame.value or 0),
        }
        result = {
            "address": addr(frame.to) if frame.to else None,
            "code": hexb(frame.output),
            "gasUsed": q(gas_used),
        }
    elif kind == "SELFDESTRUCT":
        trace_type = "suicide"
        action = {
            "address": addr(frame.sender),
            "balance": q(frame.value or 0),
            "refundAddress": addr(frame.to or b""),
        }
        result = None
    else:
        trace_type = "call"
        action = {
            "callType": kind.lower(),
            "from": addr(frame.sender),
            "gas": q(gas),
            "input": hexb(frame.input),
            "to": addr(frame.to or b""),
            "value": q(frame.value or 0),
        }
        result = {"gasUsed": q(gas_used), "output": hexb(frame.output)}
    entry: dict[str, Any] = {
        "action": action,
        "blockHash": hexb(place.block_hash) if place.block_hash is not None else None,
        "blockNumber": place.block_number,
    }
    if frame.error:
        entry["error"] = parity_error(frame.error)
    if not frame.error or (frame.error == "execution reverted" and result is not None):
        # a revert keeps its gas used and revert data, as Erigon, reth and Anvil send them
        entry["result"] = result
    entry.update(
        {
            "subtraces": len(frame.calls),
            "traceAddress": address,
            "transactionHash": hexb(place.tx_hash) if place.tx_hash is not None else None,
            "transactionPosition": place.position,
            "type": trace_type,
        }
    )
    return entry


def four_bytes(top: CallFrame) -> dict[str, int]:
    """geth's 4byteTracer: "0x<selector>-<argument bytes>" -> calls, over every call frame
    with a 4-byte selector (creations and precompiles left out)."""
    counts: dict[str, int] = {}

    def walk(frame: CallFrame) -> None:
        is_call = frame.kind in ("CALL", "CALLCODE", "DELEGATECALL", "STATICCALL")
        to = frame.to or b""
        precompile = len(to) == 20 and int.from_bytes(to, "big") <= 0x11
        if is_call and len(frame.input) >= 4 and not precompile:
            key = f"0x{frame.input[:4].hex()}-{len(frame.input) - 4}"
            counts[key] = counts.get(key, 0) + 1
        for child in frame.calls:
            walk(child)

    walk(top)
    return counts


def intrinsic_gas(tx: SignedTransactionAPI, vm_class: type[VM]) -> int:
    """geth's intrinsic gas of `tx`, which the top trace leaves out. Since Shanghai it holds
    EIP-3860's 2 gas per word of a creation's init code; py-evm charges that inside the
    creation's frame instead, so it is moved here."""
    gas = int(tx.intrinsic_gas)
    computation = vm_class.get_state_class().computation_class
    if not tx.to and hasattr(computation, "consume_initcode_gas_cost"):
        gas += INITCODE_WORD_COST * ceil32(len(tx.data)) // 32
    return gas


class TraceNamespace:
    def __init__(self, backend: Backend, tracer: Tracer) -> None:
        self.b = backend
        self.reader = backend.chain.reader
        self.blocks = BlockResolver(self.reader)
        self.tracer = tracer

    async def _traced(self, trace: Callable[[], T]) -> T:
        try:
            return await self.b.run_read(trace)
        except TraceTooLarge as exc:
            raise RpcError(LIMIT_EXCEEDED, str(exc)) from None

    def _block_number(self, block: Any) -> int:
        ref = params.block_ref(block, 0)
        number = self.blocks.number(ref)
        if number is None:
            raise RpcError(SERVER_ERROR, f"block {_describe(block)} not found")
        return number

    def _tx_location(self, tx_hash: Any) -> tuple[bytes, int, int]:
        h = params.hash32(tx_hash, 0)
        location = self.reader.tx_location(h)
        if location is None:
            raise RpcError(SERVER_ERROR, f"transaction 0x{h.hex()} not found")
        return h, location[0], location[1]

    def _block_traces(self, number: int) -> list[list[dict[str, Any]]]:
        """Per transaction, its flat traces (genesis: none)."""
        if number == 0:
            return []
        stored = self.reader.block_by_number(number)
        if stored is None:
            raise RpcError(SERVER_ERROR, f"block #{number} not found")
        header = stored.header
        out = []
        for index, trace in enumerate(self.tracer.trace_block(number, CALLS)):
            frame = trace.result
            assert isinstance(frame, CallFrame)
            place = TxPlace(header.hash, number, trace.tx_hash, index)
            tx = stored.transactions[index]
            out.append(
                flat_traces(
                    frame, place, intrinsic_gas=intrinsic_gas(tx, self.reader.fork.vm_class)
                )
            )
        return out

    @rpc_method("trace_block")
    async def trace_block(self, block: Any) -> list[dict[str, Any]]:
        number = self._block_number(block)
        per_tx = await self._traced(lambda: self._block_traces(number))
        return [entry for traces in per_tx for entry in traces]

    @rpc_method("trace_transaction")
    async def trace_transaction(self, tx_hash: Any) -> list[dict[str, Any]]:
        h, number, index = self._tx_location(tx_hash)
        return await self._traced(lambda: self._one(h, number, index))

    def _one(self, tx_hash: bytes, number: int, index: int) -> list[dict[str, Any]]:
        stored = self.reader.block_by_number(number)
        if stored is None or number == 0:
            raise RpcError(SERVER_ERROR, f"transaction 0x{tx_hash.hex()} not found")
        frame = self.tracer.trace_transaction(tx_hash, CALLS)
        assert isinstance(frame, CallFrame)
        place = TxPlace(stored.header.hash, number, tx_hash, index)
        return flat_traces(
            frame,
            place,
            intrinsic_gas=intrinsic_gas(stored.transactions[index], self.reader.fork.vm_class),
        )

    @rpc_method("trace_replayBlockTransactions")
    async def replay_block_transactions(self, block: Any, kinds: Any = None) -> list[Any]:
        number = self._block_number(block)
        _check_kinds(kinds, 1)
        per_tx = await self._traced(lambda: self._block_traces(number))
        stored = self.reader.block_by_number(number)
        assert stored is not None
        return [_replayed(traces, stored.transactions[i].hash) for i, traces in enumerate(per_tx)]

    @rpc_method("trace_replayTransaction")
    async def replay_transaction(self, tx_hash: Any, kinds: Any = None) -> dict[str, Any]:
        h, number, index = self._tx_location(tx_hash)
        _check_kinds(kinds, 1)
        traces = await self._traced(lambda: self._one(h, number, index))
        replayed = _replayed(traces, h)
        del replayed["transactionHash"]  # the single-transaction answer does not name it
        return replayed

    @rpc_method("trace_get")
    async def trace_get(self, tx_hash: Any, indices: Any) -> dict[str, Any] | None:
        """The transaction's trace at `indices`, its trace address (OpenEthereum's and
        Nethermind's reading; [] is the top call), or null."""
        h, number, index = self._tx_location(tx_hash)
        if not isinstance(indices, list):
            raise invalid_params("invalid argument 1: expected a list of trace indexes")
        wanted = [params.quantity(i, 1, name="indices") for i in indices]
        traces = await self._traced(lambda: self._one(h, number, index))
        return next((t for t in traces if t["traceAddress"] == wanted), None)

    @rpc_method("trace_filter")
    async def trace_filter(self, spec: Any) -> list[dict[str, Any]]:
        """Traces of a block range (at most MAX_FILTER_BLOCKS) whose sender is in
        `fromAddress` and whose receiver is in `toAddress` (an empty or missing list matches
        every address; `mode: "union"` matches either, as Erigon allows), after skipping
        `after` of them, at most `count`."""
        flt = _TraceFilter.parse(spec, self.blocks)
        if flt.last - flt.first + 1 > MAX_FILTER_BLOCKS:
            raise RpcError(
                LIMIT_EXCEEDED,
                f"block range {flt.first}-{flt.last} too large: at most {MAX_FILTER_BLOCKS} "
                "blocks per trace_filter; split the range",
            )
        return await self._traced(lambda: self._filtered(flt))

    def _filtered(self, flt: _TraceFilter) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        skip = flt.after
        for number in range(max(flt.first, 1), flt.last + 1):
            stored = self.reader.block_by_number(number)
            if stored is None or not stored.transactions:
                continue
            for traces in self._block_traces(number):
                for trace in traces:
                    if not flt.matches(trace):
                        continue
                    if skip:
                        skip -= 1
                        continue
                    out.append(trace)
                    if flt.count is not None and len(out) >= flt.count:
                        return out
        return out


# trace_filter re-executes every block of its range that has transactions
MAX_FILTER_BLOCKS = 1000


@dataclass(frozen=True)
class _TraceFilter:
    first: int
    last: int
    senders: frozenset[str]
    receivers: frozenset[str]
    union: bool
    after: int
    count: int | None

    @classmethod
    def parse(cls, spec: Any, blocks: BlockResolver) -> _TraceFilter:
        if not isinstance(spec, dict):
            raise invalid_params("invalid argument 0: expected a filter object")
        unknown = sorted(
            set(spec)
            - {"fromBlock", "toBlock", "fromAddress", "toAddress", "after", "count", "mode"}
        )
        if unknown:
            raise invalid_params(f"invalid argument 0: unknown field {unknown[0]}")

        def number(key: str) -> int:
            found = blocks.number(params.block_ref(spec.get(key), 0, default="latest"))
            if found is None:
                raise RpcError(SERVER_ERROR, f"block {_describe(spec.get(key))} not found")
            return found

        def addresses(key: str) -> frozenset[str]:
            listed = spec.get(key) or []
            if not isinstance(listed, list):
                raise invalid_params(f"invalid argument 0: {key} must be a list of addresses")
            return frozenset(addr(params.address(a, 0, name=key)) for a in listed)

        mode = spec.get("mode", "intersection")
        if mode not in ("union", "intersection"):
            raise invalid_params('invalid argument 0: mode must be "union" or "intersection"')
        first, last = number("fromBlock"), number("toBlock")
        if first > last:
            raise invalid_params(f"invalid argument 0: fromBlock {first} is after toBlock {last}")
        after = spec.get("after")
        count = spec.get("count")
        return cls(
            first,
            last,
            addresses("fromAddress"),
            addresses("toAddress"),
            mode == "union",
            params.quantity(after, 0, name="after") if after is not None else 0,
            params.quantity(count, 0, name="count") if count is not None else None,
        )

    def matches(self, trace: dict[str, Any]) -> bool:
        action = trace["action"]
        result = trace.get("result") or {}
        sender = action.get("from") or action.get("address")
        receiver = action.get("to") or result.get("address") or action.get("refundAddress")
        if self.union and self.senders and self.receivers:
            return sender in self.senders or receiver in self.receivers
        return (not self.senders or sender in self.senders) and (
            not self.receivers or receiver in self.receivers
        )


_PLACE_KEYS = ("blockHash", "blockNumber", "transactionHash", "transactionPosition")


def _replayed(traces: list[dict[str, Any]], tx_hash: bytes) -> dict[str, Any]:
    """OpenEthereum's replay answer: its traces are not placed (no block or tx fields)."""
    top = traces[0]
    traces = [{k: v for k, v in t.items() if k not in _PLACE_KEYS} for t in traces]
    output = (top.get("result") or {}).get("output") or (top.get("result") or {}).get("code")
    return {
        "output": output or "0x",
        "stateDiff": None,
        "trace": traces,
        "transactionHash": hexb(tx_hash),
        "vmTrace": None,
    }


def _check_kinds(kinds: Any, index: int) -> None:
    if kinds is None:
        return
    if not isinstance(kinds, list) or not all(isinstance(k, str) for k in kinds):
        raise invalid_params(f'invalid argument {index}: expected a list such as ["trace"]')
    unsupported = sorted(set(kinds) - {"trace"})
    if unsupported:
        raise invalid_params(
            f"invalid argument {index}: {', '.join(unsupported)} not supported; Cairn replays "
            'with ["trace"] only (stateDiff and vmTrace are not implemented)'
        )


def _describe(block: Any) -> str:
    text = str(block)
    return text if len(text) <= 80 else text[:77] + "..."
