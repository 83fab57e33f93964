"""Health endpoints, /status and Prometheus /metrics of a running node."""

from __future__ import annotations

import json
import re
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from tests.support import rpc
from tests.support.chain import transfer
from tests.support.proc import NodeProcess
from tests.support.wait import wait_until


def get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.read().decode()


def metric(text: str, name: str, labels: str = "") -> float:
    pattern = rf"^{re.escape(name)}{re.escape(labels)} (\S+)$"
    match = re.search(pattern, text, re.M)
    assert match is not None, f"{name}{labels} missing from /metrics"
    return float(match.group(1))


def test_health_status_and_metrics(dev_node: NodeProcess) -> None:
    base = dev_node.url
    status, body = get(base + "/health")
    assert status == 200 and json.loads(body)["status"] == "ok"
    assert json.loads(body)["p2p"] is None  # a dev node without p2p flags runs none
    status, body = get(base + "/healthz")
    assert status == 200
    assert json.loads(body) == {
        "ok": True, "mode": "dev", "chainId": 31337, "blockNumber": 0, "healthy": True,
    }  # fmt: skip
    assert get(base + "/health/ready")[0] == 200

    dev_node.call("eth_sendRawTransaction", "0x" + transfer(0, 0).hex())
    wait_until(lambda: dev_node.call("eth_blockNumber") == "0x1", timeout=30, message="block 1")

    chain = json.loads(get(base + "/health/blockchain")[1])
    assert chain["blockNumber"] == 1 and chain["mode"] == "dev"
    assert chain["maxHeadAgeSeconds"] is None  # automine: blocks come with transactions
    full = json.loads(get(base + "/status")[1])
    assert full["blockNumber"] == 1 and full["txpool"] == {"pending": 0, "queued": 0}

    bad = rpc.post(base, {"jsonrpc": "2.0", "id": 1, "method": "eth_getBalance", "params": ["0x1"]})
    assert bad["error"]["code"] == -32602
    text = get(base + "/metrics")[1]
    assert metric(text, "cairn_head_block_number") == 1
    assert metric(text, "cairn_blocks_committed_total") == 1
    assert metric(text, "cairn_transactions_committed_total") == 1
    assert metric(text, "cairn_txpool_transactions", '{kind="pending"}') == 0
    assert metric(text, "cairn_rpc_requests_total", '{method="eth_sendRawTransaction"}') == 1
    assert metric(text, "cairn_rpc_errors_total", '{method="eth_getBalance"}') == 1
    assert metric(text, "process_resident_memory_bytes") > 0
    # memory: each bounded structure's size and bound; every worker's resident memory
    assert metric(text, "cairn_memory_limit_bytes", '{structure="blocks"}') == 64 * 2**20
    assert metric(text, "cairn_memory_entries", '{structure="headers"}') >= 1
    assert metric(text, "cairn_memory_bytes", '{structure="txpool"}') == 0
    assert metric(text, "cairn_memory_bytes", '{structure="leveldb"}') > 0

    def workers() -> dict[str, float] | None:
        # prometheus_client writes labels sorted by name: parse rather than match the line
        kinds = {
            sample.labels["kind"] + sample.labels["index"]: sample.value
            for family in text_string_to_metric_families(get(base + "/metrics")[1])
            if family.name == "cairn_worker_resident_memory_bytes"
            for sample in family.samples
        }
        return kinds if {"recovery0", "call0"} <= set(kinds) else None

    rss = wait_until(workers, timeout=60, message="worker RSS in /metrics")
    assert all(value > 10 * 2**20 for value in rss.values()), rss
