"""`TxRelay`: transactions between the pool and the network, in batches.

Outbound: every transaction the pool admits from a local client is gathered for one
interval (75 ms) and handed to `publish` as one batch — gossip stays far below py-libp2p's
per-topic rates however fast clients submit. Inbound: a gossiped batch is admitted through
the same checks as RPC (and journaled); what came from gossip is never echoed back out.
Before any decoding, a batch is cut down to what is new: repeats inside it, transactions
already pooled or already gossiped to us are never decoded or sender-recovered again, and
transactions already found to be the sender's fault (junk whatever the state: undecodable,
badly signed, another chain's, oversized) are charged again without decoding. Any such
fault in a batch is raised, so the peer who sent it is scored down.
Knows nothing of the transport: `publish` is a plain callable.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable, Sequence

from eth_utils import keccak

from cairn.errors import InvalidTransaction
from cairn.memory import Footprint
from cairn.txpool.admission import DecodedTx
from cairn.txpool.pool import TxPool

BATCH_INTERVAL_SECONDS = 0.075
# Hashes of gossiped transactions, so that they are not echoed back out: ~170 bytes each.
REMEMBERED_GOSSIP = 65_536
REMEMBERED_HASH_BYTES = 170
# Hashes of gossiped transactions found to be the sender's fault, with the reason.
REMEMBERED_JUNK = 8192
# A newly connected peer gets our pool after its gossip subscriptions had time to arrive.
REBROADCAST_DELAY_SECONDS = 1.0
MAX_REBROADCAST = 8192
# Refusals that depend on the receiver's state or timing, so an honest peer can cause them
# (it saw other state, or the block raced the gossip). Everything else is the sender's fault.
_STATE_DEPENDENT = (
    "already known",
    "nonce too low",
    "replacement transaction underpriced",
    "insufficient funds",
    "txpool is full",
    "account limit exceeded",
    "max fee per gas less than block base fee",
)


def is_peer_fault(error: InvalidTransaction) -> bool:
    return not error.reason.startswith(_STATE_DEPENDENT)


class TxRelay:
    def __init__(
        self,
        pool: TxPool,
        publish: Callable[[list[bytes]], None],
        interval: float = BATCH_INTERVAL_SECONDS,
    ) -> None:
        self._pool = pool
        self._publish = publish
        self._interval = interval
        self._outbox: list[bytes] = []
        self._from_gossip: OrderedDict[bytes, None] = OrderedDict()
        self._junk: OrderedDict[bytes, str] = OrderedDict()
        self._flush_handle: asyncio.TimerHandle | None = None
        self._rebroadcast_handle: asyncio.TimerHandle | None = None
        self.sent = 0
        self.received = 0
        self.skipped = 0  # gossiped transactions not decoded: repeats, known, known junk
        pool.subscribe(self._on_admitted)

    def _on_admitted(self, txs: Sequence[DecodedTx]) -> None:
        fresh = [d.raw for d in txs if d.hash not in self._from_gossip]
        if not fresh:
            return
        self._outbox.extend(fresh)
        if self._flush_handle is None:
            loop = asyncio.get_running_loop()
            self._flush_handle = loop.call_later(self._interval, self.flush)

    def flush(self) -> None:
        self._flush_handle = None
        batch, self._outbox = self._outbox, []
        if batch:
            self.sent += len(batch)
            self._publish(batch)

    def rebroadcast_soon(self, delay: float = REBROADCAST_DELAY_SECONDS) -> None:
        """Publish the whole pool once, shortly (a burst of new peers causes one)."""
        if self._rebroadcast_handle is None:
            loop = asyncio.get_running_loop()
            self._rebroadcast_handle = loop.call_later(delay, self._rebroadcast)

    def _rebroadcast(self) -> None:
        self._rebroadcast_handle = None
        pending, queued = self._pool.content()
        raws = [d.raw for group in (pending, queued) for txs in group.values() for d in txs]
        if raws:
            self.sent += len(raws[:MAX_REBROADCAST])
            self._publish(raws[:MAX_REBROADCAST])

    def admit_gossip(self, raws: list[bytes]) -> bool:
        """Admit a gossiped batch; raise a sender-fault error (to penalise the peer).

        Only transactions new to us are decoded, once each (see the module docstring)."""
        fresh: dict[bytes, bytes] = {}
        fault: InvalidTransaction | None = None
        for raw in raws:
            tx_hash = keccak(raw)  # a transaction's hash is keccak of its raw encoding
            junk = self._junk.get(tx_hash)
            if junk is not None:
                fault = fault or InvalidTransaction(junk, tx_hash)
            elif tx_hash in fresh or tx_hash in self._from_gossip or self._pool.get(tx_hash):
                pass
            else:
                fresh[tx_hash] = raw
                continue
            self.skipped += 1
        for tx_hash in fresh:
            self._from_gossip[tx_hash] = None
        while len(self._from_gossip) > REMEMBERED_GOSSIP:
            self._from_gossip.popitem(last=False)
        results = self._pool.add_many(list(fresh.values())) if fresh else []
        self.received += sum(1 for r in results if r.error is None)
        for tx_hash, result in zip(fresh, results, strict=True):
            error = result.error
            if error is not None and is_peer_fault(error):
                self._junk[tx_hash] = error.reason
                # a fresh error, not one `results` holds: see cairn/rpc/send.py
                fault = fault or InvalidTransaction(error.reason, error.tx_hash)
        while len(self._junk) > REMEMBERED_JUNK:
            self._junk.popitem(last=False)
        if fault is not None:
            raise fault
        return True

    def footprints(self) -> list[Footprint]:
        return [
            Footprint(
                "relay_seen",
                len(self._from_gossip),
                REMEMBERED_HASH_BYTES * len(self._from_gossip),
                REMEMBERED_HASH_BYTES * REMEMBERED_GOSSIP,
            ),
            Footprint(
                "relay_junk",
                len(self._junk),
                REMEMBERED_HASH_BYTES * len(self._junk),
                REMEMBERED_HASH_BYTES * REMEMBERED_JUNK,
            ),
            Footprint("relay_outbox", len(self._outbox), sum(len(r) for r in self._outbox)),
        ]

    def close(self) -> None:
        for handle in (self._flush_handle, self._rebroadcast_handle):
            if handle is not None:
                handle.cancel()
        self._flush_handle = self._rebroadcast_handle = None
