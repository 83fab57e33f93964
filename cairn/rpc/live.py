"""Assembly of the live JSON-RPC parts: the feed, filters, subscriptions, the txpool namespace
and the dev helpers, as one object the node starts and stops beside `EthNamespace`."""

from __future__ import annotations

from cairn.rpc.backend import Backend
from cairn.rpc.dev import DevNamespace
from cairn.rpc.dispatch import Handler, collect
from cairn.rpc.eth import EthNamespace
from cairn.rpc.feed import LiveFeed
from cairn.rpc.filters import FilterNamespace
from cairn.rpc.subscriptions import SubscriptionNamespace
from cairn.rpc.txpool_api import TxPoolNamespace


class LiveRpc:
    def __init__(self, backend: Backend, eth: EthNamespace) -> None:
        config = backend.config
        self.feed = LiveFeed(
            backend.events,
            backend.pool,
            backend.syncing,
            tick_seconds=min(1.0, max(0.05, config.filter_timeout / 4)),
        )
        self.filters = FilterNamespace(self.feed, config.filter_timeout, eth.get_logs)
        self.subscriptions = SubscriptionNamespace(self.feed, config.ws_max_subscriptions)
        self.txpool = TxPoolNamespace(backend.pool)
        self.dev = DevNamespace(backend, eth, self.feed)

    def methods(self) -> dict[str, Handler]:
        """Every method of the live parts. eth_sendTransaction and eth_sendRawTransaction here
        wrap eth.py's (impersonation; automine answers after mining), so they must be merged
        after EthNamespace's methods."""
        methods: dict[str, Handler] = {}
        for namespace in (self.filters, self.subscriptions, self.txpool, self.dev):
            methods.update(collect(namespace))
        return methods

    def start(self) -> None:
        self.feed.start()

    async def stop(self) -> None:
        await self.feed.stop()
