from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import rlp

from cairn.chain.chain import Chain
from cairn.errors import InvalidTransaction
from cairn.txpool.pool import PoolLimits, TxPool
from tests.support.chain import ADDRESSES, KEYS, legacy, mine, open_chain, transfer


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[Chain]:
    with open_chain(tmp_path) as c:
        yield c


def make_pool(chain: Chain, limits: PoolLimits | None = None) -> TxPool:
    return TxPool(chain.fork, chain.chain_id, chain.head_view, chain.store, limits or PoolLimits())


def reject(pool: TxPool, raw: bytes, fragment: str) -> None:
    before = len(pool)
    journal = pool._journal.load_journal()
    with pytest.raises(InvalidTransaction) as caught:
        pool.add(raw)
    assert fragment in caught.value.reason
    assert len(pool) == before
    assert pool._journal.load_journal() == journal


def test_accepts_journals_and_orders_by_tip_then_nonce(chain: Chain) -> None:
    pool = make_pool(chain)
    low = [pool.add(transfer(0, n, tip=10**9)) for n in range(3)]
    high = [pool.add(transfer(1, n, tip=2 * 10**9, max_fee=4 * 10**9)) for n in range(2)]
    assert len(chain.store.load_journal()) == 5
    order = [d.hash for d in pool.executable(base_fee=10**9)]
    assert order == high + low  # better tip first; each sender's nonces stay in order


def test_nonce_order_holds_even_when_later_nonce_pays_more(chain: Chain) -> None:
    pool = make_pool(chain)
    first = pool.add(transfer(0, 0, tip=1))
    second = pool.add(transfer(0, 1, tip=2 * 10**9, max_fee=5 * 10**9))
    assert [d.hash for d in pool.executable(base_fee=10**9)] == [first, second]


def test_future_nonce_is_queued_then_promoted(chain: Chain) -> None:
    pool = make_pool(chain)
    gap = pool.add(transfer(2, 1))
    assert list(pool.executable(10**9)) == []
    assert pool.counts() == (0, 1)
    assert pool.pending_nonce(ADDRESSES[2], 0) == 0
    first = pool.add(transfer(2, 0))
    assert [d.hash for d in pool.executable(10**9)] == [first, gap]
    assert pool.counts() == (2, 0)
    assert pool.pending_nonce(ADDRESSES[2], 0) == 2


def test_replacement_needs_ten_percent_bump(chain: Chain) -> None:
    pool = make_pool(chain)
    original = pool.add(transfer(3, 0, max_fee=3 * 10**9, tip=10**9))
    reject(
        pool,
        transfer(3, 0, max_fee=3 * 10**9 + 1, tip=10**9 + 1, value=2),
        "replacement transaction underpriced",
    )
    replacement = pool.add(transfer(3, 0, max_fee=33 * 10**8, tip=11 * 10**8, value=2))
    assert original not in pool
    assert replacement in pool
    assert [d.hash for d in pool.executable(10**9)] == [replacement]
    assert original not in [
        chain.fork.decode_transaction(r).hash for r in chain.store.load_journal()
    ]


def test_mined_and_stale_transactions_leave_pool(chain: Chain) -> None:
    pool = make_pool(chain)
    raws = [transfer(4, n) for n in range(3)]
    hashes = [pool.add(r) for r in raws]
    result = mine(chain, raws[:2])
    pool.on_block(
        included=[tx.hash for tx in result.block.transactions],
        senders=result.senders,
        rejected=[],
        head=chain.head_view(),
    )
    assert hashes[0] not in pool and hashes[1] not in pool
    assert [d.hash for d in pool.executable(10**9)] == [hashes[2]]


def test_transactions_mined_elsewhere_make_pooled_ones_stale(chain: Chain) -> None:
    pool = make_pool(chain)
    mine_here = pool.add(transfer(5, 0, value=1))
    other = transfer(5, 0, value=2)  # same nonce, mined by someone else
    result = mine(chain, [other])
    pool.on_block(included=[], senders=result.senders, rejected=[], head=chain.head_view())
    assert mine_here not in pool
    assert len(pool) == 0


@pytest.mark.parametrize(
    ("make_raw", "fragment"),
    [
        (lambda: transfer(0, 0, chain_id=1), "invalid chain id for signer: have 1 want 31337"),
        (
            lambda: transfer(0, 0, gas=20_000),
            "intrinsic gas too low: gas 20000, minimum needed 21000",
        ),
        (
            lambda: transfer(0, 0, max_fee=10**8, tip=10**8),
            "max fee per gas less than block base fee",
        ),
        (
            lambda: transfer(0, 0, tip=5 * 10**9, max_fee=4 * 10**9),
            "max priority fee per gas higher than max fee per gas",
        ),
        (lambda: transfer(0, 0, value=10**30), "insufficient funds for gas * price + value"),
        (lambda: transfer(0, 0, gas=31_000_000), "exceeds block gas limit"),
        (lambda: transfer(0, 0, data=b"\x00" * (130 * 1024), gas=29_000_000), "oversized data"),
        (lambda: b"\xf8\x01\x02", "rlp"),
        (lambda: b"\x05\xc0", "transaction type not supported"),
        (lambda: b"\x03" + rlp.encode([1, 2, 3]), "transaction type not supported"),
    ],
)
def test_invalid_transactions_get_gethlike_errors(chain: Chain, make_raw, fragment: str) -> None:  # type: ignore[no-untyped-def]
    reject(make_pool(chain), make_raw(), fragment)


def _with_signature(raw: bytes, r: int, s: int, y_parity: int | None = None) -> bytes:
    fields = rlp.decode(raw[1:])
    fields[-2] = rlp.sedes.big_endian_int.serialize(r)
    fields[-1] = rlp.sedes.big_endian_int.serialize(s)
    if y_parity is not None:
        fields[-3] = rlp.sedes.big_endian_int.serialize(y_parity)
    return raw[:1] + bytes(rlp.encode(fields))


SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


@pytest.mark.parametrize(
    ("r", "s", "y", "fragment"),
    [
        (0, 1, None, "invalid transaction v, r, s values"),
        (1, 0, None, "invalid transaction v, r, s values"),
        (1, SECP256K1_N - 1, None, "invalid transaction v, r, s values"),  # high s (EIP-2)
        (SECP256K1_N + 5, 1, None, "invalid sender"),  # r is not on the curve order
        (1, 1, 7, "invalid sender"),  # y parity must be 0 or 1
    ],
)
def test_bad_signature_is_refused(
    chain: Chain, r: int, s: int, y: int | None, fragment: str
) -> None:
    reject(make_pool(chain), _with_signature(transfer(0, 0), r, s, y), fragment)


def test_tampered_signature_belongs_to_someone_else(chain: Chain) -> None:
    raw = transfer(0, 0)
    fields = rlp.decode(raw[1:])
    r = int.from_bytes(fields[-2], "big")
    s = int.from_bytes(fields[-1], "big")
    # another valid signature over the same payload recovers another (unfunded) address
    reject(make_pool(chain), _with_signature(raw, r, s - 1), "insufficient funds")


def test_nonce_too_low_and_already_known(chain: Chain) -> None:
    raw = transfer(6, 0)
    result = mine(chain, [raw])
    assert result.block.transactions
    pool = make_pool(chain)
    reject(pool, raw, "nonce too low")
    fresh = transfer(6, 1)
    pool.add(fresh)
    reject(pool, fresh, "already known")


def test_legacy_and_unprotected_transactions(chain: Chain) -> None:
    pool = make_pool(chain)
    pool.add(legacy(7, 0))
    unprotected = legacy(7, 1, chainId=None)
    pool.add(unprotected)
    assert pool.counts() == (2, 0)


def test_limits(chain: Chain) -> None:
    pool = make_pool(chain, PoolLimits(per_sender=3, queued_per_sender=1, total=5))
    for n in range(3):
        pool.add(transfer(8, n))
    reject(pool, transfer(8, 3), "account limit exceeded")
    pool.add(transfer(9, 1))  # queued
    reject(pool, transfer(9, 2), "too many queued")
    pool.add(transfer(9, 0))
    reject(pool, transfer(0, 0), "txpool is full")


def test_overdraft_counts_pending_spend(chain: Chain) -> None:
    pool = make_pool(chain)
    balance = chain.head_view().balance(ADDRESSES[1])
    pool.add(transfer(1, 0, value=balance // 2))
    reject(pool, transfer(1, 1, value=balance // 2 + 1), "insufficient funds")


def test_restore_readmits_and_drops_with_reason(
    chain: Chain, caplog: pytest.LogCaptureFixture
) -> None:
    pool = make_pool(chain)
    kept = pool.add(transfer(2, 0))
    stale_raw = transfer(3, 0)
    pool.add(stale_raw)
    mine(chain, [transfer(3, 0, value=9)])  # makes the pooled nonce-0 tx of sender 3 stale
    restored = make_pool(chain)
    with caplog.at_level("INFO"):
        assert restored.restore() == (1, 1)
    assert kept in restored
    assert "nonce too low" in caplog.text
    assert len(chain.store.load_journal()) == 1


def test_batch_is_journaled_once_and_each_answer_is_its_own(chain: Chain) -> None:
    pool = make_pool(chain)
    results = pool.add_many(
        [transfer(0, 0), transfer(0, 0), transfer(1, 0, chain_id=2), transfer(1, 0)]
    )
    assert results[0].error is None
    assert results[1].error is not None
    assert "already known" in results[1].error.reason
    assert results[2].error is not None and "chain id" in results[2].error.reason
    assert results[3].error is None
    assert len(chain.store.load_journal()) == 2
    assert KEYS  # the dev keys are loaded


def test_senders_recovered_in_a_worker_process_are_used(chain: Chain) -> None:
    import asyncio

    from cairn.txpool.recovery import SenderRecovery

    raws = [transfer(0, n) for n in range(3)] + [b"\x02garbage"]
    recovery = SenderRecovery(chain.fork.name)
    try:
        senders = asyncio.run(recovery.recover(raws))
    finally:
        recovery.close()
    assert senders[:3] == [ADDRESSES[0]] * 3
    assert senders[3] is None
    pool = make_pool(chain)
    results = pool.add_many(raws, senders=senders)
    assert [r.error is None for r in results] == [True, True, True, False]
    assert all(d.sender == ADDRESSES[0] for d in pool.executable(10**9))


def test_a_dead_recovery_worker_is_replaced(chain: Chain) -> None:
    """Killed (say by the OOM killer), the worker fails one batch, which admission then
    recovers itself; the next batch runs on a fresh worker, not in the node process."""
    import asyncio
    import os
    import signal
    from concurrent.futures.process import BrokenProcessPool

    from cairn.txpool.recovery import SenderRecovery

    raws = [transfer(0, n) for n in range(3)]
    recovery = SenderRecovery(chain.fork.name)

    async def scenario() -> list[bytes | None]:
        assert await recovery.recover(raws) == [ADDRESSES[0]] * 3
        first = recovery._pool
        for pid in list(first._processes):
            os.kill(pid, signal.SIGKILL)
        with pytest.raises(BrokenProcessPool):
            await recovery.recover(raws)
        assert recovery._pool is not first
        return await recovery.recover(raws)

    try:
        assert asyncio.run(scenario()) == [ADDRESSES[0]] * 3
    finally:
        recovery.close()
