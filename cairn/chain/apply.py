"""`BlockApplier`: the one way a block enters the chain, whatever made it — the sequencer,
a BFT commit, gossip, range sync, `cairn import` (trusted or not), or a dev helper.

`apply(result, commit)` checks the commit against the genesis producer set, writes the block
in one synced batch (on the writer thread), then, on the event loop, does every after-commit
step in one place: the txpool forgets what the block settled, and `BlockCommitted` is
published once — filters, subscriptions, relay, mirror, metrics and block sync listen to it.
In the manner of CometBFT's `BlockExecutor.ApplyBlock`. Must never execute or choose
transactions: callers hand it an executed `BlockResult`.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor

from eth.abc import BlockAPI, BlockHeaderAPI
from eth_typing import Address

from cairn.chain.chain import Chain
from cairn.chain.commit import Commit, validate_commit
from cairn.chain.events import BlockCommitted, ChainEvents, ChainRewound
from cairn.errors import InvalidBlock
from cairn.execution.builder import BlockResult
from cairn.txpool.pool import TxPool


class BlockApplier:
    def __init__(self, chain: Chain, pool: TxPool, events: ChainEvents, writer: Executor) -> None:
        self.chain = chain
        self.events = events
        self._pool = pool
        self._writer = writer
        consensus = chain.genesis.consensus
        self._producers = frozenset(consensus.producers)
        self._threshold = consensus.threshold
        self._lock = asyncio.Lock()
        self.applied = 0  # blocks applied since start

    def verify_commit(self, header: BlockHeaderAPI, commit: bytes) -> set[Address]:
        """Raise `InvalidCommit` unless `commit` proves `header` against the producer set."""
        return validate_commit(
            Commit.decode(commit),
            chain_id=self.chain.chain_id,
            number=header.block_number,
            block_hash=header.hash,
            producers=self._producers,
            threshold=self._threshold,
        )

    def is_canonical(self, header: BlockHeaderAPI) -> bool:
        return self.chain.store.load_number(header.hash) == header.block_number

    async def apply(self, result: BlockResult, commit: bytes) -> BlockCommitted:
        """Check, store and announce one block that extends the head; raise `InvalidCommit` /
        `InvalidBlock` (nothing written) otherwise."""
        async with self._lock:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._writer, self._check_and_write, result, commit)
            return self._committed(result, commit)

    async def import_block(
        self, block: BlockAPI, commit: bytes, *, trusted: bool = False
    ) -> BlockCommitted | None:
        """Apply a block made elsewhere: check its commit, re-execute it on the head (every
        root must match), store and announce it. None when it is already canonical; raise
        `InvalidCommit` / `InvalidBlock` for a bad block or one that does not extend the head.

        `trusted` (`cairn import --trusted`, or a chain of another client): no commit is
        checked and none is stored — the empty commit, which no peer's sync accepts, marks the
        block as trusted for good. Execution and roots are checked all the same.
        """
        if trusted and commit:
            raise ValueError("a trusted import stores no commit")
        header = block.header
        async with self._lock:
            if header.block_number <= self.chain.store.head.number:
                if self.is_canonical(header):
                    return None
                raise InvalidBlock(
                    header.block_number,
                    header.hash,
                    f"conflicts with canonical block #{header.block_number}",
                )
            loop = asyncio.get_running_loop()
            result = await loop.run_in_executor(
                self._writer, self._reexecute, block, commit, trusted
            )
            return self._committed(result, commit)

    def _reexecute(self, block: BlockAPI, commit: bytes, trusted: bool) -> BlockResult:
        if not trusted:
            self.verify_commit(block.header, commit)
        result = self.chain.executor.import_block(block)
        self.chain.write_block(result, commit)
        return result

    def _committed(self, result: BlockResult, commit: bytes) -> BlockCommitted:
        """The after-commit steps, once per block whatever its source (lock held)."""
        event = BlockCommitted(result, commit)
        self.applied += 1
        self._pool.on_block(
            included=(tx.hash for tx in result.block.transactions),
            # accounts a dev override changed too: their nonce or balance may differ now
            senders=(*result.senders, *(o.address for o in result.dev_extras.overrides)),
            rejected=((r.tx.hash, r.reason) for r in result.rejected),
            head=self.chain.head_view(),
        )
        self.events.publish(event)
        return event

    def _check_and_write(self, result: BlockResult, commit: bytes) -> None:
        self.verify_commit(result.header, commit)
        self.chain.write_block(result, commit)

    async def rewind(self, number: int, *, drop_snapshots_from: int | None = None) -> ChainRewound:
        """Dev chains (evm_revert): delete the blocks above `number`, re-check the pool and
        publish `ChainRewound`. The caller makes sure no block is being produced meanwhile."""
        async with self._lock:
            loop = asyncio.get_running_loop()
            removed = await loop.run_in_executor(
                self._writer,
                lambda: self.chain.rewind(number, drop_snapshots_from=drop_snapshots_from),
            )
            self._pool.reset()
            event = ChainRewound(number, self.chain.head.hash, removed)
            self.events.publish_rewound(event)
            return event
