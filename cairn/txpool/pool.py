"""`TxPool`: admitted transactions per sender, by nonce; the executable ones feed blocks.

Single-threaded: every method runs on the node's event loop. The journal write for a batch
happens before its transactions become visible and before the caller gets its answer.
Bounded by `PoolLimits` in transactions and in estimated bytes (`--txpool.max-bytes`); a
transaction and its sender's entry are forgotten as soon as a block includes or drops it.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from eth_typing import Address

from cairn.errors import InvalidTransaction
from cairn.execution.forks import Fork
from cairn.memory import DEFAULT_TXPOOL_BYTES, Footprint
from cairn.txpool.admission import DecodedTx, decode_and_check

log = logging.getLogger("cairn.txpool")

PRICE_BUMP_PERCENT = 10
# Bytes a pooled transaction holds, measured with tracemalloc (tests/unit/test_memory.py): its
# decoded form (~1.3 KB for a transfer) and about three copies of its encoding (the raw bytes,
# and the data and signature fields py-evm decodes out of them); a sender's entry ~400.
TX_ENTRY_BYTES = 1_300
SENDER_ENTRY_BYTES = 400


def estimate_entry_bytes(raw: bytes) -> int:
    return TX_ENTRY_BYTES + 3 * len(raw)


class HeadState(Protocol):
    """The state the pool checks against: the head block, and the next block's base fee."""

    @property
    def number(self) -> int: ...

    @property
    def next_base_fee(self) -> int: ...

    @property
    def gas_limit(self) -> int: ...

    def nonce(self, address: Address) -> int: ...

    def balance(self, address: Address) -> int: ...


class Journal(Protocol):
    def save_journal(self, entries: Iterable[tuple[bytes, bytes]]) -> None: ...

    def delete_journal(self, tx_hashes: Iterable[bytes]) -> None: ...

    def load_journal(self) -> list[bytes]: ...


@dataclass(frozen=True)
class PoolLimits:
    per_sender: int = 4096
    queued_per_sender: int = 256
    total: int = 65_536
    bytes: int = DEFAULT_TXPOOL_BYTES  # estimated (estimate_entry_bytes), --txpool.max-bytes


@dataclass(frozen=True)
class Admitted:
    """The answer for one raw transaction: its hash, or the reason it was refused."""

    tx_hash: bytes | None
    error: InvalidTransaction | None = None


@dataclass
class _Sender:
    state_nonce: int
    txs: dict[int, PoolEntry] = field(default_factory=dict)
    next_nonce: int = 0  # first nonce not covered by a contiguous run from state_nonce

    def recompute(self) -> None:
        n = self.state_nonce
        while n in self.txs:
            n += 1
        self.next_nonce = n


@dataclass(frozen=True)
class PoolEntry:
    tx: DecodedTx
    seq: int
    size: int  # estimated bytes


