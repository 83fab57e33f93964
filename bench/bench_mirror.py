"""Mirror benchmark (a measurement, not a test): prints one JSON object.

1. Lag under load: a real `cairn dev --mirror.url` node on a real Postgres gets pre-signed
   transfers offered at `--rate` tx/s (JSON-RPC batches) for `--seconds`; the mirror's lag
   (head - cursor, in blocks, from /metrics) is sampled throughout. Reported next to what the
   node actually mined per second, so a node that cannot sustain the offered rate says so.
   The same load is first offered to a node without a mirror, to show what the mirror costs.
2. Catch-up: the same datadir, a fresh empty database: how fast the mirror's COPY catch-up
   runs (blocks/s, rows/s) over the blocks made in step 1 (large blocks), and over a chain of
   2,000 one-transaction blocks (small blocks), via `cairn mirror rebuild --datadir`.

Run: .venv/bin/python -m bench.bench_mirror [--rate 1000] [--seconds 30]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from eth_account import Account

from cairn.genesis.dev import dev_accounts, dev_genesis
from cairn.genesis.parse import genesis_to_json
from tests.support import rpc
from tests.support.chain import mine, open_chain, transfer
from tests.support.mirror import batch_call, metric, send_batch
from tests.support.postgres import PostgresServer
from tests.support.proc import NodeProcess, run_cli
from tests.support.wait import wait_until

SENDERS = 50
CLIENTS = 5  # concurrent JSON-RPC clients offering the load
RECIPIENT = "0x000000000000000000000000000000000000bEEF"


def _sign_range(args: tuple[int, int, int]) -> list[bytes]:
    sender, first_nonce, count = args
    key = dev_accounts(SENDERS)[sender].private_key
    out = []
    for nonce in range(first_nonce, first_nonce + count):
        fields = {
            "type": 2,
            "chainId": 31337,
            "nonce": nonce,
            "to": RECIPIENT,
            "value": 1,
            "gas": 21_000,
            "maxFeePerGas": 50 * 10**9,
            "maxPriorityFeePerGas": 10**9,
        }
        out.append(bytes(Account.sign_transaction(fields, key).raw_transaction))
    return out


def presign(total: int) -> list[bytes]:
    """`total` transfers, interleaved across senders so nonces arrive in order."""
    per_sender = -(-total // SENDERS)
    with ProcessPoolExecutor(max_workers=2) as pool:
        chunks = list(pool.map(_sign_range, [(s, 0, per_sender) for s in range(SENDERS)]))
    return [chunks[s][i] for i in range(per_sender) for s in range(SENDERS)][:total]


def lag_now(node: NodeProcess) -> float | None:
    return metric(node, "cairn_mirror_lag_blocks")


def offer_load(
    node: NodeProcess, raws: list[bytes], rate: float, batch: int, mirrored: bool
) -> dict[str, Any]:
    """Send `raws` at `rate` tx/s from several client threads; sample the mirror's lag."""
    lags: list[float] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            value = lag_now(node)
            if value is not None:
                lags.append(value)
            stop.wait(0.25)

    # Each client thread owns whole senders, so every sender's nonces arrive in order.
    streams: list[list[bytes]] = [raws[c::CLIENTS] for c in range(CLIENTS)]
    rejected: list[str] = []

    def client(stream: list[bytes]) -> None:
        own_rate = rate / CLIENTS
        begun = time.monotonic()
        for i in range(0, len(stream), batch):
            chunk = stream[i : i + batch]
            try:
                send_batch(node.url, chunk)
            except rpc.RpcFailure as exc:
                rejected.append(exc.message)
            ahead = (i + len(chunk)) / own_rate - (time.monotonic() - begun)
            if ahead > 0:
                stop.wait(ahead)

    sampler = threading.Thread(target=sample, daemon=True)
    clients = [threading.Thread(target=client, args=(s,), daemon=True) for s in streams]
    start_head = int(str(node.call("eth_blockNumber")), 16)
    started = time.monotonic()
    if mirrored:
        sampler.start()
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join()
    offered_for = time.monotonic() - started
    end_head = int(str(node.call("eth_blockNumber")), 16)
    blocks = batch_call(
        node.url,
        [("eth_getBlockByNumber", [hex(n), False]) for n in range(start_head + 1, end_head + 1)],
    )
    mined = sum(len(b["transactions"]) for b in blocks)
    drain_start = time.monotonic()
    wait_until(lambda: _pool_empty(node), timeout=900, interval=0.5, message="the pool to drain")
    result: dict[str, Any] = {
        "offered_tx_per_s": round(len(raws) / offered_for, 1),
        "offered_seconds": round(offered_for, 1),
        "mined_tx_per_s_while_offered": round(mined / offered_for, 1),
        "rejected_batches": len(rejected),
        "blocks_while_offered": end_head - start_head,
        "pool_drain_seconds": round(time.monotonic() - drain_start, 1),
    }
    if mirrored:
        wait_until(lambda: lag_now(node) == 0, timeout=900, interval=0.25, message="lag 0")
        stop.set()
        sampler.join()
        ordered = sorted(lags) or [0.0]
        result.update(
            {
                "mirror_lag_blocks_p50": statistics.median(ordered),
                "mirror_lag_blocks_p95": ordered[int(0.95 * (len(ordered) - 1))],
                "mirror_lag_blocks_max": ordered[-1],
                "mirror_lag_samples": len(lags),
                "mirror_lag_zero_seconds_after_pool_drained": max(
                    0.0, round(time.monotonic() - drain_start - result["pool_drain_seconds"], 1)
                ),
            }
        )
    return result


