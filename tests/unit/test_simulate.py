"""eth_simulateV1's pure parts: geth's block-chain sanitising (defaults, gaps, ordering,
limits), request limits and parameter parsing. The engine itself runs against real nodes in
tests/e2e/test_simulate.py and test_simulate_fixtures.py."""

from __future__ import annotations

import pytest
from eth.vm.forks.prague.headers import PragueBlockHeader
from eth_typing import Address, BlockNumber

from cairn.errors import SimulationRejected
from cairn.execution.simulate import (
    MAX_CALLS_PER_BLOCK,
    SimBlock,
    SimBlockOverrides,
    SimCall,
    sanitize_chain,
    validate_request,
)
from cairn.rpc.errors import RpcError
from cairn.rpc.simulate import parse_options

BASE = PragueBlockHeader(
    difficulty=0, block_number=BlockNumber(10), gas_limit=30_000_000, timestamp=1000
)
A = "0x" + "11" * 20


def numbers_and_times(blocks: list[SimBlock]) -> list[tuple[int | None, int | None]]:
    return [(b.overrides.number, b.overrides.time) for b in blocks]


def test_defaults_are_parent_plus_one_and_twelve_seconds() -> None:
    out = sanitize_chain(BASE, (SimBlock(), SimBlock()))
    assert numbers_and_times(out) == [(11, 1012), (12, 1024)]


def test_skipped_numbers_become_empty_blocks_and_times_follow_overrides() -> None:
    calls = (SimCall(sender=Address(bytes(20))),)
    out = sanitize_chain(
        BASE,
        (SimBlock(SimBlockOverrides(number=14, time=2000), calls=calls), SimBlock()),
    )
    assert numbers_and_times(out) == [(11, 1012), (12, 1024), (13, 1036), (14, 2000), (15, 2012)]
    assert [len(b.calls) for b in out] == [0, 0, 0, 1, 0]


def test_numbers_and_times_must_increase() -> None:
    with pytest.raises(SimulationRejected) as number:
        sanitize_chain(BASE, (SimBlock(SimBlockOverrides(number=10)),))
    assert (number.value.code, number.value.message) == (
        -38020,
        "block numbers must be in order: 10 <= 10",
    )
    with pytest.raises(SimulationRejected) as time:
        sanitize_chain(BASE, (SimBlock(), SimBlock(SimBlockOverrides(time=1012))))
    assert (time.value.code, time.value.message) == (
        -38021,
        "block timestamps must be in order: 1012 <= 1012",
    )


def test_at_most_256_blocks_past_the_base() -> None:
    assert len(sanitize_chain(BASE, (SimBlock(SimBlockOverrides(number=266)),))) == 256
    with pytest.raises(SimulationRejected) as far:
        sanitize_chain(BASE, (SimBlock(SimBlockOverrides(number=267)),))
    assert (far.value.code, far.value.message) == (-38026, "too many blocks")


def test_request_limits() -> None:
    with pytest.raises(SimulationRejected) as empty:
        validate_request(())
    assert (empty.value.code, empty.value.message) == (-32602, "empty input")
    crowded = SimBlock(calls=(SimCall(),) * (MAX_CALLS_PER_BLOCK + 1))
    with pytest.raises(SimulationRejected) as many:
        validate_request((crowded,))
    assert many.value.code == -38026
    assert many.value.message == "too many calls in block: 5001 > 5000"
    full = SimBlock(calls=(SimCall(),) * MAX_CALLS_PER_BLOCK)
    with pytest.raises(SimulationRejected) as total:
        validate_request((full, full, SimBlock(calls=(SimCall(),))))
    assert (total.value.code, total.value.message) == (-38026, "too many calls: 10001 > 10000")


def test_parse_options_reads_geth_fields() -> None:
    blocks, options, full = parse_options(
        {
            "blockStateCalls": [
                {
                    "blockOverrides": {"number": "0x20", "baseFeePerGas": "0x7"},
                    "stateOverrides": {
                        "0x0000000000000000000000000000000000000001": {"movePrecompileToAddress": A}
                    },
                    "calls": [{"from": A, "maxFeePerGas": "0x9", "nonce": "0x3"}],
                }
            ],
            "validation": True,
            "traceTransfers": True,
            "returnFullTransactions": True,
        }
    )
    (block,) = blocks
    assert (block.overrides.number, block.overrides.base_fee) == (0x20, 7)
    assert block.moves == ((Address(b"\x00" * 19 + b"\x01"), Address(bytes.fromhex("11" * 20))),)
    (call,) = block.calls
    assert (call.max_fee_per_gas, call.nonce, call.gas_price) == (9, 3, None)
    assert options.validation and options.trace_transfers and full


def test_unknown_fields_are_ignored_as_geth_does() -> None:
    blocks, _, _ = parse_options(
        {"blockStateCalls": [{"calls": [{"from": A, "x": 1}], "y": 2}], "z": 3}
    )
    assert len(blocks[0].calls) == 1


@pytest.mark.parametrize(
    ("request_object", "fragment"),
    [
        ("nope", "expected a simulation object"),
        ({"blockStateCalls": {}}, "blockStateCalls must be an array"),
        ({"blockStateCalls": [{"calls": [{"authorizationList": []}]}]}, "not supported"),
        ({"blockStateCalls": [{"blockOverrides": {"blobBaseFee": "0x1"}}]}, "blobbasefee"),
        ({"blockStateCalls": [], "validation": "yes"}, "expected true or false"),
        ({"blockStateCalls": [{"calls": [{"blobVersionedHashes": []}]}]}, "not supported"),
    ],
)
def test_bad_parameters_are_invalid_params(request_object: object, fragment: str) -> None:
    with pytest.raises(RpcError) as refused:
        parse_options(request_object)
    assert refused.value.code == -32602
    assert fragment in refused.value.message