class TxPool:
    def __init__(
        self,
        fork: Fork,
        chain_id: int,
        head: Callable[[], HeadState],
        journal: Journal,
        limits: PoolLimits = PoolLimits(),
    ) -> None:
        self._fork = fork
        self._chain_id = chain_id
        self._head = head
        self._journal = journal
        self.limits = limits
        self._senders: dict[Address, _Sender] = {}
        self._by_hash: dict[bytes, PoolEntry] = {}
        self._bytes = 0  # sum of the entries' sizes
        self._seq = itertools.count()
        self._listeners: list[Callable[[Sequence[DecodedTx]], None]] = []

    # ---------------------------------------------------------------- events
    def subscribe(self, listener: Callable[[Sequence[DecodedTx]], None]) -> None:
        """`listener` gets every batch of newly admitted transactions."""
        self._listeners.append(listener)

    # ---------------------------------------------------------------- admission
    def add(self, raw: bytes) -> bytes:
        """Admit one raw transaction; return its hash or raise `InvalidTransaction`."""
        result = self.add_many([raw])[0]
        if result.error is not None:
            # a fresh error: raising the one `result` holds ties it and this frame in a cycle
            raise InvalidTransaction(result.error.reason, result.error.tx_hash)
        assert result.tx_hash is not None
        return result.tx_hash

    def add_many(
        self,
        raws: Sequence[bytes],
        *,
        journal: bool = True,
        senders: Sequence[bytes | None] | None = None,
    ) -> list[Admitted]:
        """Admit a batch; one journal fsync covers every accepted transaction. `senders`, when
        given, are senders already recovered (by `recovery.SenderRecovery`) for each raw."""
        head = self._head()
        results: list[Admitted] = []
        accepted: list[tuple[DecodedTx, PoolEntry | None]] = []
        staged: dict[tuple[Address, int], DecodedTx] = {}
        staged_hashes: set[bytes] = set()
        staged_bytes = 0
        for i, raw in enumerate(raws):
            known = senders[i] if senders is not None else None
            try:
                decoded = decode_and_check(
                    raw, self._fork, self._chain_id, head.gas_limit, known_sender=known
                )
                replaced = self._check_with_state(
                    decoded, head, staged, staged_hashes, staged_bytes
                )
            except InvalidTransaction as exc:
                # Kept without its traceback: the traceback holds this frame, and this frame
                # `results`, a reference cycle only a full GC collection would free.
                results.append(Admitted(exc.tx_hash, exc.with_traceback(None)))
                continue
            staged[(decoded.sender, decoded.nonce)] = decoded
            staged_hashes.add(decoded.hash)
            staged_bytes += estimate_entry_bytes(decoded.raw)
            accepted.append((decoded, replaced))
            results.append(Admitted(decoded.hash))
        if not accepted:
            return results
        if journal:
            self._journal.save_journal((d.hash, d.raw) for d, _ in accepted)
        replaced_hashes = []
        for decoded, replaced in accepted:
            if replaced is not None:
                replaced_hashes.append(replaced.tx.hash)
            self._insert(decoded, head)
        if replaced_hashes and journal:
            self._journal.delete_journal(h for h in replaced_hashes if h not in self._by_hash)
        fresh = [d for d, _ in accepted if d.hash in self._by_hash]
        for listener in self._listeners:
            listener(fresh)
        return results

    def _check_with_state(
        self,
        d: DecodedTx,
        head: HeadState,
        staged: dict[tuple[Address, int], DecodedTx],
        staged_hashes: set[bytes],
        staged_bytes: int,
    ) -> PoolEntry | None:
        def fail(reason: str) -> InvalidTransaction:
            return InvalidTransaction(reason, d.hash)

        if d.hash in self._by_hash or d.hash in staged_hashes:
            raise fail("already known")
        if d.fee_cap < head.next_base_fee:
            raise fail(
                f"max fee per gas less than block base fee: address 0x{d.sender.hex()}, "
                f"maxFeePerGas: {d.fee_cap}, baseFee: {head.next_base_fee}"
            )
        account = self._senders.get(d.sender)
        state_nonce = account.state_nonce if account else head.nonce(d.sender)
        if d.nonce < state_nonce:
            raise fail(
                f"nonce too low: address 0x{d.sender.hex()}, tx: {d.nonce} state: {state_nonce}"
            )
        balance = head.balance(d.sender)
        if balance < d.max_cost:
            raise fail(
                "insufficient funds for gas * price + value: address "
                f"0x{d.sender.hex()} have {balance} want {d.max_cost}"
            )
        if (d.sender, d.nonce) in staged:
            raise fail("replacement transaction underpriced")
        existing = account.txs.get(d.nonce) if account else None
        if existing is not None:
            old = existing.tx
            bump = 100 + PRICE_BUMP_PERCENT
            if d.fee_cap * 100 < old.fee_cap * bump or d.tip_cap * 100 < old.tip_cap * bump:
                raise fail("replacement transaction underpriced")
        # geth's overdraft rule: the sender's pending transactions must all stay affordable.
        spent = sum(
            e.tx.max_cost
            for n, e in (account.txs.items() if account else ())
            if n != d.nonce and n < d.nonce
        )
        if spent + d.max_cost > balance:
            raise fail(
                "insufficient funds for gas * price + value: address "
                f"0x{d.sender.hex()} have {balance} want {spent + d.max_cost} "
                "(including the sender's pending transactions)"
            )
        if existing is None:
            count = len(account.txs) if account else 0
            if count >= self.limits.per_sender:
                raise fail(f"account limit exceeded: {count} transactions pooled for sender")
            next_nonce = account.next_nonce if account else state_nonce
            if d.nonce > next_nonce:
                queued = sum(1 for n in (account.txs if account else ()) if n > next_nonce)
                if queued >= self.limits.queued_per_sender:
                    raise fail("account limit exceeded: too many queued (future) transactions")
            if len(self._by_hash) + len(staged) >= self.limits.total:
                raise fail("txpool is full")
            if self._bytes + staged_bytes + estimate_entry_bytes(d.raw) > self.limits.bytes:
                raise fail(
                    f"txpool is full: {self._bytes + staged_bytes:,} bytes of "
                    f"{self.limits.bytes:,} (--txpool.max-bytes) in use"
                )
        return existing

    def _insert(self, d: DecodedTx, head: HeadState) -> None:
        account = self._senders.get(d.sender)
        if account is None:
            account = _Sender(state_nonce=head.nonce(d.sender))
            self._senders[d.sender] = account
        old = account.txs.get(d.nonce)
        if old is not None:
            self._pop(old.tx.hash)
        entry = PoolEntry(d, next(self._seq), estimate_entry_bytes(d.raw))
        account.txs[d.nonce] = entry
        self._by_hash[d.hash] = entry
        self._bytes += entry.size
        account.recompute()

    # ---------------------------------------------------------------- restart
    def restore(self) -> tuple[int, int]:
        """Re-admit the journal after a restart; drop, with a log line, what became invalid."""
        raws = self._journal.load_journal()
        kept = dropped = 0
        stale: list[bytes] = []
        for raw, result in zip(raws, self.add_many(raws, journal=False), strict=True):
            if result.error is None:
                kept += 1
                continue
            dropped += 1
            reason = result.error.reason
            tx_hash = result.error.tx_hash
            if tx_hash is not None:
                stale.append(tx_hash)
                log.info("journal: dropping 0x%s: %s", tx_hash.hex(), reason)
            else:
                log.warning(
                    "journal: dropping an undecodable entry (%d bytes): %s", len(raw), reason
                )
        if stale:
            self._journal.delete_journal(stale)
        return kept, dropped

    def reset(self) -> tuple[int, int]:
        """Re-check every pooled transaction against the current head (after a dev-chain
        rewind); keep what is still valid, drop the rest from pool and journal."""
        raws = [entry.tx.raw for entry in sorted(self._by_hash.values(), key=lambda e: e.seq)]
        self._senders.clear()
        self._by_hash.clear()
        self._bytes = 0
        kept = dropped = 0
        stale: list[bytes] = []
        for result in self.add_many(raws, journal=False):
            if result.error is None:
                kept += 1
                continue
            dropped += 1
            if result.error.tx_hash is not None:
                stale.append(result.error.tx_hash)
                log.info(
                    "txpool reset: dropping 0x%s: %s", result.error.tx_hash.hex(), result.error
                )
        if stale:
            self._journal.delete_journal(stale)
        return kept, dropped

    # ---------------------------------------------------------------- block production
    def executable(self, base_fee: int) -> Iterator[DecodedTx]:
        """Executable transactions, best effective tip first, nonce order within a sender."""
        heap: list[tuple[int, int, Address, int]] = []
        for sender, account in self._senders.items():
            entry = account.txs.get(account.state_nonce)
            if entry is not None and entry.tx.fee_cap >= base_fee:
                heapq.heappush(
                    heap,
                    (-entry.tx.effective_tip(base_fee), entry.seq, sender, account.state_nonce),
                )
        while heap:
            _, _, sender, nonce = heapq.heappop(heap)
            account = self._senders[sender]
            entry = account.txs[nonce]
            yield entry.tx
            following = account.txs.get(nonce + 1)
            if following is not None and following.tx.fee_cap >= base_fee:
                heapq.heappush(
                    heap, (-following.tx.effective_tip(base_fee), following.seq, sender, nonce + 1)
                )

    def has_executable(self) -> bool:
        return any(a.next_nonce > a.state_nonce for a in self._senders.values())

    def on_block(
        self,
        included: Iterable[bytes],
        senders: Iterable[Address],
        rejected: Iterable[tuple[bytes, str]],
        head: HeadState,
    ) -> None:
        """Forget mined transactions and ones the builder found invalid; refresh nonces."""
        touched = set(senders)
        for tx_hash in included:
            entry = self._pop(tx_hash)
            if entry is not None:
                touched.add(entry.tx.sender)
        dropped: list[bytes] = []
        for tx_hash, reason in rejected:
            entry = self._pop(tx_hash)
            if entry is None:
                continue
            log.info("txpool: dropping 0x%s at block %d: %s", tx_hash.hex(), head.number, reason)
            account = self._senders.get(entry.tx.sender)
            if account is not None:
                account.txs.pop(entry.tx.nonce, None)
            touched.add(entry.tx.sender)
            dropped.append(tx_hash)
        for sender in touched:
            account = self._senders.get(sender)
            if account is None:
                continue
            account.state_nonce = head.nonce(sender)
            for nonce in [n for n in account.txs if n < account.state_nonce]:
                stale = account.txs.pop(nonce)
                if self._pop(stale.tx.hash) is not None:
                    dropped.append(stale.tx.hash)
            if not account.txs:
                del self._senders[sender]
            else:
                account.recompute()
        if dropped:
            self._journal.delete_journal(dropped)

    def _pop(self, tx_hash: bytes) -> PoolEntry | None:
        entry = self._by_hash.pop(tx_hash, None)
        if entry is not None:
            self._bytes -= entry.size
        return entry

    # ---------------------------------------------------------------- queries
    def get(self, tx_hash: bytes) -> DecodedTx | None:
        entry = self._by_hash.get(tx_hash)
        return None if entry is None else entry.tx

    def __len__(self) -> int:
        return len(self._by_hash)

    def __contains__(self, tx_hash: bytes) -> bool:
        return tx_hash in self._by_hash

    def pending_nonce(self, address: Address, state_nonce: int) -> int:
        """The nonce for the next transaction of `address` (eth_getTransactionCount pending)."""
        account = self._senders.get(address)
        return state_nonce if account is None else max(account.next_nonce, state_nonce)

    def content(self) -> tuple[dict[Address, list[DecodedTx]], dict[Address, list[DecodedTx]]]:
        """(pending, queued) transactions by sender, in nonce order."""
        pending: dict[Address, list[DecodedTx]] = {}
        queued: dict[Address, list[DecodedTx]] = {}
        for sender, account in self._senders.items():
            for nonce in sorted(account.txs):
                target = pending if nonce < account.next_nonce else queued
                target.setdefault(sender, []).append(account.txs[nonce].tx)
        return pending, queued

    def counts(self) -> tuple[int, int]:
        pending = sum(a.next_nonce - a.state_nonce for a in self._senders.values())
        return pending, len(self._by_hash) - pending

    def footprints(self) -> list[Footprint]:
        """Pooled transactions and the senders they belong to, with estimated bytes."""
        return [
            Footprint("txpool", len(self._by_hash), self._bytes, self.limits.bytes),
            Footprint(
                "txpool_senders", len(self._senders), SENDER_ENTRY_BYTES * len(self._senders)
            ),
        ]
