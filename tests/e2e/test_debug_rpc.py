"""debug_*, eth_getProof, eth_createAccessList and block parameters over HTTP against a real
`cairn dev` process: raw data decoded and matched with the JSON answers, proofs verified with
the `trie` package against each block's state root, every block-parameter form on every
method that takes one, and the errors for bad input."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import rlp
from eth_utils import keccak, to_checksum_address
from rlp.sedes import big_endian_int
from trie.hexary import HexaryTrie
from web3 import Web3

from tests.support import rpc
from tests.support.chain import ADDRESSES, KEYS
from tests.support.contracts import compile_contract
from tests.support.proc import NodeProcess
from tests.support.wallet import Wallet, send_and_wait

pytestmark = pytest.mark.e2e

A0, A1 = (to_checksum_address(a) for a in ADDRESSES[:2])
CALL_TRACER = {"tracer": "callTracer"}


@dataclass
class World:
    node: NodeProcess
    probe: str
    data: Any  # (fn, *args) -> calldata hex
    deployed_at: int  # block of the deploy
    set_at: int  # block where setSlot(1000, 0x1234) landed
    slot: str
    burn_tx: str
    receipts: list[dict[str, Any]]

    def call(self, method: str, *params: Any) -> Any:
        return rpc.call(self.node.url, method, *params)

    def error(self, method: str, *params: Any) -> dict[str, Any]:
        answer = rpc.post(
            self.node.url, {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}
        )
        assert "error" in answer, f"{method} {params} answered {str(answer)[:300]}"
        error: dict[str, Any] = answer["error"]
        return error


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    compiled = compile_contract("Probe.sol", "Probe")
    node = NodeProcess(tmp_path_factory.mktemp("debug") / "dev", "dev").start()
    try:
        wallet = Wallet(KEYS[0])
        deploy_data = (
            Web3().eth.contract(abi=compiled.abi, bytecode=compiled.bytecode).constructor()
        ).data_in_transaction
        receipts = [send_and_wait(node.url, wallet.sign(A1, value=10**18))]
        receipts.append(
            send_and_wait(
                node.url, wallet.sign(None, value=10**18, data=deploy_data, gas=2_000_000)
            )
        )
        probe = to_checksum_address(receipts[-1]["contractAddress"])
        contract = Web3().eth.contract(address=probe, abi=compiled.abi)

        def data(fn: str, *args: Any) -> str:
            return str(contract.encode_abi(fn, list(args)))

        for fn, args, gas in (
            ("setSlot", (1000, 0x1234), 100_000),
            ("ping", (b"\x01",), 200_000),
            ("nested", (4,), 500_000),
            ("burn", (400,), 15_000_000),
        ):
            raw = wallet.sign(probe, data=data(fn, *args), gas=gas)
            receipts.append(send_and_wait(node.url, raw))
        yield World(
            node=node,
            probe=probe,
            data=data,
            deployed_at=int(receipts[1]["blockNumber"], 16),
            set_at=int(receipts[2]["blockNumber"], 16),
            slot="0x" + keccak((1000).to_bytes(32, "big") + (1).to_bytes(32, "big")).hex(),
            burn_tx=receipts[-1]["transactionHash"],
            receipts=receipts,
        )
    finally:
        node.stop()


# ------------------------------------------------------------------ raw data
def test_raw_header_block_receipts_and_transactions(world: World) -> None:
    for receipt in world.receipts:
        number = receipt["blockNumber"]
        block = world.call("eth_getBlockByNumber", number, False)
        raw_header = bytes.fromhex(world.call("debug_getRawHeader", number)[2:])
        assert "0x" + keccak(raw_header).hex() == block["hash"]
        header = rlp.decode(raw_header)
        assert "0x" + header[3].hex() == block["stateRoot"]
        assert int.from_bytes(header[8], "big") == int(block["number"], 16)
        assert world.call("debug_getRawHeader", {"blockHash": block["hash"]}) == "0x" + (
            raw_header.hex()
        )

        raw_block = rlp.decode(bytes.fromhex(world.call("debug_getRawBlock", number)[2:]))
        assert rlp.encode(raw_block[0]) == raw_header
        txs = [bytes(t) for t in raw_block[1]]
        assert ["0x" + keccak(t).hex() for t in txs] == block["transactions"]
        assert raw_block[2] == [] and raw_block[3] == []  # no uncles, no withdrawals
        for tx_hash, raw_tx in zip(block["transactions"], txs, strict=True):
            assert world.call("debug_getRawTransaction", tx_hash) == "0x" + raw_tx.hex()

        raw_receipts = world.call("debug_getRawReceipts", block["hash"])
        assert world.call("debug_getRawReceipts", number) == raw_receipts
        json_receipts = world.call("eth_getBlockReceipts", number)
        assert len(raw_receipts) == len(json_receipts) == 1
        for raw, json_receipt in zip(raw_receipts, json_receipts, strict=True):
            encoded = bytes.fromhex(raw[2:])
            assert encoded[0] == int(json_receipt["type"], 16) == 2
            status, cumulative, bloom, logs = rlp.decode(encoded[1:])
            assert int.from_bytes(status, "big") == int(json_receipt["status"], 16)
            assert int.from_bytes(cumulative, "big") == int(json_receipt["cumulativeGasUsed"], 16)
            assert "0x" + bloom.hex() == json_receipt["logsBloom"]
            assert [
                ("0x" + a.hex(), ["0x" + t.hex() for t in topics], "0x" + d.hex())
                for a, topics, d in logs
            ] == [(log["address"], log["topics"], log["data"]) for log in json_receipt["logs"]]


def test_raw_data_for_things_that_do_not_exist(world: World) -> None:
    assert world.call("debug_getRawHeader", "0x999") == "0x"
    assert world.call("debug_getRawBlock", "0x999") == "0x"
    assert world.call("debug_getRawReceipts", "0x999") == []
    assert world.call("debug_getRawTransaction", "0x" + "00" * 32) == "0x"
    error = world.error("debug_getRawBlock", "0x" + "ab" * 32)
    assert error["code"] == -32000 and "not found" in error["message"]
    assert world.error("debug_getRawHeader", "tomorrow")["code"] == -32602


# ------------------------------------------------------------------ proofs
def _verify(root: str, key: bytes, proof: list[str]) -> bytes:
    nodes = [rlp.decode(bytes.fromhex(n[2:])) for n in proof]
    found: bytes = HexaryTrie.get_from_proof(  # type: ignore[no-untyped-call]
        bytes.fromhex(root[2:]), key, nodes
    )
    return found


def test_proofs_verify_against_the_blocks_state_root(world: World) -> None:
    for block, expected in ((world.set_at - 1, 0), (world.set_at, 0x1234), ("latest", 0x1234)):
        tag = hex(block) if isinstance(block, int) else block
        header = world.call("eth_getBlockByNumber", tag, False)
        proof = world.call("eth_getProof", world.probe, [world.slot, "0x0", "0x02"], tag)
        account = _verify(
            header["stateRoot"], keccak(bytes.fromhex(world.probe[2:])), proof["accountProof"]
        )
        nonce, balance, storage_root, code_hash = rlp.decode(account)
        assert int.from_bytes(nonce, "big") == int(proof["nonce"], 16) == 2
        assert int.from_bytes(balance, "big") == int(proof["balance"], 16)
        assert "0x" + storage_root.hex() == proof["storageHash"]
        assert "0x" + code_hash.hex() == proof["codeHash"]
        assert (
            proof["codeHash"]
            == "0x" + keccak(bytes.fromhex(world.call("eth_getCode", world.probe, tag)[2:])).hex()
        )
        # geth echoes a 32-byte key as given and a shorter one as a quantity.
        assert [item["key"] for item in proof["storageProof"]] == [world.slot, "0x0", "0x2"]
        values = []
        for item, slot in zip(proof["storageProof"], (int(world.slot, 16), 0, 2), strict=True):
            raw = _verify(proof["storageHash"], keccak(slot.to_bytes(32, "big")), item["proof"])
            value = rlp.decode(raw, sedes=big_endian_int) if raw else 0
            assert value == int(item["value"], 16)
            values.append(value)
        assert values[0] == expected
        assert values[2] == int(world.call("eth_getStorageAt", world.probe, "0x2", tag), 16)


def test_proof_input_errors(world: World) -> None:
    too_many = ["0x" + f"{i:064x}" for i in range(1025)]
    assert world.error("eth_getProof", world.probe, too_many, "latest")["code"] == -32602
    assert world.error("eth_getProof", world.probe, ["0x" + "1" * 65], "latest")["code"] == -32602
    assert world.error("eth_getProof", world.probe, ["0xzz"], "latest")["code"] == -32602
    assert world.error("eth_getProof", world.probe, "0x0", "latest")["code"] == -32602
    assert world.error("eth_getProof", world.probe, [], "0x999")["code"] == -32000


# ------------------------------------------------------------------ block parameters
def test_every_block_parameter_form_on_every_state_method(world: World) -> None:
    """The block where setSlot landed, named eight ways, gives the same answers as its number;
    the block before gives the old ones; tags give head or genesis."""
    number = world.set_at
    block = world.call("eth_getBlockByNumber", hex(number), False)
    forms = [
        hex(number),
        {"blockNumber": hex(number)},
        {"blockHash": block["hash"]},
        {"blockHash": block["hash"], "requireCanonical": True},
        {"blockHash": block["hash"], "requireCanonical": False},
        block["hash"],
    ]
    counter = {"from": A0, "to": world.probe, "data": world.data("slots", 1000)}

    def answers(ref: Any) -> list[Any]:
        return [
            world.call("eth_getBalance", A0, ref),
            world.call("eth_getTransactionCount", A0, ref),
            world.call("eth_getCode", world.probe, ref),
            world.call("eth_getStorageAt", world.probe, world.slot, ref),
            world.call("eth_call", counter, ref),
            world.call("eth_estimateGas", counter, ref),
            world.call("eth_getProof", world.probe, [world.slot], ref)["storageProof"][0]["value"],
            world.call("eth_createAccessList", counter, ref)["accessList"],
            world.call("debug_traceCall", counter, ref, CALL_TRACER)["output"],
        ]

    at_set = answers(forms[0])
    for form in forms[1:]:
        assert answers(form) == at_set, form
    assert int(at_set[3], 16) == int(at_set[4], 16) == 0x1234
    before = answers(hex(number - 1))
    assert int(before[3], 16) == int(before[4], 16) == 0
    assert int(before[1], 16) == int(at_set[1], 16) - 1  # the setSlot transaction's nonce

    head = answers("latest")
    for tag in ("pending", "safe", "finalized", {"blockNumber": "latest"}):
        assert answers(tag) == head, tag
    assert world.call("eth_getBalance", A1, "earliest") == hex(10_000 * 10**18)
    assert world.call("eth_getCode", world.probe, "earliest") == "0x"
    assert world.call("eth_getCode", world.probe, hex(world.deployed_at - 1)) == "0x"


def test_block_parameters_on_block_methods(world: World) -> None:
    head = int(world.call("eth_blockNumber"), 16)
    latest = world.call("eth_getBlockByNumber", "latest", False)
    assert int(latest["number"], 16) == head
    for tag in ("pending", "safe", "finalized"):
        assert world.call("eth_getBlockByNumber", tag, False)["hash"] == latest["hash"]
    assert world.call("eth_getBlockByNumber", "earliest", False)["number"] == "0x0"
    assert world.call("eth_getBlockByNumber", hex(head + 1), False) is None
    assert world.call("eth_getBlockTransactionCountByNumber", "latest") == "0x1"
    traced = world.call("debug_traceBlockByNumber", hex(world.set_at), CALL_TRACER)
    assert traced == world.call(
        "debug_traceBlockByHash",
        world.call("eth_getBlockByNumber", hex(world.set_at), False)["hash"],
        CALL_TRACER,
    )
    assert [t["txHash"] for t in traced] == [world.receipts[2]["transactionHash"]]
    logs = world.call(
        "eth_getLogs", {"fromBlock": "earliest", "toBlock": "latest", "address": world.probe}
    )
    assert logs == world.call(
        "eth_getLogs", {"fromBlock": "0x0", "toBlock": hex(head), "address": world.probe}
    )
    assert world.call("eth_getLogs", {"fromBlock": "latest", "address": world.probe}) == []


def test_bad_block_parameters(world: World) -> None:
    head = int(world.call("eth_blockNumber"), 16)
    future = world.error("eth_getBalance", A0, hex(head + 1))
    assert (future["code"], future["message"]) == (-32000, "header not found")
    unknown = world.error("eth_getBalance", A0, {"blockHash": "0x" + "ab" * 32})
    assert unknown["code"] == -32000 and "not found" in unknown["message"]
    nested_ref = {"blockNumber": {"blockNumber": "0x1"}}
    for bad in ("lastest", "0x", "12", {"blockHash": "0x12"}, {"other": 1}, [1], True, nested_ref):
        error = world.error("eth_getBalance", A0, bad)
        assert error["code"] == -32602, (bad, error)
    both = world.error("eth_getBalance", A0, {"blockHash": "0x" + "ab" * 32, "blockNumber": "0x1"})
    assert both["code"] == -32602
    canonical = world.error(
        "eth_getBalance", A0, {"blockHash": "0x" + "00" * 32, "requireCanonical": "yes"}
    )
    assert canonical["code"] == -32602


# ------------------------------------------------------------------ tracing over RPC
def test_trace_options_and_errors(world: World) -> None:
    nested = world.receipts[4]["transactionHash"]
    frame = world.call("debug_traceTransaction", nested, CALL_TRACER)
    assert frame["type"] == "CALL" and [c["type"] for c in frame["calls"]][:2] == [
        "CALL",
        "STATICCALL",
    ]
    # geth's TraceConfig keys are case-insensitive
    same = world.call("debug_traceTransaction", nested, {"Tracer": "callTracer"})
    assert same == frame
    struct = world.call(
        "debug_traceTransaction",
        nested,
        {"disableStack": True, "disableStorage": True, "enableReturnData": True, "limit": 50},
    )
    assert len(struct["structLogs"]) == 50
    assert not any("stack" in step or "storage" in step for step in struct["structLogs"])
    assert struct["gas"] == int(world.receipts[4]["gasUsed"], 16)

    assert (
        world.error("debug_traceTransaction", nested, {"tracer": "noSuchTracer"})["code"] == -32000
    )
    assert world.error("debug_traceTransaction", nested, {"tracerConfig": []})["code"] == -32602
    assert world.error("debug_traceTransaction", nested, {"disableStack": "yes"})["code"] == -32602
    assert world.error("debug_traceTransaction", nested, {"timeout": "soon"})["code"] == -32000
    assert world.error("debug_traceTransaction", nested, "callTracer")["code"] == -32602
    slow = world.error("debug_traceTransaction", world.burn_tx, {"timeout": "1ms"})
    assert (slow["code"], slow["message"]) == (-32000, "execution timeout")
    assert (
        world.call(
            "debug_traceTransaction", world.burn_tx, {"tracer": "callTracer", "timeout": "1m"}
        )["gasUsed"]
        == world.receipts[-1]["gasUsed"]
    )
    genesis = world.error("debug_traceBlockByNumber", "0x0", CALL_TRACER)
    assert genesis["message"] == "genesis is not traceable"
    assert world.error("debug_traceBlockByNumber", "0x999", CALL_TRACER)["code"] == -32000
    assert (
        world.error("debug_traceTransaction", "0x" + "00" * 32)["message"]
        == "transaction not found"
    )
    overrides = world.error(
        "debug_traceCall",
        {"to": world.probe},
        "latest",
        {"stateOverrides": {A0: {"movePrecompileToAddress": A0}}},
    )
    assert overrides["code"] == -32602 and "movepreco" in overrides["message"]
    counter = "0x" + keccak(text="counter()")[:4].hex()
    seen = world.call(
        "debug_traceCall",
        {"to": world.probe, "data": counter},
        "latest",
        {
            "tracer": "callTracer",
            "stateOverrides": {
                world.probe: {"stateDiff": {"0x" + "00" * 32: "0x" + "00" * 31 + "2a"}}
            },
        },
    )
    assert int(seen["output"], 16) == 42  # the override is in the traced call's state
    assert world.call("eth_blockNumber")  # still serving
