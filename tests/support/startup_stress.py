"""Repeated start-ups of a 1 sequencer + 3 full node network on loopback, with 1,000
transfers sent to a full node right after it starts (the scenario of issue 16).

One run: `cairn testnet init`, then the four processes start at once (as `cairn testnet up
--local` starts them: the sequencer is a `cairn run` with the producer key, no empty blocks), the
transfers go to full node 1 as soon as it serves RPC, and the run passes when every node
holds every transfer's block and all four agree on one head hash. A run fails on a
timeout, or when any node logged a broken pubsub frame or a dead p2p thread.

`python -m tests.support.startup_stress --runs 30` loops and prints a failure rate; the
stress test in tests/e2e/test_p2p_startup.py runs the same function.
"""

from __future__ import annotations

import argparse
import functools
import json
import random
import shutil
import signal
import socket
import sys
import tempfile
import time
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.support import rpc
from tests.support.chain import transfer
from tests.support.net import head
from tests.support.proc import NodeProcess, run_cli
from tests.support.wait import wait_until

SENDERS = 10
PER_SENDER = 100
# Log lines that mean the p2p layer broke (issue 16 and issue 12).
BROKEN_MARKERS = ("DecodeError", "the p2p thread failed", "Error parsing message")


@functools.cache
def signed_transfers() -> tuple[tuple[bytes, ...], ...]:
    """SENDERS x PER_SENDER signed transfers, nonces 0.. (signed once per process)."""
    return tuple(
        tuple(transfer(key, nonce, value=1 + nonce) for nonce in range(PER_SENDER))
        for key in range(SENDERS)
    )


@dataclass
class RunResult:
    ok: bool
    seconds: float
    head: int = 0
    reason: str = ""
    broken_logs: dict[str, list[str]] = field(default_factory=dict)


def _send_all(url: str, raws: Sequence[bytes], batch: int) -> list[str]:
    """Send `raws` in JSON-RPC batches of `batch` (1: one request each, as a script using
    web3.py's send_raw_transaction in a loop does)."""
    if batch <= 1:
        return [str(rpc.call(url, "eth_sendRawTransaction", "0x" + raw.hex())) for raw in raws]
    hashes: list[str] = []
    for i in range(0, len(raws), batch):
        payload = [
            {
                "jsonrpc": "2.0",
                "id": i + k,
                "method": "eth_sendRawTransaction",
                "params": ["0x" + raw.hex()],
            }
            for k, raw in enumerate(raws[i : i + batch])
        ]
        answers = rpc.post(url, payload)
        for answer in answers:
            if "error" in answer:
                raise AssertionError(f"transfer refused by {url}: {answer['error']}")
            hashes.append(str(answer["result"]))
    return hashes


def _broken_lines(node: NodeProcess) -> list[str]:
    try:
        text = node.log_path.read_text(errors="replace")
    except OSError:
        return []
    return [line for line in text.splitlines() if any(m in line for m in BROKEN_MARKERS)]


def start_network(root: Path, *, block_time: float = 1.0) -> list[NodeProcess]:
    """`cairn testnet init --sequencer --fullnodes 3`, then start the four nodes at once
    with `cairn run --config`, as `cairn testnet up --local` does (ports picked free)."""
    done = run_cli(
        "testnet",
        "init",
        "--sequencer",
        "--fullnodes",
        "3",
        "--block-time",
        str(block_time),
        "--dir",
        str(root),
        "--p2p-port",
        str(free_port_run(4)),
    )
    if done.returncode != 0:
        raise RuntimeError(f"testnet init failed: {done.stderr}")
    manifest = json.loads((root / "testnet.json").read_text())
    nodes = []
    for entry in manifest["nodes"]:
        config = tomllib.loads(Path(entry["config"]).read_text())
        nodes.append(
            NodeProcess(
                Path(config["datadir"]),
                "run",
                "--config",
                entry["config"],
                "--p2p.port",
                str(config["p2p.port"]),
            )
        )
    for node in nodes:
        node.start(wait=False)
    return nodes


def free_port_run(count: int) -> int:
    """A first port such that `count` consecutive ports are free on loopback."""
    for _ in range(200):
        base = random.randrange(20_000, 60_000)
        sockets: list[socket.socket] = []
        try:
            for port in range(base, base + count):
                s = socket.socket()
                sockets.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError("no run of free ports found")


def run_once(root: Path, *, timeout: float = 180.0, batch: int = 100) -> RunResult:
    """One start-up; every process is stopped before it returns."""
    started = time.monotonic()
    nodes = start_network(root)
    result = RunResult(ok=False, seconds=0.0)
    try:
        target = nodes[1]
        target.wait_ready(60)
        raws = [raw for sender in signed_transfers() for raw in sender]
        hashes = _send_all(target.url, raws, batch)
        for node in nodes:
            node.wait_ready(60)
        last = [hashes[(s + 1) * PER_SENDER - 1] for s in range(SENDERS)]

        def converged() -> int | None:
            if any(_broken_lines(node) for node in nodes):
                return -1  # no need to wait out the timeout: p2p broke
            for node in nodes:
                if any(node.call("eth_getTransactionReceipt", h) is None for h in last):
                    return None
            heads = {head(n) for n in nodes}
            if len(heads) == 1:
                return next(iter(heads))[0]
            return None

        deadline = time.monotonic() + timeout
        try:
            result.head = wait_until(
                converged,
                timeout=max(1.0, deadline - time.monotonic()),
                interval=0.25,
                message="every transfer on all four nodes and one head hash",
            )
            result.ok = result.head >= 0
        except TimeoutError as exc:
            heads = []
            for node in nodes:
                try:
                    heads.append(f"{node.datadir.name} #{head(node)[0]}")
                except (OSError, rpc.RpcFailure) as err:
                    heads.append(f"{node.datadir.name} ({err})")
            result.reason = f"{exc}; heads: {', '.join(heads)}"
    finally:
        for node in reversed(nodes):
            node.stop()
        result.seconds = time.monotonic() - started
    for node in nodes:
        lines = _broken_lines(node)
        if lines:
            result.broken_logs[node.datadir.name] = lines[:5]
    if result.broken_logs:
        result.ok = False
        result.reason = result.reason or "p2p broke: " + json.dumps(result.broken_logs)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--keep", action="store_true", help="keep the logs of failed runs")
    parser.add_argument("--dir", default=None, help="where to keep failed runs' data")
    parser.add_argument("--batch", type=int, default=100, help="transfers per RPC request")
    args = parser.parse_args(argv)
    # A SIGTERM ends the loop through the finally clauses, which stop every node.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    keep_root = Path(args.dir or tempfile.mkdtemp(prefix="cairn-stress-"))
    keep_root.mkdir(parents=True, exist_ok=True)
    failures = 0
    signed_transfers()
    for run in range(1, args.runs + 1):
        root = Path(tempfile.mkdtemp(prefix=f"run{run}-", dir=keep_root))
        result = run_once(root, batch=args.batch)
        status = "ok" if result.ok else "FAIL"
        print(
            f"run {run}: {status} in {result.seconds:.1f}s head #{result.head} {result.reason}",
            flush=True,
        )
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        if not result.ok:
            failures += 1
        print(f"  failures so far: {failures}/{run}", flush=True)
    print(f"{failures} failed of {args.runs} ({100.0 * failures / args.runs:.0f}%)")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
