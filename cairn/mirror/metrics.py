"""The mirror's Prometheus figures, read from its status snapshot at scrape time."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from cairn.mirror.service import Mirror


class MirrorCollector(Collector):
    def __init__(self, mirror: Mirror) -> None:
        self.mirror = mirror

    def collect(self) -> Iterator[Metric]:
        status = self.mirror.status()
        yield GaugeMetricFamily(
            "cairn_mirror_lag_blocks",
            "Blocks the Postgres mirror is behind the node's head",
            value=self.mirror.lag(),
        )
        yield GaugeMetricFamily(
            "cairn_mirror_cursor_block",
            "Last block fully written to Postgres (-1 before the first)",
            value=-1 if status.cursor is None else status.cursor,
        )
        yield GaugeMetricFamily(
            "cairn_mirror_up",
            "1 while the mirror is connected to Postgres",
            value=1 if status.connected else 0,
        )
        blocks = CounterMetricFamily(
            "cairn_mirror_blocks_written", "Blocks written to Postgres since start"
        )
        blocks.add_metric([], status.blocks_written)
        yield blocks
        rows = CounterMetricFamily(
            "cairn_mirror_rows_written", "Rows written to Postgres since start", labels=["table"]
        )
        for table, count in sorted(status.rows_written.items()):
            rows.add_metric([table], count)
        yield rows
        errors = CounterMetricFamily(
            "cairn_mirror_errors", "Failed connects or writes since start (each retried)"
        )
        errors.add_metric([], status.errors_total)
        yield errors
        yield GaugeMetricFamily(
            "cairn_mirror_last_error_timestamp_seconds",
            "Unix time of the last mirror error (0 if none)",
            value=status.last_error_at or 0,
        )
        yield InfoMetricFamily(
            "cairn_mirror_last_error",
            "The last mirror error message (empty if none)",
            value={"message": (status.last_error or "")[:300]},
        )
        yield GaugeMetricFamily(
            "cairn_mirror_catchup_blocks_per_second",
            "Blocks per second of the latest COPY catch-up",
            value=status.catchup_blocks_per_second,
        )
        yield GaugeMetricFamily(
            "cairn_mirror_catchup_rows_per_second",
            "Rows per second of the latest COPY catch-up",
            value=status.catchup_rows_per_second,
        )
