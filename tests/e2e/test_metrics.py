"""The metrics a running node exports, parsed with prometheus_client's own parser: RPC latency
per method, block intervals and sizes, failed transactions, watched balances, workers' CPU and
memory, on the RPC port and on the separate `--metrics.addr` listener; request ids in JSON
logs."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest
from eth_utils import to_checksum_address
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from tests.support import rpc
from tests.support.chain import ADDRESSES, DEAD, PRODUCER, transfer
from tests.support.proc import NodeProcess, free_port
from tests.support.wait import wait_until

pytestmark = pytest.mark.e2e

LOOP_FOREVER = bytes.fromhex("5b600056")  # JUMPDEST PUSH1 0 JUMP: runs out of gas


def scrape(url: str) -> dict[str, list[Sample]]:
    with urllib.request.urlopen(url + "/metrics", timeout=10) as answer:
        text = answer.read().decode()
    families: dict[str, list[Sample]] = {}
    for family in text_string_to_metric_families(text):
        families[family.name] = list(family.samples)
    return families


def value(families: dict[str, list[Sample]], sample: str, **labels: str) -> float:
    family = next(
        (
            samples
            for name, samples in families.items()
            if sample == name or sample.startswith(name + "_")
        ),
        None,
    )
    assert family is not None, f"{sample} not exported"
    found = [s.value for s in family if s.name == sample and labels.items() <= s.labels.items()]
    assert len(found) == 1, f"{sample}{labels}: {found}"
    return found[0]


def test_node_metrics_on_both_listeners(tmp_path: Path) -> None:
    metrics_port = free_port()
    alice = to_checksum_address(ADDRESSES[1])
    node = NodeProcess(
        tmp_path / "dev",
        "dev",
        "--metrics.addr", "127.0.0.1", "--metrics.port", str(metrics_port),
        "--metrics.watch", f"{DEAD}=burn, {alice.lower()}",
        "--log.format", "json", "--log.level", "debug",
    )  # fmt: skip
    node.start()
    try:
        node.call("eth_sendRawTransaction", "0x" + transfer(0, 0, value=5).hex())
        wait_until(lambda: node.call("eth_blockNumber") == "0x1", timeout=30, message="block 1")
        first = node.call("eth_getBlockByNumber", "0x1", False)
        assert isinstance(first, dict)
        node.call("evm_setNextBlockTimestamp", hex(int(first["timestamp"], 16) + 7))
        node.call(
            "eth_sendRawTransaction",
            "0x" + transfer(0, 1, to="", value=0, gas=100_000, data=LOOP_FOREVER).hex(),
        )
        wait_until(lambda: node.call("eth_blockNumber") == "0x2", timeout=30, message="block 2")
        second = node.call("eth_getBlockByNumber", "0x2", False)
        assert isinstance(second, dict)
        receipt = node.call("eth_getTransactionReceipt", second["transactions"][0])
        assert isinstance(receipt, dict) and receipt["status"] == "0x0"
        node.call("eth_call", {"to": DEAD, "data": "0x"}, "latest")
        bad = rpc.post(  # an error answer, logged with its request id
            node.url, {"jsonrpc": "2.0", "id": 1, "method": "eth_getBalance", "params": ["0x1"]}
        )
        assert bad["error"]["code"] == -32602
        # the client's X-Request-Id (a safe one) names the request in the log and the answer;
        # without one (or an unsafe one) the node makes its own and sends it back
        tagged = _post_with_id(node.url, "client-7.a", "eth_getCode")
        made = _post_with_id(node.url, None, "eth_getCode")
        unsafe = _post_with_id(node.url, "a b <fake log line>", "eth_getCode")
        assert tagged == "client-7.a"
        assert made and made != tagged and unsafe and " " not in unsafe and unsafe != made

        separate = f"http://127.0.0.1:{metrics_port}"

        def workers_seen() -> dict[str, list[Sample]] | None:
            families = scrape(separate)
            kinds = {s.labels["kind"] for s in families.get("cairn_worker_cpu_seconds", [])}
            return families if {"call", "recovery"} <= kinds else None

        families = wait_until(workers_seen, timeout=60, message="workers' CPU in /metrics")
        on_rpc = scrape(node.url)
        producer = to_checksum_address(PRODUCER.public_key.to_canonical_address())
        producer_balance = int(str(node.call("eth_getBalance", producer, "latest")), 16)
    finally:
        node.stop()

    # the separate listener and the RPC port serve the same registry
    assert set(families) == set(on_rpc)
    # RPC latency per method: one histogram series per method called
    sends = value(
        families, "cairn_rpc_request_duration_seconds_count", method="eth_sendRawTransaction"
    )
    assert sends == 2
    assert value(families, "cairn_rpc_request_duration_seconds_sum", method="eth_call") > 0
    assert (
        value(families, "cairn_rpc_request_duration_seconds_bucket", method="eth_call", le="+Inf")
        == 1
    )
    # block intervals from header timestamps: block 2 came 7 s after block 1
    assert value(families, "cairn_block_interval_seconds_count") == 2
    in_10 = value(families, "cairn_block_interval_seconds_bucket", le="10.0")
    in_5 = value(families, "cairn_block_interval_seconds_bucket", le="5.0")
    assert in_10 - in_5 >= 1
    # transactions per block, failed transactions
    assert value(families, "cairn_block_transactions_count") == 2
    assert value(families, "cairn_block_transactions_sum") == 2
    assert value(families, "cairn_transactions_failed_total") == 1
    # watched balances: listed ones and the producer
    assert value(families, "cairn_watched_balance_wei", label="burn") == 5
    assert value(families, "cairn_watched_balance_wei", address=alice) == 10_000 * 10**18
    assert value(families, "cairn_watched_balance_wei", label="watched") == 10_000 * 10**18
    watched_producer = value(
        families, "cairn_watched_balance_wei", label="producer", address=producer
    )
    assert watched_producer == producer_balance
    # workers: resident memory and CPU seconds
    for kind in ("call", "recovery"):
        assert value(families, "cairn_worker_resident_memory_bytes", kind=kind, index="0") > 0
        assert value(families, "cairn_worker_cpu_seconds_total", kind=kind, index="0") > 0

    # JSON logs: the error answer's record names its request
    records = [
        json.loads(line) for line in node.log_path.read_text().splitlines() if line.startswith("{")
    ]
    errors = [r for r in records if "eth_getBalance answered error -32602" in r["msg"]]
    assert len(errors) == 1 and errors[0]["request"], errors
    tagged_errors = [r for r in records if "eth_getCode answered error -32602" in r["msg"]]
    assert [r["request"] for r in tagged_errors] == [tagged, made, unsafe]


def _post_with_id(url: str, request_id: str | None, method: str) -> str:
    """An error request (a bad address), with `request_id` as X-Request-Id; the id the
    answer carries."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": ["0x1"]})
    headers = {"Content-Type": "application/json"}
    if request_id is not None:
        headers["X-Request-Id"] = request_id
    request = urllib.request.Request(url, data=body.encode(), headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=30) as answer:
        assert json.loads(answer.read())["error"]["code"] == -32602
        return str(answer.headers["X-Request-Id"])
