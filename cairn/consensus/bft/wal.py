"""The consensus write-ahead log and the sign guard, both under `<datadir>/consensus/`.

`Wal`: every consensus input of the current height — peer messages, own messages, timeouts —
is appended before the engine handles it; own proposals and votes are fsync'd before they are
sent. Replayed at start, it rebuilds the round state (locks included) of the height in
progress. Records are `[length u32][crc32 u32][msgpack]`; a torn last record (a crash mid
write) is cut off at replay. One file per height: when a height is committed the next file is
started and the old one removed (CometBFT's `spec/consensus/wal.md`, one height at a time).

`SignGuard`: the last (height, round, step) this validator signed, with the block and the
signature, fsync'd (write, fsync, rename, fsync the directory) before any signature leaves
it. It refuses to sign anything older, or a different block at the same (height, round,
step), and hands back the same signature for the same request — so a validator never signs
two blocks at one height and round, across crashes and restarts, even if its WAL is lost
(CometBFT's `priv_validator_state.json`).
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any

import msgpack

from cairn.errors import CairnError

log = logging.getLogger("cairn.bft.wal")

_HEADER = struct.Struct(">II")
MAX_RECORD_BYTES = 8 * 1024 * 1024


class DoubleSign(CairnError):
    """Signing this would contradict what this validator already signed."""


class RecordKind(IntEnum):
    PEER_MESSAGE = 1  # raw consensus message from the network
    OWN_MESSAGE = 2  # raw consensus message this validator signed
    TIMEOUT = 3  # (kind, height, round)


@dataclass(frozen=True)
class Record:
    kind: RecordKind
    payload: Any


class Wal:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.height: int | None = None
        self._file: Any = None

    def _path(self, height: int) -> Path:
        return self.directory / f"{height:012d}.wal"

    def open_height(self, height: int) -> list[Record]:
        """Start writing `height`'s log, after reading back what it already holds (the
        records to replay); logs of earlier heights are removed."""
        self.close()
        for old in self.directory.glob("*.wal"):
            if old.name < self._path(height).name:
                old.unlink()
        path = self._path(height)
        records, good = _read(path) if path.exists() else ([], 0)
        if path.exists() and good < path.stat().st_size:
            log.warning(
                "consensus WAL %s: cut a torn record at byte %d (a crash mid write)", path, good
            )
            with path.open("r+b") as f:
                f.truncate(good)
                f.flush()
                os.fsync(f.fileno())
        self._file = path.open("ab")
        self.height = height
        _fsync_dir(self.directory)
        return records

    def append(self, kind: RecordKind, payload: Any, *, sync: bool) -> None:
        data: bytes = msgpack.packb([int(kind), payload])
        self._file.write(_HEADER.pack(len(data), zlib.crc32(data)) + data)
        self._file.flush()
        if sync:
            os.fsync(self._file.fileno())

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _read(path: Path) -> tuple[list[Record], int]:
    """The records of `path` up to the first torn or corrupt one, and where that starts."""
    data = path.read_bytes()
    records: list[Record] = []
    offset = 0
    for record, end in _records(data):
        records.append(record)
        offset = end
    return records, offset


def _records(data: bytes) -> Iterator[tuple[Record, int]]:
    offset = 0
    while offset + _HEADER.size <= len(data):
        length, crc = _HEADER.unpack_from(data, offset)
        start, end = offset + _HEADER.size, offset + _HEADER.size + length
        if length > MAX_RECORD_BYTES or end > len(data):
            return
        body = data[start:end]
        if zlib.crc32(body) != crc:
            return
        try:
            kind, payload = msgpack.unpackb(body)
            record = Record(RecordKind(kind), payload)
        except (ValueError, TypeError, msgpack.UnpackException):
            return
        yield record, end
        offset = end


class SignStep(IntEnum):
    PROPOSAL = 0
    PREVOTE = 1
    PRECOMMIT = 2


@dataclass(frozen=True)
class LastSigned:
    height: int
    round: int
    step: SignStep
    block_hash: bytes
    signature: bytes


class SignGuard:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.last: LastSigned | None = None
        if path.exists():
            height, round_, step, block_hash, signature = msgpack.unpackb(path.read_bytes())
            self.last = LastSigned(height, round_, SignStep(step), block_hash, signature)

    def check(self, height: int, round_: int, step: SignStep, block_hash: bytes) -> bytes | None:
        """None when signing is allowed; the earlier signature when this exact thing was
        signed already; `DoubleSign` when it contradicts what was signed."""
        last = self.last
        if last is None:
            return None
        here, there = (height, round_, int(step)), (last.height, last.round, int(last.step))
        if here > there:
            return None
        if here == there:
            if block_hash == last.block_hash:
                return last.signature
            raise DoubleSign(
                f"refusing to sign {step.name.lower()} #{height}/{round_} for "
                f"0x{block_hash.hex()[:16] or 'nil'}: already signed 0x"
                f"{last.block_hash.hex()[:16] or 'nil'} there"
            )
        raise DoubleSign(
            f"refusing to sign {step.name.lower()} #{height}/{round_}: already signed "
            f"{last.step.name.lower()} #{last.height}/{last.round} (no going back)"
        )

    def record(self, signed: LastSigned) -> None:
        """Make `signed` durable before its signature is used."""
        tmp = self.path.with_suffix(".tmp")
        with tmp.open("wb") as f:
            f.write(
                msgpack.packb(
                    [
                        signed.height,
                        signed.round,
                        int(signed.step),
                        signed.block_hash,
                        signed.signature,
                    ]
                )
            )
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        _fsync_dir(self.path.parent)
        self.last = signed


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
