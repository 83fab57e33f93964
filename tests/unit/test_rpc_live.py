"""The live RPC parts on a real chain (LevelDB, py-evm, txpool): syncing notifications, and a
filter that falls too far behind. A recorder stands in for the WebSocket connection."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cairn.chain.chain import Chain
from cairn.chain.events import BlockCommitted, ChainEvents
from cairn.rpc.errors import RpcError
from cairn.rpc.feed import LiveFeed
from cairn.rpc.filters import FilterLimits, FilterNamespace
from cairn.rpc.logs import LogIndex
from cairn.rpc.subscriptions import SubscriptionNamespace
from cairn.txpool.pool import TxPool
from tests.support.chain import mine, open_chain, transfer


class Recorder:
    """Collects notifications as a WebSocket session would queue them."""

    def __init__(self) -> None:
        self.closed = False
        self.on_close: list[Callable[[], None]] = []
        self.notes: list[tuple[str, Any]] = []

    def notify(self, subscription: str, result: Any) -> None:
        self.notes.append((subscription, result))


def _pool(chain: Chain) -> TxPool:
    return TxPool(chain.fork, chain.chain_id, chain.head_view, chain.store)


async def _no_logs(_: Any) -> list[dict[str, Any]]:
    return []


def test_syncing_subscription_reports_changes_once(tmp_path: Path) -> None:
    status: list[Any] = [False]

    async def scenario(chain: Chain) -> None:
        events = ChainEvents()
        feed = LiveFeed(events, _pool(chain), lambda: status[0], LogIndex(), tick_seconds=3600)
        feed.start()
        subs = SubscriptionNamespace(feed, max_total=10)
        session = Recorder()
        sub_id = await subs.subscribe("syncing", context=session)
        progress = {"startingBlock": "0x0", "currentBlock": "0x1", "highestBlock": "0x9"}
        for value in (False, progress, progress, False):
            status[0] = value
            result = mine(chain, [])
            events.publish(BlockCommitted(result, b""))
        assert session.notes == [(sub_id, {"syncing": True, "status": progress}), (sub_id, False)]
        for close in session.on_close:
            close()
        assert subs.active() == 0 and len(feed.sync) == 0
        await feed.stop()

    with open_chain(tmp_path) as chain:
        asyncio.run(scenario(chain))


def test_newheads_and_pending_hashes_in_order(tmp_path: Path) -> None:
    async def scenario(chain: Chain) -> None:
        events = ChainEvents()
        pool = _pool(chain)
        feed = LiveFeed(events, pool, lambda: False, LogIndex(), tick_seconds=3600)
        subs = SubscriptionNamespace(feed, max_total=2)
        session = Recorder()
        heads = await subs.subscribe("newHeads", context=session)
        pending = await subs.subscribe("newPendingTransactions", context=session)
        with pytest.raises(RpcError, match="too many subscriptions"):
            await subs.subscribe("newHeads", context=session)
        raws = [transfer(0, n) for n in range(3)]
        hashes = [pool.add(raw) for raw in raws]
        numbers = []
        for raw in raws:
            result = mine(chain, [raw])
            numbers.append(result.header.block_number)
            events.publish(BlockCommitted(result, b""))
        assert [r for s, r in session.notes if s == pending] == ["0x" + h.hex() for h in hashes]
        assert [int(r["number"], 16) for s, r in session.notes if s == heads] == numbers
        assert await subs.unsubscribe(heads, context=session) is True
        with pytest.raises(RpcError, match="subscription not found"):
            await subs.unsubscribe(heads, context=session)
        await feed.stop()

    with open_chain(tmp_path) as chain:
        asyncio.run(scenario(chain))


def test_a_filter_that_falls_too_far_behind_is_dropped_with_a_clear_error(
    tmp_path: Path,
) -> None:
    async def scenario(chain: Chain) -> None:
        events = ChainEvents()
        feed = LiveFeed(events, _pool(chain), lambda: False, LogIndex(), tick_seconds=3600)
        namespace = FilterNamespace(
            feed, timeout=300, get_logs=_no_logs, limits=FilterLimits(per_filter=3)
        )
        lagging = await namespace.new_block_filter()
        polled = await namespace.new_block_filter()
        for _ in range(2):
            events.publish(BlockCommitted(mine(chain, []), b""))
        assert len(await namespace.changes(polled)) == 2
        for _ in range(2):
            events.publish(BlockCommitted(mine(chain, []), b""))
        assert len(await namespace.changes(polled)) == 2
        with pytest.raises(RpcError, match="more than 3 unread entries, or the most when"):
            await namespace.changes(lagging)
        with pytest.raises(RpcError, match="filter not found"):
            await namespace.changes(lagging)
        assert len(namespace) == 1
        await feed.stop()

    with open_chain(tmp_path) as chain:
        asyncio.run(scenario(chain))
