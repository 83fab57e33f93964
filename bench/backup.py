"""`cairn backup` of a running node: seconds to copy a datadir of a given size, and what the
copy costs the node's RPC meanwhile (eth_blockNumber and eth_getBalance latency, p50/p99,
before and during the backup).

Builds the chain in process first (blocks of transfers from the ten dev keys, committed to a
real LevelDB), then serves it with `cairn dev`, asks `cairn backup` and times it from the
node's answer. Prints one JSON line; nothing is asserted.

Run: .venv/bin/python -m bench.backup [--blocks 2000] [--txs 100]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from cairn.genesis.dev import dev_genesis
from cairn.genesis.parse import genesis_to_json
from tests.support.chain import ADDRESSES, mine, open_chain, transfer
from tests.support.proc import NodeProcess
from tests.support.rpc import call


def build_chain(datadir: Path, blocks: int, per_block: int) -> None:
    datadir.mkdir(parents=True)
    (datadir / "genesis.json").write_text(json.dumps(genesis_to_json(dev_genesis())))
    nonces = [0] * 10
    with open_chain(datadir) as chain:
        for _ in range(blocks):
            raws = []
            for i in range(per_block):
                sender = i % 10
                raws.append(transfer(sender, nonces[sender], value=1))
                nonces[sender] += 1
            mine(chain, raws)


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def sample(url: str, seconds: float, stop: threading.Event | None = None) -> list[float]:
    found: list[float] = []
    end = time.monotonic() + seconds
    who = "0x" + ADDRESSES[3].hex()
    while time.monotonic() < end and not (stop is not None and stop.is_set()):
        started = time.perf_counter()
        call(url, "eth_blockNumber")
        call(url, "eth_getBalance", who, "latest")
        found.append((time.perf_counter() - started) / 2 * 1000)
    return found


def quantiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50_ms": round(statistics.median(ordered), 2),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 2),
        "samples": len(ordered),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--blocks", type=int, default=2000)
    parser.add_argument("--txs", type=int, default=100)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="cairn-bench-backup-"))
    try:
        started = time.monotonic()
        build_chain(root / "node", args.blocks, args.txs)
        built = time.monotonic() - started
        node = NodeProcess(root / "node", "dev").start()
        try:
            before = sample(node.url, 5.0)
            during: list[float] = []
            stop = threading.Event()
            sampler = threading.Thread(target=lambda: during.extend(sample(node.url, 600, stop)))
            sampler.start()
            asked = time.monotonic()
            done = subprocess.run(
                [sys.executable, "-m", "cairn", "backup", "--datadir", str(node.datadir),
                 "--out", str(root / "copy")],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            wall = time.monotonic() - asked
            stop.set()
            sampler.join()
        finally:
            node.stop()
        manifest = json.loads((root / "copy" / "BACKUP.json").read_text())
        print(
            json.dumps(
                {
                    "blocks": args.blocks,
                    "transactions": args.blocks * args.txs,
                    "chain_build_s": round(built, 1),
                    "chaindata_mib": round(du(root / "node" / "chaindata") / 2**20, 1),
                    "copy_mib": round(du(root / "copy" / "chaindata") / 2**20, 1),
                    "node_backup_s": manifest["seconds"],
                    "cli_wall_s": round(wall, 2),
                    "rpc_before": quantiles(before),
                    "rpc_during": quantiles(during),
                    "cli": done.stdout.splitlines()[0],
                }
            )
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
