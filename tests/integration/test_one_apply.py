"""Every block enters a chain through the one `BlockApplier`, whatever its source: the
sequencer, dev helpers (evm_mine), gossip on a full node, and range sync
on a full node that joins late. Three whole nodes in one event loop, real libp2p.

For each node: one `BlockCommitted` per block, in order, no number twice, and the
applier's count equals the number of blocks the node's head moved by.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from eth_typing import Address

from cairn.errors import InvalidDevRequest
from cairn.execution.overrides import AccountOverride
from cairn.p2p.stack import GOSSIP_HEARTBEAT_SECONDS
from tests.support.chain import ADDRESSES, transfer
from tests.support.harness import InProcessNet

WHALE = Address(b"\x0b" * 20)
# gossipsub's history: 5 heartbeats of GOSSIP_HEARTBEAT_SECONDS, and one to spare
GOSSIP_HISTORY = 6 * GOSSIP_HEARTBEAT_SECONDS


def test_every_source_goes_through_the_one_apply(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with InProcessNet(tmp_path) as net:
            seq = await net.start_sequencer()
            early = await net.start_fullnode("early")
            assert seq.dev is not None
            send = seq.methods.send
            # sequencer blocks (automine), then dev helpers' blocks
            for nonce in range(5):
                await send.send_raw_transaction("0x" + transfer(0, nonce).hex())
            await seq.dev.mine(3)
            # state overrides could not be re-executed by full nodes: refused, nothing made
            head_before = seq.chain.head.block_number
            with pytest.raises(InvalidDevRequest, match="not available on a dev chain with p2p"):
                await seq.dev.set_state((AccountOverride(WHALE, balance=10**21),))
            assert seq.chain.head.block_number == head_before
            await net.wait_for(
                lambda: early.chain.head.hash == seq.chain.head.hash,
                message="the early full node to follow by gossip",
            )
            # Gossipsub offers peers what it relayed in its last heartbeats (IHAVE) and
            # serves it for GOSSIP_HISTORY of them: a node joining sooner may be handed
            # every block by gossip. Past that, only range sync can bring them.
            await net.wait_for(
                lambda: all(
                    time.monotonic() - r.last_at > GOSSIP_HISTORY for r in net.recorded.values()
                ),
                within=30,
                message="the blocks to leave every node's gossip history",
            )
            late = await net.start_fullnode("late")
            for nonce in range(5, 8):
                await send.send_raw_transaction("0x" + transfer(0, nonce).hex())
            head = await net.wait_same_head(within=60)
            assert head >= 11
            assert late.sync is not None and late.sync.synced_blocks > 0
            assert late.chain.head_view().balance(
                Address(ADDRESSES[0])
            ) == seq.chain.head_view().balance(Address(ADDRESSES[0]))
            for name, node in net.nodes.items():
                numbers = net.recorded[name].numbers
                assert numbers == list(range(1, head + 1)), name
                assert node.applier.applied == head == node.events.published, name

    asyncio.run(scenario())
