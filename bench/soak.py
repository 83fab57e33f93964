"""Soak: resident memory under a sustained stream of transfers (issue 18), Cairn beside Anvil.

Each target (`cairn dev --block-time 1`, then `anvil --block-time 1`, same chain id, keys and
gas limit) gets the same pre-signed EIP-1559 transfers from the 10 dev keys, offered at a
steady rate (default 700/s) over HTTP `eth_sendRawTransaction` (JSON-RPC batches sent every
100 ms), while a follower asks, once a second, for the receipt of a transaction sent two
seconds before (as a client waiting for its transactions does: every new block is read once).
The resident memory of the node process and of its worker processes is sampled every second.

After warm-up (the first fifth of the transfers) memory must stay within a fixed band: the
report gives the band (min..max after warm-up) and the slope of a least-squares line through
the samples, in MiB per 100,000 transactions. Bounded and loopback only; a memory watchdog
stops a target past 6 GiB. Writes `soak` into bench/results/latest.json, re-renders
docs/benchmarks.md and docs/img/soak_rss.png.

Run: .venv/bin/python -m bench.soak [--transfers 300000] [--rate 700] [--skip-anvil]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import threading
import time
import urllib.request
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from eth_utils import keccak

from bench.harness import CHAIN_ID, DEAD, REPO, Client, Target, environment, keys
from bench.report import write_report
from bench.run import RESULTS, _memory_watchdog
from tests.support.wallet import sign_range

SENDERS = 10
GAS_LIMIT = 30_000_000
TICK_SECONDS = 0.1  # one batch of rate/10 transactions per tick
IN_FLIGHT = 16  # batches sent and not yet answered; past it the sender waits (and says so)
RESEND_ATTEMPTS = 3
POOL_FULL_RETRIES = 300
WARM_UP_FRACTION = 0.2
# A fee cap far above what the base fee reaches: when the node falls behind, its blocks are
# full and the base fee rises 12.5% a block (100 gwei was passed after ~250,000 transfers);
# a transfer refused for its fee leaves a nonce gap that queues all that follow it.
MAX_FEE = 10_000 * 10**9
TIP = 10**9


# ---------------------------------------------------------------- signing
def _sign_sender(args: tuple[bytes, int, int]) -> list[bytes]:
    key, first, count = args
    return sign_range(key, first, count, to=DEAD, max_fee=MAX_FEE, tip=TIP, chain_id=CHAIN_ID)


def presign(total: int) -> list[str]:
    """`total` transfers, round-robin over the senders so each sender's nonces arrive in order."""
    per_sender = -(-total // SENDERS)
    with ProcessPoolExecutor(max_workers=2) as pool:
        chunks = list(pool.map(_sign_sender, [(k, 0, per_sender) for k in keys(SENDERS)]))
    return ["0x" + chunks[s][i].hex() for i in range(per_sender) for s in range(SENDERS)][:total]


# ---------------------------------------------------------------- one target
@dataclass
class Samples:
    """Per second: seconds since the first send, transactions accepted, RSS of the node and
    of its workers (MiB). Every 30 s, Cairn's own figures of its bounded structures (/metrics
    cairn_memory_bytes, MiB)."""

    rows: list[tuple[float, int, float, float]] = field(default_factory=list)
    structures: list[tuple[float, int, dict[str, float]]] = field(default_factory=list)


def _structures(url: str) -> dict[str, float]:
    """cairn_memory_bytes by structure, in MiB, from the node's /metrics (Cairn only)."""
    found: dict[str, float] = {}
    try:
        with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
            text = response.read().decode()
    except OSError:
        return found
    for line in text.splitlines():
        if line.startswith('cairn_memory_bytes{structure="'):
            name = line.split('"')[1]
            found[name] = round(float(line.rsplit(" ", 1)[1]) / 2**20, 2)
    return found


async def _offer(
    client: Client,
    raws: list[str],
    rate: float,
    progress: list[int],
    errors: list[str],
    resent: list[int],
    waited: list[int],
) -> None:
    per_tick = max(1, round(rate * TICK_SECONDS))
    batches = [raws[i : i + per_tick] for i in range(0, len(raws), per_tick)]
    in_flight: set[asyncio.Task[None]] = set()
    started = time.monotonic()
    failed: list[BaseException] = []

    def finished(task: asyncio.Task[None]) -> None:
        in_flight.discard(task)
        error = None if task.cancelled() else task.exception()
        if error is not None:
            failed.append(error)

    async def post(batch: list[str]) -> list[Any]:
        # A batch whose connection failed is sent again: the transactions it delivered are
        # refused as "already known" then (and counted as accepted).
        for attempt in range(RESEND_ATTEMPTS):
            try:
                return await client.batch([("eth_sendRawTransaction", [r]) for r in batch])
            except (aiohttp.ClientError, RuntimeError) as exc:
                resent[0] += 1
                if attempt == RESEND_ATTEMPTS - 1:
                    raise RuntimeError(f"a batch failed {RESEND_ATTEMPTS} times: {exc}") from exc
        raise AssertionError("unreachable")

    async def send(batch: list[str]) -> None:
        # Transactions refused because the pool is full are offered again a second later, as
        # a client would: each one refused for good would leave a nonce gap behind which every
        # later transaction of its sender waits. Meanwhile the batch holds its in-flight slot,
        # so a node that falls behind slows the offer down.
        waiting = batch
        for _ in range(POOL_FULL_RETRIES):
            again = []
            for raw, answer in zip(waiting, await post(waiting), strict=True):
                message = answer.get("message", "") if isinstance(answer, dict) else ""
                if isinstance(answer, str) or message == "already known":
                    progress[0] += 1
                elif message.startswith(("txpool is full", "account limit exceeded")):
                    again.append(raw)
                elif len(errors) < 1000:
                    errors.append(str(answer)[:200])
            if not again:
                return
            waited[0] += len(again)
            waiting = again
            await asyncio.sleep(1.0)
        errors.extend(f"pool still full after {POOL_FULL_RETRIES} s" for _ in waiting)

    for n, batch in enumerate(batches):
        delay = started + n * TICK_SECONDS - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        while len(in_flight) >= IN_FLIGHT:  # the node is behind: the offered rate drops
            await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
        if failed:
            raise failed[0]
        task = asyncio.create_task(send(batch))
        in_flight.add(task)
        task.add_done_callback(finished)
    if in_flight:
        await asyncio.gather(*in_flight)


async def _follow(
    client: Client, raws: list[str], progress: list[int], stop: asyncio.Event
) -> None:
    """Once a second, the receipt of a transaction accepted ~2 s before."""
    lagged: list[int] = [0, 0]
    while not stop.is_set():
        lagged = [lagged[1], progress[0]]
        if lagged[0]:
            tx_hash = "0x" + keccak(bytes.fromhex(raws[lagged[0] - 1][2:])).hex()
            # a follower's miss is not a figure; the next second asks again
            with contextlib.suppress(RuntimeError, aiohttp.ClientError):
                await client.call("eth_getTransactionReceipt", tx_hash)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=1.0)


