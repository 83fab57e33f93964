"""`Node`: opens the datadir, wires chain, pool, producer and RPC, and shuts down cleanly."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from eth_keys.datatypes import PrivateKey
from eth_typing import Address

import cairn
from cairn.consensus.devchain import DevChain
from cairn.consensus.follower import Follower
from cairn.consensus.sequencer import ProducerConfig, Sequencer
from cairn.execution.call import CallRunner
from cairn.execution.callworker import CallWorkers
from cairn.execution.chain import BlockCommitted, Chain, open_store
from cairn.execution.events import ChainEvents
from cairn.execution.forks import fork_named
from cairn.genesis.model import Genesis
from cairn.mirror.metrics import MirrorCollector
from cairn.mirror.service import Mirror, MirrorConfig, NodeInfo
from cairn.mirror.source import ChainSource
from cairn.node.heap import settle_after_start
from cairn.node.metrics import NodeCollector, metrics_handler, new_registry
from cairn.node.p2p_wiring import P2PLink
from cairn.p2p.api import P2PConfig
from cairn.rpc.admin import AdminNamespace
from cairn.rpc.backend import Backend, RpcConfig
from cairn.rpc.debug import DebugNamespace
from cairn.rpc.dispatch import Dispatcher, collect
from cairn.rpc.eth import EthNamespace
from cairn.rpc.filters import FilterLimits
from cairn.rpc.live import LiveRpc
from cairn.rpc.proof import ProofNamespace
from cairn.rpc.server import RpcServer
from cairn.txpool.pool import TxPool
from cairn.txpool.recovery import SenderRecovery

log = logging.getLogger("cairn.node")

CLIENT_VERSION = f"cairn/v{cairn.__version__}/python"


@dataclass(frozen=True)
class NodeSettings:
    datadir: Path
    genesis: Genesis
    http_addr: str = "127.0.0.1"
    http_port: int = 8545
    ws_port: int | None = 8546
    rpc: RpcConfig = field(default_factory=RpcConfig)
    producer_key: PrivateKey | None = None
    block_time: float | None = None
    dev: bool = False
    dev_keys: dict[Address, bytes] = field(default_factory=dict)
    p2p: P2PConfig | None = None
    mirror_url: str | None = None


class Node:
    def __init__(self, settings: NodeSettings) -> None:
        self.settings = settings
        self.started_at = time.time()
        genesis = settings.genesis
        self.fork = fork_named(genesis.consensus.fork)
        self.store = open_store(settings.datadir / "chaindata", genesis, self.fork)
        try:
            self.chain = Chain(self.store, genesis, self.fork)
        except BaseException:
            self.store.close()
            raise
        self.events = ChainEvents()
        self.writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cairn-writer")
        self.reads = ThreadPoolExecutor(max_workers=2, thread_name_prefix="cairn-reads")
        self.call_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cairn-calls")
        self.call_workers: CallWorkers | None = None
        self.pool = TxPool(self.fork, genesis.chain_id, self.chain.head_view, self.store)
        self.producer: Sequencer | None = None
        self.rpc: RpcServer | None = None
        self.recovery: SenderRecovery | None = None
        self.metrics = new_registry()
        self.dispatcher: Dispatcher | None = None
        self._committed = [0, 0]  # blocks, transactions since start (for /metrics)
        self.events.subscribe(self._count_committed)
        self.mirror: Mirror | None = None
        self.live: LiveRpc | None = None
        self.follower: Follower | None = None
        self.p2p: P2PLink | None = None
        self._stop = asyncio.Event()
        self._stopped = False
        self._background: set[asyncio.Future[None]] = set()

    @property
    def mode(self) -> str:
        if self.producer is not None:
            return "sequencer"
        return "fullnode"

    def _check_producer(self) -> PrivateKey | None:
        key = self.settings.producer_key
        if key is None:
            return None
        address = key.public_key.to_canonical_address()
        producers = self.settings.genesis.consensus.producers
        if address not in producers:
            raise SystemExit(
                f"error: producer key 0x{address.hex()} is not a producer in genesis "
                f"({', '.join('0x' + p.hex() for p in producers)})"
            )
        return key

    async def start(self) -> None:
        genesis = self.settings.genesis
        kept, dropped = self.pool.restore()
        if kept or dropped:
            log.info("txpool journal: %d transactions re-admitted, %d dropped", kept, dropped)
        key = self._check_producer()
        if key is not None and genesis.consensus.mode == "sequencer":
            block_time = (
                self.settings.block_time
                if self.settings.block_time is not None
                else genesis.consensus.block_time
            )
            self.producer = Sequencer(
                self.chain,
                self.pool,
                self.events,
                self.writer,
                ProducerConfig(
                    key=key,
                    coinbase=genesis.coinbase,
                    gas_limit=self.chain.head.gas_limit,
                    block_time=block_time,
                    # a dev chain with a block time mines empty blocks too, as Anvil does
                    empty_blocks=genesis.consensus.empty_blocks
                    or (self.settings.dev and block_time > 0),
                ),
            )
            self.producer.start()
        # Dev-chain control (rpc-live): restores the saved clock and impersonation settings
        # before the sequencer's first block (nothing awaits in between).
        dev_chain: DevChain | None = None
        if self.settings.dev and self.producer is not None:
            dev_chain = DevChain(self.chain, self.store, self.producer, self.pool, self.events)
        # Sender recovery on the second core; its worker starts in the background.
        self.recovery = SenderRecovery(self.fork.name)
        self._background.add(asyncio.ensure_future(self.recovery.warm_up()))
        # ---- p2p and full-node following (issue #4) ----
        self.follower = Follower(
            self.chain, self.pool, self.events, self.writer, importing=self.producer is None
        )
        if self.settings.p2p is not None:
            self.p2p = P2PLink(
                self.settings.p2p,
                self.chain,
                self.pool,
                self.events,
                self.follower,
                self.metrics,
                producer=self.producer is not None,
            )
            await self.p2p.start()
        self.follower.start()
        # ---- end p2p ----
        if self.settings.rpc.call_workers > 0:
            self.call_workers = CallWorkers(
                self.chain.reader, self.settings.rpc.gas_cap, self.settings.rpc.call_workers
            )
            await self.call_workers.start()
        backend = Backend(
            chain=self.chain,
            pool=self.pool,
            events=self.events,
            calls=CallRunner(
                self.chain.reader, self.settings.rpc.gas_cap, self.settings.rpc.evm_timeout
            ),
            reads=self.reads,
            config=self.settings.rpc,
            client_version=CLIENT_VERSION,
            dev_mode=self.settings.dev,
            producer=self.producer,
            dev_keys=self.settings.dev_keys,
            peer_count=self.p2p.service.peer_count if self.p2p else (lambda: 0),
            syncing=self.follower.syncing,
            recovery=self.recovery,
            dev=dev_chain,
            call_thread=self.call_thread,
            call_workers=self.call_workers,
        )
        # ---- Postgres mirror (issue #5): its own thread; blocks only wake it.
        if self.settings.mirror_url:
            self.mirror = Mirror(
                ChainSource(self.chain),
                MirrorConfig(url=self.settings.mirror_url),
                NodeInfo(
                    mode=self.mode,
                    producers=tuple(bytes(p) for p in genesis.consensus.producers),
                    client_version=CLIENT_VERSION,
                    peer_count=lambda: backend.peer_count(),
                ),
            )
            self.metrics.register(MirrorCollector(self.mirror))
            mirror = self.mirror
            self.events.subscribe(lambda event: mirror.wake())
            self.mirror.start()
        # ---- end mirror
        eth = EthNamespace(backend)
        methods = collect(eth)
        if self.p2p is not None:
            methods |= collect(AdminNamespace(self.p2p.service, self.chain, CLIENT_VERSION))
        # debug_* tracing and raw data; eth_getProof and eth_createAccessList
        methods.update(collect(DebugNamespace(backend)))
        methods.update(collect(ProofNamespace(backend)))
        # Live RPC (rpc-live): filters, subscriptions, txpool_*, dev helpers. After eth: it
        # wraps eth_sendTransaction / eth_sendRawTransaction.
        self.live = LiveRpc(backend, eth)
        self.live.filters.limits = FilterLimits.of(self.settings.rpc)
        methods.update(self.live.methods())
        self.live.start()
        self.dispatcher = Dispatcher(methods, self.settings.rpc.batch_limit)
        self.metrics.register(NodeCollector(self))
        self.rpc = RpcServer(
            self.dispatcher,
            self.settings.rpc,
            self.settings.http_addr,
            self.settings.http_port,
            self.settings.ws_port,
            extra_routes=[
                ("GET", "/health", self._health),
                ("GET", "/healthz", self._healthz),
                ("GET", "/status", self._status),
                ("GET", "/metrics", metrics_handler(self.metrics)),
                ("GET", "/health/database", self._health_database),
                ("GET", "/health/ready", self._health_ready),
                ("GET", "/health/blockchain", self._health_blockchain),
            ],
        )
        await self.rpc.start()
        head = self.chain.head
        log.info(
            "cairn %s ready: chain %d, head #%d 0x%s, mode %s, RPC http://%s:%d",
            cairn.__version__,
            genesis.chain_id,
            head.block_number,
            head.hash.hex()[:16],
            self.mode,
            self.settings.http_addr,
            self.rpc.bound_ports[0],
        )

    async def stop(self) -> None:
        """Stop intake, finish the block in flight, close the database."""
        if self._stopped:
            return
        self._stopped = True
        log.info("shutting down: stopping RPC intake")
        if self.rpc is not None:
            await self.rpc.stop()
        if self.live is not None:
            await self.live.stop()
        if self.p2p is not None:
            await self.p2p.stop()
        if self.follower is not None:
            await self.follower.stop()
        if self.producer is not None:
            await self.producer.stop()
        if self.recovery is not None:
            self.recovery.close()
        if self.mirror is not None:
            await self.mirror.stop()  # before the store closes: the mirror reads LevelDB
        self.writer.shutdown(wait=True)
        self.reads.shutdown(wait=True)
        self.call_thread.shutdown(wait=True)
        if self.call_workers is not None:
            await self.call_workers.close()
        self.store.close()
        log.info("stopped cleanly at head #%d", self.store.head.number)

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        await self.start()
        settle_after_start()
        try:
            await self._stop.wait()
        finally:
            await self.stop()

    # ------------------------------------------------------------ health
    def _status_json(self) -> dict[str, Any]:
        head = self.chain.head
        pending, queued = self.pool.counts()
        return {
            "ok": True,
            "healthy": True,
            "mode": self.mode,
            "chainId": self.chain.chain_id,
            "genesisHash": "0x" + self.chain.genesis_hash.hex(),
            "blockNumber": head.block_number,
            "blockHash": "0x" + head.hash.hex(),
            "blockTimestamp": head.timestamp,
            "txpool": {"pending": pending, "queued": queued},
            "uptimeSeconds": round(time.time() - self.started_at, 1),
            "version": CLIENT_VERSION,
            "syncing": self.follower.syncing() if self.follower else False,
            "p2p": self._p2p_status(),
        }

    def _p2p_status(self) -> dict[str, Any] | None:
        if self.p2p is None:
            return None
        node = self.p2p.service.node_info()
        return {
            "peerId": node.peer_id,
            "listenAddrs": list(node.listen_addrs),
            "peers": [
                {"id": p.peer_id, "head": p.head, "addr": p.listen_addr, "score": p.score}
                for p in self.p2p.service.peers()
            ],
            "banned": list(node.banned),
            "stats": node.stats,
        }

    # ------------------------------------------------------------ figures for /metrics
    def _count_committed(self, event: BlockCommitted) -> None:
        self._committed[0] += 1
        self._committed[1] += len(event.result.block.transactions)

    def head_figures(self) -> tuple[int, int]:
        head = self.chain.head
        return head.block_number, head.timestamp

    def pool_figures(self) -> tuple[int, int]:
        return self.pool.counts()

    def committed_figures(self) -> tuple[int, int]:
        return self._committed[0], self._committed[1]

    def rpc_figures(self) -> tuple[dict[str, int], dict[str, int]]:
        if self.dispatcher is None:
            return {}, {}
        return dict(self.dispatcher.calls), dict(self.dispatcher.errors)

    async def _health_ready(self, request: web.Request) -> web.Response:
        """503 until this node serves an up-to-date chain (not while it catches up by sync)."""
        syncing = self.follower.syncing() if self.follower else False
        if syncing:
            return web.json_response(
                {"ready": False, "reason": "syncing", "syncing": syncing}, status=503
            )
        return web.json_response({"ready": True, "blockNumber": self.chain.head.block_number})

    async def _health_blockchain(self, request: web.Request) -> web.Response:
        head = self.chain.head
        return web.json_response(
            {
                "status": "ok",
                "blockNumber": head.block_number,
                "blockHash": "0x" + head.hash.hex(),
                "headAgeSeconds": round(max(0.0, time.time() - head.timestamp), 1),
                "mode": self.mode,
            }
        )

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _healthz(self, request: web.Request) -> web.Response:
        status = self._status_json()
        return web.json_response(
            {k: status[k] for k in ("ok", "mode", "chainId", "blockNumber", "healthy")}
        )

    async def _status(self, request: web.Request) -> web.Response:
        return web.Response(text=json.dumps(self._status_json()), content_type="application/json")

    async def _health_database(self, request: web.Request) -> web.Response:
        """The Postgres mirror: 200 while connected, 503 while Postgres is unreachable."""
        if self.mirror is None:
            return web.json_response({"status": "disabled", "connected": False})
        connected, body = self.mirror.health()
        return web.json_response(body, status=200 if connected else 503)
