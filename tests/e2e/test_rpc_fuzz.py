"""Hypothesis against a running `cairn dev`: malformed JSON, malformed requests, wrong param
types, unknown methods, batches and bodies past the limits, odd block tags and hex values.

Each answer is checked against a small model of JSON-RPC 2.0 (the code it must carry), no
answer may be an internal error (-32603), and after every example the node must still serve
eth_blockNumber. Deterministic (derandomized, fixed example counts), well under two minutes.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from eth_utils import to_checksum_address
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from web3 import Web3
from websockets.sync.client import connect

from tests.support import rpc
from tests.support.chain import ADDRESSES, KEYS
from tests.support.contracts import compile_contract
from tests.support.proc import NodeProcess
from tests.support.wallet import Wallet, send_and_wait

pytestmark = pytest.mark.e2e

BATCH_LIMIT = 50
MAX_BODY = 1024 * 1024
A0 = to_checksum_address(ADDRESSES[0])
COUNTER = "0x" + Web3.keccak(text="counter()")[:4].hex()  # Probe.counter(), never reverts
FUZZ = settings(
    max_examples=150,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Every method and how many parameters it takes at most (its schema is exercised by type fuzz).
METHODS = {
    "web3_clientVersion": 0, "web3_sha3": 1, "net_version": 0, "net_listening": 0,
    "net_peerCount": 0, "eth_chainId": 0, "eth_blockNumber": 0, "eth_syncing": 0,
    "eth_accounts": 0, "eth_coinbase": 0, "eth_mining": 0, "eth_hashrate": 0,
    "eth_gasPrice": 0, "eth_maxPriorityFeePerGas": 0, "eth_blobBaseFee": 0,
    "eth_feeHistory": 3, "eth_getBalance": 2, "eth_getTransactionCount": 2, "eth_getCode": 2,
    "eth_getStorageAt": 3, "eth_call": 3, "eth_estimateGas": 2, "eth_sendRawTransaction": 1,
    "eth_getTransactionByHash": 1, "eth_getTransactionReceipt": 1,
    "eth_getBlockByNumber": 2, "eth_getBlockByHash": 2,
    "eth_getBlockTransactionCountByNumber": 1, "eth_getBlockTransactionCountByHash": 1,
    "eth_getTransactionByBlockNumberAndIndex": 2, "eth_getTransactionByBlockHashAndIndex": 2,
    "eth_getBlockReceipts": 1, "eth_getUncleCountByBlockNumber": 1,
    "eth_getUncleCountByBlockHash": 1, "eth_getUncleByBlockNumberAndIndex": 2,
    "eth_getUncleByBlockHashAndIndex": 2, "eth_getLogs": 1, "eth_getProof": 3,
    "eth_createAccessList": 2, "debug_traceTransaction": 2, "debug_traceBlockByNumber": 2,
    "debug_traceBlockByHash": 2, "debug_traceCall": 3, "debug_getRawHeader": 1,
    "debug_getRawBlock": 1, "debug_getRawReceipts": 1, "debug_getRawTransaction": 1,
}  # fmt: skip
# Codes a well-formed call may answer with: success, bad params, a server-side refusal
# (not found, nonce too low ...), a limit, or a revert carrying data.
METHOD_CODES = {-32602, -32000, -32001, -32005, 3}


@dataclass
class Node:
    process: NodeProcess
    probe: str
    selectors: list[str]

    @property
    def url(self) -> str:
        return self.process.url


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    process = NodeProcess(
        tmp_path_factory.mktemp("fuzz") / "dev",
        "dev",
        "--rpc.batch-limit",
        str(BATCH_LIMIT),
        "--rpc.max-body",
        str(MAX_BODY),
    ).start()
    try:
        compiled = compile_contract("Probe.sol", "Probe")
        factory = Web3().eth.contract(abi=compiled.abi, bytecode=compiled.bytecode)
        raw = Wallet(KEYS[0]).sign(
            None, value=10**18, data=factory.constructor().data_in_transaction, gas=2_000_000
        )
        receipt = send_and_wait(process.url, raw)
        selectors = [
            "0x"
            + Web3.keccak(text=f"{f['name']}({','.join(i['type'] for i in f['inputs'])})")[:4].hex()
            for f in compiled.abi
            if f["type"] == "function"
        ]
        yield Node(process, to_checksum_address(receipt["contractAddress"]), selectors)
    finally:
        process.stop()


def post_raw(url: str, body: bytes) -> tuple[int, Any]:
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, text = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, text = exc.code, exc.read()
    return status, json.loads(text) if text else None


def still_serving(node: Node) -> None:
    assert int(rpc.call(node.url, "eth_blockNumber"), 16) >= 1


def _code(answer: Any) -> int | None:
    assert isinstance(answer, dict), answer
    assert answer.get("jsonrpc") == "2.0", answer
    if "error" in answer:
        error = answer["error"]
        assert isinstance(error["code"], int) and isinstance(error["message"], str), answer
        assert error["code"] != -32603, f"internal error: {answer}"
        code: int = error["code"]
        return code
    assert "result" in answer, answer
    return None


# ------------------------------------------------------------------ a model of JSON-RPC 2.0
def expected_code(request: Any) -> int | str | None:
    """The code `request` must be answered with; None for success-or-method-error ("call"),
    "silent" when it is a notification that gets no answer."""
    if not isinstance(request, dict):
        return -32600
    request_id = request.get("id")
    if request_id is not None and (
        isinstance(request_id, dict | list) or not isinstance(request_id, str | int | float)
    ):
        return -32600
    if request.get("jsonrpc") != "2.0" or not isinstance(request.get("method"), str):
        return -32600
    notification = "id" not in request
    params = request.get("params", [])
    if params is not None and not isinstance(params, list):
        return "silent" if notification else -32602
    if request["method"] not in METHODS:
        return "silent" if notification else -32601
    return "silent" if notification else None


def check_answer(request: Any, answer: Any) -> None:
    expected = expected_code(request)
    if expected == "silent":
        assert answer is None, (request, answer)
        return
    code = _code(answer)
    if expected is None:
        assert code is None or code in METHOD_CODES, (request, answer)
    else:
        assert code == expected, (request, answer)
    if isinstance(request, dict) and expected is None:
        assert answer["id"] == request.get("id"), (request, answer)


def check_payload(payload: Any, answer: Any) -> None:
    """A whole POST body: one request, or a batch answered member by member."""
    if not isinstance(payload, list):
        check_answer(payload, answer)
        return
    if not payload:
        assert _code(answer) == -32600, answer
        return
    if len(payload) > BATCH_LIMIT:
        assert _code(answer) == -32005, answer
        return
    expected = [r for r in payload if expected_code(r) != "silent"]
    if not expected:
        assert answer is None, (payload, answer)
        return
    assert isinstance(answer, list) and len(answer) == len(expected), (payload, answer)
    for request, member in zip(expected, answer, strict=True):
        check_answer(request, member)


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**300),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
hexish = st.one_of(
    st.sampled_from(
        ["0x", "0x0", "0x00", "0x01", "0X1", "0xg", "0x-1", "-0x1", "1", "0x1 ", " 0x1", "0x1.5",
         "0x" + "f" * 64, "0x" + "f" * 65, "0x" + "0" * 100 + "1", "latest", "LATEST", "Latest",
         "pending", "earliest", "safe", "finalized", "committed", "", "\u00e9", "0x\u0661"]
    ),
    st.text(alphabet="0123456789abcdefxX-", max_size=70).map(lambda s: "0x" + s),
    st.integers(min_value=-5, max_value=2**70),
)  # fmt: skip
block_params = st.one_of(
    hexish,
    st.fixed_dictionaries({"blockNumber": hexish}),
    st.fixed_dictionaries({"blockHash": hexish}),
    st.fixed_dictionaries({"blockHash": hexish, "requireCanonical": json_scalars}),
    st.fixed_dictionaries({"blockHash": hexish, "blockNumber": hexish}),
    json_values,
)


# ------------------------------------------------------------------ tests
@FUZZ
@given(body=st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode)))
def test_malformed_json_is_a_parse_error(node: Node, body: bytes) -> None:
    try:
        json.loads(body)
    except (ValueError, UnicodeDecodeError):
        _, answer = post_raw(node.url, body)
        assert _code(answer) == -32700, (body, answer)
        assert answer["id"] is None
    else:
        status, answer = post_raw(node.url, body)
        assert status in (200, 429)
    still_serving(node)


request_objects = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {
            "jsonrpc": st.sampled_from(["2.0", "1.0", 2.0, None]),
            "method": st.one_of(
                st.sampled_from(sorted(METHODS)), st.text(max_size=30), json_scalars
            ),
            "params": st.one_of(st.lists(json_values, max_size=4), json_values),
        },
        optional={"id": st.one_of(st.integers(), st.text(max_size=10), st.none(), json_values)},
    ),
)


@FUZZ
@given(request=request_objects)
def test_malformed_requests_get_the_right_code(node: Node, request: Any) -> None:
    _, answer = post_raw(node.url, json.dumps(request).encode())
    check_payload(request, answer)
    still_serving(node)


@FUZZ
@given(
    method=st.sampled_from(sorted(METHODS)),
    params=st.lists(json_values, max_size=4),
    request_id=st.integers(min_value=0, max_value=2**31),
)
def test_wrong_param_types_never_break_a_method(
    node: Node, method: str, params: list[Any], request_id: int
) -> None:
    request = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
    _, answer = post_raw(node.url, json.dumps(request).encode())
    check_answer(request, answer)
    if len(params) > METHODS[method]:
        assert _code(answer) == -32602, (request, answer)
    still_serving(node)


@FUZZ
@given(name=st.text(min_size=1, max_size=40).filter(lambda n: n not in METHODS))
def test_unknown_methods(node: Node, name: str) -> None:
    answer = rpc.post(node.url, {"jsonrpc": "2.0", "id": 7, "method": name, "params": []})
    assert _code(answer) == -32601, answer
    assert name in answer["error"]["message"]
    still_serving(node)


@FUZZ
@given(
    method=st.sampled_from(
        ["eth_getBalance", "eth_getTransactionCount", "eth_getCode", "eth_getBlockByNumber",
         "eth_getBlockTransactionCountByNumber", "debug_traceBlockByNumber", "debug_getRawHeader",
         "eth_getProof", "eth_call"]
    ),
    block=block_params,
)  # fmt: skip
def test_odd_block_tags_and_hex_values(node: Node, method: str, block: Any) -> None:
    params: list[Any] = {
        "eth_getBalance": [A0, block],
        "eth_getTransactionCount": [A0, block],
        "eth_getCode": [node.probe, block],
        "eth_getBlockByNumber": [block, False],
        "eth_getBlockTransactionCountByNumber": [block],
        "debug_traceBlockByNumber": [block, {"tracer": "callTracer"}],
        "debug_getRawHeader": [block],
        "eth_getProof": [A0, [], block],
        "eth_call": [{"to": node.probe, "data": COUNTER}, block],
    }[method]
    answer = rpc.post(node.url, {"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
    code = _code(answer)
    assert code in (None, -32602, -32000), answer
    if code == -32000:
        # only a well-formed block this node does not have may be a server error
        assert "not found" in answer["error"]["message"] or "genesis" in answer["error"]["message"]
    still_serving(node)


@FUZZ
@given(
    selector_index=st.integers(min_value=0, max_value=30),
    args=st.binary(max_size=100),
    gas=st.one_of(st.none(), st.integers(min_value=0, max_value=2**64)),
)
def test_calls_answer_results_reverts_or_errors(
    node: Node, selector_index: int, args: bytes, gas: int | None
) -> None:
    selector = node.selectors[selector_index % len(node.selectors)]
    call: dict[str, Any] = {"from": A0, "to": node.probe, "data": selector + args.hex()}
    if gas is not None:
        call["gas"] = hex(gas)
    answer = rpc.post(node.url, {"jsonrpc": "2.0", "id": 1, "method": "eth_call", "params": [call]})
    code = _code(answer)
    assert code in (None, 3, -32000), answer
    if code == 3:
        data = answer["error"]["data"]
        assert isinstance(data, str) and data.startswith("0x") and len(data) % 2 == 0
        assert answer["error"]["message"].startswith("execution reverted")
    still_serving(node)


@settings(FUZZ, max_examples=25)
@given(
    requests=st.lists(
        st.one_of(
            request_objects,
            st.builds(
                lambda i: {"jsonrpc": "2.0", "id": i, "method": "eth_blockNumber"},
                st.integers(min_value=0, max_value=10**6),
            ),
        ),
        min_size=1,
        max_size=BATCH_LIMIT,
    )
)
def test_batches_answer_each_member(node: Node, requests: list[Any]) -> None:
    _, answers = post_raw(node.url, json.dumps(requests).encode())
    check_payload(requests, answers)
    still_serving(node)


def test_batches_and_bodies_past_the_limits(node: Node) -> None:
    call = {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"}
    _, answer = post_raw(node.url, json.dumps([call] * (BATCH_LIMIT + 1)).encode())
    assert _code(answer) == -32005 and str(BATCH_LIMIT) in answer["error"]["message"]
    _, answers = post_raw(node.url, json.dumps([call] * BATCH_LIMIT).encode())
    assert [a["result"] for a in answers] == ["0x7a69"] * BATCH_LIMIT
    _, empty = post_raw(node.url, b"[]")
    assert _code(empty) == -32600

    padding = "0x" + "00" * MAX_BODY
    status, big = post_raw(node.url, json.dumps({**call, "params": [padding]}).encode())
    assert status == 413 and _code(big) == -32600
    still_serving(node)


def test_deeply_nested_json_is_refused_not_fatal(node: Node) -> None:
    """400,000 levels of `[` once took the process down (C stack overflow in json.loads)."""
    for body in (b"[" * 400_000 + b"]" * 400_000, b"[" * 500_000, b'{"a":' * 150_000):
        status, answer = post_raw(node.url, body)
        assert status == 200 and _code(answer) == -32700, answer
        still_serving(node)
    shallow = json.dumps([[[[{"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"}]]]])
    _, answer = post_raw(node.url, shallow.encode())
    assert [a["error"]["code"] for a in answer] == [-32600]
    with connect(node.process.ws_url, max_size=None) as ws:
        ws.send("[" * 400_000 + "]" * 400_000)
        assert json.loads(ws.recv(timeout=30))["error"]["code"] == -32700
        ws.send(json.dumps({"jsonrpc": "2.0", "id": 2, "method": "eth_chainId"}))
        assert json.loads(ws.recv(timeout=30))["result"] == "0x7a69"
    still_serving(node)
