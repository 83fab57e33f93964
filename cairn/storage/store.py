"""`ChainStore`: the chain in LevelDB — canonical blocks, receipts, commits, indexes, state.

Public methods that write open exactly one `WriteBatch(sync=True)`; a crash leaves the previous
head or the new one, never half a block. It stores bytes it is given and never judges them.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import msgpack
import plyvel

from cairn.errors import DatadirError, GenesisMismatch
from cairn.memory import Footprint
from cairn.storage import schema
from cairn.storage.leveldb import (
    DEFAULT_BLOCK_CACHE_BYTES,
    WRITE_BUFFER_BYTES,
    PrefixedDB,
    open_leveldb,
)


@dataclass(frozen=True)
class BlockRecord:
    """One executed block as bytes, ready to be committed."""

    number: int
    block_hash: bytes
    header: bytes
    transactions: tuple[bytes, ...]
    tx_hashes: tuple[bytes, ...]
    senders: tuple[bytes, ...]
    receipts: tuple[bytes, ...]
    commit: bytes
    withdrawals: tuple[bytes, ...] = ()
    state_writes: Mapping[bytes, bytes] = field(default_factory=dict)
    # Every account the block's execution read or wrote (the Postgres mirror refreshes these).
    touched: tuple[bytes, ...] = ()
    dev_extras: bytes = b""  # dev chains: encoded state overrides / impersonated senders


@dataclass(frozen=True)
class StoredBody:
    transactions: tuple[bytes, ...]
    senders: tuple[bytes, ...]
    withdrawals: tuple[bytes, ...]


@dataclass(frozen=True)
class BlockKeys:
    """What indexes a stored block: needed to delete it again (dev-chain rewinds)."""

    number: int
    block_hash: bytes
    tx_hashes: tuple[bytes, ...]


@dataclass(frozen=True)
class ChainIdentity:
    """What a datadir belongs to; checked before LevelDB is opened, so a wrong datadir is
    refused without a single byte of it changing (opening LevelDB rewrites its log files)."""

    genesis_hash: bytes
    chain_id: int


IDENTITY_FILE = "CAIRN-CHAIN.json"


@dataclass(frozen=True)
class Head:
    number: int
    block_hash: bytes


class ChainStore:
    """The LevelDB under `<datadir>/chaindata`."""

    def __init__(
        self,
        path: Path,
        identity: ChainIdentity | None = None,
        *,
        block_cache_bytes: int = DEFAULT_BLOCK_CACHE_BYTES,
    ) -> None:
        self.path = path
        self.identity = self._check_identity(identity)
        self._block_cache_bytes = block_cache_bytes
        self._db: plyvel.DB = open_leveldb(path, block_cache_bytes)
        self._write_lock = threading.Lock()
        self._head: Head | None = self._load_head()
        self._check_schema()
        if self.identity is not None and self._head is not None:
            self.validate_genesis(self.identity.genesis_hash, self.identity.chain_id)

    # ---------------------------------------------------------------- lifecycle
    def _check_identity(self, wanted: ChainIdentity | None) -> ChainIdentity | None:
        marker = self.path / IDENTITY_FILE
        if self.path.is_dir() and any(self.path.iterdir()):
            if not marker.exists():
                raise DatadirError(
                    f"{self.path} is not a Cairn chain directory (no {IDENTITY_FILE}). "
                    "Nothing was changed; point --datadir at a Cairn datadir or an empty "
                    "directory."
                )
            try:
                data = json.loads(marker.read_text())
                found = ChainIdentity(bytes.fromhex(data["genesisHash"][2:]), int(data["chainId"]))
                version = int(data["schemaVersion"])
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise DatadirError(f"{marker} is unreadable: {exc}") from exc
            if version != schema.SCHEMA_VERSION:
                raise DatadirError(
                    f"{self.path} uses storage schema v{version}; this cairn reads "
                    f"v{schema.SCHEMA_VERSION}. Nothing was changed."
                )
            if wanted is not None:
                if found.genesis_hash != wanted.genesis_hash:
                    raise GenesisMismatch(
                        str(self.path.parent), found.genesis_hash, wanted.genesis_hash
                    )
                if found.chain_id != wanted.chain_id:
                    raise DatadirError(
                        f"datadir {self.path.parent} holds chain id {found.chain_id}, but the "
                        f"configured genesis says {wanted.chain_id}. Nothing was changed; use "
                        "the matching genesis.json or another --datadir."
                    )
            return found
        if wanted is None:
            raise DatadirError(f"{self.path} holds no chain")
        self.path.mkdir(parents=True, exist_ok=True)
        _write_durably(
            marker,
            json.dumps(
                {
                    "schemaVersion": schema.SCHEMA_VERSION,
                    "genesisHash": "0x" + wanted.genesis_hash.hex(),
                    "chainId": wanted.chain_id,
                }
            ).encode(),
        )
        return wanted

    def _check_schema(self) -> None:
        raw = self._db.get(schema.SCHEMA_VERSION_KEY)
        if raw is None:
            if self._head is None and self._is_empty():
                return
            raise DatadirError(
                f"{self.path} is a LevelDB that Cairn did not create (no schema version key). "
                "Nothing was changed; point --datadir at a Cairn datadir or an empty directory."
            )
        version = schema.decode_number(raw)
        if version != schema.SCHEMA_VERSION:
            raise DatadirError(
                f"{self.path} uses storage schema v{version}; this cairn reads "
                f"v{schema.SCHEMA_VERSION}. Nothing was changed. Use a matching cairn version "
                "or export/import the chain."
            )

    def _is_empty(self) -> bool:
        with self._db.iterator(include_value=False) as it:
            return next(it, None) is None

    def close(self) -> None:
        with self._write_lock:
            if not self._db.closed:
                self._db.close()

    @property
    def closed(self) -> bool:
        return bool(self._db.closed)

    def footprint(self) -> Footprint:
        """LevelDB's own estimate of its memory: memtables and block cache in use; bounded
        by the block cache and two memtables (the one written and the one being flushed)."""
        try:
            raw = self._db.get_property(b"leveldb.approximate-memory-usage")
        except RuntimeError:  # closed (the node is stopping)
            raw = None
        used = int(raw) if raw else 0
        return Footprint("leveldb", 0, used, self._block_cache_bytes + 2 * WRITE_BUFFER_BYTES)

    # ---------------------------------------------------------------- genesis
    @property
    def is_initialized(self) -> bool:
        return self._head is not None

    def load_genesis_hash(self) -> bytes | None:
        value: bytes | None = self._db.get(schema.GENESIS_HASH_KEY)
        return value

    def validate_genesis(self, genesis_hash: bytes, chain_id: int) -> None:
        """Refuse, changing nothing, a datadir that holds a chain with another identity."""
        stored = self.load_genesis_hash()
        if stored is not None and stored != genesis_hash:
            raise GenesisMismatch(str(self.path.parent), stored, genesis_hash)
        raw = self._db.get(schema.CHAIN_ID_KEY)
        if raw is not None and schema.decode_number(raw) != chain_id:
            raise DatadirError(
                f"datadir {self.path.parent} holds chain id {schema.decode_number(raw)}, but "
                f"the configured genesis says {chain_id}. Nothing was changed; use the matching "
                "genesis.json or another --datadir."
            )

    def initialize(self, genesis: BlockRecord, chain_id: int) -> None:
        """Write the schema version, genesis hash and genesis block in one batch."""
        if self.is_initialized:
            self.validate_genesis(genesis.block_hash, chain_id)
            return
        with self._write_lock, self._db.write_batch(transaction=True, sync=True) as batch:
            batch.put(schema.SCHEMA_VERSION_KEY, schema.encode_number(schema.SCHEMA_VERSION))
            batch.put(schema.GENESIS_HASH_KEY, genesis.block_hash)
            batch.put(schema.CHAIN_ID_KEY, schema.encode_number(chain_id))
            self._put_block(batch, genesis)
        self._head = Head(genesis.number, genesis.block_hash)

    # ---------------------------------------------------------------- writes
    def commit_block(self, record: BlockRecord, *, sync: bool = True) -> None:
        """Store a block, its receipts, commit, state, indexes and the new head atomically.

        Transactions it includes leave the txpool journal in the same batch.
        """
        head = self._head
        if head is None:
            raise DatadirError("commit_block before the genesis block was written")
        if record.number != head.number + 1:
            raise ValueError(
                f"block #{record.number} does not extend the head #{head.number}; "
                "the store only appends"
            )
        with self._write_lock, self._db.write_batch(transaction=True, sync=sync) as batch:
            self._put_block(batch, record)
            for tx_hash in record.tx_hashes:
                batch.delete(schema.journal_key(tx_hash))
        self._head = Head(record.number, record.block_hash)

    def _put_block(self, batch: plyvel.WriteBatch, record: BlockRecord) -> None:
        n = record.number
        put = batch.put
        for key, value in record.state_writes.items():
            put(schema.state_key(key), value)
        put(schema.header_key(n), record.header)
        put(
            schema.body_key(n),
            msgpack.packb(
                [list(record.transactions), list(record.senders), list(record.withdrawals)]
            ),
        )
        put(schema.receipts_key(n), msgpack.packb(list(record.receipts)))
        put(schema.commit_key(n), record.commit)
        if record.touched:  # absent means "not recorded", never "touched nothing"
            put(schema.touched_key(n), schema.encode_addresses(record.touched))
        if record.dev_extras:
            put(schema.dev_extras_key(n), record.dev_extras)
        put(schema.hash_to_number_key(record.block_hash), schema.encode_number(n))
        for index, tx_hash in enumerate(record.tx_hashes):
            put(schema.tx_lookup_key(tx_hash), msgpack.packb((n, index)))
        put(schema.HEAD_KEY, schema.encode_head(n, record.block_hash))

    # ---------------------------------------------------------------- dev chains
    def rewind(
        self,
        new_head: Head,
        removed: Iterable[BlockKeys],
        *,
        drop_snapshots_from: int | None = None,
    ) -> None:
        """Delete every block above `new_head` and make it the head, in one synced batch.

        Dev chains only (evm_revert): this rewrites local history. `removed` must name exactly
        the blocks above `new_head`; their state trie nodes stay (content-addressed, possibly
        shared with kept blocks). Snapshots with ids >= `drop_snapshots_from` go in the same
        batch.
        """
        head = self.head
        blocks = sorted(removed, key=lambda b: b.number)
        wanted = list(range(new_head.number + 1, head.number + 1))
        if [b.number for b in blocks] != wanted:
            raise ValueError(
                f"rewind to #{new_head.number} from head #{head.number} must remove exactly "
                f"blocks {new_head.number + 1}..{head.number}"
            )
        stored = self._db.get(schema.hash_to_number_key(new_head.block_hash))
        if stored is None or schema.decode_number(stored) != new_head.number:
            raise ValueError(f"rewind target #{new_head.number} is not a stored block")
        with self._write_lock, self._db.write_batch(transaction=True, sync=True) as batch:
            for b in blocks:
                n = b.number
                for key in (
                    schema.header_key(n),
                    schema.body_key(n),
                    schema.receipts_key(n),
                    schema.commit_key(n),
                    schema.dev_extras_key(n),
                    schema.hash_to_number_key(b.block_hash),
                ):
                    batch.delete(key)
                for tx_hash in b.tx_hashes:
                    batch.delete(schema.tx_lookup_key(tx_hash))
            if drop_snapshots_from is not None:
                start = schema.dev_snapshot_key(drop_snapshots_from)
                with self._db.iterator(
                    prefix=schema.DEV_SNAPSHOT_PREFIX, include_value=False
                ) as it:
                    for key in it:
                        if key >= start:
                            batch.delete(key)
            batch.put(schema.HEAD_KEY, schema.encode_head(new_head.number, new_head.block_hash))
        self._head = new_head

    def load_dev_extras(self, number: int) -> bytes | None:
        value: bytes | None = self._db.get(schema.dev_extras_key(number))
        return value

    def save_dev_settings(self, raw: bytes) -> None:
        with self._write_lock:
            self._db.put(schema.DEV_SETTINGS_KEY, raw, sync=True)

    def load_dev_settings(self) -> bytes | None:
        value: bytes | None = self._db.get(schema.DEV_SETTINGS_KEY)
        return value

    def save_dev_snapshot(self, raw: bytes) -> int:
        """Store an evm_snapshot record under the next id (never reused) and return the id."""
        with self._write_lock, self._db.write_batch(transaction=True, sync=True) as batch:
            seq = self._db.get(schema.DEV_SNAPSHOT_SEQ_KEY)
            snapshot_id = schema.decode_number(seq) if seq is not None else 0
            batch.put(schema.dev_snapshot_key(snapshot_id), raw)
            batch.put(schema.DEV_SNAPSHOT_SEQ_KEY, schema.encode_number(snapshot_id + 1))
        return snapshot_id

    def load_dev_snapshot(self, snapshot_id: int) -> bytes | None:
        if snapshot_id < 0 or snapshot_id >= 2**64:
            return None
        value: bytes | None = self._db.get(schema.dev_snapshot_key(snapshot_id))
        return value

    # ---------------------------------------------------------------- consensus evidence
    def save_evidence(
        self, height: int, round_: int, kind: int, validator: bytes, raw: bytes
    ) -> None:
        """Keep proof that `validator` signed two different votes (synced write)."""
        key = schema.evidence_key(height, round_, kind, validator)
        with self._write_lock:
            self._db.put(key, raw, sync=True)

    def load_evidence(self, limit: int = 1000) -> list[bytes]:
        """Stored evidence records, oldest height first."""
        found: list[bytes] = []
        with self._db.iterator(prefix=schema.EVIDENCE_PREFIX, include_key=False) as values:
            for value in values:
                found.append(value)
                if len(found) >= limit:
                    break
        return found

    # ---------------------------------------------------------------- faucet
    def save_faucet_drip(self, address: bytes, packed_ip: bytes, at: int) -> None:
        """Record a drip to `address` asked from `packed_ip` at `at` (seconds), synced."""
        stamp = schema.encode_number(at)
        with self._write_lock, self._db.write_batch(transaction=True, sync=True) as batch:
            batch.put(schema.faucet_address_key(address), stamp)
            batch.put(schema.faucet_ip_key(packed_ip), stamp)

    def load_faucet_drips(self, address: bytes, packed_ip: bytes) -> tuple[int | None, int | None]:
        """When `address` and `packed_ip` last got a drip (seconds), None for never."""
        by_address = self._db.get(schema.faucet_address_key(address))
        by_ip = self._db.get(schema.faucet_ip_key(packed_ip))
        return (
            schema.decode_number(by_address) if by_address is not None else None,
            schema.decode_number(by_ip) if by_ip is not None else None,
        )

    def prune_faucet_drips(self, before: int) -> int:
        """Forget drips older than `before` (their cooldown is over); how many were dropped."""
        with self._db.iterator(prefix=schema.FAUCET_PREFIX) as it:
            old = [key for key, value in it if schema.decode_number(value) < before]
        if old:
            with self._write_lock, self._db.write_batch(transaction=True, sync=True) as batch:
                for key in old:
                    batch.delete(key)
        return len(old)

    # ---------------------------------------------------------------- txpool journal
    def save_journal(self, entries: Iterable[tuple[bytes, bytes]]) -> None:
        """Durably record accepted raw transactions (fsync before returning)."""
        with self._write_lock, self._db.write_batch(transaction=True, sync=True) as batch:
            for tx_hash, raw in entries:
                batch.put(schema.journal_key(tx_hash), raw)

    def delete_journal(self, tx_hashes: Iterable[bytes]) -> None:
        with self._write_lock, self._db.write_batch(transaction=True, sync=True) as batch:
            for tx_hash in tx_hashes:
                batch.delete(schema.journal_key(tx_hash))

    def load_journal(self) -> list[bytes]:
        with self._db.iterator(prefix=schema.JOURNAL_PREFIX, include_key=False) as it:
            return list(it)

    # ---------------------------------------------------------------- reads
    def _load_head(self) -> Head | None:
        raw = self._db.get(schema.HEAD_KEY)
        if raw is None:
            return None
        number, block_hash = schema.decode_head(raw)
        return Head(number, block_hash)

    @property
    def head(self) -> Head:
        if self._head is None:
            raise DatadirError(f"{self.path} holds no chain yet")
        return self._head

    def load_header(self, number: int) -> bytes | None:
        value: bytes | None = self._db.get(schema.header_key(number))
        return value

    def load_body(self, number: int) -> StoredBody | None:
        raw = self._db.get(schema.body_key(number))
        if raw is None:
            return None
        txs, senders, withdrawals = msgpack.unpackb(raw)
        return StoredBody(tuple(txs), tuple(senders), tuple(withdrawals))

    def load_receipts(self, number: int) -> tuple[bytes, ...] | None:
        raw = self._db.get(schema.receipts_key(number))
        if raw is None:
            return None
        return tuple(msgpack.unpackb(raw))

    def load_commit(self, number: int) -> bytes | None:
        value: bytes | None = self._db.get(schema.commit_key(number))
        return value

    def load_touched(self, number: int) -> tuple[bytes, ...] | None:
        """Accounts block `number` touched; None for blocks stored before this was recorded."""
        raw = self._db.get(schema.touched_key(number))
        return None if raw is None else schema.decode_addresses(raw)

    def load_number(self, block_hash: bytes) -> int | None:
        if len(block_hash) != 32:
            return None
        raw = self._db.get(schema.hash_to_number_key(block_hash))
        return None if raw is None else schema.decode_number(raw)

    def load_tx_location(self, tx_hash: bytes) -> tuple[int, int] | None:
        if len(tx_hash) != 32:
            return None
        raw = self._db.get(schema.tx_lookup_key(tx_hash))
        if raw is None:
            return None
        number, index = msgpack.unpackb(raw)
        return int(number), int(index)

    def state_db(self) -> PrefixedDB:
        """py-evm's view of state trie nodes and code (reads; writes go through commit_block)."""
        return PrefixedDB(self._db, schema.STATE_PREFIX)

    def iterate_headers(self, start: int, stop: int) -> Iterator[tuple[int, bytes]]:
        """Headers of blocks `start` .. `stop - 1`, in order, by one LevelDB scan."""
        with self._db.iterator(start=schema.header_key(start), stop=schema.header_key(stop)) as it:
            for key, value in it:
                yield schema.decode_number(key[1:]), value

    def snapshot_to(self, target: Path) -> Head:
        """Copy a consistent snapshot of every key into a new LevelDB at `target` (a chain
        directory the node opens as this one, identity marker included); the snapshot's head.
        Writes into this store continue meanwhile: the copy holds whole blocks only."""
        if target.exists() and any(target.iterdir()):
            raise DatadirError(f"backup target {target} is not empty")
        snap = self._db.snapshot()
        raw_head = snap.get(schema.HEAD_KEY)
        if raw_head is None:
            snap.close()
            raise DatadirError(f"{self.path} holds no chain yet: nothing to back up")
        number, block_hash = schema.decode_head(raw_head)
        target.mkdir(parents=True, exist_ok=True)
        _write_durably(target / IDENTITY_FILE, (self.path / IDENTITY_FILE).read_bytes())
        out = plyvel.DB(str(target), create_if_missing=True, error_if_exists=True)
        try:
            batch = out.write_batch(sync=True)
            pending = 0
            with snap.iterator() as it:
                for key, value in it:
                    batch.put(key, value)
                    pending += 1
                    if pending >= 10_000:
                        batch.write()
                        batch = out.write_batch(sync=True)
                        pending = 0
            batch.write()
        finally:
            snap.close()
            out.close()
        return Head(number, block_hash)


def _write_durably(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
