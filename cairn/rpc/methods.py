"""`RpcMethods`: every JSON-RPC namespace of a node, built once, each method registered by
exactly one namespace (a duplicate is refused at start), plus the live feed that filters,
subscriptions and dev sends listen to."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from cairn.rpc.backend import Backend
from cairn.rpc.debug import DebugNamespace
from cairn.rpc.dev import DevNamespace, DevSends
from cairn.rpc.dispatch import ALWAYS_OPEN, Handler, collect_all, namespace_of, rpc_method
from cairn.rpc.eth import EthNamespace
from cairn.rpc.feed import LiveFeed
from cairn.rpc.filters import FilterLimits, FilterNamespace
from cairn.rpc.proof import ProofNamespace
from cairn.rpc.send import SendNamespace
from cairn.rpc.simulate import SimulateNamespace
from cairn.rpc.subscriptions import SubscriptionNamespace
from cairn.rpc.trace_api import TraceNamespace
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
        debug = DebugNamespace(backend)
        self.table: dict[str, Handler] = collect_all(
            self.eth,
            self.send,
            self.filters,
            self.subscriptions,
            TxPoolNamespace(backend.pool),
            DevNamespace(backend),
            debug,
            TraceNamespace(backend, debug.tracer),
            ProofNamespace(backend),
            SimulateNamespace(backend),
            RpcModules(lambda: self.table, config.http_api),
            *extra,
        )

    def start(self) -> None:
        self.feed.start()

    async def stop(self) -> None:
        await self.feed.stop()


class RpcModules:
    """geth's `rpc_modules`: the namespaces served, each as version "1.0" (open on every
    endpoint, as in geth; lists what --http.api lets HTTP clients reach)."""

    def __init__(
        self, table: Callable[[], Mapping[str, Handler]], http_api: frozenset[str] | None
    ) -> None:
        self._table = table
        self._http_api = http_api

    @rpc_method("rpc_modules")
    async def modules(self) -> dict[str, str]:
        names = {namespace_of(method) for method in self._table()}
        if self._http_api is not None:
            names = {n for n in names if n in self._http_api or n in ALWAYS_OPEN}
        return {name: "1.0" for name in sorted(names)}
