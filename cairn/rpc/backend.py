"""What the RPC layer is given by the node: the chain, the pool, a block producer (when this
node makes blocks), limits, and dev keys (dev mode only). Small protocols, no node imports.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Protocol

from eth_typing import Address

from cairn.execution.call import CallRunner
from cairn.execution.chain import BlockCommitted, Chain
from cairn.execution.events import ChainEvents
from cairn.txpool.pool import TxPool
from cairn.txpool.recovery import SenderRecovery


class Clock(Protocol):
    offset: int
    next_timestamp: int | None
    interval: int | None


class BlockProducer(Protocol):
    """The local sequencer, as dev-mode RPC methods drive it."""

    automine: bool

    @property
    def clock(self) -> Clock: ...

    async def produce(self, *, allow_empty: bool = False) -> BlockCommitted | None: ...

    def set_interval(self, seconds: float) -> None: ...


@dataclass(frozen=True)
class RpcConfig:
    gas_cap: int = 50_000_000
    logs_block_range: int = 10_000
    logs_max_results: int = 20_000
    batch_limit: int = 1_000
    max_body_bytes: int = 16 * 1024 * 1024
    max_response_bytes: int = 32 * 1024 * 1024
    rate_limit_per_second: float = 0.0
    rate_limit_burst: int = 200
    cors_origins: tuple[str, ...] = ("*",)
    filter_timeout: float = 300.0
    ws_max_subscriptions: int = 1_000


def _no_peers() -> int:
    return 0


def _not_syncing() -> dict[str, Any] | bool:
    return False


@dataclass
class Backend:
    chain: Chain
    pool: TxPool
    events: ChainEvents
    calls: CallRunner
    reads: Executor
    config: RpcConfig
    client_version: str
    dev_mode: bool = False
    producer: BlockProducer | None = None
    dev_keys: Mapping[Address, bytes] = field(default_factory=dict)
    peer_count: Callable[[], int] = _no_peers
    syncing: Callable[[], dict[str, Any] | bool] = _not_syncing
    impersonated: set[Address] = field(default_factory=set)
    recovery: SenderRecovery | None = None
