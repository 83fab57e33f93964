"""/metrics: one Prometheus registry per node; components add collectors to it. Owns the
node's own families (head, pool, committed blocks and their intervals and sizes, failed
transactions, RPC calls and latency, watched balances, memory and workers' memory and CPU) and
the optional separate listener (`--metrics.addr`/`--metrics.port`).

Reads what it exports at scrape time or counts it in O(1) per event; never writes storage.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from aiohttp import web
from eth_typing import Address
from eth_utils import to_checksum_address
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from cairn.chain.events import BlockCommitted, ChainRewound
from cairn.errors import ConfigError
from cairn.execution.fees import receipt_status
from cairn.memory import Footprint, resident_bytes

log = logging.getLogger("cairn.metrics")

# Seconds; an eth_call that reaches the EVM timeout (5 s) lands in the last finite buckets.
RPC_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
INTERVAL_BUCKETS = (0.5, 1, 2, 3, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600)
TXS_BUCKETS = (0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


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
        cpu = CounterMetricFamily(
            "cairn_worker_cpu_seconds",
            "user and system CPU seconds of a worker process",
            labels=["kind", "index"],
        )
        for kind, index, pid in self._node.worker_pids():
            rss = resident_bytes(pid)
            if rss is not None:
                workers.add_metric([kind, str(index)], rss)
            seconds = cpu_seconds(pid)
            if seconds is not None:
                cpu.add_metric([kind, str(index)], seconds)
        yield workers
        yield cpu


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process `pid` (Linux /proc), None when it cannot be read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # fields after the command name (which may hold spaces) in parentheses; utime, stime are
    # the 14th and 15th fields of the whole line
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


class RpcLatency:
    """`cairn_rpc_request_duration_seconds{method}`: the Dispatcher's `observe` hook."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._histogram = Histogram(
            "cairn_rpc_request_duration_seconds",
            "seconds to answer one JSON-RPC call, by method",
            ["method"],
            registry=registry,
            buckets=RPC_BUCKETS,
        )

        self._children: dict[str, Histogram] = {}  # labels() per call cost ~2x the observe

    def observe(self, method: str, seconds: float) -> None:
        child = self._children.get(method)
        if child is None:
            child = self._children[method] = self._histogram.labels(method)
        child.observe(seconds)


class BlockMetrics:
    """Per committed block: seconds since its parent (header timestamps), its transaction count
    and its failed (status 0) transactions. Subscribed to the chain's events."""

    def __init__(self, registry: CollectorRegistry, head: tuple[int, int]) -> None:
        self._interval = Histogram(
            "cairn_block_interval_seconds",
            "seconds between a block's timestamp and its parent's",
            registry=registry,
            buckets=INTERVAL_BUCKETS,
        )
        self._txs = Histogram(
            "cairn_block_transactions",
            "transactions per committed block",
            registry=registry,
            buckets=TXS_BUCKETS,
        )
        self._failed = 0
        self._head = head  # (number, timestamp) of the last block seen
        registry.register(_FailedCollector(self))

    @property
    def failed(self) -> int:
        return self._failed

    def on_commit(self, event: BlockCommitted) -> None:
        header = event.result.header
        number, timestamp = self._head
        if header.block_number == number + 1:  # else: a gap after a rewind, nothing to measure
            self._interval.observe(max(0, header.timestamp - timestamp))
        self._head = (header.block_number, header.timestamp)
        self._txs.observe(len(event.result.block.transactions))
        self._failed += sum(1 for r in event.result.receipts if receipt_status(r) == 0)

    def on_rewind(self, event: ChainRewound) -> None:
        # the next block's parent is the kept head, whose time is not at hand: skip it
        self._head = (-2, 0)


class _FailedCollector(Collector):
    def __init__(self, blocks: BlockMetrics) -> None:
        self._blocks = blocks

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "cairn_transactions_failed",
            "transactions included with status 0 (reverted or out of gas) since start",
            self._blocks.failed,
        )


@dataclass(frozen=True)
class Watched:
    address: Address
    label: str


def parse_watch(text: str | None) -> tuple[Watched, ...]:
    """`--metrics.watch ADDR[=LABEL],...`; a missing label is "watched"."""
    found: list[Watched] = []
    for item in (text or "").split(","):
        item = item.strip()
        if not item:
            continue
        address_text, _, label = item.partition("=")
        address_text = address_text.strip()
        hex_part = address_text[2:] if address_text[:2].lower() == "0x" else address_text
        try:
            raw = bytes.fromhex(hex_part)
        except ValueError:
            raw = b""
        if len(raw) != 20:
            raise ConfigError(
                f"--metrics.watch: {address_text!r} is not an address (0x and 40 hex digits)"
            )
        found.append(Watched(Address(raw), label.strip() or "watched"))
    return tuple(found)


class Balances(Protocol):
    def balance(self, address: Address) -> int: ...


class WatchedBalances(Collector):
    """`cairn_watched_balance_wei{address,label}` of the head state, read at scrape time."""

    def __init__(self, head: Callable[[], Balances], watched: tuple[Watched, ...]) -> None:
        self._head = head
        self._watched = watched

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "cairn_watched_balance_wei",
            "balance at the head of a watched address (--metrics.watch, producer, faucet)",
            labels=["address", "label"],
        )
        if self._watched:
            view = self._head()
            for entry in self._watched:
                family.add_metric(
                    [to_checksum_address(entry.address), entry.label],
                    view.balance(entry.address),
                )
        yield family


class MetricsServer:
    """`/metrics` on its own address (geth's --metrics.addr/--metrics.port), open without the
    RPC token: bind it where only Prometheus reaches it."""

    def __init__(self, registry: CollectorRegistry, addr: str, port: int) -> None:
        self.addr = addr
        self.port = port
        app = web.Application()
        app.router.add_get("/metrics", metrics_handler(registry))
        self._runner = web.AppRunner(app, access_log=None)
        self._set_up = False
        self.bound_port = 0

    async def start(self) -> None:
        await self._runner.setup()
        self._set_up = True
        site = web.TCPSite(self._runner, self.addr, self.port)
        try:
            await site.start()
        except OSError as exc:
            raise ConfigError(
                f"metrics could not listen on {self.addr}:{self.port}: {exc.strerror or exc}; "
                "pick another --metrics.port"
            ) from exc
        addresses = self._runner.addresses
        self.bound_port = int(addresses[0][1]) if addresses else self.port
        log.info("metrics on http://%s:%d/metrics", self.addr, self.bound_port)

    async def stop(self) -> None:
        if self._set_up:
            self._set_up = False
            await self._runner.cleanup()
