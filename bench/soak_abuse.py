"""Abuse soak (a measurement, not a test): honest load on a `cairn dev` node, then the same
honest load while abusive RPC clients attack it, then honest load alone again.

Loopback only, bounded in time (default 60 s + 120 s + 30 s). The node is a dev chain with
one block a second and its default limits (the dev defaults: no rate limit). Measured per
phase: honest request latency (open loop: requests start on a fixed schedule, and latency
counts from the scheduled start, so a stalled node shows as latency, not as fewer
requests), honest transfers' time to receipt, blocks produced and the longest gap between
two, the node's RSS; and, for the abusers, what they sent and what they were answered.

The abusers, each in a process of its own:
  deep-json   40 KB bodies of escaped quotes after 600 brackets, nonstop (HTTP)
  big-json    1 MiB of brackets at the nesting limit, nonstop (HTTP)
  spin-call   eth_call looping until 50M gas, 2 at a time (ends at --rpc.evmtimeout)
  mem-trace   debug_traceCall with enableMemory over 16 KiB of memory, nonstop
  batch       batches of 100 calls answering 512 KiB each (past --rpc.max-response)
  ws-noread   WebSocket clients that ask for 2 MB answers and never read, reconnecting
  filters     eth_newFilter nonstop (up to --rpc.max-filters, then refused)
  ws-conns    WebSocket connections opened and held, up to the limit, reopened
  bad-peer    a p2p peer (a new peer id each time it is hung up on): on the sequencer it
              gossips junk transaction batches and undecodable consensus messages and
              floods sync range requests; on the full node it claims head #1,000,000 and
              answers every range request with junk

Beside the sequencer under test runs a full node following it by p2p; its distance
behind the sequencer is sampled with the head.

Run: .venv/bin/python -m bench.soak_abuse [--baseline 60] [--abuse 120] [--recovery 30]
Writes bench/results/soak_abuse.json and prints it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
from eth_account import Account

from bench.report import SOAK_HEADING, SOAK_RESULTS, soak_section
from cairn.genesis.dev import dev_accounts
from tests.support.hostile import (
    SPIN,
    bracket_body,
    escaped_quotes_body,
    memory_then_spin,
    request,
    revert_with,
    rss_mib,
)
from tests.support.net import LocalNet, enode
from tests.support.proc import NodeProcess

RESULTS = SOAK_RESULTS
DOCS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
HONEST_RATE = 50.0  # honest requests per second, open loop
HONEST_TX_EVERY = 1.0  # seconds between honest transfers
GAS = hex(50_000_000)
DEAD = "0x000000000000000000000000000000000000dEaD"
KINDS = [
    "deep-json",
    "big-json",
    "spin-call",
    "mem-trace",
    "batch",
    "ws-noread",
    "filters",
    "ws-conns",
    "bad-peer",
]
FAR_HEAD = 1_000_000


# ------------------------------------------------------------------ the misbehaving peer
def _bad_peer(targets: dict[str, Any], until: float, tally: Any) -> None:
    """A new RoguePeer per connection: junk at the sequencer, lies to the full node, until
    hung up on; then again under a new peer id (and refused once its IP is banned)."""
    import trio

    from cairn.p2p import messages as m
    from tests.support.chain import transfer
    from tests.support.rogue import RoguePeer

    def count(outcome: str) -> None:
        tally[f"bad-peer: {outcome}"] = tally.get(f"bad-peer: {outcome}", 0) + 1

    chain_id, genesis = int(targets["chain_id"]), bytes.fromhex(targets["genesis"])
    junk_txs = m.encode_txs([transfer(7, n, chain_id=999) for n in range(50)])
    junk_range = m.encode_blocks([b"\xc3junk"] * 8)
    turn = 0
    while time.time() < until:
        # in turn: a sync flood and junk gossip at the sequencer, lies to the full node
        role = ("sync-flood", "junk-gossip", "liar")[turn % 3]
        turn += 1
        rogue = RoguePeer(
            chain_id,
            genesis,
            head=FAR_HEAD if role == "liar" else 0,
            range_answer=lambda _r: junk_range,
            gossip=role == "junk-gossip",
        )
        with rogue:
            target = targets["full" if role == "liar" else "seq"]
            try:
                node_id = rogue.connect(target, timeout=5)
            except (trio.TooSlowError, OSError) as exc:
                count(f"{role}: not taken as a peer ({type(exc).__name__})")
                time.sleep(1.0)
                continue
            count(f"{role}: taken as a peer")
            if role == "liar":
                # It lies about its head; the full node asks it for ranges and gets junk.
                rogue.gone.wait(max(0.0, min(30.0, until - time.time())))
                tally["bad-peer: liar: range requests answered with junk"] = (
                    tally.get("bad-peer: liar: range requests answered with junk", 0)
                    + rogue.range_requests
                )
            elif role == "sync-flood":
                # As fast as answered, 300 at most (then the next role): a loaded node
                # answers slower than the budget refills, and the flood is served.
                answered, _ = rogue.flood(node_id, m.SyncRequest("range", 0, 128), 300)
                tally["bad-peer: sync-flood: requests answered"] = (
                    tally.get("bad-peer: sync-flood: requests answered", 0) + answered
                )
                rogue.gone.wait(2)
            else:
                rogue.wait_subscribed(node_id, "txs")
                sent = 0
                while not rogue.gone.is_set() and time.time() < until:
                    rogue.publish("txs", junk_txs)
                    rogue.publish("consensus", b"\x93junk" + sent.to_bytes(4, "big"))
                    sent += 2
                tally["bad-peer: junk-gossip: messages sent"] = (
                    tally.get("bad-peer: junk-gossip: messages sent", 0) + sent
                )
            count(f"{role}: hung up on" if rogue.gone.is_set() else f"{role}: still connected")


# ------------------------------------------------------------------ abusers (own processes)
def _abuser(
    kind: str, url: str, ws_url: str, until: float, tally: Any, targets: dict[str, Any]
) -> None:
    if kind == "bad-peer":
        _bad_peer(targets, until, tally)
        return
    asyncio.run(_abuse(kind, url, ws_url, until, tally))


async def _abuse(kind: str, url: str, ws_url: str, until: float, tally: Any) -> None:
    import websockets

    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def post(body: bytes) -> str:
            async with session.post(
                url, data=body, headers={"Content-Type": "application/json"}
            ) as response:
                text = await response.read()
            if response.status != 200:
                return f"http {response.status}"
            answer = json.loads(text)
            if isinstance(answer, list):
                answer = answer[0]
            error = answer.get("error")
            return f"error {error['code']}" if error else "ok"

        def count(outcome: str) -> None:
            tally[f"{kind}: {outcome}"] = tally.get(f"{kind}: {outcome}", 0) + 1

        async def forever(make: Any, parallel: int = 1) -> None:
            async def loop() -> None:
                while time.time() < until:
                    try:
                        count(await make())
                    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                        count(type(exc).__name__)

            await asyncio.gather(*(loop() for _ in range(parallel)))

        if kind == "deep-json":
            body = escaped_quotes_body(20_000)
            await forever(lambda: post(body))
        elif kind == "big-json":
            body = bracket_body(1 << 20)
            await forever(lambda: post(body))
        elif kind == "spin-call":
            body = json.dumps(request("eth_call", {"data": SPIN, "gas": GAS})).encode()
            await forever(lambda: post(body), parallel=2)
        elif kind == "mem-trace":
            call = {"data": memory_then_spin(16 * 1024), "gas": hex(2_000_000)}
            body = json.dumps(
                request("debug_traceCall", call, "latest", {"enableMemory": True})
            ).encode()
            await forever(lambda: post(body))
        elif kind == "batch":
            call = {"data": revert_with(256 * 1024), "gas": GAS}
            batch = [request("eth_call", call, "latest", id_=i) for i in range(100)]
            body = json.dumps(batch).encode()
            await forever(lambda: post(body))
        elif kind == "filters":
            body = json.dumps(request("eth_newFilter", {})).encode()
            await forever(lambda: post(body))
        elif kind == "ws-noread":
            call = {"data": revert_with(1 << 20), "gas": GAS}

            async def noread() -> str:
                ws = await websockets.connect(ws_url, max_size=None, max_queue=1)
                try:
                    for i in range(100):
                        await ws.send(json.dumps(request("eth_call", call, "latest", id_=i)))
                    await asyncio.wait_for(ws.wait_closed(), 60)
                    return "disconnected by the node"
                except websockets.ConnectionClosed:
                    return "disconnected by the node"
                except TimeoutError:
                    return "still connected after 60 s"
                finally:
                    ws.transport.abort()

            await forever(noread)
        elif kind == "ws-conns":
            held: list[Any] = []
            while time.time() < until:
                try:
                    held.append(await websockets.connect(ws_url))
                    count("opened")
                except websockets.InvalidStatus as exc:
                    count(f"http {exc.response.status_code}")
                    await asyncio.sleep(0.5)
                    if len(held) > 50:  # let some go, so that the limit is met again
                        for ws in held[:50]:
                            ws.transport.abort()
                        held = held[50:]
                except OSError as exc:
                    count(type(exc).__name__)
            for ws in held:
                ws.transport.abort()


# ------------------------------------------------------------------ the honest side
class Honest:
    def __init__(self, url: str) -> None:
        self.url = url
        self.latencies: dict[str, list[float]] = {}
        self.by_method: dict[tuple[str, str], list[float]] = {}
        self.errors: Counter[str] = Counter()
        self.receipt_times: dict[str, list[float]] = {}
        self.phase = "baseline"
        self.nonce = 0
        self.key = dev_accounts(1)[0].private_key

    def _record(self, phase: str, method: str, latency: float) -> None:
        self.latencies.setdefault(phase, []).append(latency)
        self.by_method.setdefault((phase, method), []).append(latency)

    async def run_requests(self, session: aiohttp.ClientSession, until: float) -> None:
        calls = [
            request("eth_blockNumber"),
            request("eth_getBalance", DEAD, "latest"),
            request("eth_call", {"to": DEAD, "data": "0x"}, "latest"),
            request("eth_getBlockByNumber", "latest", False),
        ]
        tasks: set[asyncio.Task[None]] = set()
        start = time.monotonic()
        n = 0
        while time.time() < until:
            scheduled = start + n / HONEST_RATE
            delay = scheduled - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(self._one(session, calls[n % len(calls)], scheduled))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            n += 1
        if tasks:
            await asyncio.wait(tasks, timeout=60)

    async def _one(
        self, session: aiohttp.ClientSession, body: dict[str, Any], scheduled: float
    ) -> None:
        phase = self.phase
        try:
            async with session.post(self.url, json=body) as response:
                answer = await response.json(content_type=None)
            if "error" in answer:
                self.errors[f"{phase}: {answer['error']['message'][:60]}"] += 1
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            self.errors[f"{phase}: {type(exc).__name__}"] += 1
        self._record(phase, body["method"], time.monotonic() - scheduled)

    async def run_transfers(self, session: aiohttp.ClientSession, until: float) -> None:
        while time.time() < until:
            tx = {
                "type": 2,
                "chainId": 31337,
                "nonce": self.nonce,
                "to": DEAD,
                "value": 1,
                "gas": 21_000,
                "maxFeePerGas": 100 * 10**9,
                "maxPriorityFeePerGas": 10**9,
            }
            raw = "0x" + bytes(Account.sign_transaction(tx, self.key).raw_transaction).hex()
            self.nonce += 1
            phase, sent = self.phase, time.monotonic()
            async with session.post(
                self.url, json=request("eth_sendRawTransaction", raw)
            ) as response:
                answer = await response.json(content_type=None)
            tx_hash = answer.get("result")
            if tx_hash is None:
                self.errors[f"{phase}: send {answer.get('error')}"] += 1
                continue
            while time.monotonic() - sent < 60:
                async with session.post(
                    self.url, json=request("eth_getTransactionReceipt", tx_hash)
                ) as response:
                    receipt = (await response.json(content_type=None)).get("result")
                if receipt:
                    self.receipt_times.setdefault(phase, []).append(time.monotonic() - sent)
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(max(0.0, HONEST_TX_EVERY - (time.monotonic() - sent)))


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else float("nan")


async def _head(session: aiohttp.ClientSession, url: str) -> int:
    try:
        async with session.post(url, json=request("eth_blockNumber")) as response:
            return int((await response.json(content_type=None))["result"], 16)
    except (aiohttp.ClientError, OSError, TimeoutError, KeyError):
        return -1


async def _watch(
    url: str, pid: int, phases: dict[str, float], samples: dict[str, Any], follower_url: str
) -> None:
    """Head, RSS and the full node's distance behind, once a second, by phase (the phase
    the sample falls in)."""
    async with aiohttp.ClientSession() as session:
        while time.time() < phases["end"]:
            now = time.time()
            phase = next(p for p in ("recovery", "abuse", "baseline") if now >= phases[p])
            head = await _head(session, url)
            follower = await _head(session, follower_url)
            samples.setdefault(phase, []).append((now, head, rss_mib(pid)))
            if head >= 0 and follower >= 0:
                samples.setdefault(f"{phase}-lag", []).append(head - follower)
            await asyncio.sleep(1.0)


def _blocks(series: list[tuple[float, int, float]]) -> dict[str, Any]:
    heads = [(t, h) for t, h, _ in series if h >= 0]
    if len(heads) < 2:
        return {"blocks": 0, "per_minute": 0.0, "longest_gap_s": None}
    made = heads[-1][1] - heads[0][1]
    span = heads[-1][0] - heads[0][0]
    gap, last_change = 0.0, heads[0]
    for t, h in heads[1:]:
        if h != last_change[1]:
            gap = max(gap, t - last_change[0])
            last_change = (t, h)
    return {
        "blocks": made,
        "per_minute": round(60 * made / span, 1) if span else 0.0,
        "longest_gap_s": round(gap, 1),
    }


async def _honest_phases(honest: Honest, phases: dict[str, float]) -> None:
    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=60), connector=aiohttp.TCPConnector(limit=200)
    ) as session:
        requests_task = asyncio.create_task(honest.run_requests(session, phases["end"]))
        transfers_task = asyncio.create_task(honest.run_transfers(session, phases["end"]))
        for name in ("abuse", "recovery"):
            await asyncio.sleep(max(0.0, phases[name] - time.time()))
            honest.phase = name
        await asyncio.gather(requests_task, transfers_task)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=float, default=60.0)
    parser.add_argument("--abuse", type=float, default=120.0)
    parser.add_argument("--recovery", type=float, default=30.0)
    parser.add_argument(
        "--only", action="append", choices=KINDS, help="run only these abusers (repeatable)"
    )
    parser.add_argument(
        "--out", type=Path, default=RESULTS, help=f"where the JSON goes (default {RESULTS})"
    )
    parser.add_argument("--no-docs", action="store_true", help="leave docs/benchmarks.md as is")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cairn-soak-") as tmp, LocalNet(Path(tmp)) as net:
        node = net.start_sequencer("--block-time", "1", "--log.level", "warning")
        follower = net.start_fullnode("full", "--log.level", "warning")
        assert node.proc is not None
        genesis = node.call("eth_getBlockByNumber", "0x0", False)
        assert isinstance(genesis, dict)
        targets = {
            "seq": enode(node),
            "full": enode(follower),
            "chain_id": int(str(node.call("eth_chainId")), 16),
            "genesis": str(genesis["hash"])[2:],
            "follower_url": follower.url,
        }
        results = _soak(node, node.proc.pid, args, targets)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    if not args.no_docs and args.out == RESULTS:
        _update_docs(results)


def _update_docs(results: dict[str, Any]) -> None:
    """Put this run's section into docs/benchmarks.md, leaving every other section as is."""
    text = DOCS.read_text()
    section = "\n".join(soak_section(results))
    start = text.find(SOAK_HEADING)
    if start < 0:
        DOCS.write_text(text.rstrip("\n") + "\n\n" + section)
        return
    end = text.find("\n## ", start + len(SOAK_HEADING))
    DOCS.write_text(text[:start] + section + (text[end + 1 :] if end >= 0 else ""))


