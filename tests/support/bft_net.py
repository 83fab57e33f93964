"""Validators in one event loop, on an in-memory network: each validator is the real
consensus engine on its own real LevelDB chain, pool and applier; only the transport is the
test's. Links can be cut (partitions), a validator crashed (its engine and storage closed
mid-height) and restarted from its datadir (its WAL replayed), and a validator's outgoing
messages rewritten by a byzantine wrapper. Committed blocks travel as on the blocks topic, to
each other validator's follower, and a validator behind another one gets the missing blocks
as block sync would give them (status exchange, then ranges) over links that are up. Every
consensus message sent is recorded, so a test can scan all signed votes for double signing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

from eth_keys.datatypes import PrivateKey
from eth_typing import Address

from cairn.chain.apply import BlockApplier
from cairn.chain.bundle import bundle_from_parts, load_bundle
from cairn.chain.chain import Chain, open_store
from cairn.chain.events import BlockCommitted, ChainEvents
from cairn.consensus.bft.engine import BftConfig, BftEngine, Outbox, StoredEvidence
from cairn.consensus.bft.messages import Message, Vote, decode_message
from cairn.consensus.bft.state import Timeouts
from cairn.consensus.bft.wal import SignGuard, Wal
from cairn.consensus.follower import Follower
from cairn.errors import CairnError
from cairn.execution.forks import fork_named
from cairn.genesis.dev import dev_genesis
from cairn.genesis.model import ConsensusParams, Genesis
from cairn.txpool.pool import TxPool
from tests.support.wait import wait_until_async

KEYS = [PrivateKey(bytes([0x40 + i]) * 32) for i in range(10)]
FAST = Timeouts(propose=0.6, propose_delta=0.3, vote=0.3, vote_delta=0.2)

# What a byzantine wrapper makes of one outgoing message: (targets or None for all, bytes).
Sends = list[tuple[set[int] | None, bytes]]
Rewrite = Callable[[int, bytes], Sends]
Delivery = Callable[["Validator"], Awaitable[object]]


def validators_genesis(n: int, *, block_time: float = 0.2, empty_blocks: bool = True) -> Genesis:
    base = dev_genesis()
    addresses = tuple(Address(k.public_key.to_canonical_address()) for k in KEYS[:n])
    return replace(
        base,
        consensus=ConsensusParams(
            mode="validators",
            producers=addresses,
            block_time=block_time,
            empty_blocks=empty_blocks,
        ),
    )


@dataclass
class Validator:
    index: int
    datadir: Path
    chain: Chain
    pool: TxPool
    events: ChainEvents
    applier: BlockApplier
    engine: BftEngine
    follower: Follower
    writer: ThreadPoolExecutor
    committed: list[BlockCommitted] = field(default_factory=list)

    @property
    def head(self) -> int:
        return self.chain.store.head.number


class BftNet:
    def __init__(self, root: Path, n: int = 4, *, genesis: Genesis | None = None) -> None:
        self.root = root
        self.n = n
        self.genesis = genesis or validators_genesis(n)
        self.nodes: dict[int, Validator] = {}
        self.down: set[tuple[int, int]] = set()  # directed links that drop messages
        self.rewrites: dict[int, Rewrite] = {}
        self.sent: list[tuple[int, bytes]] = []  # (sender, message) of everything sent
        # (receiver, peer penalised, error type) — what a real transport would score down
        self.penalties: list[tuple[int, str, str]] = []
        self._tasks: set[asyncio.Future[None]] = set()

    async def __aenter__(self) -> BftNet:
        for i in range(self.n):
            self.start(i)
        self._sync = asyncio.ensure_future(self._sync_loop())
        return self

    async def _sync_loop(self) -> None:
        """What status exchange and range sync do between real nodes, twice a second."""
        while True:
            await asyncio.sleep(0.5)
            for i, behind in list(self.nodes.items()):
                for j, ahead in list(self.nodes.items()):
                    if (j, i) in self.down or ahead.head <= behind.head:
                        continue
                    for number in range(behind.head + 1, ahead.head + 1):
                        bundle = load_bundle(ahead.chain.reader, number)
                        if bundle is None:
                            break
                        with contextlib.suppress(CairnError):
                            await behind.follower.import_bundle(
                                bundle, bundle.decode_header(behind.chain.fork)
                            )

    async def __aexit__(self, *exc: object) -> None:
        self._sync.cancel()
        for i in list(self.nodes):
            await self.crash(i)
        for task in list(self._tasks):
            task.cancel()

    # ------------------------------------------------------------ validators
    def start(self, i: int) -> Validator:
        datadir = self.root / f"v{i}"
        fork = fork_named(self.genesis.consensus.fork)
        store = open_store(datadir / "chaindata", self.genesis, fork)
        chain = Chain(store, self.genesis, fork)
        writer = ThreadPoolExecutor(1, thread_name_prefix=f"v{i}-writer")
        events = ChainEvents()
        pool = TxPool(fork, chain.chain_id, chain.head_view, store)
        applier = BlockApplier(chain, pool, events, writer)
        outbox = Outbox()
        outbox.connect(lambda data, i=i: self._send(i, data))  # type: ignore[misc]
        outbox.connect_penaliser(
            lambda peer, error, i=i: self.penalties.append(  # type: ignore[misc]
                (i, peer, type(error).__name__)
            )
        )
        key = KEYS[i]
        config = BftConfig(
            key=key,
            coinbase=Address(key.public_key.to_canonical_address()),
            gas_limit=chain.head.gas_limit,
            block_time=self.genesis.consensus.block_time,
            empty_blocks=self.genesis.consensus.empty_blocks,
            timeouts=FAST,
        )
        engine = BftEngine(
            applier,
            pool,
            writer,
            config,
            outbox,
            Wal(datadir / "consensus" / "wal"),
            SignGuard(datadir / "consensus" / "sign-state"),
            StoredEvidence(store),
        )
        node = Validator(
            i,
            datadir,
            chain,
            pool,
            events,
            applier,
            engine,
            Follower(applier, importing=True),
            writer,
        )
        events.subscribe(node.committed.append)
        events.subscribe(lambda event, i=i: self._announce(i, event))  # type: ignore[misc]
        self.nodes[i] = node
        engine.start()
        return node

    async def crash(self, i: int) -> None:
        """Stop validator `i` where it is (its engine, then its storage)."""
        node = self.nodes.pop(i)
        await node.engine.stop()
        node.writer.shutdown(wait=True)
        node.chain.store.close()

    # ------------------------------------------------------------ network
    def cut(self, a: set[int], b: set[int]) -> None:
        """Partition: nothing crosses between `a` and `b` (either way) until `heal`."""
        for x in a:
            for y in b:
                self.down |= {(x, y), (y, x)}

    def heal(self) -> None:
        self.down.clear()

    def _deliver(self, sender: int, to: int, deliver: Delivery) -> None:
        if (sender, to) in self.down or to not in self.nodes:
            return
        node = self.nodes[to]

        async def run() -> None:
            # judged invalid: a real transport would penalise the sender
            with contextlib.suppress(CairnError):
                await deliver(node)

        task = asyncio.ensure_future(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _send(self, sender: int, data: bytes) -> None:
        rewrite = self.rewrites.get(sender)
        outgoing = rewrite(sender, data) if rewrite is not None else [(None, data)]
        for targets, payload in outgoing:
            self.sent.append((sender, payload))
            for to in range(self.n):
                if to != sender and (targets is None or to in targets):
                    self._deliver(sender, to, _to_engine(payload, f"peer-{sender}"))

    def _announce(self, sender: int, event: BlockCommitted) -> None:
        block = event.result.block
        bundle = bundle_from_parts(
            event.result.header, [tx.encode() for tx in block.transactions], event.commit
        ).encode()
        for to in range(self.n):
            if to != sender:
                self._deliver(sender, to, _to_follower(bundle))

    # ------------------------------------------------------------ checks
    async def wait_heights(
        self, height: int, *, nodes: set[int] | None = None, within: float = 60
    ) -> None:
        wanted = nodes if nodes is not None else set(self.nodes)

        async def reached() -> bool:
            return all(i in self.nodes and self.nodes[i].head >= height for i in wanted)

        await wait_until_async(reached, within=within, message=f"validators {wanted} at #{height}")

    def same_chain(self, upto: int) -> None:
        """Every running validator holds the same block at every height up to `upto`."""
        for number in range(1, upto + 1):
            hashes = {
                node.chain.reader.header_by_number(number).hash  # type: ignore[union-attr]
                for node in self.nodes.values()
            }
            assert len(hashes) == 1, f"#{number}: {len(hashes)} different blocks"

    def signed_votes(self) -> list[tuple[int, Vote, Address]]:
        chain_id = self.genesis.chain_id
        out = []
        for sender, data in self.sent:
            message: Message = decode_message(data)
            if isinstance(message, Vote):
                out.append((sender, message, message.signer(chain_id)))
        return out

    def assert_no_double_signing(self, *, except_for: frozenset[int] = frozenset()) -> None:
        """Scan every vote sent: no validator signed two different blocks (or a block and
        nil) for one (height, round, kind)."""
        seen: dict[tuple[Address, int, int, int], bytes] = {}
        for sender, vote, signer in self.signed_votes():
            if sender in except_for:
                continue
            key = (signer, vote.height, vote.round, int(vote.kind))
            first = seen.setdefault(key, vote.block_hash)
            assert first == vote.block_hash, f"validator {sender} double-signed {vote.describe()}"


def _to_engine(data: bytes, origin: str) -> Delivery:
    async def deliver(node: Validator) -> bool:
        return await node.engine.on_message(data, origin)

    return deliver


def _to_follower(bundle: bytes) -> Delivery:
    async def deliver(node: Validator) -> bool:
        return await node.follower.on_gossip_block(bundle)

    return deliver
