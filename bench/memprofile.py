"""Where a node's memory goes under load: tracemalloc snapshots diffed between rounds, per
component (issue 18's method, kept to re-run it).

A `cairn dev --block-time 1` node runs in this process with tracemalloc on; a client process
sends rounds of pre-signed transfers from the 10 dev keys and, once a second, asks for the
receipt of a recent one (so every block is read once). After each round the pool is let to
empty, the garbage collector runs, and a snapshot is taken. The growth between rounds is
attributed to the innermost Cairn module on each allocation's traceback (or, if none, to the
library that allocated), and printed per transfer, beside the node's own figures of its
bounded structures (`cairn_memory_bytes`). Rounds after the first show what still grows.

Run: .venv/bin/python -m bench.memprofile [--rounds 5] [--per-round 15000] [--rate 500]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import pickle
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from dataclasses import replace
from pathlib import Path

from bench.harness import DEAD, REPO, Client, keys
from cairn.node.service import Node
from tests.support.chain import dev_node_settings
from tests.support.wallet import sign_range

FRAMES = 30


def component(trace: tracemalloc.Trace) -> str:
    """The innermost Cairn module on the traceback, else the allocating library."""
    library = "other"
    for frame in trace.traceback:  # most recent call first
        path = frame.filename
        if "/cairn/" in path and "site-packages" not in path:
            parts = path.split("/cairn/", 1)[1].removesuffix(".py").split("/")
            return "cairn." + ".".join(parts)
        if library == "other":
            if "site-packages/" in path:
                library = path.split("site-packages/", 1)[1].split("/", 1)[0]
            elif "/lib/python" in path:
                library = "stdlib"
    return library


def by_component(snapshot: tracemalloc.Snapshot) -> Counter[str]:
    sizes: Counter[str] = Counter()
    for trace in snapshot.traces:
        sizes[component(trace)] += trace.size
    return sizes


def _client(url: str, raws_file: str, rate: float) -> None:
    """The client process: send the transfers in the file at `rate`, following receipts."""
    raws: list[str] = pickle.loads(Path(raws_file).read_bytes())

    async def go() -> None:
        client = Client(url, connections=8)
        per_tick = max(1, int(rate / 10))
        started = time.monotonic()
        last_follow = 0.0
        for n, start in enumerate(range(0, len(raws), per_tick)):
            delay = started + n / 10 - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            batch = raws[start : start + per_tick]
            hashes = await client.batch([("eth_sendRawTransaction", [r]) for r in batch])
            if time.monotonic() - last_follow >= 1.0:
                last_follow = time.monotonic()
                await client.call("eth_getTransactionReceipt", hashes[0])
        await client.close()

    asyncio.run(go())


async def _drained(node: Node) -> None:
    """Until the pool is empty and two more blocks were committed (the last ones read)."""
    committed = asyncio.Event()
    seen: list[int] = []

    def on_block(event: object) -> None:
        seen.append(1)
        if not len(node.pool) and len(seen) >= 2:
            committed.set()

    unsubscribe = node.events.subscribe(on_block)
    try:
        await asyncio.wait_for(committed.wait(), timeout=600)
    finally:
        unsubscribe()


async def profile(rounds: int, per_round: int, rate: float) -> None:
    per_key = -(-rounds * per_round // 10)
    signed = [sign_range(k, 0, per_key, to=DEAD, max_fee=100 * 10**9) for k in keys(10)]
    order = [signed[k][i] for i in range(per_key) for k in range(10)]
    with tempfile.TemporaryDirectory() as tmp:
        settings = replace(dev_node_settings(Path(tmp) / "dev"), block_time=1.0)
        node = Node(settings)
        await node.start()
        url = f"http://127.0.0.1:{node.rpc.bound_ports[0]}/"
        tracemalloc.start(FRAMES)
        previous: Counter[str] | None = None
        try:
            for r in range(rounds):
                chunk = ["0x" + raw.hex() for raw in order[r * per_round : (r + 1) * per_round]]
                path = Path(tmp) / f"round{r}.pickle"
                path.write_bytes(pickle.dumps(chunk))
                del chunk
                client = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "bench.memprofile", "--client", url, str(path),
                    str(rate), cwd=REPO,
                )  # fmt: skip
                await client.wait()
                await _drained(node)
                gc.collect()
                sizes = by_component(tracemalloc.take_snapshot())
                # (getattr: the same script profiles nodes from before these figures existed)
                figures = {f.name: f.bytes for f in getattr(node, "memory_figures", list)()}
                held = ", ".join(f"{k} {v / 2**20:.1f}" for k, v in figures.items() if v)
                traced = sum(sizes.values()) / 2**20
                print(f"\nround {r + 1}: {(r + 1) * per_round:,} transfers; traced {traced:.1f} "
                      f"MiB; structures (MiB): {held}")  # fmt: skip
                if previous is not None:
                    growth = sorted(
                        ((sizes[k] - previous.get(k, 0), k) for k in set(sizes) | set(previous)),
                        reverse=True,
                    )
                    for delta, name in growth[:12]:
                        print(f"  {delta / per_round:+9.1f} B/transfer  {name}")
                previous = sizes
        finally:
            tracemalloc.stop()
            await node.stop()


def main() -> None:
    if sys.argv[1:2] == ["--client"]:
        _client(sys.argv[2], sys.argv[3], float(sys.argv[4]))
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--per-round", type=int, default=15_000)
    parser.add_argument("--rate", type=float, default=500.0, help="offered transfers per second")
    args = parser.parse_args()
    asyncio.run(profile(args.rounds, args.per_round, args.rate))


if __name__ == "__main__":
    main()
