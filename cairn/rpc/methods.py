"""`RpcMethods`: every JSON-RPC namespace of a node, built once, each method registered by
exactly one namespace (a duplicate is refused at start), plus the live feed that filters,
subscriptions and dev sends listen to."""

from __future__ import annotations

from cairn.rpc.backend import Backend
from cairn.rpc.debug import DebugNamespace
from cairn.rpc.dev import DevNamespace, DevSends
from cairn.rpc.dispatch import Handler, collect_all
from cairn.rpc.eth import EthNamespace
from cairn.rpc.feed import LiveFeed
from cairn.rpc.filters import FilterLimits, FilterNamespace
from cairn.rpc.proof import ProofNamespace
from cairn.rpc.send import SendNamespace
from cairn.rpc.subscriptions import SubscriptionNamespace
from cairn.rpc.txpool_api import TxPoolNamespace


class RpcMethods:
    def __init__(self, backend: Backend, *extra: object) -> None:
        """`extra`: namespaces the node adds (admin_* when it runs p2p)."""
        config = backend.config
        self.feed = LiveFeed(
            backend.events,
            backend.pool,
            backend.syncing,
            backend.log_index,
            tick_seconds=min(1.0, max(0.05, config.filter_timeout / 4)),
        )
        self.eth = EthNamespace(backend)
        dev_sends = DevSends(backend, self.feed) if backend.dev is not None else None
        self.send = SendNamespace(backend, dev_sends)
        self.filters = FilterNamespace(
            self.feed, config.filter_timeout, self.eth.get_logs, FilterLimits.of(config)
        )
        self.subscriptions = SubscriptionNamespace(self.feed, config.ws_max_subscriptions)
        self.table: dict[str, Handler] = collect_all(
            self.eth,
            self.send,
            self.filters,
            self.subscriptions,
            TxPoolNamespace(backend.pool),
            DevNamespace(backend),
            DebugNamespace(backend),
            ProofNamespace(backend),
            *extra,
        )

    def start(self) -> None:
        self.feed.start()

    async def stop(self) -> None:
        await self.feed.stop()
