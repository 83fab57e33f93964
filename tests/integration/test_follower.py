"""The follower and block sync on two real LevelDB chains in one process: gossip import,
out-of-order gossip, range sync from a peer, a peer that answers nothing, and forged blocks
refused without touching storage.

The `BlockSource` here serves the producer chain's stored blocks directly: it stands in
for the transport, which the e2e tests cover; follower and block sync are the real ones.
"""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from eth_keys.datatypes import PrivateKey

from cairn.chain.apply import BlockApplier
from cairn.chain.bundle import BlockBundle, load_bundle
from cairn.chain.chain import Chain
from cairn.chain.commit import make_commit
from cairn.chain.events import BlockCommitted, ChainEvents
from cairn.consensus.blocksync import BlockSync
from cairn.consensus.follower import Follower
from cairn.errors import CairnError, InvalidBlock, InvalidCommit
from cairn.execution.forks import encode_header
from cairn.txpool.pool import TxPool
from tests.support.chain import CHAIN_ID, PRODUCER, mine, open_chain, transfer
from tests.support.wait import wait_until_async

BLOCKS = 6


class StoreSource:
    def __init__(self, chain: Chain, *, empty: bool = False) -> None:
        self.chain = chain
        self.empty = empty  # answer every range with nothing (a lying peer)
        self.penalties: list[tuple[str, str]] = []
        self.synced = 0

    def best_head(self) -> int:
        return self.chain.store.head.number

    def is_running(self) -> bool:
        return True

    async def fetch_range(self, start: int, count: int) -> tuple[str, list[bytes]]:
        if self.empty:
            return "peer-a", []
        out = []
        for n in range(start, min(start + count, self.best_head() + 1)):
            bundle = load_bundle(self.chain.reader, n)
            assert bundle is not None
            out.append(bundle.encode())
        return "peer-a", out

    def penalise(self, peer: str, error: CairnError) -> None:
        self.penalties.append((peer, type(error).__name__))

    def count_synced(self, blocks: int) -> None:
        self.synced += blocks


def _bundle(chain: Chain, n: int) -> bytes:
    bundle = load_bundle(chain.reader, n)
    assert bundle is not None
    return bundle.encode()


@pytest.fixture
def producer(tmp_path: Path):  # type: ignore[no-untyped-def]
    with open_chain(tmp_path / "producer") as chain:
        for n in range(BLOCKS):
            mine(chain, [transfer(0, n), transfer(1, n, value=n + 1)])
        yield chain


def test_gossip_out_of_order_and_forgeries(tmp_path: Path, producer: Chain) -> None:
    async def scenario() -> None:
        with open_chain(tmp_path / "follower") as chain, ThreadPoolExecutor(1) as writer:
            events = ChainEvents()
            seen: list[int] = []
            events.subscribe(lambda e: seen.append(e.number))
            pool = TxPool(chain.fork, CHAIN_ID, chain.head_view, chain.store)
            follower = Follower(BlockApplier(chain, pool, events, writer), importing=True)

            assert await follower.on_gossip_block(_bundle(producer, 1)) is True
            assert chain.store.head.number == 1 and seen == [1]
            # Block 3 arrives before 2: it waits for its parent, then imports in order.
            three = asyncio.create_task(follower.on_gossip_block(_bundle(producer, 3)))
            await asyncio.sleep(0)
            assert await follower.on_gossip_block(_bundle(producer, 2)) is True
            assert await three is True
            assert seen == [1, 2, 3]
            # Known blocks are fine to relay; nothing is imported twice.
            assert await follower.on_gossip_block(_bundle(producer, 2)) is True
            assert seen == [1, 2, 3]

            real = BlockBundle.decode(_bundle(producer, 4))
            header = chain.fork.decode_header(real.header)
            stranger = PrivateKey(os.urandom(32))
            forged_commit = BlockBundle(
                real.header,
                real.transactions,
                make_commit(stranger, CHAIN_ID, 4, header.hash).encode(),
            )
            with pytest.raises(InvalidCommit, match="not a producer"):
                await follower.on_gossip_block(forged_commit.encode())
            lying = header.copy(state_root=b"\x22" * 32)
            wrong_root = BlockBundle(
                encode_header(lying),
                real.transactions,
                make_commit(PRODUCER, CHAIN_ID, 4, lying.hash).encode(),
            )
            with pytest.raises(InvalidBlock, match="state_root mismatch"):
                await follower.on_gossip_block(wrong_root.encode())
            with pytest.raises(InvalidBlock, match="undecodable"):
                await follower.on_gossip_block(b"\x93\x01\x02")
            assert chain.store.head.number == 3
            assert chain.store.load_number(lying.hash) is None
            assert seen == [1, 2, 3]
            assert await follower.on_gossip_block(real.encode()) is True
            assert chain.head.hash == header.hash

    asyncio.run(scenario())


def test_range_sync_catches_up_and_reports(tmp_path: Path, producer: Chain) -> None:
    async def scenario() -> None:
        with open_chain(tmp_path / "follower") as chain, ThreadPoolExecutor(1) as writer:
            events = ChainEvents()
            done = asyncio.Event()

            def on_block(event: BlockCommitted) -> None:
                if event.number == BLOCKS:
                    done.set()

            events.subscribe(on_block)
            pool = TxPool(chain.fork, CHAIN_ID, chain.head_view, chain.store)
            applier = BlockApplier(chain, pool, events, writer)
            follower = Follower(applier, importing=True)
            source = StoreSource(producer)
            sync = BlockSync(applier, follower, source)
            assert sync.syncing() == {
                "startingBlock": "0x0",
                "currentBlock": "0x0",
                "highestBlock": hex(BLOCKS),
            }
            sync.start()
            try:
                await asyncio.wait_for(done.wait(), 60)
            finally:
                await sync.stop()
            for n in range(BLOCKS + 1):
                assert chain.reader.header_by_number(n) == producer.reader.header_by_number(n)
            assert source.synced == BLOCKS and source.penalties == []
            assert sync.syncing() is False
            assert applier.applied == BLOCKS

    asyncio.run(scenario())


def test_a_peer_that_answers_nothing_is_penalised_and_sync_says_behind(
    tmp_path: Path, producer: Chain
) -> None:
    async def scenario() -> None:
        with open_chain(tmp_path / "follower") as chain, ThreadPoolExecutor(1) as writer:
            pool = TxPool(chain.fork, CHAIN_ID, chain.head_view, chain.store)
            applier = BlockApplier(chain, pool, ChainEvents(), writer)
            source = StoreSource(producer, empty=True)
            sync = BlockSync(applier, Follower(applier, importing=True), source)
            sync.start()
            try:

                async def penalised() -> bool:
                    return bool(source.penalties)

                await wait_until_async(penalised, within=30, message="a penalty")
            finally:
                await sync.stop()
            assert source.penalties[0] == ("peer-a", "EmptyRange")
            assert chain.store.head.number == 0
            status = sync.syncing()
            assert isinstance(status, dict) and status["highestBlock"] == hex(BLOCKS)

    asyncio.run(scenario())
