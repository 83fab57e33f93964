"""Memory bounds: the byte-bounded LRU, the byte estimates the caches and the pool count
(checked against tracemalloc), the pool's byte limit, and that what a refused or committed
transaction leaves behind is freed at once (no reference cycles, no per-block memo)."""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from eth.rlp.logs import Log
from eth.rlp.receipts import Receipt
from eth_typing import Address
from trie.hexary import HexaryTrie

from cairn.chain.chain import HEAD_VIEW_USES, Chain
from cairn.errors import InvalidTransaction
from cairn.execution.reader import HEADER_BYTES, StoredBlock
from cairn.memory import MIB, MemoryBudget, SizedLru
from cairn.rpc.logs import _index
from cairn.txpool.pool import PoolLimits, TxPool, estimate_entry_bytes
from tests.support.chain import KEYS, mine, open_chain
from tests.support.wallet import sign_range

DEAD = "0x000000000000000000000000000000000000dEaD"


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[Chain]:
    with open_chain(tmp_path) as c:
        yield c


def measured(build: Callable[[], Any]) -> tuple[Any, int]:
    """What `build` returns and the bytes it keeps alive (tracemalloc, after a collection)."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = build()
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return kept, after - before


def assert_estimate(estimate: int, actual: int) -> None:
    """An estimate may be generous, never much short: within [0.8, 2] of what is held."""
    assert 0.8 * actual <= estimate <= 2 * actual, (estimate, actual)


def transfers(count: int, first_nonce: int = 0, **extra: Any) -> list[bytes]:
    per_key = [sign_range(key, first_nonce, count // 10, to=DEAD, **extra) for key in KEYS]
    return [per_key[k][i] for i in range(count // 10) for k in range(10)]


# ---------------------------------------------------------------- SizedLru
def test_sized_lru_keeps_the_recent_within_its_bytes() -> None:
    lru: SizedLru[int, bytes] = SizedLru("t", 1000, len)
    for i in range(10):
        lru.put(i, bytes(300))
    footprint = lru.footprint()
    assert (footprint.entries, footprint.bytes, footprint.limit_bytes) == (3, 900, 1000)
    assert [lru.get(i) is not None for i in range(10)] == [False] * 7 + [True] * 3
    lru.get(7)  # 7 becomes the most recent: 8 is evicted next
    lru.put(10, bytes(300))
    assert lru.get(8) is None and lru.get(7) is not None
    lru.put(11, bytes(5000))  # larger than the whole cache: returned by no one, kept nowhere
    assert lru.get(11) is None and lru.footprint().bytes == 900
    lru.put(7, b"", size=0)  # replacing an entry releases its old size
    assert lru.footprint().bytes == 600
    assert lru.get_or_build(12, lambda: bytes(100)) == bytes(100)
    lru.clear()
    assert (lru.footprint().entries, lru.footprint().bytes) == (0, 0)


def test_budget_shares_stay_within_the_total_and_small_values_are_refused() -> None:
    budget = MemoryBudget(cache_mib=256)
    shares = budget.leveldb + budget.blocks + budget.rpc_json + budget.logs + budget.headers
    assert shares == budget.total == 256 * MIB
    with pytest.raises(ValueError, match="--cache"):
        MemoryBudget(cache_mib=2)
    with pytest.raises(ValueError, match=r"--txpool\.max-bytes"):
        MemoryBudget(txpool_bytes=1000)


# ---------------------------------------------------------------- estimates
def test_decoded_block_and_header_estimates_match_what_they_hold(chain: Chain) -> None:
    for raws in (transfers(200), transfers(100, 20, data=b"\x01" * 4000, gas=100_000)):
        mine(chain, raws)
        number = chain.store.head.number

        def used(n: int = number) -> StoredBlock:
            stored = chain.reader._load_block(n)
            for tx in stored.transactions:  # what formatting caches on each transaction
                tx.hash, tx.encode()
            return stored

        stored, actual = measured(used)
        assert len(stored.transactions) == len(raws)
        assert_estimate(stored.size_estimate, actual)
    headers, actual = measured(lambda: [chain.reader._load_header(1) for _ in range(200)])
    assert_estimate(HEADER_BYTES * len(headers), actual)


def test_log_index_estimate_matches_what_it_holds(chain: Chain) -> None:
    mine(chain, transfers(200))
    base = chain.reader.block_by_number(1)
    assert base is not None
    for tx in base.transactions:
        tx.hash  # noqa: B018 - cached by formatting; not part of the index
    for topics, data in ((3, 32), (1, 0), (4, 256)):
        logs = [
            Log(bytes([i % 256]) * 20, tuple(i * 7 + t for t in range(topics)), bytes(data))
            for i in range(3)
        ]
        receipts = tuple(
            Receipt(state_root=b"\x01", gas_used=1, bloom=0, logs=logs) for _ in base.receipts
        )
        stored = StoredBlock(base.block, base.senders, receipts)
        indexed, actual = measured(partial(_index, stored))
        assert len(indexed.entries) == 3 * len(receipts)
        assert_estimate(indexed.size_estimate, actual)


def test_pool_entry_estimate_matches_what_a_pooled_transaction_holds(chain: Chain) -> None:
    for raws in (transfers(200), transfers(100, data=b"\x02" * 4000, gas=100_000)):
        pool = TxPool(chain.fork, chain.chain_id, chain.head_view, chain.store)
        # the raw bytes arrive with the request: the pool keeps them, so they count
        _, actual = measured(partial(pool.add_many, [bytes(x) for x in raws]))
        assert len(pool) == len(raws)
        assert pool.footprints()[0].bytes == sum(estimate_entry_bytes(r) for r in raws)
        assert_estimate(pool.footprints()[0].bytes + pool.footprints()[1].bytes, actual)


# ---------------------------------------------------------------- the pool
def test_pool_refuses_past_its_bytes_and_forgets_what_blocks_include(chain: Chain) -> None:
    pool = TxPool(
        chain.fork, chain.chain_id, chain.head_view, chain.store, PoolLimits(bytes=1 * MIB)
    )
    big = transfers(200, data=b"\x03" * 4000, gas=100_000)
    results = pool.add_many(big)
    admitted = [r for r in results if r.error is None]
    refused = [r.error for r in results if r.error is not None]
    assert 0 < len(admitted) < len(big)
    assert all(e.reason.startswith("txpool is full") for e in refused)
    assert "--txpool.max-bytes" in refused[0].reason
    assert pool.footprints()[0].bytes <= 1 * MIB
    # a refused transaction costs nothing: the next one that fits is taken
    small = sign_range(KEYS[0], -(-len(admitted) // 10), 1, to=DEAD)[0]
    pool.add(small)
    # mined transactions leave the pool, and with them every byte and sender entry
    for _ in range(20):
        batch = list(pool.executable(chain.head_view().next_base_fee))
        if not batch:
            break
        result = mine(chain, [d.raw for d in batch])
        pool.on_block(
            (tx.hash for tx in result.block.transactions), result.senders, (), chain.head_view()
        )
    assert len(pool) == 0
    assert [(f.entries, f.bytes) for f in pool.footprints()] == [(0, 0), (0, 0)]


def test_refused_transactions_leave_no_reference_cycles(chain: Chain) -> None:
    pool = TxPool(chain.fork, chain.chain_id, chain.head_view, chain.store)
    raws = transfers(50)
    pool.add_many(raws)
    gc.collect()
    gc.disable()
    try:
        reasons = set()
        for _ in range(20):
            results = pool.add_many(raws)  # every one "already known"
            reasons |= {r.error.reason for r in results if r.error is not None}
            try:  # not pytest.raises: it clears the traceback's frames, hiding a cycle
                pool.add(raws[0])
            except InvalidTransaction as exc:
                reasons.add(exc.reason)
        del results
        found = gc.collect()
    finally:
        gc.enable()
    assert reasons == {"already known"}
    assert found == 0


def test_no_trie_memo_outlives_a_block(chain: Chain) -> None:
    mine(chain, transfers(100))
    assert HexaryTrie._cached_create_node_to_db_mapping.cache_info().currsize == 0


def test_head_view_is_rebuilt_before_its_read_log_grows_far(chain: Chain) -> None:
    mine(chain, transfers(10))
    first = chain.head_view()
    at_start = len(first.state._account_db._accessed_accounts)  # type: ignore[attr-defined]
    largest = 0
    for i in range(HEAD_VIEW_USES + 10):  # distinct accounts read at a head that stays
        view = chain.head_view()
        view.balance(Address((i + 1).to_bytes(20, "big")))
        accounts = view.state._account_db  # type: ignore[attr-defined]  # py-evm internals
        largest = max(largest, len(accounts._accessed_accounts))
    assert chain.head_view() is not first
    assert chain.head_view().header.hash == first.header.hash
    # one distinct account per use, on top of what building the view read
    assert largest <= at_start + HEAD_VIEW_USES + 1
