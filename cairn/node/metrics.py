"""/metrics: one Prometheus registry per node; components add collectors to it."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Protocol

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector


def new_registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    return registry


def metrics_handler(
    registry: CollectorRegistry,
) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handle(request: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    return handle


class NodeFigures(Protocol):
    """What the node collector reads at scrape time (nothing is counted on hot paths)."""

    def head_figures(self) -> tuple[int, int]: ...  # head number, head timestamp

    def pool_figures(self) -> tuple[int, int]: ...  # pending, queued

    def committed_figures(self) -> tuple[int, int]: ...  # blocks and transactions since start

    def rpc_figures(self) -> tuple[dict[str, int], dict[str, int]]: ...  # calls, errors


class NodeCollector(Collector):
    def __init__(self, node: NodeFigures) -> None:
        self._node = node

    def collect(self) -> Iterator[Metric]:
        number, timestamp = self._node.head_figures()
        yield GaugeMetricFamily("cairn_head_block_number", "number of the head block", number)
        yield GaugeMetricFamily(
            "cairn_head_block_age_seconds",
            "seconds since the head block's timestamp",
            max(0.0, time.time() - timestamp),
        )
        pending, queued = self._node.pool_figures()
        pool = GaugeMetricFamily(
            "cairn_txpool_transactions", "pooled transactions", labels=["kind"]
        )
        pool.add_metric(["pending"], pending)
        pool.add_metric(["queued"], queued)
        yield pool
        blocks, txs = self._node.committed_figures()
        yield CounterMetricFamily(
            "cairn_blocks_committed", "blocks committed since the node started", blocks
        )
        yield CounterMetricFamily(
            "cairn_transactions_committed", "transactions in blocks committed since start", txs
        )
        calls, errors = self._node.rpc_figures()
        served = CounterMetricFamily(
            "cairn_rpc_requests", "JSON-RPC calls by method", labels=["method"]
        )
        failed = CounterMetricFamily(
            "cairn_rpc_errors", "JSON-RPC calls answered with an error", labels=["method"]
        )
        for method, count in sorted(calls.items()):
            served.add_metric([method], count)
        for method, count in sorted(errors.items()):
            failed.add_metric([method], count)
        yield served
        yield failed
