"""Health and status endpoints: /health, /health/ready, /health/blockchain, /health/database,
/healthz, /status. Each answer is computed from the node's parts at request time."""

from __future__ import annotations

import json
import time
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


class PeerView(Protocol):
    """What health reads of the p2p layer (cairn.p2p.service.P2PService)."""

    def peers(self) -> tuple[PeerSummary, ...]: ...

    def node_info(self) -> NodeSummary: ...


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


class Health:
    def __init__(self, sources: HealthSources) -> None:
        self.s = sources

    def routes(self) -> list[Route]:
        return [
            ("GET", "/health", self._health),
            ("GET", "/healthz", self._healthz),
            ("GET", "/status", self._status),
            ("GET", "/health/database", self._health_database),
            ("GET", "/health/ready", self._health_ready),
            ("GET", "/health/blockchain", self._health_blockchain),
        ]

    def status(self) -> dict[str, Any]:
        chain = self.s.chain
        head = chain.head
        pending, queued = self.s.pool.counts()
        return {
            "ok": True,
            "healthy": True,
            "mode": self.s.mode,
            "chainId": chain.chain_id,
            "genesisHash": "0x" + chain.genesis_hash.hex(),
            "blockNumber": head.block_number,
            "blockHash": "0x" + head.hash.hex(),
            "blockTimestamp": head.timestamp,
            "txpool": {"pending": pending, "queued": queued},
            "uptimeSeconds": round(time.time() - self.s.started_at, 1),
            "version": self.s.version,
            "syncing": self.s.syncing(),
            "p2p": self._p2p_status(),
        }

    def _p2p_status(self) -> dict[str, Any] | None:
        p2p = self.s.p2p
        if p2p is None:
            return None
        node = p2p.node_info()
        return {
            "peerId": node.peer_id,
            "listenAddrs": list(node.listen_addrs),
            "peers": [
                {"id": p.peer_id, "head": p.head, "addr": p.listen_addr, "score": p.score}
                for p in p2p.peers()
            ],
            "banned": list(node.banned),
            "stats": node.stats,
        }

    async def _health_ready(self, request: web.Request) -> web.Response:
        """503 until this node serves an up-to-date chain (not while it catches up by sync)."""
        syncing = self.s.syncing()
        if syncing:
            return web.json_response(
                {"ready": False, "reason": "syncing", "syncing": syncing}, status=503
            )
        return web.json_response({"ready": True, "blockNumber": self.s.chain.head.block_number})

    async def _health_blockchain(self, request: web.Request) -> web.Response:
        head = self.s.chain.head
        return web.json_response(
            {
                "status": "ok",
                "blockNumber": head.block_number,
                "blockHash": "0x" + head.hash.hex(),
                "headAgeSeconds": round(max(0.0, time.time() - head.timestamp), 1),
                "mode": self.s.mode,
            }
        )

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _healthz(self, request: web.Request) -> web.Response:
        status = self.status()
        return web.json_response(
            {k: status[k] for k in ("ok", "mode", "chainId", "blockNumber", "healthy")}
        )

    async def _status(self, request: web.Request) -> web.Response:
        return web.Response(text=json.dumps(self.status()), content_type="application/json")

    async def _health_database(self, request: web.Request) -> web.Response:
        """The Postgres mirror: 200 while connected, 503 while Postgres is unreachable."""
        if self.s.mirror is None:
            return web.json_response({"status": "disabled", "connected": False})
        connected, body = self.s.mirror.health()
        return web.json_response(body, status=200 if connected else 503)
