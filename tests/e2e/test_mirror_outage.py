"""Postgres stopped for 30 s while a client keeps sending transactions: the node keeps making
blocks and answering RPC, reports the outage on /health/database and /metrics, and the mirror
catches up after the restart with nothing missing and nothing twice."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tests.support.mirror import (
    Load,
    assert_no_gap_no_duplicate,
    batch_call,
    head,
    health,
    metric,
    wait_mirrored,
)
from tests.support.postgres import PostgresServer
from tests.support.proc import NodeProcess, run_cli
from tests.support.wait import wait_until

OUTAGE_SECONDS = 30.0


def cursor_of(node: NodeProcess) -> int:
    cursor = health(node)[1]["cursor"]
    return -1 if cursor is None else int(cursor)


def test_postgres_outage_under_load(
    tmp_path: Path, mirror_db: str, postgres: PostgresServer
) -> None:
    db = mirror_db.rsplit("/", 1)[1]
    node = NodeProcess(tmp_path / "dev", "dev", "--mirror.url", mirror_db).start()
    load = Load(node.url, range(6, 8), rate=80)
    try:
        load.start()
        wait_until(lambda: cursor_of(node) >= 5, timeout=60, message="mirroring")
        postgres.stop("fast")
        stopped_at = time.monotonic()
        head_at_stop = head(node)

        # The outage is noticed and reported...
        def unreachable() -> dict[str, Any] | None:
            code, body = health(node)
            return body if code == 503 else None

        body = wait_until(unreachable, timeout=20, message="/health/database to report 503")
        assert body["status"] == "unavailable", body["lastError"]
        assert "Postgres unavailable" in body["lastError"]
        assert metric(node, "cairn_mirror_up") == 0

        # ...while blocks keep coming and RPC answers, for the whole outage.
        heads = [head_at_stop]
        while time.monotonic() - stopped_at < OUTAGE_SECONDS:
            wait_until(lambda: head(node) > heads[-1], timeout=10, message="a new block")
            heads.append(head(node))
        assert load.is_alive(), load.errors
        outage_head = head(node)
        assert outage_head > head_at_stop + 20
        lag = metric(node, "cairn_mirror_lag_blocks")
        assert lag is not None and lag >= outage_head - head_at_stop - 5
        assert health(node)[0] == 503

        postgres.start()
        # It catches up while the load goes on (COPY, the backlog is past the threshold).
        wait_until(
            lambda: cursor_of(node) >= outage_head,
            timeout=90,
            interval=0.2,
            message="the mirror to pass the outage's head",
        )
        load.stop()
        assert not load.errors, load.errors

        def all_mined() -> list[Any] | None:
            calls = [("eth_getTransactionReceipt", [h]) for h in load.accepted]
            receipts = batch_call(node.url, calls)
            return receipts if all(r is not None for r in receipts) else None

        receipts = wait_until(all_mined, timeout=60, message="every accepted transaction mined")
        final = wait_mirrored(node)
        assert final["status"] == "streaming"
        assert (metric(node, "cairn_mirror_errors_total") or 0) >= 1
        assert metric(node, "cairn_mirror_lag_blocks") == 0
        log = node.log_path.read_text()
        assert "Postgres unavailable" in log and "retrying in" in log
        assert "catching up with COPY batches" in log
    finally:
        load.stop()
        node.stop()
    cursor = assert_no_gap_no_duplicate(postgres, db)
    assert cursor == final["head"]
    mirrored = int(postgres.psql("SELECT count(*) FROM transactions", db))
    assert mirrored == len(load.accepted) == len(receipts)
    verified = run_cli("mirror", "verify", "--datadir", str(tmp_path / "dev"),
                       "--mirror.url", mirror_db, timeout=300)  # fmt: skip
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.strip().splitlines()[-1].startswith("0 differences")
