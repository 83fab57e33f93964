"""plyvel access: opening the LevelDB and a read-only, prefixed key-value view for py-evm.

State trie nodes and code live under `schema.STATE_PREFIX`. py-evm reads them through
`PrefixedDB`; it never writes through it: state changes reach disk only inside the block
commit's batch (the rule py-evm's removed `eth/db/backends/level.py` could not enforce).
"""

from __future__ import annotations

from pathlib import Path

import plyvel
from eth.db.backends.base import BaseDB

from cairn.errors import DatadirError

# LevelDB's memory beside its block cache: up to two memtables of WRITE_BUFFER_BYTES (the one
# being written and the one being flushed), and the index and bloom-filter blocks of up to
# MAX_OPEN_FILES open tables (about 30 KiB each for the ~2 MiB tables LevelDB writes).
WRITE_BUFFER_BYTES = 32 * 1024 * 1024
MAX_OPEN_FILES = 1000
DEFAULT_BLOCK_CACHE_BYTES = 64 * 1024 * 1024


def open_leveldb(path: Path, block_cache_bytes: int = DEFAULT_BLOCK_CACHE_BYTES) -> plyvel.DB:
    """Open (or create) the LevelDB at `path`; a second process gets a clear error."""
    path.mkdir(parents=True, exist_ok=True)
    try:
        return plyvel.DB(
            str(path),
            create_if_missing=True,
            lru_cache_size=block_cache_bytes,
            write_buffer_size=WRITE_BUFFER_BYTES,
            max_open_files=MAX_OPEN_FILES,
            bloom_filter_bits=10,
        )
    except plyvel.IOError as exc:
        if "lock" in str(exc).lower():
            raise DatadirError(
                f"{path} is locked: another cairn process is using this datadir. "
                "Stop it first or choose another --datadir."
            ) from exc
        raise DatadirError(f"cannot open LevelDB at {path}: {exc}") from exc
    except plyvel.CorruptionError as exc:
        raise DatadirError(f"LevelDB at {path} is corrupted: {exc}") from exc


class PrefixedDB(BaseDB):
    """A read-only key-value view of `db` where every key is stored as `prefix + key`."""

    def __init__(self, db: plyvel.DB, prefix: bytes) -> None:
        self._get = db.get
        self._prefix = prefix

    def __getitem__(self, key: bytes) -> bytes:
        value: bytes | None = self._get(self._prefix + key)
        if value is None:
            raise KeyError(key)
        return value

    def _exists(self, key: bytes) -> bool:
        return self._get(self._prefix + key) is not None

    def __setitem__(self, key: bytes, value: bytes) -> None:
        raise PermissionError("state is written only by ChainStore.commit_block")

    def __delitem__(self, key: bytes) -> None:
        raise PermissionError("state is written only by ChainStore.commit_block")
