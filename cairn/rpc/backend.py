"""What the RPC layer is given by the node: the chain, the pool, its caches, limits, dev
control and dev keys (dev mode only). Small protocols, no node imports.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from eth.abc import BlockHeaderAPI
from eth_typing import Address

from cairn.chain.chain import Chain
from cairn.chain.events import BlockCommitted, ChainEvents
from cairn.execution.call import CallParams, CallRunner
from cairn.execution.callworker import CallWorkers
from cairn.execution.devstate import ImpersonatedTx
from cairn.execution.overrides import AccountOverride
from cairn.memory import MemoryBudget
from cairn.rpc.logs import LogIndex
from cairn.txpool.pool import TxPool
from cairn.txpool.recovery import SenderRecovery

T = TypeVar("T")


class DevControl(Protocol):
    """Dev-chain control (cairn.consensus.devchain.DevChain), as the dev helpers drive it."""

    @property
    def mining(self) -> tuple[bool, float]: ...

    def set_automine(self, enabled: bool) -> None: ...

    def set_interval_mining(self, seconds: float) -> None: ...

    async def mine(
        self, blocks: int = 1, *, interval: int | None = None
    ) -> list[BlockCommitted]: ...

    def increase_time(self, seconds: int) -> int: ...

    def set_next_timestamp(self, timestamp: int) -> None: ...

    def set_timestamp_interval(self, seconds: int | None) -> None: ...

    async def set_state(self, overrides: tuple[AccountOverride, ...]) -> BlockCommitted: ...

    def snapshot(self) -> int: ...

    async def revert(self, snapshot_id: int) -> bool: ...

    def impersonate(self, address: Address) -> None: ...

    def stop_impersonating(self, address: Address) -> None: ...

    def set_auto_impersonate(self, enabled: bool) -> None: ...

    def is_impersonated(self, address: Address) -> bool: ...

    def pending_nonce(self, address: Address) -> int: ...

    async def send_impersonated(self, request: ImpersonatedTx) -> bytes: ...


@dataclass(frozen=True)
class RpcConfig:
    """Every RPC limit and access rule (flags in `cairn.node.config`; docs/security.md)."""

    gas_cap: int = 50_000_000
    call_workers: int = 0  # processes for eth_call / eth_estimateGas; 0 runs them in-process
    logs_block_range: int = 10_000
    logs_max_results: int = 20_000
    batch_limit: int = 1_000
    max_body_bytes: int = 5 * 1024 * 1024
    max_response_bytes: int = 32 * 1024 * 1024
    rate_limit_per_second: float = 0.0  # per client address; 0 is off
    rate_limit_burst: int = 200
    trusted_proxies: tuple[str, ...] = ()  # IPs/CIDRs whose X-Forwarded-For names the client
    cors_origins: tuple[str, ...] = ()  # empty: no CORS header (geth)
    vhosts: tuple[str, ...] = ("localhost",)  # Host names accepted; IPs always are
    ws_origins: tuple[str, ...] = ()  # empty: pages on this machine (geth)
    http_api: frozenset[str] | None = None  # namespaces over HTTP; None is every one
    ws_api: frozenset[str] | None = None
    token: bytes | None = None  # bearer token opening every namespace; None: no token
    filter_timeout: float = 300.0
    max_filters: int = 2_000
    filter_backlog: int = 1_000_000  # unread filter entries across every filter
    ws_max_subscriptions: int = 10_000  # across every connection
    ws_max_connections: int = 500
    ws_send_buffer: int = 8 * 1024 * 1024  # bytes queued for one connection
    evm_timeout: float = 5.0  # seconds for one eth_call/eth_estimateGas; 0 is none
    trace_timeout: float = 30.0  # the most a debug_trace* may run, whatever it asks


def _no_peers() -> int:
    return 0


def _not_syncing() -> dict[str, Any] | bool:
    return False


@dataclass
class Backend:
    chain: Chain
    pool: TxPool
    events: ChainEvents
    log_index: LogIndex
    calls: CallRunner
    reads: Executor
    config: RpcConfig
    client_version: str
    dev_mode: bool = False
    mining: bool = False  # this node makes blocks (eth_mining)
    dev_keys: Mapping[Address, bytes] = field(default_factory=dict)
    peer_count: Callable[[], int] = _no_peers
    syncing: Callable[[], dict[str, Any] | bool] = _not_syncing
    recovery: SenderRecovery | None = None
    dev: DevControl | None = None  # dev chains only: evm_*, anvil_*, hardhat_* helpers
    # eth_call-like work runs on one thread: its calls share one warm state (CallRunner),
    # and a single thread avoids GIL hand-offs between readers that would wait anyway.
    call_thread: Executor | None = None
    # eth_call and eth_estimateGas in worker processes (--rpc.call-workers; None: in here)
    call_workers: CallWorkers | None = None
    # --cache: what the RPC caches (formatted blocks and receipts) may hold
    memory: MemoryBudget = field(default_factory=MemoryBudget)

    async def run_read(self, fn: Callable[[], T]) -> T:
        """Heavy reads (log scans, traces, proofs) off the event loop, on the read threads."""
        # The thread runs in a copy of this context: its log records carry the request id.
        context = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(self.reads, context.run, fn)

    async def run_call(self, fn: Callable[[], T]) -> T:
        """eth_call, eth_estimateGas and the like, on the call thread."""
        executor = self.call_thread or self.reads
        context = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(executor, context.run, fn)

    async def call(self, header: BlockHeaderAPI, params: CallParams) -> bytes:
        """eth_call's output on the state after `header` (raises on revert or failure, and
        past --rpc.evmtimeout with geth's "execution aborted (timeout = …)")."""
        timeout = self.config.evm_timeout
        if self.call_workers is not None:
            return await self.call_workers.call(header, params, evm_timeout=timeout)
        return await self.run_call(lambda: self.calls.call(header, params, timeout=timeout).output)

    async def estimate_gas(self, header: BlockHeaderAPI, params: CallParams) -> int:
        timeout = self.config.evm_timeout
        if self.call_workers is not None:
            return await self.call_workers.estimate_gas(header, params, evm_timeout=timeout)
        return await self.run_call(lambda: self.calls.estimate_gas(header, params, timeout=timeout))
