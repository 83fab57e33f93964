"""Wiring of the p2p layer into a node: adapters from chain, pool and follower to the
Protocols `cairn.p2p.api` asks for, block announcements from the producer (a listener of
`BlockCommitted`), and the `--p2p.*` options turned into a `P2PConfig`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import CollectorRegistry

from cairn.chain.bundle import bundle_from_parts, load_bundle
from cairn.chain.chain import Chain
from cairn.chain.events import BlockCommitted, ChainEvents
from cairn.consensus.bft.engine import Outbox
from cairn.consensus.bft.messages import decode_message
from cairn.consensus.follower import Follower
from cairn.errors import ConfigError
from cairn.p2p import messages
from cairn.p2p.api import P2PConfig, P2PState
from cairn.txpool.pool import TxPool
from cairn.txpool.relay import TxRelay

if TYPE_CHECKING:
    from cairn.p2p.service import P2PService

DEFAULT_P2P_PORT = 30333


def p2p_config(opts: dict[str, Any], datadir: Path, *, dev: bool, client: str) -> P2PConfig | None:
    """`run` always joins a network; `dev` only when a p2p flag asks for it."""
    port = opts.get("p2p_port")
    bootnodes = tuple(b.strip() for b in str(opts.get("bootnodes") or "").split(",") if b.strip())
    if dev and port is None and not bootnodes and not opts.get("p2p_mdns"):
        return None
    max_peers = int(opts.get("p2p_maxpeers") or 25)
    if max_peers < 1:
        raise ConfigError("--p2p.maxpeers must be at least 1")
    return P2PConfig(
        datadir=datadir / "p2p",
        listen_addr=str(opts.get("p2p_addr") or "0.0.0.0"),
        port=DEFAULT_P2P_PORT if port is None else int(port),
        bootnodes=bootnodes,
        max_peers=max_peers,
        discovery=not bool(opts.get("nodiscover")),
        mdns=bool(opts.get("p2p_mdns")) and not bool(opts.get("nodiscover")),
        client=client,
    )


class StoreChainView:
    """`ChainView` over the committed chain; reads are lock-free and thread-safe."""

    def __init__(self, chain: Chain) -> None:
        self._chain = chain

    @property
    def chain_id(self) -> int:
        return self._chain.chain_id

    @property
    def genesis_hash(self) -> bytes:
        return self._chain.genesis_hash

    def head(self) -> tuple[int, bytes]:
        head = self._chain.store.head
        return head.number, head.block_hash

    def load_bundle(self, number: int) -> bytes | None:
        bundle = load_bundle(self._chain.reader, number)
        return None if bundle is None else bundle.encode()


class ConsensusGate(Protocol):
    """Judges consensus gossip: a validator's engine, or a full node's relay check."""

    async def on_message(self, data: bytes, origin: str = "") -> bool: ...


class GossipRouter:
    """`GossipHandlers`: blocks to the follower, transactions to the pool, consensus messages
    to the engine (or, on a full node of a validator network, to the relay check)."""

    def __init__(self, follower: Follower, relay: TxRelay, consensus: ConsensusGate | None) -> None:
        self._follower = follower
        self._relay = relay
        self._consensus = consensus

    async def on_block(self, data: bytes) -> bool:
        return await self._follower.on_gossip_block(data)

    async def on_txs(self, data: bytes) -> bool:
        return self._relay.admit_gossip(messages.decode_txs(data))

    async def on_consensus(self, data: bytes, origin: str) -> bool:
        if self._consensus is None:
            # A sequencer network has no consensus messages: nothing is relayed, and one
            # that does not even decode is junk its forwarder pays for.
            decode_message(data)
            return False
        return await self._consensus.on_message(data, origin)

    def on_new_peer(self, peer_id: str) -> None:
        # Transactions that were pooled while nobody listened (journal restore, a lost
        # connection) reach the newcomer too, as geth announces its pool to new peers.
        self._relay.rebroadcast_soon()


class P2PLink:
    def __init__(
        self,
        config: P2PConfig,
        chain: Chain,
        pool: TxPool,
        events: ChainEvents,
        follower: Follower,
        registry: CollectorRegistry,
        *,
        producer: bool,
        consensus: ConsensusGate | None = None,
        consensus_out: Outbox | None = None,
        consensus_penalties: Outbox | None = None,
        on_failed: Callable[[str], None] | None = None,
    ) -> None:
        # Imported here: py-libp2p costs 0.6 s and ~50 MiB to import, and a dev node without
        # p2p flags never needs it.
        from cairn.p2p.service import P2PService

        self.relay = TxRelay(pool, self._publish_txs)
        router = GossipRouter(follower, self.relay, consensus)

        def failed(state: P2PState) -> None:
            if on_failed is not None:
                on_failed(state.reason)

        self.service: P2PService = P2PService(
            config,
            StoreChainView(chain),
            router,
            registry,
            on_failed=failed if on_failed is not None else None,
        )
        if consensus_out is not None:
            consensus_out.connect(self._publish_consensus)
        if consensus_penalties is not None:
            consensus_penalties.connect_penaliser(self.service.penalise)
        self._unsubscribe = events.subscribe(self._announce) if producer else None

    def _publish_txs(self, raws: list[bytes]) -> None:
        for batch in messages.split_batches(raws):
            self.service.publish("txs", messages.encode_txs(batch))

    def _publish_consensus(self, data: bytes) -> None:
        self.service.publish("consensus", data)

    def _announce(self, event: BlockCommitted) -> None:
        block = event.result.block
        bundle = bundle_from_parts(
            event.result.header, [tx.encode() for tx in block.transactions], event.commit
        )
        self.service.publish("blocks", bundle.encode())

    async def start(self) -> None:
        await self.service.start()

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        self.relay.close()
        await self.service.stop()
