"""P2P benchmark (a measurement, not a test): prints one JSON object.

1. Sync speed of a fresh full node: a sequencer (`cairn dev`, automine) makes `--blocks`
   blocks of `--txs-per-block` transfers with no peer around; then a full node starts and
   range-syncs them. Reported: wall time from the full node's start to reaching the head
   (blocks/s, tx/s), and the rate the node itself logs for the sync phase alone.
2. Gossip latency: with the sequencer and `--fullnodes` full nodes connected, `--gossip-txs`
   transfers are sent at `--rate` per second to nodes in turn; for each, the time from
   submission until the block that includes it is seen on every node (p50/p99/max).

Run: .venv/bin/python -m bench.bench_p2p [--blocks 1000] [--fullnodes 3]
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from tests.support import rpc
from tests.support.chain import transfer
from tests.support.net import LocalNet, head, peer_count, wait_same_head
from tests.support.proc import NodeProcess
from tests.support.wait import wait_until

SENDERS = 10


class BlockWatcher(threading.Thread):
    """Polls one node's head and records when each block hash was first seen there."""

    def __init__(self, node: NodeProcess) -> None:
        super().__init__(daemon=True)
        self.node = node
        self.seen: dict[str, float] = {}  # tx hash -> first time its block was seen
        self.stop = threading.Event()
        self.number = head(node)[0]

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                number = int(rpc.call(self.node.url, "eth_blockNumber", timeout=5), 16)
            except Exception:
                continue
            now = time.monotonic()
            while self.number < number:
                self.number += 1
                block = rpc.call(self.node.url, "eth_getBlockByNumber", hex(self.number), False)
                for tx_hash in block["transactions"]:
                    self.seen.setdefault(tx_hash, now)
            self.stop.wait(0.003)


def _send_blocks(seq: NodeProcess, blocks: int, per_block: int, nonces: list[int]) -> int:
    """Make `blocks` blocks of about `per_block` transfers each (one JSON-RPC batch each)."""
    sent = 0
    start_head = head(seq)[0]
    while head(seq)[0] < start_head + blocks:
        batch = []
        for _ in range(per_block):
            sender = sent % SENDERS
            raw = transfer(sender, nonces[sender])
            nonces[sender] += 1
            sent += 1
            batch.append(
                {
                    "jsonrpc": "2.0",
                    "id": sent,
                    "method": "eth_sendRawTransaction",
                    "params": ["0x" + raw.hex()],
                }
            )
        answers = rpc.post(seq.url, batch)
        last = answers[-1]["result"]
        wait_until(
            functools.partial(rpc.call, seq.url, "eth_getTransactionReceipt", last),
            timeout=60,
            interval=0.002,
            message="the batch's block",
        )
    return sent


def _sync_rate(log: str) -> dict[str, float]:
    match = re.search(
        r"sync: done at #(\d+): (\d+) blocks, (\d+) txs in ([\d.]+)s "
        r"\(([\d.]+) blocks/s, ([\d.]+) tx/s\)",
        log,
    )
    if match is None:
        return {}
    return {
        "blocks": float(match.group(2)),
        "txs": float(match.group(3)),
        "seconds": float(match.group(4)),
        "blocks_per_s": float(match.group(5)),
        "tx_per_s": float(match.group(6)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=1000)
    parser.add_argument("--txs-per-block", type=int, default=10)
    parser.add_argument("--fullnodes", type=int, default=3)
    parser.add_argument("--gossip-txs", type=int, default=300)
    parser.add_argument("--rate", type=float, default=20.0, help="gossip phase tx/s")
    args = parser.parse_args()
    result: dict[str, Any] = {"benchmark": "p2p", "config": vars(args)}
    nonces = [0] * SENDERS
    with tempfile.TemporaryDirectory(prefix="cairn-bench-p2p-") as tmp, LocalNet(Path(tmp)) as net:
        seq = net.start_sequencer()
        t0 = time.monotonic()
        txs = _send_blocks(seq, args.blocks, args.txs_per_block, nonces)
        made, _ = head(seq)
        result["production"] = {
            "blocks": made,
            "txs": txs,
            "seconds": round(time.monotonic() - t0, 2),
        }

        started = time.monotonic()
        first = net.start_fullnode("full1")
        wait_same_head([seq, first], at_least=made, timeout=1800)
        wall = time.monotonic() - started
        result["sync"] = {
            "blocks": made,
            "txs": txs,
            "wall_seconds_incl_startup": round(wall, 2),
            "blocks_per_s": round(made / wall, 1),
            "tx_per_s": round(txs / wall, 1),
            "node_reported": _sync_rate(first.log_path.read_text()),
        }

        for i in range(2, args.fullnodes + 1):
            net.start_fullnode(f"full{i}")
        nodes = net.nodes
        wait_until(
            lambda: all(peer_count(n) == len(nodes) - 1 for n in nodes),
            timeout=120,
            interval=0.5,
            message="a fully connected network",
        )
        wait_same_head(nodes, at_least=made, timeout=600)
        watchers = [BlockWatcher(n) for n in nodes]
        for w in watchers:
            w.start()
        submitted: dict[str, float] = {}
        interval = 1.0 / args.rate
        next_at = time.monotonic()
        for i in range(args.gossip_txs):
            node = nodes[i % len(nodes)]
            sender = i % SENDERS
            raw = transfer(sender, nonces[sender])
            nonces[sender] += 1
            now = time.monotonic()
            if now < next_at:
                time.sleep(next_at - now)
            next_at += interval
            sent_at = time.monotonic()
            submitted[rpc.call(node.url, "eth_sendRawTransaction", "0x" + raw.hex())] = sent_at
        wait_until(
            lambda: all(all(h in w.seen for h in submitted) for w in watchers),
            timeout=300,
            interval=0.1,
            message="every transaction seen in a block on every node",
        )
        for w in watchers:
            w.stop.set()
        latencies = sorted(
            (max(w.seen[h] for w in watchers) - t) * 1000 for h, t in submitted.items()
        )
        result["gossip"] = {
            "nodes": len(nodes),
            "txs": len(latencies),
            "offered_tx_per_s": args.rate,
            "p50_ms": round(statistics.median(latencies), 1),
            "p99_ms": round(latencies[max(0, int(len(latencies) * 0.99) - 1)], 1),
            "max_ms": round(latencies[-1], 1),
            "note": "submission (RPC to any node) to its block seen on every node; "
            "polling resolution ~3 ms plus one RPC round trip",
        }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
