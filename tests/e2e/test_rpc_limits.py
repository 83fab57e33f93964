"""RPC limits with clear errors, each against a real process: body size, batch length, response
size, CORS origins, WebSocket message size, per-IP rate limit (a `cairn run` node: it is off in
dev), and dev helpers refused on a node that is not a dev chain (its namespaces opened with
--http.api '*', so that the helpers' own refusal is what answers)."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websockets

from cairn.genesis.dev import dev_genesis
from cairn.genesis.parse import genesis_to_json
from tests.support import rpc
from tests.support.proc import NodeProcess, run_cli
from tests.support.wait import wait_until

ALLOWED = "http://wallet.example"
DEAD = "0x000000000000000000000000000000000000dEaD"


def http(
    url: str, body: bytes, *, method: str = "POST", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], Any]:
    request = urllib.request.Request(
        url,
        data=body if method == "POST" else None,
        method=method,
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, got, text = response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        status, got, text = exc.code, dict(exc.headers), exc.read()
    try:
        parsed = json.loads(text) if text else None
    except ValueError:
        parsed = text.decode()
    return status, got, parsed


def request(method: str, *params: Any, id_: int = 1) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": id_, "method": method, "params": list(params)}


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    node = NodeProcess(
        tmp_path_factory.mktemp("limits") / "dev",
        "dev",
        "--rpc.max-body",
        "2000",
        "--rpc.batch-limit",
        "5",
        "--rpc.max-response",
        "3000",
        "--http.corsdomain",
        ALLOWED,
    ).start()
    yield node
    node.stop()


def test_body_batch_and_response_limits(limited: NodeProcess) -> None:
    url = limited.url
    big = json.dumps(request("eth_getBalance", DEAD, "latest") | {"pad": "x" * 5000}).encode()
    status, _, answer = http(url, big)
    assert status == 413
    assert answer["error"]["code"] == -32600
    assert "request body too large" in answer["error"]["message"]

    six = json.dumps([request("eth_blockNumber", id_=i) for i in range(6)]).encode()
    _, _, answer = http(url, six)
    assert answer["error"] == {
        "code": -32005,
        "message": "batch too large: 6 requests, limit 5",
    }
    five = json.dumps([request("eth_blockNumber", id_=i) for i in range(5)]).encode()
    _, _, answer = http(url, five)
    assert sorted(a["id"] for a in answer) == [0, 1, 2, 3, 4]

    blocks = [request("eth_getBlockByNumber", "0x0", True, id_=i) for i in range(5)]
    _, _, answer = http(url, json.dumps(blocks).encode())
    assert answer["error"]["code"] == -32005
    assert "response too large" in answer["error"]["message"]
    assert "limit 3000" in answer["error"]["message"]
    # refused requests changed nothing and the node keeps serving
    assert rpc.call(url, "eth_chainId") == "0x7a69"


def test_cors_origins(limited: NodeProcess) -> None:
    body = json.dumps(request("eth_chainId")).encode()
    status, headers, answer = http(limited.url, body, headers={"Origin": ALLOWED})
    assert status == 200 and answer["result"] == "0x7a69"
    assert headers["Access-Control-Allow-Origin"] == ALLOWED
    # As geth: another origin's JSON request is answered without a CORS header (a browser
    # withholds it from the page, and would not have sent it: its preflight fails below).
    status, headers, answer = http(limited.url, body, headers={"Origin": "http://evil.example"})
    assert status == 200 and answer["result"] == "0x7a69"
    assert "Access-Control-Allow-Origin" not in headers
    status, headers, _ = http(
        limited.url,
        b"",
        method="OPTIONS",
        headers={"Origin": ALLOWED, "Access-Control-Request-Method": "POST"},
    )
    assert status == 204
    assert headers["Access-Control-Allow-Origin"] == ALLOWED
    assert "POST" in headers["Access-Control-Allow-Methods"]
    status, _, _ = http(
        limited.url, b"", method="OPTIONS", headers={"Origin": "http://evil.example"}
    )
    assert status == 403
    # no Origin header (curl, scripts): allowed
    status, _, answer = http(limited.url, body)
    assert status == 200 and answer["result"] == "0x7a69"


async def _ws_limits(node: NodeProcess) -> tuple[list[Any], int | None]:
    async with websockets.connect(node.ws_url) as ws:
        answers = []
        for message in (
            [request("eth_getBlockByNumber", "0x0", True, id_=i) for i in range(5)],
            request("eth_chainId") | {"pad": "x" * 3000},
            request("eth_chainId"),
        ):
            await ws.send(json.dumps(message))
            answers.append(json.loads(await asyncio.wait_for(ws.recv(), 30)))
        await ws.send(json.dumps(request("eth_chainId") | {"pad": "x" * 5000}))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 30)
        frame = closed.value.rcvd
        return answers, frame.code if frame else None


def test_websocket_limits(limited: NodeProcess) -> None:
    (too_long, too_big, fine), code = asyncio.run(_ws_limits(limited))
    assert too_long["error"]["code"] == -32005
    assert "response too large" in too_long["error"]["message"]
    assert too_big["error"]["code"] == -32600
    assert "request too large" in too_big["error"]["message"]
    assert "limit 2000 (--rpc.max-body)" in too_big["error"]["message"]
    assert fine["result"] == "0x7a69"  # the connection survived both
    assert code == 1009  # past twice the limit the message is not even read
    assert rpc.call(limited.url, "eth_chainId") == "0x7a69"


@pytest.fixture(scope="module")
def full_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    base: Path = tmp_path_factory.mktemp("run")
    genesis = base / "genesis.json"
    genesis.write_text(json.dumps(genesis_to_json(dev_genesis())))
    datadir = base / "node"
    done = run_cli("init", "--datadir", str(datadir), "--genesis", str(genesis))
    assert done.returncode == 0, done.stderr
    node = NodeProcess(
        datadir, "run", "--rpc.ratelimit", "5", "--rpc.ratelimit-burst", "200"
    ).start()
    yield node
    node.stop()


def test_rate_limit_per_ip(full_node: NodeProcess) -> None:
    url = full_node.url
    # the bucket holds 200 requests and refills at 5/s: 150 pass, the next 100 do not
    status, _, answer = http(
        url, json.dumps([request("eth_blockNumber", id_=i) for i in range(150)]).encode()
    )
    assert status == 200 and len(answer) == 150
    status, _, answer = http(
        url, json.dumps([request("eth_blockNumber", id_=i) for i in range(100)]).encode()
    )
    assert status == 429
    assert answer["error"]["code"] == -32005
    assert "rate limit exceeded" in answer["error"]["message"]
    # it refills: single requests are answered again
    wait_until(lambda: rpc.call(url, "eth_chainId") == "0x7a69", timeout=20, interval=0.5)


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("evm_mine", []),
        ("evm_snapshot", []),
        ("evm_revert", ["0x0"]),
        ("evm_increaseTime", [10]),
        ("anvil_setBalance", [DEAD, "0x1"]),
        ("anvil_impersonateAccount", [DEAD]),
        ("hardhat_mine", ["0x2"]),
        ("eth_sign", [DEAD, "0x00"]),
    ],
)
def test_dev_helpers_refused_off_dev(
    full_node: NodeProcess, method: str, params: list[Any]
) -> None:
    failure = wait_until(lambda: _failure(full_node.url, method, params), timeout=20, interval=0.5)
    assert failure.code == -32601
    assert f"the method {method} is not available" in failure.message
    assert "cairn dev" in failure.message


def _failure(url: str, method: str, params: list[Any]) -> rpc.RpcFailure | None:
    status, _, answer = http(url, json.dumps(request(method, *params)).encode())
    if status == 429:
        return None  # the rate-limit test may have emptied the bucket; wait for a refill
    return rpc.RpcFailure(answer["error"])


def test_filters_and_txpool_answer_off_dev(full_node: NodeProcess) -> None:
    def status() -> Any:
        return rpc.call(full_node.url, "txpool_status")

    assert wait_until(status, timeout=20, interval=0.5) == {"pending": "0x0", "queued": "0x0"}
    filter_id = wait_until(
        lambda: rpc.call(full_node.url, "eth_newBlockFilter"), timeout=20, interval=0.5
    )
    assert rpc.call(full_node.url, "eth_getFilterChanges", filter_id) == []
    refused = wait_until(
        lambda: _failure(full_node.url, "eth_sendTransaction", [{"from": DEAD, "to": DEAD}]),
        timeout=20,
        interval=0.5,
    )
    assert "unlocked account" in refused.message