def _pool_empty(node: NodeProcess) -> bool:
    status = json.loads(_get(node.url + "/status"))
    pending, queued = status["txpool"]["pending"], status["txpool"]["queued"]
    return bool(pending == 0 and queued == 0)


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


_CAUGHT_UP = re.compile(
    r"caught up to #(\d+): (\d+) blocks, (\d+) rows in ([\d.]+)s "
    r"\(([\d.]+) blocks/s, ([\d.]+) rows/s\)"
)


def catch_up(pg: PostgresServer, datadir: Path, name: str) -> dict[str, Any]:
    """COPY catch-up of the whole chain in `datadir` into an empty database, as
    `cairn mirror rebuild --datadir` does it (the same code path as a node far behind)."""
    url = pg.create_database(name)
    result = run_cli(
        "mirror", "rebuild", "--datadir", str(datadir), "--mirror.url", url, "--yes",
        timeout=1800,
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(result.stderr)
    match = _CAUGHT_UP.search(result.stderr)
    if match is None:
        raise RuntimeError(f"no catch-up summary in the log:\n{result.stderr[-2000:]}")
    _, blocks, rows, seconds, blocks_per_s, rows_per_s = match.groups()
    return {
        "blocks": int(blocks),
        "rows": int(rows),
        "transactions": int(pg.psql("SELECT count(*) FROM transactions", name)),
        "seconds": float(seconds),
        "blocks_per_s": float(blocks_per_s),
        "rows_per_s": float(rows_per_s),
    }


def small_block_chain(root: Path, blocks: int) -> Path:
    datadir = root / "small"
    genesis = dev_genesis()
    with open_chain(datadir, genesis) as chain:
        nonces = [0] * 10
        for n in range(blocks):
            sender = n % 10
            mine(chain, [transfer(sender, nonces[sender], value=n + 1)])
            nonces[sender] += 1
    (datadir / "genesis.json").write_text(json.dumps(genesis_to_json(genesis)))
    return datadir


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=1000.0, help="offered tx/s")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long to offer load")
    parser.add_argument("--batch", type=int, default=100, help="transactions per RPC batch")
    parser.add_argument("--small-blocks", type=int, default=2000)
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="cairn-bench-mirror-"))
    pg = PostgresServer().start()
    result: dict[str, Any] = {"machine_cores": _cores()}
    try:
        total = int(args.rate * args.seconds)
        signing = time.monotonic()
        raws = presign(total)
        result["presigned"] = {"transactions": total, "seconds": round(time.monotonic() - signing)}

        # The same offered load without and with the mirror, on fresh datadirs.
        plain = NodeProcess(root / "plain", "dev", "--accounts", str(SENDERS)).start()
        try:
            result["load_without_mirror"] = offer_load(plain, raws, args.rate, args.batch, False)
        finally:
            plain.stop()
        url = pg.create_database("load")
        datadir = root / "load"
        node = NodeProcess(datadir, "dev", "--mirror.url", url, "--accounts", str(SENDERS))
        node.start()
        try:
            result["load_with_mirror"] = offer_load(node, raws, args.rate, args.batch, True)
        finally:
            node.stop()
        result["catch_up_large_blocks"] = catch_up(pg, datadir, "catchup_large")
        small = small_block_chain(root, args.small_blocks)
        result["catch_up_small_blocks"] = catch_up(pg, small, "catchup_small")
    finally:
        pg.destroy()
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(result, indent=2))
    return 0


def _cores() -> int:
    return os.cpu_count() or 0


if __name__ == "__main__":
    sys.exit(main())
