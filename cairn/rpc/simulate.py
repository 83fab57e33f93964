"""eth_simulateV1 (geth's multi-block simulation): its parameters parsed into the engine's
values (`cairn.execution.simulate`) and its blocks formatted as geth returns them. Must never
run a simulation on the event loop: it runs on the call thread, as eth_call does."""

from __future__ import annotations

from typing import Any

from eth_typing import Address

from cairn.execution.reader import StoredBlock
from cairn.execution.simulate import (
    SimBlock,
    SimBlockOverrides,
    SimCall,
    SimOptions,
    SimulatedBlock,
    Simulator,
)
from cairn.rpc import params
from cairn.rpc.backend import Backend
from cairn.rpc.blocks import BlockResolver
from cairn.rpc.dispatch import rpc_method
from cairn.rpc.errors import invalid_params
from cairn.rpc.format import addr, format_block, h32, hexb, q
from cairn.rpc.overrides import parse_overrides

# Fields geth reads but Cairn does not serve: refused by name. Other unknown fields are
# ignored, as geth's JSON decoding ignores them.
_UNSUPPORTED_OVERRIDES = {"blobbasefee", "difficulty"}
_UNSUPPORTED_CALL_FIELDS = {
    "blobVersionedHashes",
    "blobs",
    "commitments",
    "proofs",
    "authorizationList",
}


class SimulateNamespace:
    def __init__(self, backend: Backend) -> None:
        self.b = backend
        self.blocks = BlockResolver(backend.chain.reader)

    @rpc_method("eth_simulateV1")
    async def simulate(self, options: Any, block: Any = None) -> list[dict[str, Any]]:
        blocks, opts, full = parse_options(options)
        base = self.blocks.header(params.block_ref(block, 1, default="latest"))
        reader = self.b.chain.reader
        config = self.b.config

        def run() -> list[dict[str, Any]]:
            simulated = Simulator(reader, base, opts, config.gas_cap).run(
                blocks, config.evm_timeout
            )
            return [format_simulated(b, full) for b in simulated]

        return await self.b.run_call(run)


# ------------------------------------------------------------------ parameters
def parse_options(value: Any) -> tuple[tuple[SimBlock, ...], SimOptions, bool]:
    if not isinstance(value, dict):
        raise invalid_params("invalid argument 0: expected a simulation object")
    calls = value.get("blockStateCalls")
    if calls is None:
        calls = []
    if not isinstance(calls, list):
        raise invalid_params("invalid argument 0: blockStateCalls must be an array")
    flags = {}
    for key in ("validation", "traceTransfers", "returnFullTransactions"):
        flag = value.get(key)
        flags[key] = False if flag is None else params.boolean(flag, 0)
    blocks = tuple(_block(b, i) for i, b in enumerate(calls))
    options = SimOptions(validation=flags["validation"], trace_transfers=flags["traceTransfers"])
    return blocks, options, flags["returnFullTransactions"]


def _block(value: Any, position: int) -> SimBlock:
    where = f"invalid argument 0: blockStateCalls[{position}]"
    if not isinstance(value, dict):
        raise invalid_params(f"{where}: expected an object")
    raw_state, moves = _moves(value.get("stateOverrides"), where)
    state = parse_overrides(raw_state, None, 0)
    calls = value.get("calls")
    if calls is None:
        calls = []
    if not isinstance(calls, list):
        raise invalid_params(f"{where}: calls must be an array")
    return SimBlock(
        overrides=_block_overrides(value.get("blockOverrides"), where),
        state=state.state if state is not None else (),
        calls=tuple(_call(c, f"{where}.calls[{i}]") for i, c in enumerate(calls)),
        moves=moves,
    )


def _moves(value: Any, where: str) -> tuple[Any, tuple[tuple[Address, Address], ...]]:
    """geth's movePrecompileToAddress taken out of the state overrides (the rest are
    eth_call's): the overrides without it, and (precompile, new address) pairs."""
    if not isinstance(value, dict):
        return value, ()
    rest: dict[str, Any] = {}
    moves: list[tuple[Address, Address]] = []
    for key, account in value.items():
        if not isinstance(account, dict):
            rest[key] = account
            continue
        kept = {k: v for k, v in account.items() if k.lower() != "moveprecompiletoaddress"}
        target = next(
            (v for k, v in account.items() if k.lower() == "moveprecompiletoaddress"), None
        )
        if target is not None:
            moves.append(
                (
                    params.address(key, 0, name=f"{where}.stateOverrides"),
                    params.address(target, 0, name="movePrecompileToAddress"),
                )
            )
        rest[key] = kept
    return rest, tuple(moves)


