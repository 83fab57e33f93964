"""Validator networks (a measurement, not a test): prints one JSON object.

For 4 and 7 validators on loopback (BFT, block period 1 s, empty blocks on), each validator a
real `cairn run` process:
1. Block period: the wall time between consecutive heads seen on one validator, and the
   timestamp step, over `--period-blocks` blocks with no load.
2. Submission to finality: transfers at `--rate` per second for `--finality-seconds`, spread
   over the validators; for each, the time from its submission to the moment its block is
   the head of the validator it was sent to (a committed block is final: no reorgs).
3. Throughput at 30M gas: `--flood` pre-signed transfers sent as fast as the validators take
   them; transactions per second from the first submission to the last inclusion, beside
   `cairn dev --block-time 1` and `anvil --block-time 1` given the same transfers in the same
   run (the ratio to Anvil is reported).
4. Recovery: f + 1 validators killed (-9), the rest stall; they are restarted, and the time
   from the last one serving RPC to the next block is measured.
CPU per validator is each process's user + system time over the load phases, as a share of
one core.

Run: .venv/bin/python -m bench.bench_validators [--sizes 4,7]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from eth_utils import keccak

from bench.bench_p2p import BlockWatcher
from bench.harness import Target
from tests.support import rpc
from tests.support.chain import transfer
from tests.support.net import head
from tests.support.proc import NodeProcess
from tests.support.validator_net import ValidatorNet
from tests.support.wait import wait_until

SENDERS = 10
CLOCK_TICKS = 100  # os.sysconf("SC_CLK_TCK") on Linux


def _cpu_seconds(node: NodeProcess) -> float:
    assert node.proc is not None
    fields = Path(f"/proc/{node.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def _period(node: NodeProcess, blocks: int) -> dict[str, Any]:
    seen: list[tuple[int, float]] = []
    number = head(node)[0]
    while len(seen) < blocks + 1:
        now_number = int(rpc.call(node.url, "eth_blockNumber", timeout=5), 16)
        if now_number > number:
            number = now_number
            seen.append((number, time.monotonic()))
        time.sleep(0.01)
    gaps = [(t2 - t1) / (n2 - n1) for (n1, t1), (n2, t2) in itertools.pairwise(seen)]
    first, last = seen[0][0], seen[-1][0]
    stamps = [
        int(rpc.call(node.url, "eth_getBlockByNumber", hex(n), False)["timestamp"], 16)
        for n in range(first, last + 1)
    ]
    steps = [b - a for a, b in itertools.pairwise(stamps)]
    return {
        "blocks": last - first,
        "interval_mean_s": round(statistics.fmean(gaps), 3),
        "interval_p50_s": round(_percentile(gaps, 0.5), 3),
        "interval_p99_s": round(_percentile(gaps, 0.99), 3),
        "timestamp_step_mean_s": round(statistics.fmean(steps), 3),
    }


def _finality(net: ValidatorNet, rate: float, seconds: float, nonces: list[int]) -> dict[str, Any]:
    nodes = list(net.validators.values())
    watchers = {id(n): BlockWatcher(n) for n in nodes}
    for watcher in watchers.values():
        watcher.start()
    sent: list[tuple[str, float, int]] = []
    started = time.monotonic()
    count = int(rate * seconds)
    for i in range(count):
        target = started + i / rate
        delay = target - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        sender = i % SENDERS
        node = nodes[i % len(nodes)]
        raw = transfer(sender, nonces[sender])
        nonces[sender] += 1
        tx_hash = rpc.call(node.url, "eth_sendRawTransaction", "0x" + raw.hex())
        sent.append((str(tx_hash), time.monotonic(), id(node)))
    wait_until(
        lambda: all(h in watchers[n].seen for h, _, n in sent),
        timeout=120,
        interval=0.2,
        message="every transfer final",
    )
    for watcher in watchers.values():
        watcher.stop.set()
    latencies = [watchers[n].seen[h] - t for h, t, n in sent]
    return {
        "transfers": count,
        "rate_per_s": rate,
        "p50_ms": round(_percentile(latencies, 0.5) * 1000, 1),
        "p99_ms": round(_percentile(latencies, 0.99) * 1000, 1),
        "max_ms": round(max(latencies) * 1000, 1),
    }


def _block_number(url: str) -> int:
    return int(str(rpc.call(url, "eth_blockNumber", timeout=10)), 16)


def _flood(urls: list[str], raws: list[bytes]) -> dict[str, Any]:
    start_head = _block_number(urls[0])
    started = time.monotonic()
    batch = 200
    for i in range(0, len(raws), batch):
        url = urls[(i // batch) % len(urls)]
        body = [
            {
                "jsonrpc": "2.0",
                "id": j,
                "method": "eth_sendRawTransaction",
                "params": ["0x" + r.hex()],
            }
            for j, r in enumerate(raws[i : i + batch])
        ]
        rpc.post(url, body, timeout=120)
    last = "0x" + keccak(raws[-1]).hex()
    wait_until(
        lambda: rpc.call(urls[0], "eth_getTransactionReceipt", last) is not None,
        timeout=600,
        interval=0.2,
        message="the last transfer mined",
    )
    elapsed = time.monotonic() - started
    blocks = _block_number(urls[0]) - start_head
    return {
        "transfers": len(raws),
        "seconds": round(elapsed, 2),
        "tx_per_s": round(len(raws) / elapsed, 1),
        "blocks": blocks,
    }


def _recovery(net: ValidatorNet) -> dict[str, Any]:
    n = net.n
    down = list(range(n - (n - 1) // 3 - 1, n))  # f + 1 validators: quorum lost
    for i in down:
        net.validators[i].kill9()
    alive = [net.validators[i] for i in range(n) if i not in down]
    wait_until(
        lambda: all(int(n.call("cairn_consensusStatus")["stalled"]) >= 3 for n in alive),  # type: ignore[index]
        timeout=120,
        interval=0.5,
        message="the rest to stall",
    )
    halted = head(alive[0])[0]
    for i in down:
        net.start_validator(i, wait=False)
    for i in down:
        net.validators[i].wait_ready(180)
    back = time.monotonic()
    wait_until(lambda: head(alive[0])[0] > halted, timeout=120, interval=0.05, message="a block")
    return {"killed": len(down), "seconds_to_next_block": round(time.monotonic() - back, 2)}


def measure(size: int, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, ValidatorNet(Path(tmp), size, block_time=1.0) as net:
        net.start_all()
        net.wait_height(2, timeout=300)
        nodes = list(net.validators.values())
        result: dict[str, Any] = {"validators": size}
        result["period"] = _period(nodes[0], args.period_blocks)
        nonces = [0] * SENDERS
        cpu_before = [_cpu_seconds(n) for n in nodes]
        wall = time.monotonic()
        result["finality"] = _finality(net, args.rate, args.finality_seconds, nonces)
        raws = []
        for i in range(args.flood):
            sender = i % SENDERS
            raws.append(transfer(sender, nonces[sender]))
            nonces[sender] += 1
        result["throughput_30m"] = _flood([n.url for n in nodes], raws)
        wall = time.monotonic() - wall
        cpu = [(_cpu_seconds(n) - b) / wall * 100 for n, b in zip(nodes, cpu_before, strict=True)]
        result["cpu_percent_of_a_core"] = {
            "mean": round(statistics.fmean(cpu), 1),
            "max": round(max(cpu), 1),
        }
        result["recovery"] = _recovery(net)
        return result


def single_node_throughput(name: str, raws: list[bytes]) -> dict[str, Any]:
    """The same transfers into one node with a 1 s block time: `cairn dev` or `anvil`."""
    target = Target(name, block_time=1.0)
    target.start()
    try:
        return _flood([target.url], raws)
    finally:
        target.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="4,7")
    parser.add_argument("--period-blocks", type=int, default=20)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--finality-seconds", type=float, default=20.0)
    parser.add_argument("--flood", type=int, default=5000)
    args = parser.parse_args()
    report: dict[str, Any] = {
        "config": vars(args),
        "networks": [],
        "load_average_at_start": list(os.getloadavg()),
    }
    for size in (int(s) for s in args.sizes.split(",")):
        print(f"[bench] {size} validators ...", flush=True)
        started = time.monotonic()
        try:
            report["networks"].append(measure(size, args))
        except TimeoutError as exc:  # a network that did not get there: say so, go on
            first_line = str(exc).splitlines()[0]
            report.setdefault("failed", []).append({"validators": size, "error": first_line})
            print(f"[bench] {size} validators failed: {first_line}", flush=True)
        print(f"[bench] {size} validators: {time.monotonic() - started:.0f}s", flush=True)
    raws = [transfer(i % SENDERS, i // SENDERS) for i in range(args.flood)]
    for name in ("cairn", "anvil"):
        print(f"[bench] {name} as one node, the same transfers ...", flush=True)
        report[f"{name}_single_node_throughput_30m"] = single_node_throughput(name, raws)
    anvil = report["anvil_single_node_throughput_30m"]["tx_per_s"]
    for network in report["networks"]:
        network["throughput_ratio_to_anvil"] = round(
            network["throughput_30m"]["tx_per_s"] / anvil, 3
        )
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
