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

from cairn.memory import Footprint, resident_bytes


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


class MemoryFigures(Protocol):
    """What the memory collector reads at scrape time."""

    def memory_figures(self) -> list[Footprint]: ...  # every bounded structure of the node

    def worker_pids(self) -> list[tuple[str, int, int]]: ...  # (kind, index, pid)


class MemoryCollector(Collector):
    """Sizes of the node's caches and pools, and the workers' resident memory (the node's own
    is `process_resident_memory_bytes`). See docs/operations.md, "Memory budget"."""

    def __init__(self, node: MemoryFigures) -> None:
        self._node = node

    def collect(self) -> Iterator[Metric]:
        entries = GaugeMetricFamily(
            "cairn_memory_entries", "entries held by a bounded structure", labels=["structure"]
        )
        held = GaugeMetricFamily(
            "cairn_memory_bytes",
            "estimated bytes held by a bounded structure",
            labels=["structure"],
        )
        limit = GaugeMetricFamily(
            "cairn_memory_limit_bytes",
            "configured bound of a structure bounded in bytes",
            labels=["structure"],
        )
        for footprint in self._node.memory_figures():
            entries.add_metric([footprint.name], footprint.entries)
            held.add_metric([footprint.name], footprint.bytes)
            if footprint.limit_bytes:
                limit.add_metric([footprint.name], footprint.limit_bytes)
        yield entries
        yield held
        yield limit
        workers = GaugeMetricFamily(
            "cairn_worker_resident_memory_bytes",
            "resident memory of a worker process",
            labels=["kind", "index"],
        )
        for kind, index, pid in self._node.worker_pids():
            rss = resident_bytes(pid)
            if rss is not None:
                workers.add_metric([kind, str(index)], rss)
        yield workers
