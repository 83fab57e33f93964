"""The debug namespace: geth's tracers (callTracer, flatCallTracer, 4byteTracer and the struct
logger; debug_traceBlock for a block given as RLP) and raw RLP data.

Traces re-execute blocks, so they run on the Backend's read executor, never on the event
loop. A request runs at most --rpc.trace-timeout (a larger `timeout` option is cut to it),
and its struct logs may take at most --rpc.max-response bytes of JSON, counted while they
are captured: past it the client gets `-32005 trace too large`. Owns the JSON shapes of
geth's trace results. Must never change chain state.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar

import rlp

from cairn.execution.trace import (
    PRESTATE_TRACER,
    CallFrame,
    PrestateResult,
    StructLogOptions,
    StructResult,
    TraceOptions,
    Tracer,
    TraceResult,
    TraceTooLarge,
    TxTrace,
)
from cairn.execution.vmerrors import opcode_name
from cairn.rpc import params
from cairn.rpc.backend import Backend
from cairn.rpc.blocks import BlockResolver
from cairn.rpc.dispatch import rpc_method
from cairn.rpc.errors import LIMIT_EXCEEDED, SERVER_ERROR, RpcError, invalid_params
from cairn.rpc.format import addr, hexb, q
from cairn.rpc.overrides import parse_overrides
from cairn.rpc.trace_api import TxPlace, flat_traces, four_bytes, intrinsic_gas

T = TypeVar("T")
CALL_TRACER = "callTracer"
FLAT_CALL_TRACER = "flatCallTracer"
FOUR_BYTE_TRACER = "4byteTracer"
# debug_traceCall's config keys beside geth's TraceConfig
_CALL_ONLY = ("stateOverrides", "blockOverrides", "txIndex")
# Tracers made from callTracer frames, reshaped by cairn.rpc.trace_api.
TRACERS = (CALL_TRACER, FLAT_CALL_TRACER, FOUR_BYTE_TRACER, PRESTATE_TRACER)
# Go's time.ParseDuration units, as geth's "timeout" option takes them.
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")


class DebugNamespace:
    def __init__(self, backend: Backend) -> None:
        self.b = backend
        self.reader = backend.chain.reader
        self.blocks = BlockResolver(self.reader)
        config = backend.config
        self.max_timeout = config.trace_timeout
        # A struct log that could not be sent is stopped as soon as it is known to be so.
        self.tracer = Tracer(
            self.reader,
            backend.calls,
            max_bytes=config.max_response_bytes,
            max_seconds=config.trace_timeout,
        )

    async def _traced(self, trace: Callable[[], T]) -> T:
        """A trace on the read threads; one that outgrew its budget is a limit error."""
        try:
            return await self.b.run_read(trace)
        except TraceTooLarge as exc:
            raise RpcError(LIMIT_EXCEEDED, str(exc)) from None

    # ------------------------------------------------------------ tracing
    @rpc_method("debug_traceTransaction")
    async def trace_transaction(self, tx_hash: Any, config: Any = None) -> Any:
        h = params.hash32(tx_hash, 0)
        options = parse_trace_config(config, 1, self.max_timeout)

        def run() -> Any:
            result = self.tracer.trace_transaction(h, options)
            place, intrinsic = self._place(h)
            return shape_trace(result, options, place, intrinsic)

        # Formatting a long struct log is heavy too: both stay off the event loop.
        return await self._traced(run)

    def _place(self, tx_hash: bytes) -> tuple[TxPlace, int]:
        location = self.reader.tx_location(tx_hash)
        stored = None if location is None else self.reader.block_by_number(location[0])
        if location is None or stored is None:
            return TxPlace(tx_hash=tx_hash), 0
        number, index = location
        place = TxPlace(stored.header.hash, number, tx_hash, index)
        return place, intrinsic_gas(stored.transactions[index], self.reader.fork.vm_class)

    @rpc_method("debug_traceBlockByNumber")
    async def trace_block_by_number(self, block: Any, config: Any = None) -> list[dict[str, Any]]:
        ref = params.block_ref(block, 0)
        options = parse_trace_config(config, 1, self.max_timeout)
        number = self.blocks.number(ref)
        if number is None:
            shown = ref.number if ref.number is not None else _describe(block)
            raise RpcError(SERVER_ERROR, f"block #{shown} not found")
        return await self._trace_block(number, options)

    @rpc_method("debug_traceBlockByHash")
    async def trace_block_by_hash(
        self, block_hash: Any, config: Any = None
    ) -> list[dict[str, Any]]:
        h = params.hash32(block_hash, 0)
        options = parse_trace_config(config, 1, self.max_timeout)
        number = self.reader.store.load_number(h)
        if number is None:
            raise RpcError(SERVER_ERROR, f"block 0x{h.hex()} not found")
        return await self._trace_block(number, options)

    async def _trace_block(self, number: int, options: TraceOptions) -> list[dict[str, Any]]:
        return await self._traced(
            lambda: self._shape_block(self.tracer.trace_block(number, options), options)
        )

    def _shape_block(self, traces: list[TxTrace], options: TraceOptions) -> list[dict[str, Any]]:
        out = []
        for trace in traces:
            place, intrinsic = self._place(trace.tx_hash)
            result = shape_trace(trace.result, options, place, intrinsic)
            out.append({"txHash": hexb(trace.tx_hash), "result": result})
        return out

    @rpc_method("debug_traceBlock")
    async def trace_raw_block(self, raw: Any, config: Any = None) -> list[dict[str, Any]]:
        """geth's debug_traceBlock: the block given as RLP, replayed on its parent's state."""
        encoded = params.data(raw, 0)
        options = parse_trace_config(config, 1, self.max_timeout)
        try:
            block = rlp.decode(encoded, sedes=self.reader.fork.vm_class.get_block_class())
        except (rlp.exceptions.DecodingError, rlp.exceptions.DeserializationError) as exc:
            raise RpcError(SERVER_ERROR, f"could not decode block: {exc}") from None
        if self.reader.store.load_number(block.header.parent_hash) is None:
            raise RpcError(SERVER_ERROR, f"parent 0x{block.header.parent_hash.hex()} not found")
        return await self._traced(
            lambda: self._shape_block(self.tracer.trace_raw_block(block, options), options)
        )

    @rpc_method("debug_traceCall")
    async def trace_call(self, tx: Any, block: Any = None, config: Any = None) -> Any:
        call = params.call_params(tx, 0)
        header = self.blocks.header(params.block_ref(block, 1, default="latest"))
        if isinstance(config, dict):
            if config.get("txIndex") is not None:
                raise invalid_params(
                    "invalid argument 2: txIndex is not supported by Cairn's debug_traceCall; "
                    "trace on the block's state without it"
                )
            extra = parse_overrides(config.get("stateOverrides"), config.get("blockOverrides"), 2)
            if extra is not None:
                call = replace(call, overrides=extra)
            config = {k: v for k, v in config.items() if k not in _CALL_ONLY}
        options = parse_trace_config(config, 2, self.max_timeout)
        return await self._traced(
            lambda: shape_trace(self.tracer.trace_call(header, call, options), options, TxPlace())
        )

    # ------------------------------------------------------------ raw data
    @rpc_method("debug_getRawHeader")
    async def get_raw_header(self, block: Any) -> str:
        ref = params.block_ref(block, 0)
        number = self.blocks.number(ref)
        raw = None if number is None else self.reader.store.load_header(number)
        if raw is None:
            return self._missing(ref, "header")
        return hexb(raw)

    @rpc_method("debug_getRawBlock")
    async def get_raw_block(self, block: Any) -> str:
        ref = params.block_ref(block, 0)
        stored = self.blocks.block(ref)
        if stored is None:
            return self._missing(ref, "block")
        return hexb(rlp.encode(stored.block))

    @rpc_method("debug_getRawReceipts")
    async def get_raw_receipts(self, block: Any) -> list[str]:
        ref = params.block_ref(block, 0)
        number = self.blocks.number(ref)
        raws = None if number is None else self.reader.store.load_receipts(number)
        if raws is None:
            if ref.block_hash is not None:
                raise RpcError(SERVER_ERROR, f"block 0x{ref.block_hash.hex()} not found")
            return []
        return [hexb(r) for r in raws]

    @rpc_method("debug_getRawTransaction")
    async def get_raw_transaction(self, tx_hash: Any) -> str:
        h = params.hash32(tx_hash, 0)
        location = self.reader.tx_location(h)
        if location is not None:
            number, index = location
            body = self.reader.store.load_body(number)
            if body is not None and index < len(body.transactions):
                return hexb(body.transactions[index])
        pending = self.b.pool.get(h)
        if pending is not None:
            return hexb(pending.raw)
        return "0x"  # geth answers empty bytes, not null, for an unknown hash

    @staticmethod
    def _missing(ref: params.BlockRef, what: str) -> str:
        # geth: an unknown hash is an error, an unknown number is empty bytes.
        if ref.block_hash is not None:
            raise RpcError(SERVER_ERROR, f"{what} 0x{ref.block_hash.hex()} not found")
        return "0x"


def _describe(block: Any) -> str:
    text = str(block)
    return text if len(text) <= 80 else text[:77] + "..."


# ------------------------------------------------------------ trace config
def parse_trace_config(value: Any, index: int, max_timeout: float = 0.0) -> TraceOptions:
    """geth's TraceConfig; its keys are matched case-insensitively, as Go's JSON does. The
    `timeout` asked for (geth's default 5s; "0" is none) is cut to `max_timeout` if set."""
    if value is None:
        return TraceOptions(timeout=_capped(5.0, max_timeout))
    if not isinstance(value, dict):
        raise invalid_params(f"invalid argument {index}: expected a trace config object")
    keys = {str(k).lower(): v for k, v in value.items()}
    tracer = keys.get("tracer")
    if tracer is not None and not isinstance(tracer, str):
        raise invalid_params(f"invalid argument {index}: tracer must be a string")
    if tracer == "":
        tracer = None
    if tracer is not None and tracer not in TRACERS:
        raise RpcError(
            SERVER_ERROR,
            f"tracer {tracer!r} not found: Cairn implements {', '.join(TRACERS)} and the "
            "default struct logger (leave tracer out)",
        )
    tracer_config = keys.get("tracerconfig")
    if tracer_config is None:
        tracer_config = {}
    if not isinstance(tracer_config, dict):
        raise invalid_params(f"invalid argument {index}: tracerConfig must be an object")
    call_keys = {str(k).lower(): v for k, v in tracer_config.items()}
    struct = StructLogOptions(
        enable_memory=_flag(keys, "enablememory", index),
        disable_stack=_flag(keys, "disablestack", index),
        disable_storage=_flag(keys, "disablestorage", index),
        enable_return_data=_flag(keys, "enablereturndata", index),
        limit=_count(keys.get("limit"), index),
    )
    timeout = keys.get("timeout")
    nested = tracer == CALL_TRACER
    return TraceOptions(
        tracer=tracer,
        struct=struct,
        only_top_call=nested and _flag(call_keys, "onlytopcall", index),
        with_log=nested and _flag(call_keys, "withlog", index),
        diff_mode=tracer == PRESTATE_TRACER and _flag(call_keys, "diffmode", index),
        timeout=_capped(5.0 if timeout is None else parse_duration(timeout), max_timeout),
    )


def _capped(timeout: float, max_timeout: float) -> float:
    if max_timeout > 0 and (timeout <= 0 or timeout > max_timeout):
        return max_timeout
    return timeout


def _flag(keys: dict[str, Any], name: str, index: int) -> bool:
    value = keys.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise invalid_params(f"invalid argument {index}: {name} must be true or false")
    return value


def _count(value: Any, index: int) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise invalid_params(f"invalid argument {index}: limit must be a non-negative integer")
    return value


def parse_duration(value: Any) -> float:
    """Go's `time.ParseDuration` ("5s", "1m30s", "500ms") in seconds."""
    if not isinstance(value, str):
        raise RpcError(SERVER_ERROR, f"time: invalid duration {value!r}")
    text = value.strip()
    if text == "0":
        return 0.0
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise RpcError(SERVER_ERROR, f'time: invalid duration "{value}"')
    return sum(float(number) * _DURATION_UNITS[unit] for number, unit in parts)


# ------------------------------------------------------------ JSON shapes (geth's)
def shape_trace(
    result: TraceResult, options: TraceOptions, place: TxPlace, intrinsic: int = 0
) -> Any:
    """One transaction's trace in the shape its tracer gives."""
    if isinstance(result, CallFrame) and options.tracer == FLAT_CALL_TRACER:
        return flat_traces(result, place, intrinsic_gas=intrinsic)
    if isinstance(result, CallFrame) and options.tracer == FOUR_BYTE_TRACER:
        return four_bytes(result)
    return format_trace(result)


def format_prestate(result: PrestateResult) -> dict[str, Any]:
    """geth's prestateTracer JSON: nonce a number, zero nonce and empty code/storage left out."""

    def account(balance: int | None, nonce: int | None, code: bytes | None,
                storage: dict[int, int]) -> dict[str, Any]:  # fmt: skip
        out: dict[str, Any] = {}
        if balance is not None:
            out["balance"] = q(balance)
        if nonce:
            out["nonce"] = nonce
        if code:
            out["code"] = hexb(code)
        if storage:
            out["storage"] = {
                "0x" + k.to_bytes(32, "big").hex(): "0x" + v.to_bytes(32, "big").hex()
                for k, v in sorted(storage.items())
            }
        return out

    pre = {
        addr(a): account(s.balance, s.nonce, s.code, s.storage)
        for a, s in sorted(result.pre.items())
    }
    if result.post is None:
        return pre
    post = {
        addr(a): account(c.balance, c.nonce, c.code, c.storage)
        for a, c in sorted(result.post.items())
    }
    return {"post": post, "pre": pre}


def format_trace(result: TraceResult) -> dict[str, Any]:
    if isinstance(result, StructResult):
        return format_struct(result)
    if isinstance(result, PrestateResult):
        return format_prestate(result)
    return format_frame(result)


def format_frame(frame: CallFrame) -> dict[str, Any]:
    """geth's callFrame, fields in gencodec's order."""
    out: dict[str, Any] = {
        "from": addr(frame.sender),
        "gas": q(frame.gas),
        "gasUsed": q(frame.gas_used),
    }
    if frame.to is not None:
        out["to"] = addr(frame.to)
    out["input"] = hexb(frame.input)
    if frame.output:
        out["output"] = hexb(frame.output)
    if frame.error:
        out["error"] = frame.error
    if frame.revert_reason:
        out["revertReason"] = frame.revert_reason
    if frame.calls:
        out["calls"] = [format_frame(c) for c in frame.calls]
    if frame.logs:
        out["logs"] = [
            {
                "address": addr(log.address),
                "topics": [hexb(t) for t in log.topics],
                "data": hexb(log.data),
                "index": q(log.index),
                "position": q(log.position),
            }
            for log in frame.logs
        ]
    if frame.value is not None:
        out["value"] = q(frame.value)
    out["type"] = frame.kind
    return out


def format_struct(result: StructResult) -> dict[str, Any]:
    """geth's ExecutionResult with legacy struct logs."""
    logs: list[dict[str, Any]] = []
    for step in result.steps:
        entry: dict[str, Any] = {
            "pc": step.pc,
            "op": opcode_name(step.op),
            "gas": step.gas,
            "gasCost": step.gas_cost,
            "depth": step.depth,
        }
        if step.error:
            entry["error"] = step.error
        if step.stack is not None:
            entry["stack"] = [hex(v) for v in step.stack]
        if step.return_data:
            entry["returnData"] = hexb(step.return_data)
        if step.memory:
            memory = step.memory
            entry["memory"] = [
                "0x" + memory[i : i + 32].ljust(32, b"\x00").hex()
                for i in range(0, len(memory), 32)
            ]
        if step.storage:
            entry["storage"] = {
                "0x" + k.to_bytes(32, "big").hex(): "0x" + v.to_bytes(32, "big").hex()
                for k, v in step.storage.items()
            }
        if step.refund:
            entry["refund"] = step.refund
        logs.append(entry)
    return {
        "gas": result.gas,
        "failed": result.failed,
        "returnValue": hexb(result.return_value),
        "structLogs": logs,
    }