def _sample(target: Target, samples: Samples, progress: list[int], stop: threading.Event) -> None:
    started = time.monotonic()
    while not stop.is_set() and target.proc is not None and target.proc.poll() is None:
        row = (
            round(time.monotonic() - started, 1),
            progress[0],
            round(target.rss_mib(), 1),
            round(target.workers_rss_mib(), 1),
        )
        samples.rows.append(row)
        if target.name == "cairn" and len(samples.rows) % 30 == 1:
            samples.structures.append((row[0], row[1], _structures(target.url)))
        if len(samples.rows) % 30 == 0:
            print(
                f"[soak] {target.name} {row[0]:.0f} s: {row[1]:,} accepted, RSS {row[2]} MiB "
                f"(+{row[3]} MiB workers)",
                flush=True,
            )
        stop.wait(1.0)


async def _drain(client: Client, raws: list[str], limit: float) -> float:
    """Wait (bounded) for the last transfer's receipt; return the seconds it took."""
    last = "0x" + keccak(bytes.fromhex(raws[-1][2:])).hex()
    begun = time.monotonic()
    while time.monotonic() - begun < limit:
        if await client.call("eth_getTransactionReceipt", last):
            break
        await asyncio.sleep(0.5)
    return round(time.monotonic() - begun, 1)


