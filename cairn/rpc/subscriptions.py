"""WebSocket subscriptions: eth_subscribe / eth_unsubscribe for newHeads, logs,
newPendingTransactions and syncing, with geth's notification shapes and errors.

Notifications are queued on the connection synchronously, from the feed's listeners, in the
order blocks and transactions arrive, so a client that keeps reading sees every one, in
order. A connection's subscriptions end with it. Subscriptions are bounded per connection
(PER_CONNECTION) and across every connection (--ws.max-subscriptions). Must never be
reachable over plain HTTP (there is nobody to notify): it answers "notifications not
supported" there, as geth does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from cairn.chain.events import ChainRewound
from cairn.execution.reader import StoredBlock
from cairn.rpc import params
from cairn.rpc.dispatch import rpc_method
from cairn.rpc.errors import (
    LIMIT_EXCEEDED,
    METHOD_NOT_FOUND,
    SERVER_ERROR,
    RpcError,
    invalid_params,
)
from cairn.rpc.feed import LiveFeed, SyncStatus
from cairn.rpc.filters import new_id
from cairn.rpc.format import format_header, format_transaction, hexb
from cairn.rpc.logs import LogFilter, parse_filter
from cairn.txpool.admission import DecodedTx

PER_CONNECTION = 1_000  # subscriptions one WebSocket connection may hold


class Notifier(Protocol):
    """A WebSocket connection as subscriptions use it (`cairn.rpc.server.WsSession`)."""

    closed: bool
    on_close: list[Callable[[], None]]

    def notify(self, subscription: str, result: Any) -> None: ...


class SubscriptionNamespace:
    def __init__(self, feed: LiveFeed, max_total: int) -> None:
        self._feed = feed
        self._max_total = max_total
        self._max = min(PER_CONNECTION, max_total)
        # connection -> subscription id -> what removes its listeners
        self._by_session: dict[int, dict[str, list[Callable[[], None]]]] = {}
        self._active = 0

    def active(self) -> int:
        return self._active

    def _subs_of(self, session: Notifier) -> dict[str, list[Callable[[], None]]]:
        key = id(session)
        subs = self._by_session.get(key)
        if subs is None:
            subs = self._by_session[key] = {}

            def closed() -> None:
                for removers in self._by_session.pop(key, {}).values():
                    self._active -= 1
                    for remove in removers:
                        remove()

            session.on_close.append(closed)
        return subs

    @rpc_method("eth_subscribe")
    async def subscribe(self, kind: Any, options: Any = None, context: Any = None) -> str:
        if context is None or not hasattr(context, "notify"):
            raise RpcError(METHOD_NOT_FOUND, "notifications not supported")
        session: Notifier = context
        if not isinstance(kind, str):
            raise invalid_params(f"invalid argument 0: expected a subscription name, got {kind!r}")
        subs = self._subs_of(session)
        if len(subs) >= self._max:
            raise RpcError(
                LIMIT_EXCEEDED,
                f"too many subscriptions on this connection (limit {self._max}); "
                "eth_unsubscribe some first",
            )
        if self._active >= self._max_total:
            raise RpcError(
                LIMIT_EXCEEDED,
                f"too many subscriptions on this node (limit {self._max_total}, "
                "--ws.max-subscriptions); try again later",
            )
        sub_id = new_id()

        def send(result: Any) -> None:
            if not session.closed:
                session.notify(sub_id, result)

        if kind == "newHeads":
            if options is not None:
                raise invalid_params("invalid argument 1: newHeads takes no options")
            removers = [self._feed.blocks.add(lambda b: send(format_header(b.header)))]
        elif kind == "logs":
            criteria = parse_filter(options if options is not None else {}, 1)
            if criteria.block_hash is not None:
                raise invalid_params(
                    "invalid argument 1: a logs subscription follows new blocks; "
                    "query one block's logs with eth_getLogs"
                )
            removers = self._logs(criteria, send)
        elif kind == "newPendingTransactions":
            full = params.boolean(options, 1) if options is not None else False
            removers = [self._feed.txs.add(_pending_sender(send, full))]
        elif kind == "syncing":
            removers = [self._feed.sync.add(lambda status: send(_sync_result(status)))]
        else:
            raise RpcError(METHOD_NOT_FOUND, f'no "{kind}" subscription in eth namespace')
        subs[sub_id] = removers
        self._active += 1
        return sub_id

    def _logs(self, criteria: LogFilter, send: Callable[[Any], None]) -> list[Callable[[], None]]:
        def on_block(stored: StoredBlock) -> None:
            for entry in criteria.logs_in(stored, self._feed.log_index):
                send(entry)

        def on_rewind(event: ChainRewound) -> None:
            for stored in reversed(event.removed):
                for entry in criteria.logs_in(stored, self._feed.log_index):
                    send({**entry, "removed": True})

        return [self._feed.blocks.add(on_block), self._feed.rewinds.add(on_rewind)]

    @rpc_method("eth_unsubscribe")
    async def unsubscribe(self, sub_id: Any, context: Any = None) -> bool:
        if context is None or not hasattr(context, "notify"):
            raise RpcError(METHOD_NOT_FOUND, "notifications not supported")
        if not isinstance(sub_id, str):
            raise invalid_params(f"invalid argument 0: expected a subscription id, got {sub_id!r}")
        removers = self._by_session.get(id(context), {}).pop(sub_id.lower(), None)
        if removers is None:
            raise RpcError(SERVER_ERROR, "subscription not found")
        self._active -= 1
        for remove in removers:
            remove()
        return True


def _pending_sender(
    send: Callable[[Any], None], full: bool
) -> Callable[[Sequence[DecodedTx]], None]:
    def on_txs(txs: Sequence[DecodedTx]) -> None:
        for tx in txs:
            send(format_transaction(tx.tx, tx.sender) if full else hexb(tx.hash))

    return on_txs


def _sync_result(status: SyncStatus) -> Any:
    """geth's shape: {"syncing": true, "status": {...}} while syncing, false when done."""
    if status is False:
        return False
    return {"syncing": True, "status": status}
