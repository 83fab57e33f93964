"""eth_simulateV1 against a real `cairn dev` process through web3.py's provider (raw requests):
state carried from call to call and block to block, state and block overrides, reverts and
VM errors in geth's shapes, geth's validation codes, ERC-7528 transfer logs for value moved
by internal calls, block number/time defaults, gaps and ordering errors, full transactions,
and that nothing of a simulation reaches the chain. Where Anvil answers the same request the
way geth does (the calls' outcomes), the two are compared."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from eth_abi.abi import encode
from eth_utils import keccak, to_checksum_address
from web3 import Web3

from tests.support.anvil import AnvilProcess
from tests.support.chain import ADDRESSES, KEYS
from tests.support.contracts import compile_contract
from tests.support.proc import NodeProcess
from tests.support.wallet import Wallet, send_and_wait

pytestmark = pytest.mark.e2e

A0, A1, A2, A3 = (to_checksum_address(a) for a in ADDRESSES[:4])
NOBODY = "0x00000000000000000000000000000000000000aa"
CODE_AT = "0x00000000000000000000000000000000000000c0"
# TIMESTAMP, NUMBER, COINBASE into memory, returned as three words
BLOCK_FIELDS_CODE = "0x42600052436020524160405260606000f3"
TRANSFER_TOPIC = "0x" + keccak(text="Transfer(address,address,uint256)").hex()
ERC7528 = "0xeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee"


def word(value: int) -> str:
    return "0x" + value.to_bytes(32, "big").hex()


def topic_of(address: str) -> str:
    return "0x" + address.lower()[2:].rjust(64, "0")


@dataclass
class World:
    node: NodeProcess
    w3: Web3
    probe: Any  # web3 contract
    splitter: Any
    deploy_receipts: list[dict[str, Any]]

    def raw(self, method: str, *params: Any) -> dict[str, Any]:
        answer: dict[str, Any] = dict(self.w3.provider.make_request(method, list(params)))  # type: ignore[arg-type]
        return answer

    def simulate(self, request: dict[str, Any], block: Any = "latest") -> list[dict[str, Any]]:
        answer = self.raw("eth_simulateV1", request, block)
        assert "result" in answer, f"eth_simulateV1 failed: {answer.get('error')}"
        result: list[dict[str, Any]] = answer["result"]
        return result

    def refused(self, request: dict[str, Any], block: Any = "latest") -> dict[str, Any]:
        answer = self.raw("eth_simulateV1", request, block)
        assert "error" in answer, f"eth_simulateV1 answered {str(answer)[:300]}"
        error: dict[str, Any] = answer["error"]
        return error

    def data(self, contract: Any, fn: str, *args: Any) -> str:
        return str(contract.encode_abi(fn, list(args)))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    probe_src = compile_contract("Probe.sol", "Probe")
    splitter_src = compile_contract("Splitter.sol", "Splitter")
    node = NodeProcess(tmp_path_factory.mktemp("simulate") / "dev", "dev").start()
    try:
        w3 = Web3(Web3.HTTPProvider(node.url))
        wallet = Wallet(KEYS[0])
        probe_deploy = w3.eth.contract(abi=probe_src.abi, bytecode=probe_src.bytecode)
        splitter_deploy = w3.eth.contract(abi=splitter_src.abi, bytecode=splitter_src.bytecode)
        receipts = [
            send_and_wait(
                node.url,
                wallet.sign(
                    None,
                    value=10**18,
                    data=probe_deploy.constructor().data_in_transaction,
                    gas=2_000_000,
                ),
            ),
            send_and_wait(
                node.url,
                wallet.sign(
                    None,
                    data=splitter_deploy.constructor(A2, A3).data_in_transaction,
                    gas=2_000_000,
                ),
            ),
        ]
        assert all(r["status"] == "0x1" for r in receipts)
        probe = w3.eth.contract(
            address=to_checksum_address(receipts[0]["contractAddress"]), abi=probe_src.abi
        )
        splitter = w3.eth.contract(
            address=to_checksum_address(receipts[1]["contractAddress"]), abi=splitter_src.abi
        )
        yield World(node, w3, probe, splitter, receipts)
    finally:
        node.stop()


def test_state_carries_from_call_to_call_and_block_to_block(world: World) -> None:
    counter_before = world.probe.functions.counter().call()
    nonce = world.w3.eth.get_transaction_count(A0)
    ping = world.data(world.probe, "ping", b"\x01")
    blocks = world.simulate(
        {
            "blockStateCalls": [
                {
                    "calls": [
                        {"from": A0, "to": world.probe.address, "input": ping},
                        {"from": A0, "to": world.probe.address, "input": ping},
                        {"from": A0, "to": A1, "value": hex(5 * 10**18)},
                    ]
                },
                {"calls": [{"from": A0, "to": world.probe.address, "input": ping}]},
            ],
            "returnFullTransactions": True,
        }
    )
    assert len(blocks) == 2
    returned = [
        int(c["returnData"], 16) for b in blocks for c in b["calls"] if c["returnData"] != "0x"
    ]
    assert returned == [counter_before + 1, counter_before + 2, counter_before + 3]
    assert all(c["status"] == "0x1" for b in blocks for c in b["calls"])
    # nonces follow the sender's state nonce across calls and blocks
    nonces = [int(t["nonce"], 16) for b in blocks for t in b["transactions"]]
    assert nonces == [nonce, nonce + 1, nonce + 2, nonce + 3]
    # the second block's parent is the first simulated block
    assert blocks[1]["parentHash"] == blocks[0]["hash"]
    # Ping(address indexed from, uint256 indexed n, bytes data): logs carry the block's place
    first = blocks[0]["calls"][0]["logs"]
    assert len(first) == 1
    assert first[0]["address"] == world.probe.address.lower()
    assert first[0]["topics"][2] == word(counter_before + 1)
    assert first[0]["blockHash"] == blocks[0]["hash"]
    assert first[0]["blockNumber"] == blocks[0]["number"]
    assert first[0]["transactionHash"] == blocks[0]["transactions"][0]["hash"]
    assert first[0]["logIndex"] == "0x0"
    second = blocks[0]["calls"][1]["logs"][0]
    assert (second["logIndex"], second["transactionIndex"]) == ("0x1", "0x1")
    # gasUsed of the block is the sum of its calls
    used = sum(int(c["gasUsed"], 16) for c in blocks[0]["calls"])
    assert int(blocks[0]["gasUsed"], 16) == used


def test_state_and_block_overrides(world: World) -> None:
    head = world.w3.eth.get_block("latest")
    ping = world.data(world.probe, "ping", b"")
    blocks = world.simulate(
        {
            "blockStateCalls": [
                {
                    "stateOverrides": {
                        NOBODY: {"balance": hex(10**18)},
                        CODE_AT: {"code": BLOCK_FIELDS_CODE},
                        world.probe.address: {"stateDiff": {word(0): word(41)}},
                    },
                    "blockOverrides": {
                        "number": hex(head["number"] + 1),
                        "time": hex(head["timestamp"] + 1000),
                        "feeRecipient": A3,
                    },
                    "calls": [
                        {"from": NOBODY, "to": A1, "value": hex(10**17)},
                        {"from": A0, "to": CODE_AT},
                        {"from": A0, "to": world.probe.address, "input": ping},
                    ],
                },
                # overrides stay in the simulated state for later blocks
                {"calls": [{"from": A0, "to": world.probe.address, "input": ping}]},
            ]
        }
    )
    first, second = blocks
    assert first["calls"][0]["status"] == "0x1"
    fields = first["calls"][1]["returnData"][2:]
    assert int(fields[:64], 16) == head["timestamp"] + 1000
    assert int(fields[64:128], 16) == head["number"] + 1
    assert int(fields[128:], 16) == int(A3, 16)
    assert first["miner"] == A3.lower()
    assert int(first["timestamp"], 16) == head["timestamp"] + 1000
    assert int(first["calls"][2]["returnData"], 16) == 42
    assert int(second["calls"][0]["returnData"], 16) == 43
    # the fee recipient carries over, and time steps 12 s from the overridden one (geth)
    assert second["miner"] == A3.lower()
    assert int(second["timestamp"], 16) == head["timestamp"] + 1012
    # without the balance override the same transfer is refused, as geth does
    error = world.refused(
        {"blockStateCalls": [{"calls": [{"from": NOBODY, "to": A1, "value": hex(10**17)}]}]}
    )
    assert error["code"] == -38014
    assert error["message"].startswith("err: insufficient funds for gas * price + value")


def test_revert_and_vm_errors(world: World) -> None:
    def probe(fn: str, *args: Any, **extra: Any) -> dict[str, Any]:
        return {
            "from": A0,
            "to": world.probe.address,
            "input": world.data(world.probe, fn, *args),
        } | extra

    calls = [
        probe("fail", "nope"),
        probe("divide", 1, 0),
        probe("failCustom", 7),
        probe("burn", 1000, gas=hex(60_000)),
        probe("ping", b""),
    ]
    blocks = world.simulate({"blockStateCalls": [{"calls": calls}]})
    fail, divide, custom, burn, ping = blocks[0]["calls"]
    error_string = "0x08c379a0" + encode(["string"], ["nope"]).hex()
    assert fail["status"] == "0x0"
    assert fail["returnData"] == "0x"
    assert fail["logs"] == []
    assert fail["error"] == {"message": "execution reverted: nope", "code": 3, "data": error_string}
    assert divide["error"]["code"] == 3
    assert divide["error"]["message"] == "execution reverted: division or modulo by zero"
    assert divide["error"]["data"] == "0x4e487b71" + "00" * 31 + "12"
    selector = keccak(text="Nope(uint256)")[:4].hex()
    assert custom["error"] == {
        "message": "execution reverted",
        "code": 3,
        "data": "0x" + selector + "00" * 31 + "07",
    }
    assert burn["status"] == "0x0"
    assert burn["error"] == {"message": "out of gas", "code": -32015}
    assert int(burn["gasUsed"], 16) == 60_000
    # a failed call does not stop the block: the next one runs
    assert ping["status"] == "0x1"


def test_validation_errors_use_geth_codes(world: World) -> None:
    nonce = world.w3.eth.get_transaction_count(A0)
    fee = hex(10 * 10**9)

    def refused(call: dict[str, Any]) -> dict[str, Any]:
        return world.refused({"blockStateCalls": [{"calls": [call]}], "validation": True})

    low = refused({"from": A0, "to": A1, "nonce": hex(nonce - 1), "maxFeePerGas": fee})
    assert low["code"] == -38010
    assert low["message"] == (
        f"err: nonce too low: address {A0}, tx: {nonce - 1} state: {nonce} (supplied gas 30000000)"
    )
    high = refused({"from": A0, "to": A1, "nonce": hex(nonce + 5), "maxFeePerGas": fee})
    assert high["code"] == -38011
    assert high["message"].startswith("err: nonce too high")
    no_fee = refused({"from": A0, "to": A1})
    assert no_fee["code"] == -38012
    assert no_fee["message"].startswith("err: max fee per gas less than block base fee")
    intrinsic = refused({"from": A0, "to": A1, "gas": hex(20_000), "maxFeePerGas": fee})
    assert intrinsic == {
        "code": -38013,
        "message": "err: intrinsic gas too low: have 20000, want 21000 (supplied gas 20000)",
    }
    poor = refused({"from": NOBODY, "to": A1, "maxFeePerGas": fee, "gas": hex(21_000)})
    assert poor["code"] == -38014
    too_much_gas = refused({"from": A0, "to": A1, "gas": hex(10**9), "maxFeePerGas": fee})
    assert too_much_gas["code"] == -38015
    assert too_much_gas["message"].startswith("block gas limit reached")
    # without validation the same nonce and fee are accepted (geth skips those checks)
    blocks = world.simulate(
        {"blockStateCalls": [{"calls": [{"from": A0, "to": A1, "nonce": hex(nonce + 5)}]}]}
    )
    assert blocks[0]["calls"][0]["status"] == "0x1"
    assert blocks[0]["baseFeePerGas"] == "0x0"
    # with validation and a fee cap over the base fee, the call runs and pays
    blocks = world.simulate(
        {
            "blockStateCalls": [{"calls": [{"from": A0, "to": A1, "maxFeePerGas": fee}]}],
            "validation": True,
        }
    )
    assert int(blocks[0]["baseFeePerGas"], 16) > 0
    assert blocks[0]["calls"][0]["status"] == "0x1"


def test_trace_transfers_logs_internal_value_moves(world: World) -> None:
    split = world.data(world.splitter, "split")
    call = {"from": A0, "to": world.splitter.address, "value": hex(1001), "input": split}
    traced = world.simulate({"blockStateCalls": [{"calls": [call]}], "traceTransfers": True})
    logs = traced[0]["calls"][0]["logs"]
    splitter = world.splitter.address
    transfers = [
        (log["topics"][1], log["topics"][2], int(log["data"], 16))
        for log in logs
        if log["address"] == ERC7528
    ]
    assert transfers == [
        (topic_of(A0), topic_of(splitter), 1001),
        (topic_of(splitter), topic_of(A2), 500),
        (topic_of(splitter), topic_of(A3), 501),
    ]
    assert all(log["topics"][0] == TRANSFER_TOPIC for log in logs if log["address"] == ERC7528)
    # the Split event comes after the transfers, and logIndex counts them all in order
    assert logs[-1]["address"] == splitter.lower()
    assert [log["logIndex"] for log in logs] == ["0x0", "0x1", "0x2", "0x3"]
    plain = world.simulate({"blockStateCalls": [{"calls": [call]}]})
    assert [log["address"] for log in plain[0]["calls"][0]["logs"]] == [splitter.lower()]
    # SELFDESTRUCT's balance moves are transfers too (the child got 1 wei from nested())
    probe = world.probe.address
    child = world.probe.functions.child().call()
    calls = [
        {"from": A0, "to": probe, "input": world.data(world.probe, "nested", 1)},
        {"from": A0, "to": probe, "input": world.data(world.probe, "destroyChild")},
    ]
    nested, destroyed = world.simulate(
        {"blockStateCalls": [{"calls": calls}], "traceTransfers": True}
    )[0]["calls"]
    assert (nested["logs"][0]["address"], nested["logs"][0]["topics"][1:]) == (
        ERC7528,
        [topic_of(probe), topic_of(child)],
    )
    assert [(g["address"], g["topics"][1:], int(g["data"], 16)) for g in destroyed["logs"]] == [
        (ERC7528, [topic_of(child), topic_of(probe)], 1)
    ]
    # a reverted call leaves no transfer logs
    fail = {
        "from": A0,
        "to": splitter,
        "value": hex(5),
        "input": world.data(world.splitter, "fail"),
    }
    reverted = world.simulate({"blockStateCalls": [{"calls": [fail]}], "traceTransfers": True})
    assert reverted[0]["calls"][0]["logs"] == []


def test_block_numbers_times_gaps_and_ordering(world: World) -> None:
    head = world.w3.eth.get_block("latest")
    number, time = head["number"], head["timestamp"]
    blocks = world.simulate(
        {"blockStateCalls": [{}, {"blockOverrides": {"number": hex(number + 4)}}]}
    )
    assert [int(b["number"], 16) for b in blocks] == [
        number + 1,
        number + 2,
        number + 3,
        number + 4,
    ]
    assert [int(b["timestamp"], 16) for b in blocks] == [time + 12 * i for i in range(1, 5)]
    assert all(b["calls"] == [] and b["transactions"] == [] for b in blocks)
    assert [b["parentHash"] for b in blocks[1:]] == [b["hash"] for b in blocks[:-1]]
    assert blocks[0]["parentHash"] == head["hash"].to_0x_hex()
    twice = {"blockOverrides": {"number": hex(number + 2)}}
    out_of_order = world.refused({"blockStateCalls": [twice, twice]})
    assert out_of_order == {
        "code": -38020,
        "message": f"block numbers must be in order: {number + 2} <= {number + 2}",
    }
    stale_time = world.refused({"blockStateCalls": [{"blockOverrides": {"time": hex(time)}}]})
    assert stale_time == {
        "code": -38021,
        "message": f"block timestamps must be in order: {time} <= {time}",
    }
    too_far = world.refused(
        {"blockStateCalls": [{"blockOverrides": {"number": hex(number + 257)}}]}
    )
    assert too_far == {"code": -38026, "message": "too many blocks"}
    assert world.refused({"blockStateCalls": []}) == {"code": -32602, "message": "empty input"}
    # a base block in the past: the simulation starts from its state and number
    past = world.simulate({"blockStateCalls": [{}]}, hex(number - 1))
    assert int(past[0]["number"], 16) == number


def test_full_transactions_and_hashes(world: World) -> None:
    calls = [
        {"from": A1, "to": A2, "value": "0x1"},
        {"from": A2, "to": A1, "value": "0x2", "gasPrice": "0x0"},
    ]
    full = world.simulate({"blockStateCalls": [{"calls": calls}], "returnFullTransactions": True})
    hashes = world.simulate({"blockStateCalls": [{"calls": calls}]})
    txs = full[0]["transactions"]
    assert [t["hash"] for t in txs] == hashes[0]["transactions"]
    assert [t["from"] for t in txs] == [A1.lower(), A2.lower()]
    assert [t["type"] for t in txs] == ["0x2", "0x0"]  # legacy when gasPrice is given (geth)
    assert all(t["r"] == "0x0" and t["s"] == "0x0" and t["v"] == "0x0" for t in txs)
    assert [t["blockHash"] for t in txs] == [full[0]["hash"]] * 2


def test_nothing_is_persisted(world: World) -> None:
    head = world.w3.eth.get_block("latest")
    balance = world.w3.eth.get_balance(A0)
    nonce = world.w3.eth.get_transaction_count(A0)
    counter = world.probe.functions.counter().call()
    ping = world.data(world.probe, "ping", b"")
    world.simulate(
        {
            "blockStateCalls": [
                {
                    "stateOverrides": {A0: {"balance": hex(10**30)}},
                    "calls": [
                        {"from": A0, "to": A1, "value": hex(10**20)},
                        {"from": A0, "to": world.probe.address, "input": ping},
                    ],
                },
                {"blockOverrides": {"number": hex(head["number"] + 50)}},
            ]
        }
    )
    assert world.w3.eth.get_block("latest")["hash"] == head["hash"]
    assert world.w3.eth.get_balance(A0) == balance
    assert world.w3.eth.get_transaction_count(A0) == nonce
    assert world.probe.functions.counter().call() == counter
    assert world.raw("eth_getBlockByNumber", hex(head["number"] + 1), False)["result"] is None


def test_bad_parameters_are_refused_clearly(world: World) -> None:
    error = world.refused(
        {"blockStateCalls": [{"calls": [{"from": A0, "blobVersionedHashes": []}]}]}
    )
    assert error["code"] == -32602
    assert "not supported in a simulated call" in error["message"]
    error = world.refused({"blockStateCalls": "nope"})
    assert error["code"] == -32602
    # the node still answers afterwards
    assert world.w3.eth.block_number >= 2


def test_anvil_agrees_on_call_outcomes(world: World, tmp_path: Any) -> None:
    """Anvil serves eth_simulateV1 too; its calls (status, return data, gas, logs, errors)
    must match Cairn's for the same request (block headers differ, and Anvil logs no transfer
    for SELFDESTRUCT where geth does: see docs/rpc.md)."""
    anvil = AnvilProcess(tmp_path / "anvil.log").start()
    try:
        code = world.w3.eth.get_code(world.probe.address).to_0x_hex()
        child = world.probe.functions.child().call()
        child_code = world.w3.eth.get_code(child).to_0x_hex()
        probe = world.probe.address
        overrides = {
            probe: {
                "code": code,
                "balance": hex(10**18),
                "stateDiff": {word(0): word(0), word(2): topic_of(child)},
            },
            child: {"code": child_code},
        }
        calls = [
            {"from": A0, "to": probe, "input": world.data(world.probe, "ping", b"\x07")},
            {"from": A0, "to": probe, "input": world.data(world.probe, "fail", "nope")},
            {"from": A0, "to": probe, "input": world.data(world.probe, "divide", 1, 0)},
            {"from": A0, "to": probe, "input": world.data(world.probe, "nested", 3)},
            {"from": A0, "to": A1, "value": hex(12345)},
        ]
        request = {
            "blockStateCalls": [
                {"stateOverrides": overrides, "calls": calls},
                {"calls": calls[:1]},
            ],
            "traceTransfers": True,
        }
        ours = world.simulate(request)
        theirs_answer = Web3(Web3.HTTPProvider(anvil.url)).provider.make_request(
            "eth_simulateV1",  # type: ignore[arg-type]
            [request, "latest"],
        )
        theirs = theirs_answer["result"]

        def outcome(c: dict[str, Any]) -> Any:
            logs = [(g["address"], g["topics"], g["data"], g["logIndex"]) for g in c["logs"]]
            return (c["status"], c["gasUsed"], logs)

        def outcomes(blocks: list[dict[str, Any]]) -> list[Any]:
            return [[outcome(c) for c in b["calls"]] for b in blocks]

        assert outcomes(ours) == outcomes(theirs)
        # Return data: equal for successful calls. For a revert, geth (and Cairn) answer
        # returnData "0x" and the revert data in error.data with code 3; Anvil 1.7 puts the
        # data in returnData and answers error {-3200, "execution failed"}.
        for mine, other in zip(ours[0]["calls"], theirs[0]["calls"], strict=True):
            if mine["status"] == "0x1":
                assert mine["returnData"] == other["returnData"]
            else:
                assert (mine["returnData"], mine["error"]["code"]) == ("0x", 3)
                assert mine["error"]["data"] == other["returnData"]
    finally:
        anvil.stop()


# JUMPDEST PUSH1 0 JUMP: loops until its gas is gone (12 gas a round)
LOOP_CODE = "0x5b600056"


@pytest.mark.slow
def test_whole_simulation_is_bounded_by_evmtimeout_and_gas_cap(tmp_path: Any) -> None:
    """--rpc.evmtimeout bounds the whole simulation (not each call), --rpc.gascap the gas of
    all its calls together (geth's gas budget); the node serves on afterwards."""
    loop = {"stateOverrides": {CODE_AT: {"code": LOOP_CODE}}}
    slow = NodeProcess(tmp_path / "slow", "dev", "--rpc.evmtimeout", "300ms").start()
    try:
        w3 = Web3(Web3.HTTPProvider(slow.url))
        request = {
            "blockStateCalls": [
                loop | {"calls": [{"from": A0, "to": CODE_AT, "gas": hex(2_000_000)}]},
                {"calls": [{"from": A0, "to": CODE_AT, "gas": hex(20_000_000)}]},
            ]
        }
        answer = w3.provider.make_request("eth_simulateV1", [request, "latest"])  # type: ignore[arg-type]
        assert answer["error"] == {"code": -32603, "message": "execution aborted (timeout = 300ms)"}
        assert w3.eth.block_number == 0
    finally:
        slow.stop()
    capped = NodeProcess(tmp_path / "capped", "dev", "--rpc.gascap", "50000").start()
    try:
        w3 = Web3(Web3.HTTPProvider(capped.url))
        calls = [{"from": A0, "to": A1, "value": "0x1"}, {"from": A0, "to": CODE_AT}]
        request = {"blockStateCalls": [loop | {"calls": calls}]}
        answer = w3.provider.make_request("eth_simulateV1", [request, "latest"])  # type: ignore[arg-type]
        transfer, looped = answer["result"][0]["calls"]
        assert transfer["status"] == "0x1"
        # the loop got what the budget had left (50,000 - 21,000), not the block's gas
        assert int(looped["gasUsed"], 16) == 29_000
        assert looped["error"] == {
            "code": -32015,
            "message": "out of gas (gas limit was capped by the RPC server's global gas cap)",
        }
    finally:
        capped.stop()


def test_withdrawals_credit_their_address(world: World) -> None:
    withdrawal = {"index": "0x0", "validatorIndex": "0x5", "address": NOBODY, "amount": "0x2"}
    blocks = world.simulate(
        {
            "blockStateCalls": [
                {"blockOverrides": {"withdrawals": [withdrawal]}},
                # 2 gwei arrived in the block before: NOBODY can send 1 gwei now
                {"calls": [{"from": NOBODY, "to": A1, "value": hex(10**9)}]},
            ]
        }
    )
    assert blocks[0]["withdrawals"] == [withdrawal]
    assert blocks[0]["withdrawalsRoot"] != blocks[1]["withdrawalsRoot"]
    assert blocks[1]["calls"][0]["status"] == "0x1"
