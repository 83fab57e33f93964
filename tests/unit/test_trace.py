"""Tracing on a real chain (LevelDB in a temp dir, py-evm): callTracer frames, struct logs,
access lists and timeouts, checked against receipts, addresses and gas computed here."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from eth_abi.abi import decode
from eth_typing import Address
from eth_utils import keccak, to_canonical_address, to_checksum_address
from web3 import Web3
from web3.contract import Contract

from cairn.chain.chain import Chain
from cairn.errors import ExecutionFailed, NotFound
from cairn.execution.call import CallParams, CallRunner, revert_message, unpack_revert_reason
from cairn.execution.reader import StoredBlock
from cairn.execution.trace import (
    CallFrame,
    StructLogOptions,
    StructResult,
    TraceOptions,
    Tracer,
    TraceTooLarge,
)
from tests.support.chain import ADDRESSES, mine, open_chain, transfer
from tests.support.contracts import compile_contract

CALLS = TraceOptions(tracer="callTracer")
SHA256 = b"\x00" * 19 + b"\x02"


@dataclass
class Probe:
    chain: Chain
    tracer: Tracer
    address: Address
    contract: Contract
    nonce: int = 2  # account 0 has sent the deploy (nonce 0) and one more below

    @property
    def child(self) -> Address:
        """The Child contract the probe deployed (its storage slot 2)."""
        state = self.chain.reader.state_at(self.chain.head)
        return Address(state.get_storage(self.address, 2).to_bytes(32, "big")[12:])

    def data(self, fn: str, *args: Any) -> bytes:
        return bytes.fromhex(self.contract.encode_abi(fn, list(args))[2:])

    def tx(self, fn: str, *args: Any, gas: int = 500_000, **extra: Any) -> bytes:
        raw = transfer(
            0,
            self.nonce,
            to=to_checksum_address(self.address),
            value=0,
            gas=gas,
            data=self.data(fn, *args),
            **extra,
        )
        self.nonce += 1
        return raw


@pytest.fixture
def probe(tmp_path: Path) -> Iterator[Probe]:
    compiled = compile_contract("Probe.sol", "Probe")
    with open_chain(tmp_path) as chain:
        deploy = transfer(
            0, 0, to="", value=10**18, gas=3_000_000, data=bytes.fromhex(compiled.bytecode[2:])
        )
        result = mine(chain, [deploy, transfer(0, 1)])
        assert not result.computations[0].is_error
        address = Address(result.computations[0].msg.storage_address)
        contract = Web3().eth.contract(address=to_checksum_address(address), abi=compiled.abi)
        yield Probe(
            chain, Tracer(chain.reader, CallRunner(chain.reader, 50_000_000)), address, contract
        )


def _frame(result: object) -> CallFrame:
    assert isinstance(result, CallFrame)
    return result


def _struct(result: object) -> StructResult:
    assert isinstance(result, StructResult)
    return result


def test_every_frame_type_and_its_addresses(probe: Probe) -> None:
    salt = b"\x11" * 32
    block = mine(
        probe.chain,
        [probe.tx("nested", 7), probe.tx("deploy", salt), probe.tx("destroyChild")],
    )
    traces = probe.tracer.trace_block(block.header.block_number, CALLS)
    assert [t.tx_hash for t in traces] == [tx.hash for tx in block.block.transactions]
    nested, deploy, destroy = (_frame(t.result) for t in traces)
    child = probe.child
    assert nested.kind == "CALL" and nested.error is None
    assert [c.kind for c in nested.calls] == [
        "CALL",
        "STATICCALL",
        "STATICCALL",
        "DELEGATECALL",
        "STATICCALL",
    ]
    store, peek, fail, delegated, digest = nested.calls
    assert (store.to, store.value) == (child, 1)
    assert peek.value is None and peek.to == child
    assert fail.error == "execution reverted" and fail.revert_reason == "inner"
    assert fail.output[:4] == bytes.fromhex("08c379a0")
    assert delegated.sender == probe.address and delegated.to == child
    assert digest.to == SHA256 and digest.input == (7).to_bytes(32, "big")

    plain, salted = decode(["address", "address"], deploy.output)
    assert [c.kind for c in deploy.calls] == ["CREATE", "CREATE2"]
    assert deploy.calls[0].to == to_canonical_address(plain)
    init_code = deploy.calls[1].input
    expected = keccak(b"\xff" + probe.address + salt + keccak(init_code))[12:]
    assert deploy.calls[1].to == expected == to_canonical_address(salted)

    assert [c.kind for c in destroy.calls] == ["CALL"]
    boom = destroy.calls[0]
    assert [c.kind for c in boom.calls] == ["SELFDESTRUCT"]
    gone = boom.calls[0]
    # Child got 1 wei from nested(); SELFDESTRUCT sends it to its caller, the probe.
    assert (gone.sender, gone.to, gone.value, gone.gas, gone.gas_used) == (
        child,
        probe.address,
        1,
        0,
        0,
    )
    receipts = probe.chain.reader.block_by_number(block.header.block_number)
    assert receipts is not None
    used = [r.gas_used for r in receipts.receipts]
    assert [f.gas_used for f in (nested, deploy, destroy)] == [
        used[0],
        used[1] - used[0],
        used[2] - used[1],
    ]
    assert [f.gas for f in (nested, deploy, destroy)] == [500_000] * 3


def test_logs_carry_block_index_and_position(probe: Probe) -> None:
    block = mine(probe.chain, [probe.tx("ping", b"\x01"), probe.tx("nested", 3)])
    options = TraceOptions(tracer="callTracer", with_log=True)
    ping, nested = (
        _frame(t.result) for t in probe.tracer.trace_block(block.header.block_number, options)
    )
    assert [(log.index, log.position) for log in ping.logs] == [(0, 0)]
    # nested: Stored inside the first call (block log 1), then Ping after two calls (log 2).
    assert [(log.index, log.position) for log in nested.calls[0].logs] == [(1, 0)]
    assert [(log.index, log.position) for log in nested.logs] == [(2, 2)]
    assert nested.calls[2].logs == []  # the reverted call logged nothing
    top_only = _frame(
        probe.tracer.trace_transaction(
            block.block.transactions[1].hash,
            TraceOptions(tracer="callTracer", with_log=True, only_top_call=True),
        )
    )
    assert top_only.calls == []
    assert [(log.index, log.position) for log in top_only.logs] == [(2, 0)]


def test_reverted_transaction(probe: Probe) -> None:
    block = mine(probe.chain, [probe.tx("fail", "nope", gas=100_000)])
    tx_hash = block.block.transactions[0].hash
    frame = _frame(probe.tracer.trace_transaction(tx_hash, CALLS))
    assert frame.error == "execution reverted"
    assert frame.revert_reason == "nope"
    struct = _struct(probe.tracer.trace_transaction(tx_hash, TraceOptions()))
    assert struct.failed
    assert struct.return_value == frame.output
    assert struct.steps[-1].op == 0xFD  # REVERT
    assert struct.gas == frame.gas_used == block.receipts[0].gas_used


def test_struct_log_gas_and_storage(probe: Probe) -> None:
    block = mine(probe.chain, [probe.tx("setSlot", 4, 99)])
    tx = block.block.transactions[0]
    struct = _struct(probe.tracer.trace_transaction(tx.hash, TraceOptions()))
    calldata_gas = sum(4 if b == 0 else 16 for b in tx.data)
    first = struct.steps[0]
    assert (first.pc, first.op, first.depth) == (0, 0x60, 1)
    assert first.gas == tx.gas - 21_000 - calldata_gas
    for step, following in zip(struct.steps, struct.steps[1:], strict=False):
        assert following.gas == step.gas - step.gas_cost, step
    sstore = [s for s in struct.steps if s.op == 0x55]
    slot = int.from_bytes(keccak((4).to_bytes(32, "big") + (1).to_bytes(32, "big")), "big")
    assert len(sstore) == 1
    assert sstore[0].storage == {slot: 99}
    assert sstore[0].stack is not None and sstore[0].stack[-2:] == [99, slot]
    bare = _struct(
        probe.tracer.trace_transaction(
            tx.hash, TraceOptions(struct=StructLogOptions(disable_stack=True, disable_storage=True))
        )
    )
    assert all(s.stack is None and s.storage is None for s in bare.steps)
    limited = _struct(
        probe.tracer.trace_transaction(tx.hash, TraceOptions(struct=StructLogOptions(limit=5)))
    )
    assert len(limited.steps) == 5


def test_nested_struct_log_depths(probe: Probe) -> None:
    block = mine(probe.chain, [probe.tx("nested", 5)])
    struct = _struct(
        probe.tracer.trace_transaction(block.block.transactions[0].hash, TraceOptions())
    )
    depths = {s.depth for s in struct.steps}
    assert depths == {1, 2}
    calls = [s for s in struct.steps if s.op in (0xF1, 0xFA, 0xF4)]
    assert len(calls) == 5
    assert not struct.failed


def test_access_list_matches_what_a_real_transaction_pays(probe: Probe) -> None:
    head = probe.chain.head
    params = CallParams(
        sender=ADDRESSES[0], to=probe.address, data=probe.data("nested", 9), gas=500_000
    )
    result = probe.tracer.create_access_list(head, params)
    assert result.error is None
    listed = dict(result.access_list)
    child = probe.child
    assert listed[child] == (0,)  # Child.stored
    assert 2 in listed[probe.address]  # the probe reads its `child` slot
    assert SHA256 not in listed and ADDRESSES[0] not in listed  # precompiles, sender left out
    access = [
        {
            "address": to_checksum_address(a),
            "storageKeys": ["0x" + k.to_bytes(32, "big").hex() for k in keys],
        }
        for a, keys in result.access_list
    ]
    block = mine(probe.chain, [probe.tx("nested", 9, accessList=access)])
    assert block.receipts[0].gas_used == result.gas_used
    failing = CallParams(sender=ADDRESSES[0], to=probe.address, data=probe.data("fail", "x"))
    assert probe.tracer.create_access_list(probe.chain.head, failing).error == "execution reverted"


def test_trace_call_runs_on_the_given_block(probe: Probe) -> None:
    before = probe.chain.head
    mine(probe.chain, [probe.tx("ping", b"")])
    params = CallParams(sender=ADDRESSES[0], to=probe.address, data=probe.data("ping", b"\x02"))
    old = _frame(probe.tracer.trace_call(before, params, CALLS))
    new = _frame(probe.tracer.trace_call(probe.chain.head, params, CALLS))
    assert int.from_bytes(old.output, "big") == 1
    assert int.from_bytes(new.output, "big") == 2
    assert old.gas == 50_000_000  # the RPC gas cap, as geth


def test_timeout_and_missing_things(probe: Probe) -> None:
    block = mine(probe.chain, [probe.tx("burn", 3000, gas=20_000_000)])
    tx_hash = block.block.transactions[0].hash
    with pytest.raises(ExecutionFailed, match="execution timeout"):
        probe.tracer.trace_transaction(tx_hash, TraceOptions(timeout=0.01))
    with pytest.raises(NotFound, match="transaction not found"):
        probe.tracer.trace_transaction(b"\x00" * 32, CALLS)
    with pytest.raises(NotFound, match="genesis is not traceable"):
        probe.tracer.trace_block(0, CALLS)


def test_tracing_writes_nothing(probe: Probe) -> None:
    block = mine(probe.chain, [probe.tx("setSlot", 1, 2), probe.tx("nested", 1)])
    store = probe.chain.store
    keys_before = sum(1 for _ in store._db.iterator(include_value=False))
    probe.tracer.trace_block(block.header.block_number, TraceOptions())
    probe.tracer.trace_block(block.header.block_number, CALLS)
    assert sum(1 for _ in store._db.iterator(include_value=False)) == keys_before
    assert probe.chain.head.hash == block.header.hash


def test_revert_reasons_in_geths_words() -> None:
    error = bytes.fromhex("08c379a0") + (32).to_bytes(32, "big") + (2).to_bytes(32, "big")
    error += b"hi".ljust(32, b"\x00")
    assert unpack_revert_reason(error) == "hi"
    assert revert_message(error) == "execution reverted: hi"
    panic = bytes.fromhex("4e487b71") + (0x11).to_bytes(32, "big")
    assert revert_message(panic) == "execution reverted: arithmetic underflow or overflow"
    odd = bytes.fromhex("4e487b71") + (0x99).to_bytes(32, "big")
    assert unpack_revert_reason(odd) == "unknown panic code: 0x99"
    custom = bytes.fromhex("deadbeef") + (7).to_bytes(32, "big")
    assert unpack_revert_reason(custom) is None
    assert revert_message(custom) == "execution reverted"
    assert unpack_revert_reason(error[:40]) is None


def test_a_replay_that_disagrees_with_the_chain_is_refused(
    probe: Probe, monkeypatch: pytest.MonkeyPatch
) -> None:
    block = mine(probe.chain, [probe.tx("ping", b"\x07")])
    number = block.header.block_number
    stored = probe.chain.reader.block_by_number(number)
    assert stored is not None
    # The replay is the import's execution: a block whose header the re-execution does not
    # reproduce (here, a state root) is never traced.
    wrong = stored.block.copy(header=stored.header.copy(state_root=b"\x11" * 32))
    tampered = StoredBlock(wrong, stored.senders, stored.receipts)
    reader = probe.chain.reader
    real = reader.block_by_number
    monkeypatch.setattr(reader, "block_by_number", lambda n: tampered if n == number else real(n))
    with pytest.raises(
        ExecutionFailed, match=f"replaying block #{number} diverged: state_root mismatch"
    ):
        probe.tracer.trace_block(number, CALLS)


def test_struct_logs_too_large_to_send_are_refused_early(probe: Probe) -> None:
    block = mine(probe.chain, [probe.tx("setSlot", 2, 3)])
    tx_hash = block.block.transactions[0].hash
    bounded = Tracer(probe.chain.reader, probe.tracer.calls, max_bytes=2000)
    with pytest.raises(TraceTooLarge, match="trace too large: the struct log passed 2000 bytes"):
        bounded.trace_transaction(tx_hash, TraceOptions())
    limited = bounded.trace_transaction(tx_hash, TraceOptions(struct=StructLogOptions(limit=10)))
    assert len(_struct(limited).steps) == 10
    assert _frame(bounded.trace_transaction(tx_hash, CALLS)).error is None
