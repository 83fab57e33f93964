"""Polling filters: eth_newFilter, eth_newBlockFilter, eth_newPendingTransactionFilter,
eth_getFilterChanges, eth_getFilterLogs, eth_uninstallFilter — as geth answers them.

A filter collects what arrives after it was installed (block hashes, pending transaction
hashes, or blocks whose logs may match) until it is polled; one not polled for
`RpcConfig.filter_timeout` seconds (geth: 5 minutes) is removed. What filters may hold is
bounded (`FilterLimits`): how many are installed (--rpc.max-filters), unread entries per
filter, and unread entries across all of them (--rpc.filter-backlog; past it the fullest
filter is dropped, and says so when next polled). Must never scan history on the event
loop: eth_getFilterLogs runs the eth_getLogs query off the loop.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from cairn.chain.events import ChainRewound
from cairn.execution.reader import StoredBlock
from cairn.rpc.backend import RpcConfig
from cairn.rpc.dispatch import rpc_method
from cairn.rpc.errors import LIMIT_EXCEEDED, SERVER_ERROR, RpcError, invalid_params
from cairn.rpc.feed import LiveFeed
from cairn.rpc.format import hexb
from cairn.rpc.logs import LogFilter, parse_filter
from cairn.rpc.params import BlockRef
from cairn.txpool.admission import DecodedTx

FILTER_NOT_FOUND = "filter not found"
# Unread entries one filter may hold; past that it is dropped with an error on the next poll.
MAX_UNREAD = 100_000

Kind = Literal["logs", "blocks", "pending"]


@dataclass(frozen=True)
class FilterLimits:
    max_filters: int = 2_000  # installed at once, every client together
    backlog: int = 1_000_000  # unread entries across every filter
    per_filter: int = MAX_UNREAD

    @classmethod
    def of(cls, config: RpcConfig) -> FilterLimits:
        return cls(max_filters=config.max_filters, backlog=config.filter_backlog)


@dataclass
class _Filter:
    kind: Kind
    deadline: float
    criteria: LogFilter | None = None
    request: Any = None  # the filter object as given, for eth_getFilterLogs
    hashes: list[bytes] = field(default_factory=list)
    # log filters: (block, removed?) in arrival order; logs are formatted when polled
    blocks: list[tuple[StoredBlock, bool]] = field(default_factory=list)
    overflowed: bool = False

    def unread(self) -> int:
        return len(self.hashes) + len(self.blocks)


def new_id() -> str:
    """A random 128-bit id in geth's shape (hex, no leading zeros)."""
    return "0x" + (secrets.token_hex(16).lstrip("0") or "0")


def _first(ref: BlockRef) -> int | None:
    if ref.tag == "earliest":
        return 0
    return ref.number


def _last(ref: BlockRef) -> int | None:
    if ref.tag == "earliest":
        return 0
    return ref.number