def _soak(
    node: NodeProcess, pid: int, args: argparse.Namespace, targets: dict[str, Any]
) -> dict[str, Any]:
    start = time.time() + 2
    phases = {
        "baseline": start,
        "abuse": start + args.baseline,
        "recovery": start + args.baseline + args.abuse,
        "end": start + args.baseline + args.abuse + args.recovery,
    }
    spawn = multiprocessing.get_context("spawn")
    manager = spawn.Manager()
    tally = manager.dict()
    kinds = args.only or KINDS
    abusers = [
        spawn.Process(
            target=_abuser,
            args=(kind, node.url, node.ws_url, phases["recovery"], tally, targets),
            name=f"abuser-{kind}",
        )
        for kind in kinds
    ]
    honest = Honest(node.url)
    samples: dict[str, Any] = {}

    async def unleash() -> None:
        await asyncio.sleep(max(0.0, phases["abuse"] - time.time()))
        for abuser in abusers:
            abuser.start()

    async def run() -> None:
        await asyncio.gather(
            _watch(node.url, pid, phases, samples, targets["follower_url"]),
            _honest_phases(honest, phases),
            unleash(),
        )

    try:
        asyncio.run(_run_from(start, run))
    finally:
        for abuser in abusers:
            abuser.join(120)
            if abuser.is_alive():
                abuser.kill()
        abused = dict(tally)
        manager.shutdown()
    report: dict[str, Any] = {
        "node": "cairn dev --block-time 1 (default limits, p2p on), a full node following it",
        "abusers_run": kinds,
        "honest": {"rate_per_s": HONEST_RATE, "transfer_every_s": HONEST_TX_EVERY},
        "phases_s": {"baseline": args.baseline, "abuse": args.abuse, "recovery": args.recovery},
        "load_average_at_end": [round(x, 1) for x in os.getloadavg()],
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpus": os.cpu_count(),
    }
    for phase in ("baseline", "abuse", "recovery"):
        latencies = honest.latencies.get(phase, [])
        receipts = honest.receipt_times.get(phase, [])
        series = samples.get(phase, [])
        report[phase] = {
            "honest_requests": len(latencies),
            "latency_p50_ms": round(1000 * _percentile(latencies, 0.50), 1),
            "latency_p99_ms": round(1000 * _percentile(latencies, 0.99), 1),
            "latency_max_ms": round(1000 * max(latencies, default=float("nan")), 1),
            "p99_ms_by_method": {
                method: round(1000 * _percentile(values, 0.99), 1)
                for (p, method), values in sorted(honest.by_method.items())
                if p == phase
            },
            "honest_errors": sum(n for k, n in honest.errors.items() if k.startswith(phase)),
            "transfers_mined": len(receipts),
            "receipt_p50_s": round(statistics.median(receipts), 2) if receipts else None,
            "receipt_max_s": round(max(receipts), 2) if receipts else None,
            **_blocks(series),
            "rss_max_mib": round(max((r for _, _, r in series), default=0.0)),
            "rss_end_mib": round(series[-1][2]) if series else None,
            "follower_lag_max": max(samples.get(f"{phase}-lag", []), default=None),
            "follower_lag_p50": _percentile(samples.get(f"{phase}-lag", []), 0.5)
            if samples.get(f"{phase}-lag")
            else None,
        }
    report["honest_error_kinds"] = dict(honest.errors)
    report["abusers"] = dict(sorted(abused.items()))
    return report


async def _run_from(start: float, run: Any) -> None:
    await asyncio.sleep(max(0.0, start - time.time()))
    await run()


if __name__ == "__main__":
    main()
