"""Health and status endpoints, each computed from the node's parts when it is asked:

- `/health` (liveness): the event loop answers promptly and, when the node runs p2p, the p2p
  thread is running. 503 otherwise: restart me.
- `/health/ready` (readiness): live, not behind (no peer or gossiped block more than
  `max_blocks_behind` ahead, not range-syncing), enough peers, and — when the chain is meant
  to tick — a head no older than `max_head_age`. 503 otherwise: don't send me traffic.
- `/health/blockchain`: the head's age against the expected block interval, and peers.
- `/health/database`: the Postgres mirror.
- `/healthz`: `{ok, mode, chainId, blockNumber, healthy}`: `ok` is liveness, `healthy` is
  readiness and the blockchain check together; 503 when not healthy.
- `/status`: everything above in one JSON object, with the reasons.
Nothing here changes state; docs/operations.md lists the exact conditions.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web

from cairn.chain.chain import Chain
from cairn.mirror.service import Mirror
from cairn.p2p.api import NodeSummary, PeerSummary
from cairn.rpc.server import Route
from cairn.txpool.pool import TxPool

SyncStatus = dict[str, Any] | bool


class P2PStateView(Protocol):
    @property
    def status(self) -> str: ...
    @property
    def since(self) -> float: ...
    @property
    def reason(self) -> str: ...


class PeerView(Protocol):
    """What health reads of the p2p layer (cairn.p2p.service.P2PService)."""

    def peers(self) -> tuple[PeerSummary, ...]: ...

    def node_info(self) -> NodeSummary: ...

    def state(self) -> P2PStateView: ...

    def best_head(self) -> int: ...


class ConsensusView(Protocol):
    def snapshot(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class HealthPolicy:
    """Thresholds (flags `--health.*`); None turns a check off."""

    max_head_age: float | None  # seconds; None: the chain is not meant to tick
    min_peers: int
    max_blocks_behind: int = 2
    max_loop_lag: float = 5.0


@dataclass(frozen=True)
class HealthSources:
    chain: Chain
    pool: TxPool
    mode: str
    version: str
    started_at: float
    syncing: Callable[[], SyncStatus]
    p2p: PeerView | None
    mirror: Mirror | None
    policy: HealthPolicy
    consensus: ConsensusView | None = None


class LoopMonitor:
    """How late the event loop runs a timer, worst case over the last ten seconds."""

    TICK = 0.25

    def __init__(self) -> None:
        self._lags: deque[tuple[float, float]] = deque(maxlen=64)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="loop-monitor")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(self.TICK)
            self._lags.append((time.monotonic(), loop.time() - before - self.TICK))

    def worst(self, window: float = 10.0) -> float:
        cutoff = time.monotonic() - window
        return max((lag for at, lag in self._lags if at >= cutoff), default=0.0)


@dataclass(frozen=True)
class Check:
    ok: bool
    reasons: tuple[str, ...]
    details: dict[str, Any]


class Health:
    def __init__(self, sources: HealthSources) -> None:
        self.s = sources
        self.loop = LoopMonitor()

    def routes(self) -> list[Route]:
        return [
            ("GET", "/health", self._health),
            ("GET", "/healthz", self._healthz),
            ("GET", "/status", self._status),
            ("GET", "/health/database", self._health_database),
            ("GET", "/health/ready", self._health_ready),
            ("GET", "/health/blockchain", self._health_blockchain),
        ]

    # ------------------------------------------------------------ the checks
    def liveness(self) -> Check:
        reasons = []
        lag = self.loop.worst()
        if lag > self.s.policy.max_loop_lag:
            reasons.append(f"event loop {lag:.1f}s late (limit {self.s.policy.max_loop_lag}s)")
        p2p: dict[str, Any] | None = None
        if self.s.p2p is not None:
            state = self.s.p2p.state()
            p2p = {"status": state.status, "since": state.since, "reason": state.reason}
            if state.status != "running":
                reasons.append(
                    f"p2p {state.status}" + (f": {state.reason}" if state.reason else "")
                )
        return Check(not reasons, tuple(reasons), {"loopLagSeconds": round(lag, 3), "p2p": p2p})

    def blockchain(self) -> Check:
        head = self.s.chain.head
        age = max(0.0, time.time() - head.timestamp)
        policy = self.s.policy
        reasons = []
        if policy.max_head_age is not None and age > policy.max_head_age:
            reasons.append(
                f"head #{head.block_number} is {age:.0f}s old (limit {policy.max_head_age:.0f}s)"
            )
        peers = len(self.s.p2p.peers()) if self.s.p2p is not None else None
        best = self.s.p2p.best_head() if self.s.p2p is not None else None
        if best is not None and best - head.block_number > policy.max_blocks_behind:
            reasons.append(f"{best - head.block_number} blocks behind a peer (head #{best})")
        return Check(
            not reasons,
            tuple(reasons),
            {
                "blockNumber": head.block_number,
                "blockHash": "0x" + head.hash.hex(),
                "headAgeSeconds": round(age, 1),
                "maxHeadAgeSeconds": policy.max_head_age,
                "peers": peers,
                "bestPeerHead": best,
            },
        )

    def readiness(self) -> Check:
        live = self.liveness()
        reasons = list(live.reasons)
        syncing = self.s.syncing()
        head = self.s.chain.head.block_number
        if isinstance(syncing, dict):
            highest = int(str(syncing.get("highestBlock", "0x0")), 16)
            if highest - head > self.s.policy.max_blocks_behind or not (
                self.s.p2p is None or self.s.p2p.state().status == "running"
            ):
                reasons.append(f"syncing: head #{head}, highest known #{highest}")
        if self.s.p2p is not None:
            peers = len(self.s.p2p.peers())
            if peers < self.s.policy.min_peers:
                reasons.append(f"{peers} peers (at least {self.s.policy.min_peers} wanted)")
        chain = self.blockchain()
        reasons += [r for r in chain.reasons if r not in reasons]
        return Check(not reasons, tuple(reasons), {"syncing": syncing, "blockNumber": head})

    # ------------------------------------------------------------ answers
    def status(self) -> dict[str, Any]:
        chain = self.s.chain
        head = chain.head
        pending, queued = self.s.pool.counts()
        live, ready, blockchain = self.liveness(), self.readiness(), self.blockchain()
        return {
            "ok": live.ok,
            "healthy": ready.ok and blockchain.ok,
            "reasons": sorted({*live.reasons, *ready.reasons, *blockchain.reasons}),
            "mode": self.s.mode,
            "chainId": chain.chain_id,
            "genesisHash": "0x" + chain.genesis_hash.hex(),
            "blockNumber": head.block_number,
            "blockHash": "0x" + head.hash.hex(),
            "blockTimestamp": head.timestamp,
            "headAgeSeconds": blockchain.details["headAgeSeconds"],
            "txpool": {"pending": pending, "queued": queued},
            "uptimeSeconds": round(time.time() - self.s.started_at, 1),
            "version": self.s.version,
            "syncing": self.s.syncing(),
            "loopLagSeconds": live.details["loopLagSeconds"],
            "p2p": self._p2p_status(),
            "consensus": self.s.consensus.snapshot() if self.s.consensus else None,
        }

    def _p2p_status(self) -> dict[str, Any] | None:
        p2p = self.s.p2p
        if p2p is None:
            return None
        node = p2p.node_info()
        state = p2p.state()
        return {
            "state": {"status": state.status, "since": state.since, "reason": state.reason},
            "peerId": node.peer_id,
            "listenAddrs": list(node.listen_addrs),
            "peers": [
                {"id": p.peer_id, "head": p.head, "addr": p.listen_addr, "score": p.score}
                for p in p2p.peers()
            ],
            "banned": list(node.banned),
            "bannedIps": list(node.banned_ips),
            "stats": node.stats,
        }

    async def _health(self, request: web.Request) -> web.Response:
        check = self.liveness()
        body = {"status": "ok" if check.ok else "unhealthy", "reasons": list(check.reasons)}
        return web.json_response({**body, **check.details}, status=200 if check.ok else 503)

    async def _health_ready(self, request: web.Request) -> web.Response:
        check = self.readiness()
        body = {"ready": check.ok, "reasons": list(check.reasons), **check.details}
        if check.reasons:
            body["reason"] = check.reasons[0]
        return web.json_response(body, status=200 if check.ok else 503)

    async def _health_blockchain(self, request: web.Request) -> web.Response:
        check = self.blockchain()
        body = {
            "status": "ok" if check.ok else "unhealthy",
            "reasons": list(check.reasons),
            "mode": self.s.mode,
            **check.details,
        }
        return web.json_response(body, status=200 if check.ok else 503)

    async def _healthz(self, request: web.Request) -> web.Response:
        status = self.status()
        body = {k: status[k] for k in ("ok", "mode", "chainId", "blockNumber", "healthy")}
        return web.json_response(body, status=200 if status["healthy"] else 503)

    async def _status(self, request: web.Request) -> web.Response:
        return web.Response(text=json.dumps(self.status()), content_type="application/json")

    async def _health_database(self, request: web.Request) -> web.Response:
        """The Postgres mirror: 200 while connected, 503 while Postgres is unreachable."""
        if self.s.mirror is None:
            return web.json_response({"status": "disabled", "connected": False})
        connected, body = self.s.mirror.health()
        return web.json_response(body, status=200 if connected else 503)