class FilterNamespace:
    def __init__(
        self,
        feed: LiveFeed,
        timeout: float,
        get_logs: Callable[[Any], Awaitable[list[dict[str, Any]]]],
        limits: FilterLimits | None = None,
    ) -> None:
        self._timeout = timeout
        self._get_logs = get_logs
        self._filters: dict[str, _Filter] = {}
        self._unread = 0  # entries held by every filter together
        self.limits = limits or FilterLimits()
        self._log_index = feed.log_index
        feed.blocks.add(self._on_block)
        feed.txs.add(self._on_txs)
        feed.rewinds.add(self._on_rewind)
        feed.ticks.add(self._expire)

    def __len__(self) -> int:
        return len(self._filters)

    # ------------------------------------------------------------ feed
    def _on_block(self, stored: StoredBlock) -> None:
        number = stored.header.block_number
        for flt in self._filters.values():
            if flt.kind == "blocks":
                self._add(flt, hashes=(stored.header.hash,))
            elif flt.kind == "logs" and _in_range(flt.criteria, number):
                self._add(flt, blocks=((stored, False),))
        self._check_backlog()

    def _on_txs(self, txs: Sequence[DecodedTx]) -> None:
        hashes: tuple[bytes, ...] | None = None
        for flt in self._filters.values():
            if flt.kind == "pending":
                hashes = hashes if hashes is not None else tuple(tx.hash for tx in txs)
                self._add(flt, hashes=hashes)
        self._check_backlog()

    def _on_rewind(self, event: ChainRewound) -> None:
        # geth sends logs of blocks that left the chain again with "removed": true
        for flt in self._filters.values():
            if flt.kind != "logs":
                continue
            removed = tuple(
                (stored, True)
                for stored in reversed(event.removed)
                if _in_range(flt.criteria, stored.header.block_number)
            )
            self._add(flt, blocks=removed)
        self._check_backlog()

    def _add(
        self,
        flt: _Filter,
        *,
        hashes: Sequence[bytes] = (),
        blocks: Sequence[tuple[StoredBlock, bool]] = (),
    ) -> None:
        if flt.overflowed:
            return
        flt.hashes.extend(hashes)
        flt.blocks.extend(blocks)
        self._unread += len(hashes) + len(blocks)
        if flt.unread() > self.limits.per_filter:
            self._overflow(flt)

    def _overflow(self, flt: _Filter) -> None:
        flt.overflowed = True
        self._unread -= flt.unread()
        flt.hashes = []
        flt.blocks = []

    def _check_backlog(self) -> None:
        while self._unread > self.limits.backlog:
            self._overflow(max(self._filters.values(), key=_Filter.unread))

    def _forget(self, filter_id: str) -> bool:
        flt = self._filters.pop(filter_id, None)
        if flt is None:
            return False
        self._unread -= flt.unread()
        return True

    def _expire(self, now: float) -> None:
        for filter_id in [i for i, f in self._filters.items() if f.deadline < now]:
            self._forget(filter_id)

    def _install(self, flt: _Filter) -> str:
        if len(self._filters) >= self.limits.max_filters:
            raise RpcError(
                LIMIT_EXCEEDED,
                f"too many filters installed (limit {self.limits.max_filters}, "
                "--rpc.max-filters): eth_uninstallFilter unused ones, or subscribe over "
                "WebSocket instead",
            )
        filter_id = new_id()
        self._filters[filter_id] = flt
        return filter_id

    def _deadline(self) -> float:
        return asyncio.get_running_loop().time() + self._timeout

    def _lookup(self, filter_id: Any) -> tuple[str, _Filter]:
        if not isinstance(filter_id, str):
            raise invalid_params(f"invalid argument 0: expected a filter id, got {filter_id!r}")
        key = filter_id.lower()
        flt = self._filters.get(key)
        if flt is None or flt.deadline < asyncio.get_running_loop().time():
            self._forget(key)
            raise RpcError(SERVER_ERROR, FILTER_NOT_FOUND)
        return key, flt

    # ------------------------------------------------------------ methods
    @rpc_method("eth_newFilter")
    async def new_filter(self, criteria: Any) -> str:
        parsed = parse_filter(criteria, 0)
        first, last = _first(parsed.from_block), _last(parsed.to_block)
        if first is not None and last is not None and first > last:
            raise RpcError(SERVER_ERROR, "invalid from and to block combination")
        return self._install(_Filter("logs", self._deadline(), criteria=parsed, request=criteria))

    @rpc_method("eth_newBlockFilter")
    async def new_block_filter(self) -> str:
        return self._install(_Filter("blocks", self._deadline()))

    @rpc_method("eth_newPendingTransactionFilter")
    async def new_pending_filter(self, full: Any = None) -> str:
        if full:
            raise invalid_params(
                "invalid argument 0: full transactions are not supported by filters; "
                'use eth_subscribe("newPendingTransactions", true)'
            )
        return self._install(_Filter("pending", self._deadline()))

    @rpc_method("eth_uninstallFilter")
    async def uninstall(self, filter_id: Any) -> bool:
        if not isinstance(filter_id, str):
            raise invalid_params(f"invalid argument 0: expected a filter id, got {filter_id!r}")
        return self._forget(filter_id.lower())

    @rpc_method("eth_getFilterChanges")
    async def changes(self, filter_id: Any) -> list[Any]:
        key, flt = self._lookup(filter_id)
        if flt.overflowed:
            self._forget(key)
            raise RpcError(
                SERVER_ERROR,
                f"filter {key} was removed: more than {self.limits.per_filter} unread entries, "
                f"or the most when all filters held more than {self.limits.backlog} "
                "(--rpc.filter-backlog); poll eth_getFilterChanges more often, or query "
                "history with eth_getLogs",
            )
        flt.deadline = self._deadline()
        self._unread -= flt.unread()
        if flt.kind != "logs":
            hashes, flt.hashes = flt.hashes, []
            return [hexb(h) for h in hashes]
        blocks, flt.blocks = flt.blocks, []
        assert flt.criteria is not None
        logs: list[dict[str, Any]] = []
        for stored, removed in blocks:
            for entry in flt.criteria.logs_in(stored, self._log_index):
                logs.append({**entry, "removed": True} if removed else entry)
        return logs

    @rpc_method("eth_getFilterLogs")
    async def logs(self, filter_id: Any) -> list[dict[str, Any]]:
        _, flt = self._lookup(filter_id)
        if flt.kind != "logs":
            raise RpcError(SERVER_ERROR, FILTER_NOT_FOUND)
        return await self._get_logs(flt.request)


def _in_range(criteria: LogFilter | None, number: int) -> bool:
    if criteria is None or criteria.block_hash is not None:
        return False  # a blockHash filter names one existing block: nothing new arrives
    first, last = _first(criteria.from_block), _last(criteria.to_block)
    return (first is None or number >= first) and (last is None or number <= last)