def soak_target(name: str, raws: list[str], rate: float, extra: list[str]) -> dict[str, Any]:
    target = Target(name, block_time=1.0, gas_limit=GAS_LIMIT, accounts=SENDERS, argv_extra=extra)
    out: dict[str, Any] = {"argv_extra": extra}
    samples = Samples()
    progress = [0]
    resent = [0]
    waited = [0]
    errors: list[str] = []
    stop_sampling = threading.Event()
    watchdog = threading.Thread(target=_memory_watchdog, args=(target, out), daemon=True)
    sampler = threading.Thread(
        target=_sample, args=(target, samples, progress, stop_sampling), daemon=True
    )
    try:
        out["start_seconds"] = round(target.start(), 3)
        out["rss_mib_at_rest"] = round(target.rss_mib(), 1)
        out["workers_rss_mib_at_rest"] = round(target.workers_rss_mib(), 1)
        watchdog.start()
        sampler.start()

        async def go() -> None:
            client = Client(target.url, connections=IN_FLIGHT + 2)
            stop = asyncio.Event()
            follower = asyncio.create_task(_follow(client, raws, progress, stop))
            try:
                begun = time.monotonic()
                await _offer(client, raws, rate, progress, errors, resent, waited)
                out["offer_seconds"] = round(time.monotonic() - begun, 1)
                out["drain_seconds"] = await _drain(client, raws, 600)
            finally:
                stop.set()
                await follower
                await client.close()

        try:
            asyncio.run(go())
        except (TimeoutError, RuntimeError, aiohttp.ClientError) as exc:
            reason = out.pop("killed", None) or f"{type(exc).__name__}: {exc}"
            out["failed"] = reason[:300]
            print(f"[soak] {name} failed: {out['failed']}", flush=True)
    finally:
        stop_sampling.set()
        sampler.join(timeout=5)
        target.cleanup()
    out["accepted"] = progress[0]
    out["refused"] = len(errors)
    out["batches_resent"] = resent[0]
    out["offered_again_pool_full"] = waited[0]
    out["refusals_first"] = errors[:3]
    out["offered_tx_per_s"] = rate
    if out.get("offer_seconds"):
        out["accepted_tx_per_s"] = round(progress[0] / out["offer_seconds"], 1)
    out["samples"] = samples.rows
    if samples.structures:
        out["structures_mib"] = samples.structures
    out.update(summarize(samples.rows, len(raws)))
    return out


def summarize(rows: list[tuple[float, int, float, float]], total: int) -> dict[str, Any]:
    """The band (min..max) and least-squares slope of RSS after warm-up."""
    after = [r for r in rows if r[1] >= WARM_UP_FRACTION * total]
    if len(after) < 3:
        return {}
    result: dict[str, Any] = {}
    for label, column in (("node", 2), ("workers", 3)):
        values = [r[column] for r in after]
        xs = [r[1] for r in after]
        mean_x, mean_y = sum(xs) / len(xs), sum(values) / len(values)
        spread = sum((x - mean_x) ** 2 for x in xs)
        slope = (
            sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, values, strict=True)) / spread
            if spread
            else 0.0
        )
        result[f"{label}_rss_mib_band"] = [min(values), max(values)]
        result[f"{label}_rss_mib_per_100k_tx"] = round(slope * 100_000, 2)
        result[f"{label}_rss_mib_final"] = values[-1]
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--transfers", type=int, default=300_000)
    parser.add_argument("--rate", type=float, default=700.0, help="offered transfers per second")
    parser.add_argument("--skip-anvil", action="store_true")
    parser.add_argument(
        "--cairn-arg", action="append", default=[], help="extra argument for `cairn dev`"
    )
    args = parser.parse_args()
    print(f"[soak] signing {args.transfers:,} transfers ...", flush=True)
    raws = presign(args.transfers)
    result: dict[str, Any] = {
        "environment": environment(),
        "transfers": args.transfers,
        "offered_tx_per_s": args.rate,
        "senders": SENDERS,
        "warm_up_fraction": WARM_UP_FRACTION,
    }
    names = ["cairn"] if args.skip_anvil else ["cairn", "anvil"]
    for name in names:
        print(f"[soak] {name}: {args.transfers:,} transfers at {args.rate:g}/s ...", flush=True)
        extra = args.cairn_arg if name == "cairn" else []
        result[name] = soak_target(name, raws, args.rate, extra)
        summary = {k: v for k, v in result[name].items() if k not in ("samples", "structures_mib")}
        summary["structures_mib_last"] = result[name].get("structures_mib", [[0, 0, {}]])[-1][2]
        print(json.dumps(summary), flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "latest.json"
    report = json.loads(path.read_text()) if path.exists() else {}
    report["soak"] = result
    path.write_text(json.dumps(report, indent=2) + "\n")
    if "modes" in report:
        write_report(report, REPO / "docs" / "benchmarks.md", REPO / "docs" / "img")
    print(f"[soak] wrote {path} and docs/benchmarks.md", flush=True)


if __name__ == "__main__":
    main()