def _block_overrides(value: Any, where: str) -> SimBlockOverrides:
    if value is None:
        return SimBlockOverrides()
    if not isinstance(value, dict):
        raise invalid_params(f"{where}: blockOverrides must be an object")
    keys = {k.lower(): v for k, v in value.items() if v is not None}
    unknown = sorted(set(keys) & _UNSUPPORTED_OVERRIDES)
    if unknown:
        raise invalid_params(
            f"{where}: {', '.join(unknown)} not supported in blockOverrides (number, time, "
            "gasLimit, feeRecipient, prevRandao, baseFeePerGas, beaconRoot, withdrawals are)"
        )
    return SimBlockOverrides(
        number=params.quantity(keys["number"], 0, name="number") if "number" in keys else None,
        time=params.quantity(keys["time"], 0, name="time") if "time" in keys else None,
        gas_limit=params.quantity(keys["gaslimit"], 0, name="gasLimit")
        if "gaslimit" in keys
        else None,
        fee_recipient=params.address(keys["feerecipient"], 0, name="feeRecipient")
        if "feerecipient" in keys
        else None,
        prev_randao=params.hash32(keys["prevrandao"], 0) if "prevrandao" in keys else None,
        base_fee=params.quantity(keys["basefeepergas"], 0, name="baseFeePerGas")
        if "basefeepergas" in keys
        else None,
        beacon_root=params.hash32(keys["beaconroot"], 0) if "beaconroot" in keys else None,
        withdrawals=_withdrawals(keys.get("withdrawals"), where),
    )


def _withdrawals(value: Any, where: str) -> tuple[tuple[int, int, Address, int], ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise invalid_params(f"{where}: withdrawals must be an array")
    out = []
    for entry in value:
        if not isinstance(entry, dict):
            raise invalid_params(f"{where}: a withdrawal must be an object")
        out.append(
            (
                params.quantity(entry.get("index", "0x0"), 0, name="withdrawal index"),
                params.quantity(entry.get("validatorIndex", "0x0"), 0, name="validatorIndex"),
                params.address(entry.get("address"), 0, name="withdrawal address"),
                params.quantity(entry.get("amount", "0x0"), 0, name="withdrawal amount"),
            )
        )
    return tuple(out)


def _call(value: Any, where: str) -> SimCall:
    if not isinstance(value, dict):
        raise invalid_params(f"{where}: expected a transaction object")
    unknown = sorted(set(value) & _UNSUPPORTED_CALL_FIELDS)
    if unknown:
        raise invalid_params(
            f"{where}: {', '.join(unknown)} not supported in a simulated call "
            "(no blob or EIP-7702 transactions)"
        )
    base = params.call_params(value, 0)

    def opt(key: str) -> int | None:
        raw = value.get(key)
        return None if raw is None else params.quantity(raw, 0, name=key)

    return SimCall(
        sender=base.sender,
        to=base.to,
        gas=base.gas,
        gas_price=opt("gasPrice"),
        max_fee_per_gas=opt("maxFeePerGas"),
        max_priority_fee_per_gas=opt("maxPriorityFeePerGas"),
        value=base.value,
        data=base.data,
        nonce=opt("nonce"),
        chain_id=opt("chainId"),
        access_list=base.access_list if value.get("accessList") is not None else None,
    )


# ------------------------------------------------------------------ results
def format_simulated(simulated: SimulatedBlock, full: bool) -> dict[str, Any]:
    """Cairn's block object (as eth_getBlockByNumber), plus geth's `calls`."""
    header = simulated.header
    out = format_block(StoredBlock(simulated.block, simulated.senders, simulated.receipts), full)
    block_hash, number, timestamp = hexb(header.hash), q(header.block_number), q(header.timestamp)
    calls: list[dict[str, Any]] = []
    for result in simulated.calls:
        call: dict[str, Any] = {
            "returnData": hexb(result.return_data),
            "logs": [
                {
                    "address": addr(log.address),
                    "topics": [h32(t) for t in log.topics],
                    "data": hexb(log.data),
                    "blockNumber": number,
                    "transactionHash": hexb(log.tx_hash),
                    "transactionIndex": q(log.tx_index),
                    "blockHash": block_hash,
                    "blockTimestamp": timestamp,
                    "logIndex": q(log.index),
                    "removed": False,
                }
                for log in result.logs
            ],
            "gasUsed": q(result.gas_used),
            "maxUsedGas": q(result.max_used_gas),
            "status": q(result.status),
        }
        if result.error is not None:
            error: dict[str, Any] = {"message": result.error.message, "code": result.error.code}
            if result.error.data is not None:
                error["data"] = hexb(result.error.data)
            call["error"] = error
        calls.append(call)
    out["calls"] = calls
    return out
