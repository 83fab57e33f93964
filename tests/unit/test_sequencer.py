"""The sequencer on a real LevelDB chain and pool: automine, fixed block time with empty
blocks, requests that leave the pool out, transactions the builder rejects, and a stop that
finishes the block in flight. Every block goes through the one applier."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path

from eth_typing import Address

from cairn.chain.apply import BlockApplier
from cairn.chain.chain import Chain
from cairn.chain.events import BlockCommitted, ChainEvents
from cairn.consensus.sequencer import BlockRequest, ProducerConfig, Sequencer
from cairn.execution.overrides import AccountOverride
from cairn.txpool.pool import TxPool
from tests.support.chain import ADDRESSES, PRODUCER, open_chain, transfer
from tests.support.wait import wait_until_async


@asynccontextmanager
async def sequencer(
    tmp_path: Path, *, block_time: float = 0.0, empty_blocks: bool = False
) -> AsyncIterator[tuple[Chain, TxPool, Sequencer, list[BlockCommitted]]]:
    with open_chain(tmp_path) as chain, ThreadPoolExecutor(1) as writer:
        events = ChainEvents()
        seen: list[BlockCommitted] = []
        events.subscribe(seen.append)
        pool = TxPool(chain.fork, chain.chain_id, chain.head_view, chain.store)
        applier = BlockApplier(chain, pool, events, writer)
        config = ProducerConfig(
            key=PRODUCER,
            coinbase=chain.genesis.coinbase,
            gas_limit=chain.head.gas_limit,
            block_time=block_time,
            empty_blocks=empty_blocks,
        )
        seq = Sequencer(chain, pool, applier, writer, config)
        seq.start()
        try:
            yield chain, pool, seq, seen
        finally:
            await seq.stop()


async def _until(condition: object, message: str) -> None:
    async def check() -> bool:
        return bool(condition())  # type: ignore[operator]

    await wait_until_async(check, within=30, message=message)


def test_automine_takes_what_arrives_and_the_pool_forgets_it(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with sequencer(tmp_path) as (chain, pool, _seq, seen):
            hashes = pool.add_many([transfer(0, n) for n in range(3)])
            assert all(r.error is None for r in hashes)
            await _until(lambda: len(pool) == 0, "the pool to empty")
            mined = [tx.hash for e in seen for tx in e.result.block.transactions]
            assert mined == [r.tx_hash for r in hashes]
            assert [e.number for e in seen] == list(range(1, len(seen) + 1))
            assert chain.head.block_number == len(seen)
            assert chain.head_view().nonce(Address(ADDRESSES[0])) == 3

    asyncio.run(scenario())


def test_fixed_block_time_with_empty_blocks_ticks_without_traffic(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with sequencer(tmp_path, block_time=0.2, empty_blocks=True) as (chain, _, _, seen):
            await _until(lambda: chain.head.block_number >= 3, "three empty blocks")
            assert all(not e.result.block.transactions for e in seen)
            stamps = [e.result.header.timestamp for e in seen]
            assert stamps == sorted(set(stamps))  # strictly increasing

    asyncio.run(scenario())


def test_a_request_can_leave_the_pool_out_and_carry_overrides(tmp_path: Path) -> None:
    async def scenario() -> None:
        # manual mining (block time 0 but automine off): only produce() makes blocks
        async with sequencer(tmp_path) as (chain, pool, seq, _):
            seq.set_mining(automine=False, interval=0)
            pool.add(transfer(1, 0))
            whale = Address(b"\x0b" * 20)
            event = await seq.produce(
                BlockRequest(include_pool=False, overrides=(AccountOverride(whale, balance=7),))
            )
            assert event is not None and not event.result.block.transactions
            assert chain.head_view().balance(whale) == 7
            assert len(pool) == 1  # untouched
            assert await seq.produce(BlockRequest(include_pool=False)) is None
            event = await seq.produce()
            assert event is not None and len(event.result.block.transactions) == 1
            assert len(pool) == 0

    asyncio.run(scenario())


def test_a_transaction_the_builder_rejects_leaves_the_pool(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with sequencer(tmp_path) as (chain, pool, seq, seen):
            seq.set_mining(automine=False, interval=0)
            poor = Address(b"\x0c" * 20)
            # both admitted against the head; the override block then empties account 2
            pool.add(transfer(2, 0))
            assert len(pool) == 1
            await seq.produce(
                BlockRequest(
                    include_pool=False,
                    overrides=(AccountOverride(Address(ADDRESSES[2]), balance=0),),
                )
            )
            await seq.produce(BlockRequest(allow_empty=True))
            assert len(pool) == 0  # dropped as unaffordable at the new head
            assert all(not e.result.block.transactions for e in seen)
            assert chain.head_view().balance(poor) == 0

    asyncio.run(scenario())


def test_stop_finishes_the_block_in_flight(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with sequencer(tmp_path) as (chain, pool, seq, _):
            seq.set_mining(automine=False, interval=0)
            pool.add_many([transfer(0, n) for n in range(50)])
            in_flight = asyncio.create_task(seq.produce())
            await asyncio.sleep(0)  # let it take the production lock
            await seq.stop()
            event = await in_flight
            assert event is not None and len(event.result.block.transactions) == 50
            assert chain.store.head.number == event.number

    asyncio.run(scenario())


def test_an_unaffordable_follow_up_is_rejected_and_production_goes_on(tmp_path: Path) -> None:
    """Two transactions from one sender, each affordable on its own against the head: the
    second fails at build time. It used to fail the whole block (py-evm's journal cannot be
    reverted past apply_transaction), which stopped the automine loop for good."""

    async def scenario() -> None:
        async with sequencer(tmp_path) as (chain, pool, _seq, seen):
            balance = chain.head_view().balance(Address(ADDRESSES[2]))
            first = transfer(2, 0, value=balance - 10**17)
            second = transfer(2, 1, value=balance - 10**17)
            results = pool.add_many([first, second])
            await _until(lambda: chain.head.block_number >= 1, "a block")
            await _until(lambda: len(pool) == 0, "the unaffordable one to be dropped")
            mined = [tx.hash for e in seen for tx in e.result.block.transactions]
            assert results[0].tx_hash in mined and results[1].tx_hash not in mined
            later = pool.add(transfer(3, 0))
            await _until(lambda: chain.reader.tx_location(later) is not None, "a later block")

    asyncio.run(scenario())
