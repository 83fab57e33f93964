"""`Follower`: how a node without the producer key takes blocks from gossip.

A gossiped block is judged before it is relayed: its commit must prove it against the
genesis producer set (`BlockApplier.verify_commit`). The next block is re-executed and
applied at once (`BlockApplier.import_block`, the one way into the chain); a block further
ahead is parked for `BlockSync`, which fetches the gap. Invalid data raises from the error
tree so the transport can penalise whoever sent it; it never reaches storage.

Never imports p2p: gossip arrives as bytes through `on_gossip_block`.
"""

from __future__ import annotations

import asyncio
import logging
import time

from eth.abc import BlockHeaderAPI

from cairn.chain.apply import BlockApplier
from cairn.chain.bundle import BlockBundle
from cairn.chain.events import BlockCommitted
from cairn.errors import CairnError

log = logging.getLogger("cairn.follower")

# A gossiped block one ahead of a block still in flight waits this long for its parent
# before it is parked for block sync (gossip validators run concurrently).
PARENT_WAIT_SECONDS = 2.0
MAX_PARKED = 1024


class Follower:
    def __init__(self, applier: BlockApplier, *, importing: bool) -> None:
        self._applier = applier
        self._chain = applier.chain
        self.importing = importing
        self._head_changed = asyncio.Event()
        self._parked: dict[int, BlockBundle] = {}
        self.highest_seen = 0  # highest block number seen with a valid commit
        self.wake_sync = asyncio.Event()  # set when a block arrived that sync must fill up to
        applier.events.subscribe(self._on_block)

    def _on_block(self, event: BlockCommitted) -> None:
        self._head_changed.set()
        self._head_changed = asyncio.Event()

    def verify(self, bundle: BlockBundle) -> BlockHeaderAPI:
        """Decode the header and prove the commit; raise InvalidBlock/InvalidCommit."""
        header = bundle.decode_header(self._chain.fork)
        self._applier.verify_commit(header, bundle.commit)
        return header

    async def on_gossip_block(self, data: bytes) -> bool:
        """Judge (and when it is next, import) a gossiped block before it is relayed."""
        bundle = BlockBundle.decode(data)
        header = self.verify(bundle)
        number = header.block_number
        self.highest_seen = max(self.highest_seen, number)
        head = self._chain.store.head.number
        if number <= head:
            return self._applier.is_canonical(header)
        if not self.importing:
            return False
        if number > head + 1:
            await self._wait_for_head(number - 1, PARENT_WAIT_SECONDS)
        if number == self._chain.store.head.number + 1:
            await self.import_bundle(bundle, header)
            return True
        if number <= self._chain.store.head.number:
            return self._applier.is_canonical(header)
        # Still ahead (lost gossip before it): authentic by its commit, imported after sync.
        if len(self._parked) < MAX_PARKED:
            self._parked[number] = bundle
        self.wake_sync.set()
        return True

    async def import_bundle(self, bundle: BlockBundle, header: BlockHeaderAPI) -> None:
        """Re-execute and apply one block (already applied: nothing to do)."""
        block = bundle.to_block(self._chain.fork, header)
        await self._applier.import_block(block, bundle.commit)

    def take_parked(self, number: int) -> BlockBundle | None:
        """The parked block at `number`, if any; parked blocks at or below the head are
        dropped."""
        head = self._chain.store.head.number
        for stale in [n for n in self._parked if n <= head]:
            del self._parked[stale]
        return self._parked.pop(number, None)

    async def import_parked(self) -> int:
        """Import parked blocks that now follow the head; the number imported."""
        imported = 0
        while (bundle := self.take_parked(self._chain.store.head.number + 1)) is not None:
            try:
                await self.import_bundle(bundle, self.verify(bundle))
            except CairnError as exc:
                log.warning("dropping parked block: %s", exc)
                break
            imported += 1
        return imported

    async def _wait_for_head(self, number: int, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while self._chain.store.head.number < number:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            try:
                await asyncio.wait_for(self._head_changed.wait(), remaining)
            except TimeoutError:
                return
