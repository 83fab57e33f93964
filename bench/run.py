"""`make bench`: every workload against Cairn and Anvil in one run, side by side.

Writes bench/results/latest.json, docs/benchmarks.md and docs/img/*.png.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import threading
import time
from typing import Any

import aiohttp

from bench import bench_stages
from bench.harness import REPO, Client, Target, environment, sign_transfers
from bench.report import write_report
from bench.workloads import SENDERS, Erc20Plan, erc20, reads, transfers

RESULTS = REPO / "bench" / "results"
RSS_CAP_MIB = 6 * 1024


def session(
    name: str,
    block_time: float,
    gas_limit: int,
    w1: list[list[str]],
    plan: Erc20Plan | None,
    with_reads: bool,
) -> dict[str, Any]:
    target = Target(name, block_time=block_time, gas_limit=gas_limit, accounts=SENDERS)
    out: dict[str, Any] = {}
    watchdog = threading.Thread(target=_memory_watchdog, args=(target, out), daemon=True)
    try:
        out["start_seconds"] = round(target.start(), 3)
        watchdog.start()

        async def go() -> None:
            client = Client(target.url)
            try:
                out["transfers"] = await transfers(client, target, w1)
                if plan is not None:
                    out["erc20"] = await erc20(client, target, plan)
                    if with_reads:
                        out["reads"] = await reads(client, plan)
            finally:
                await client.close()

        try:
            asyncio.run(go())
        except (TimeoutError, RuntimeError, aiohttp.ClientError) as exc:
            # Anvil's automine can stop answering under a flood; record it, keep going.
            reason = out.pop("killed", None) or f"{type(exc).__name__}: {exc}"
            out["failed"] = reason[:300]
            print(f"[bench] {name} failed: {out['failed']}", flush=True)
        if target.proc is not None and target.proc.poll() is None:
            out["rss_mib_after"] = round(target.rss_mib(), 1)
    finally:
        target.cleanup()
    return out


def _memory_watchdog(target: Target, out: dict[str, Any]) -> None:
    """Stop a target whose memory runs away (Anvil's automine reached 20 GiB under the W1
    flood on a 24 GiB machine); the session then records why it failed."""
    while target.proc is not None and target.proc.poll() is None:
        try:
            rss = target.rss_mib()
        except OSError:
            return
        if rss > RSS_CAP_MIB:
            out["killed"] = f"stopped by the bench: RSS {rss:,.0f} MiB > {RSS_CAP_MIB:,} MiB"
            print(f"[bench] {target.name}: {out['killed']}", flush=True)
            target.proc.kill()
            return
        time.sleep(1.0)


def _save(report: dict[str, Any]) -> None:
    """Written after every step, so a failure late in the run keeps what was measured."""
    (RESULTS / "latest.json").write_text(json.dumps(report, indent=2) + "\n")


# Cairn-only sections, each a module printing one JSON object.
NETWORK_SECTIONS = {
    "p2p": "bench.bench_p2p",
    "mirror": "bench.bench_mirror",
    "validators": "bench.bench_validators",
}


def _run_json(module: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", module], capture_output=True, text=True, cwd=REPO, check=True
    )
    start = out.stdout.index("{")
    result: dict[str, Any] = json.loads(out.stdout[start:])
    return result


def ratio(a: float, b: float) -> float:
    return round(a / b, 3) if b else 0.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--per-sender", type=int, default=100, help="W1 transfers per sender")
    parser.add_argument("--skip-restart", action="store_true")
    parser.add_argument("--restart-blocks", type=int, default=100_000)
    parser.add_argument("--skip-network", action="store_true", help="skip p2p and mirror")
    parser.add_argument(
        "--only-modes",
        action="store_true",
        help="re-run W1-W3 only; keep the other sections of the last latest.json",
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="only re-write docs/benchmarks.md and the plots from the last latest.json",
    )
    parser.add_argument(
        "--only-section",
        choices=sorted(NETWORK_SECTIONS),
        help="re-run one Cairn-only section; keep the rest of the last latest.json",
    )
    args = parser.parse_args()
    if args.only_section:
        last = json.loads((RESULTS / "latest.json").read_text())
        print(f"[bench] {args.only_section} ...", flush=True)
        last[args.only_section] = _run_json(NETWORK_SECTIONS[args.only_section])
        _save(last)
        write_report(last, REPO / "docs" / "benchmarks.md", REPO / "docs" / "img")
        return
    if args.report_only:
        last = json.loads((RESULTS / "latest.json").read_text())
        write_report(last, REPO / "docs" / "benchmarks.md", REPO / "docs" / "img")
        return
    RESULTS.mkdir(parents=True, exist_ok=True)
    started = time.time()
    w1 = sign_transfers(SENDERS, args.per_sender)
    first_nonces = {i: args.per_sender for i in range(SENDERS)}
    plan = Erc20Plan(first_nonces)
    report: dict[str, Any] = {}
    if args.only_modes and (RESULTS / "latest.json").exists():
        report = json.loads((RESULTS / "latest.json").read_text())
    report.update({"environment": environment(), "modes": {}})
    # (label, block time, gas limit, W2 ERC-20, W3 reads). W3 runs where Anvil is stable:
    # under a 10,000-transaction flood its automine stalls or stops answering.
    modes = [
        ("automine, gas limit 30M", 0.0, 30_000_000, True, False),
        ("block time 1 s, gas limit 30M", 1.0, 30_000_000, True, True),
        ("block time 1 s, gas limit 300M", 1.0, 300_000_000, False, False),
    ]
    for label, block_time, gas_limit, with_erc20, with_reads in modes:
        entry: dict[str, Any] = {"block_time": block_time, "gas_limit": gas_limit}
        for name in ("cairn", "anvil"):
            print(f"[bench] {label}: {name} ...", flush=True)
            entry[name] = session(
                name, block_time, gas_limit, w1, plan if with_erc20 else None, with_reads
            )
        for workload in ("transfers", "erc20"):
            c, a = entry["cairn"].get(workload), entry["anvil"].get(workload)
            if c and a:
                entry[f"ratio_{workload}"] = ratio(c["tx_per_s"], a["tx_per_s"])
        report["modes"][label] = entry
        _save(report)
        print(json.dumps({k: v for k, v in entry.items() if k.startswith("ratio")}), flush=True)
    if args.only_modes:
        _save(report)
        write_report(report, REPO / "docs" / "benchmarks.md", REPO / "docs" / "img")
        return
    if not args.skip_restart:
        from bench.restart import restart_benchmark

        print("[bench] restart with a long chain ...", flush=True)
        report["restart"] = restart_benchmark(args.restart_blocks)
        _save(report)
    print("[bench] CPU time per stage of a full block ...", flush=True)
    report["stages"] = bench_stages.run(blocks=4, per_block=1400, profile=False)
    if not args.skip_network:
        # Cairn-only figures (Anvil has no p2p sync or SQL mirror to compare with).
        for name, module in NETWORK_SECTIONS.items():
            print(f"[bench] {name} ...", flush=True)
            report[name] = _run_json(module)
    report["wall_seconds"] = round(time.time() - started, 1)
    _save(report)
    write_report(report, REPO / "docs" / "benchmarks.md", REPO / "docs" / "img")
    print(f"[bench] wrote {RESULTS / 'latest.json'} and docs/benchmarks.md", flush=True)


if __name__ == "__main__":
    main()
