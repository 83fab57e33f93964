"""`Node`: opens the datadir, builds every component whole, starts them in order, and shuts
down cleanly (stop intake, finish the block in flight, close the database)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from eth_keys.datatypes import PrivateKey
from eth_typing import Address

import cairn
from cairn.chain.apply import BlockApplier
from cairn.chain.chain import Chain, open_store
from cairn.chain.events import BlockCommitted, ChainEvents
from cairn.consensus.bft.engine import BftConfig, BftEngine, ConsensusRelay, Outbox, StoredEvidence
from cairn.consensus.bft.metrics import BftCollector
from cairn.consensus.bft.state import Timeouts
from cairn.consensus.bft.wal import SignGuard, Wal
from cairn.consensus.blocksync import BlockSync, SyncStatus
from cairn.consensus.devchain import DevChain
from cairn.consensus.follower import Follower
from cairn.consensus.sequencer import ProducerConfig, Sequencer
from cairn.errors import ConfigError
from cairn.execution.call import CallRunner
from cairn.execution.callworker import CallWorkers
from cairn.execution.forks import fork_named
from cairn.execution.vm import code_analysis_footprint
from cairn.genesis.model import Genesis
from cairn.memory import Footprint, MemoryBudget
from cairn.mirror.metrics import MirrorCollector
from cairn.mirror.service import Mirror, MirrorConfig, NodeInfo
from cairn.mirror.source import ChainSource
from cairn.node.backup import ControlServer, NodeBackups
from cairn.node.faucet.service import (
    Faucet,
    FaucetCollector,
    FaucetConfig,
    FaucetServer,
)
from cairn.node.health import Health, HealthPolicy, HealthSources
from cairn.node.heap import settle_after_start
from cairn.node.metrics import (
    BlockMetrics,
    MemoryCollector,
    MetricsServer,
    NodeCollector,
    RpcLatency,
    Watched,
    WatchedBalances,
    metrics_handler,
    new_registry,
)
from cairn.node.p2p_wiring import P2PLink
from cairn.p2p.api import P2PConfig
from cairn.rpc.admin import AdminNamespace
from cairn.rpc.backend import Backend, RpcConfig
from cairn.rpc.consensus import CairnNamespace
from cairn.rpc.dispatch import Dispatcher
from cairn.rpc.logs import LogIndex
from cairn.rpc.methods import RpcMethods
from cairn.rpc.server import RpcServer
from cairn.txpool.intake import Intake
from cairn.txpool.pool import PoolLimits, TxPool
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
    empty_blocks: bool | None = None  # None: as genesis says
    dev: bool = False
    dev_keys: dict[Address, bytes] = field(default_factory=dict)
    p2p: P2PConfig | None = None
    mirror_url: str | None = None
    # health thresholds (--health.*); None: from what the node is
    health_max_head_age: float | None = None
    health_min_peers: int | None = None
    health_max_blocks_behind: int = 2
    memory: MemoryBudget = field(default_factory=MemoryBudget)  # --cache, --txpool.max-bytes
    metrics_addr: str | None = None  # --metrics.addr: a separate /metrics listener
    metrics_port: int = 6060
    watch: tuple[Watched, ...] = ()  # --metrics.watch
    faucet: FaucetConfig | None = None  # --faucet


def _not_syncing() -> SyncStatus:
    return False


class Node:
    def __init__(self, settings: NodeSettings) -> None:
        self.settings = settings
        self.started_at = time.time()
        genesis = settings.genesis
        self.fork = fork_named(genesis.consensus.fork)
        self.store = open_store(settings.datadir / "chaindata", genesis, self.fork, settings.memory)
        try:
            self._build(settings)
        except BaseException:
            self.store.close()
            raise
        self._stop = asyncio.Event()
        self._stopped = False
        self.exit_code = 0  # non-zero when the node stopped itself because a part failed
        self._background: set[asyncio.Future[None]] = set()

    def _build(self, settings: NodeSettings) -> None:
        genesis = settings.genesis
        self.chain = Chain(self.store, genesis, self.fork, settings.memory)
        self.writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cairn-writer")
        self.reads = ThreadPoolExecutor(max_workers=2, thread_name_prefix="cairn-reads")
        self.call_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cairn-calls")
        self.events = ChainEvents()
        self.pool = TxPool(
            self.fork,
            genesis.chain_id,
            self.chain.head_view,
            self.store,
            PoolLimits(bytes=settings.memory.txpool_bytes),
        )
        self.applier = BlockApplier(self.chain, self.pool, self.events, self.writer)
        self.consensus_out = Outbox()
        self.metrics = new_registry()
        self.dev, self.producer = self._producer()
        self.engine = self._validator()
        self.follower = Follower(self.applier, importing=self.producer is None)
        self.p2p = self._p2p()
        self.sync = (
            BlockSync(self.applier, self.follower, self.p2p.service)
            if self.p2p is not None and self.producer is None
            else None
        )
        self.recovery = SenderRecovery(self.fork.name)
        rpc = settings.rpc
        self.call_workers = (
            CallWorkers(self.chain.reader, rpc.gas_cap, rpc.call_workers, next_block=settings.dev)
            if rpc.call_workers > 0
            else None
        )
        self.backend = Backend(
            chain=self.chain,
            pool=self.pool,
            events=self.events,
            log_index=LogIndex(settings.memory.logs),
            # eth_call's block context: Anvil's (the next block) on a dev chain, geth's (the
            # named block) on a network node
            calls=CallRunner(
                self.chain.reader, rpc.gas_cap, rpc.evm_timeout, next_block=settings.dev
            ),
            reads=self.reads,
            config=rpc,
            client_version=CLIENT_VERSION,
            dev_mode=settings.dev,
            mining=self.producer is not None,
            dev_keys=settings.dev_keys,
            peer_count=self.p2p.service.peer_count if self.p2p else (lambda: 0),
            syncing=self.sync.syncing if self.sync else _not_syncing,
            recovery=self.recovery,
            dev=self.dev,
            call_thread=self.call_thread,
            call_workers=self.call_workers,
            memory=settings.memory,
        )
        self.mirror = self._mirror()
        admin = [AdminNamespace(self.p2p.service, self.chain, CLIENT_VERSION)] if self.p2p else []
        self.methods = RpcMethods(self.backend, CairnNamespace(self.chain, self.engine), *admin)
        self.dispatcher = Dispatcher(
            self.methods.table, rpc.batch_limit, observe=RpcLatency(self.metrics).observe
        )
        self.health = Health(
            HealthSources(
                chain=self.chain,
                pool=self.pool,
                mode=self.mode,
                version=CLIENT_VERSION,
                started_at=self.started_at,
                syncing=self.backend.syncing,
                p2p=self.p2p.service if self.p2p else None,
                mirror=self.mirror,
                consensus=self.engine,
                policy=self._health_policy(),
            )
        )
        self.rpc = RpcServer(
            self.dispatcher,
            rpc,
            settings.http_addr,
            settings.http_port,
            settings.ws_port,
            extra_routes=[
                *self.health.routes(),
                ("GET", "/metrics", metrics_handler(self.metrics)),
            ],
        )
        self._committed = [0, 0]  # blocks, transactions since start (for /metrics)
        self.events.subscribe(self._count_committed)
        self.metrics.register(NodeCollector(self))
        if self.engine is not None:
            self.metrics.register(BftCollector(self.engine))
        self.metrics.register(MemoryCollector(self))
        self.faucet = self._faucet(settings)
        self._metrics_wiring(settings)
        self.backups = NodeBackups(self.store, settings.datadir)
        self.control = ControlServer(settings.datadir, {"backup": self.backups.backup})

    def _metrics_wiring(self, settings: NodeSettings) -> None:
        """Block figures from the chain's events, watched balances, the separate listener."""
        head = self.chain.head
        blocks = BlockMetrics(self.metrics, (head.block_number, head.timestamp))
        self.events.subscribe(blocks.on_commit)
        self.events.subscribe_rewound(blocks.on_rewind)
        watched = list(settings.watch)
        key = settings.producer_key
        if key is not None and (self.producer is not None or self.engine is not None):
            label = "validator" if self.engine is not None else "producer"
            watched.append(Watched(Address(key.public_key.to_canonical_address()), label))
        if settings.faucet is not None:
            watched.append(Watched(settings.faucet.address, "faucet"))
        self.metrics.register(WatchedBalances(self.chain.head_view, tuple(watched)))
        self.metrics_server = (
            MetricsServer(self.metrics, settings.metrics_addr, settings.metrics_port)
            if settings.metrics_addr
            else None
        )

    def _faucet(self, settings: NodeSettings) -> FaucetServer | None:
        """--faucet: its transactions enter the pool as eth_sendRawTransaction's do."""
        if settings.faucet is None:
            return None
        faucet = Faucet(
            settings.faucet,
            self.chain.chain_id,
            self.chain.head_view,
            self.pool,
            Intake(self.pool, self.recovery),
            self.store,
        )
        self.metrics.register(FaucetCollector(faucet))
        return FaucetServer(faucet, self.rpc.clients)

    def _producer(self) -> tuple[DevChain | None, Sequencer | None]:
        """This node's block producer, if it holds a producer key of a sequencer chain."""
        key = self.settings.producer_key
        consensus = self.settings.genesis.consensus
        if key is None or consensus.mode != "sequencer":
            return None, None
        address = key.public_key.to_canonical_address()
        if address not in consensus.producers:
            raise SystemExit(
                f"error: producer key 0x{address.hex()} is not a producer in genesis "
                f"({', '.join('0x' + p.hex() for p in consensus.producers)})"
            )
        block_time = (
            self.settings.block_time
            if self.settings.block_time is not None
            else consensus.block_time
        )
        config = ProducerConfig(
            key=key,
            coinbase=self.settings.genesis.coinbase,
            gas_limit=self.chain.head.gas_limit,
            block_time=block_time,
            # a dev chain with a block time mines empty blocks too, as Anvil does
            empty_blocks=(
                self.settings.empty_blocks
                if self.settings.empty_blocks is not None
                else consensus.empty_blocks or (self.settings.dev and block_time > 0)
            ),
        )
        if self.settings.dev:
            dev = DevChain(
                self.chain,
                self.pool,
                self.applier,
                self.writer,
                config,
                networked=self.settings.p2p is not None,
            )
            return dev, dev.sequencer
        return None, Sequencer(self.chain, self.pool, self.applier, self.writer, config)

    def _validator(self) -> BftEngine | None:
        """This node's consensus engine, if it holds a validator key of a validator chain."""
        key = self.settings.producer_key
        consensus = self.settings.genesis.consensus
        if consensus.mode != "validators" or key is None:
            return None
        address = Address(key.public_key.to_canonical_address())
        if address not in consensus.producers:
            raise ConfigError(
                f"validator key 0x{address.hex()} is not one of the genesis validators "
                f"({', '.join('0x' + p.hex() for p in consensus.producers)}); start this node "
                "without --producer.* to run it as a full node"
            )
        if self.settings.p2p is None:
            raise ConfigError(
                "a validator needs p2p to reach the other validators: give --p2p.port / --bootnodes"
            )
        block_time = (
            self.settings.block_time
            if self.settings.block_time is not None
            else consensus.block_time
        )
        config = BftConfig(
            key=key,
            coinbase=address,
            gas_limit=self.chain.head.gas_limit,
            block_time=block_time,
            empty_blocks=(
                self.settings.empty_blocks
                if self.settings.empty_blocks is not None
                else consensus.empty_blocks
            ),
            timeouts=Timeouts(
                propose=consensus.timeout_propose,
                propose_delta=consensus.timeout_propose / 4,
                vote=consensus.timeout_vote,
                vote_delta=consensus.timeout_vote / 2,
            ),
        )
        home = self.settings.datadir / "consensus"
        return BftEngine(
            self.applier,
            self.pool,
            self.writer,
            config,
            self.consensus_out,
            Wal(home / "wal"),
            SignGuard(home / "sign-state"),
            StoredEvidence(self.store),
        )

    def _p2p(self) -> P2PLink | None:
        settings = self.settings
        if settings.p2p is None:
            return None
        validators_mode = settings.genesis.consensus.mode == "validators"
        return P2PLink(
            settings.p2p,
            self.chain,
            self.pool,
            self.events,
            self.follower,
            self.metrics,
            # every node that makes blocks announces them: a validator announces the blocks
            # its consensus commits (full nodes take the first copy and ignore the rest)
            producer=self.producer is not None or self.engine is not None,
            consensus=(
                self.engine
                if self.engine is not None
                else ConsensusRelay(self.chain, self.consensus_out)
                if validators_mode
                else None
            ),
            consensus_out=self.consensus_out if self.engine is not None else None,
            consensus_penalties=self.consensus_out,
            on_failed=self._p2p_failed,
        )

    def _p2p_failed(self, reason: str) -> None:
        """p2p could not be kept running: stop the node and exit non-zero rather than serve
        as if it still followed or led the network."""
        log.critical("p2p failed for good (%s); stopping the node (exit code %d)", reason, 3)
        self.exit_code = 3
        self.request_stop()

    def _mirror(self) -> Mirror | None:
        """The Postgres mirror (its own thread; committed blocks only wake it)."""
        if not self.settings.mirror_url:
            return None
        p2p = self.p2p
        mirror = Mirror(
            ChainSource(self.chain),
            MirrorConfig(url=self.settings.mirror_url),
            NodeInfo(
                mode=self.mode,
                producers=tuple(bytes(p) for p in self.settings.genesis.consensus.producers),
                client_version=CLIENT_VERSION,
                peer_count=p2p.service.peer_count if p2p else (lambda: 0),
            ),
        )
        self.metrics.register(MirrorCollector(mirror))
        self.events.subscribe(lambda event: mirror.wake())
        return mirror

    @property
    def mode(self) -> str:
        if self.dev is not None:
            return "dev"
        if self.engine is not None:
            return "validator"
        return "sequencer" if self.producer is not None else "fullnode"

    def expected_interval(self) -> float | None:
        """Seconds between blocks when this chain is meant to tick on its own (a block time
        with empty blocks); None when blocks come only with transactions."""
        if self.producer is not None:
            config = self.producer.config
            return config.block_time if config.block_time > 0 and config.empty_blocks else None
        if self.engine is not None:
            bft = self.engine.config
            return max(bft.block_time, 1.0) if bft.empty_blocks else None
        consensus = self.settings.genesis.consensus
        if not consensus.empty_blocks:
            return None
        if consensus.mode == "validators":
            return max(consensus.block_time, 1.0)
        return consensus.block_time if consensus.block_time > 0 else None

    def _health_policy(self) -> HealthPolicy:
        settings = self.settings
        interval = self.expected_interval()
        max_age = settings.health_max_head_age
        if max_age is None and interval is not None:
            max_age = 3 * interval + 10  # three missed blocks and slack for a slow one
        min_peers = settings.health_min_peers
        if min_peers is None:
            # a full node or validator without peers cannot be up to date; a lone
            # sequencer or dev chain makes its own blocks
            min_peers = 1 if self.p2p is not None and self.producer is None else 0
        return HealthPolicy(
            max_head_age=max_age,
            min_peers=min_peers,
            max_blocks_behind=settings.health_max_blocks_behind,
        )

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        kept, dropped = self.pool.restore()
        if kept or dropped:
            log.info("txpool journal: %d transactions re-admitted, %d dropped", kept, dropped)
        if self.dev is not None:
            self.dev.start()
        elif self.producer is not None:
            self.producer.start()
        if self.engine is not None:
            self.engine.start()
        # Sender recovery on the second core; its worker starts in the background.
        self._background.add(asyncio.ensure_future(self.recovery.warm_up()))
        if self.p2p is not None:
            await self.p2p.start()
        if self.sync is not None:
            self.sync.start()
        if self.call_workers is not None:
            await self.call_workers.start()
        if self.mirror is not None:
            self.mirror.start()
        self.methods.start()
        self.health.loop.start()
        if self.metrics_server is not None:
            await self.metrics_server.start()
        await self.control.start()
        if self.faucet is not None:
            await self.faucet.start()
        try:
            await self.rpc.start()
        except OSError as exc:
            ports = ", ".join(str(p) for p in (self.settings.http_port, self.settings.ws_port) if p)
            raise ConfigError(
                f"JSON-RPC could not listen on {self.settings.http_addr} port(s) {ports}: "
                f"{exc.strerror or exc}. Pick free ports with --http.port / --ws.port, or stop "
                "the process using them."
            ) from exc
        head = self.chain.head
        log.info(
            "cairn %s ready: chain %d, head #%d 0x%s, mode %s, RPC http://%s:%d",
            cairn.__version__,
            self.chain.chain_id,
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
        await self.rpc.stop()
        if self.metrics_server is not None:
            await self.metrics_server.stop()
        await self.control.stop()
        if self.faucet is not None:
            await self.faucet.stop()
        await self.health.loop.stop()
        await self.methods.stop()
        if self.p2p is not None:
            await self.p2p.stop()
        if self.sync is not None:
            await self.sync.stop()
        if self.producer is not None:
            await self.producer.stop()
        if self.engine is not None:
            await self.engine.stop()
        self.recovery.close()
        if self.mirror is not None:
            await self.mirror.stop()  # before the store closes: the mirror reads LevelDB
        for task in self._background:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*self._background, return_exceptions=True)
        await self.backups.wait_idle()  # a backup being written finishes before the store closes
        self.writer.shutdown(wait=True)  # an import in flight finishes and commits first
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
        try:
            await self.start()
        except BaseException:
            await self.stop()  # whatever had started (p2p, workers, producer) stops again
            raise
        settle_after_start()
        try:
            await self._stop.wait()
        finally:
            await self.stop()

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
        return dict(self.dispatcher.calls), dict(self.dispatcher.errors)

    def memory_figures(self) -> list[Footprint]:
        """Every bounded structure of the node process (docs/operations.md, Memory budget)."""
        figures = [
            self.store.footprint(),
            *self.chain.reader.footprints(),
            *self.pool.footprints(),
            *self.methods.eth.footprints(),
            self.backend.log_index.footprint(),
            code_analysis_footprint(),
        ]
        if self.p2p is not None:
            figures.extend(self.p2p.relay.footprints())
        return figures

    def worker_pids(self) -> list[tuple[str, int, int]]:
        """(kind, index, pid) of the sender-recovery and eth_call worker processes."""
        found = [("recovery", i, pid) for i, pid in enumerate(self.recovery.pids())]
        if self.call_workers is not None:
            found.extend(("call", i, pid) for i, pid in enumerate(self.call_workers.pids()))
        return found
