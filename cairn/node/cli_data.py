"""`cairn export` and `cairn import`: a chain as concatenated RLP blocks (geth's format).

Files ending in `.gz` are gzip-compressed. Beside the blocks, Cairn writes its commits (the
producer signatures stored with each block, which are not part of a block) to a side file,
`<file>.commits` (`chain.rlp` -> `chain.rlp.commits`, `chain.rlp.gz` -> `chain.rlp.commits.gz`):

    rlp([b"cairn-commits", 1, chain_id, genesis_hash])      once, first
    rlp([number, block_hash, commit])                       per exported block, in order

An empty commit stands for a block that was itself imported as trusted (and the genesis).

Import re-executes every block through `BlockApplier.import_block`, the one apply path, so
every root is checked and each block is one synced batch: a killed import resumes where it
stopped (blocks already canonical are skipped). Blocks whose commit is missing are imported
only as *trusted* (`--trusted`, or automatically for a genesis without a `cairn` section,
i.e. a chain made by another client); they are stored with the empty commit, which no peer's
block sync accepts, so a trusted block can never pass for a committed one.

The node must be stopped (LevelDB allows one process). Nothing here judges blocks itself.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import logging
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from io import BufferedIOBase
from pathlib import Path
from typing import Any

import rlp
from eth.abc import BlockAPI
from rlp.exceptions import DecodingError, DeserializationError

from cairn.chain.apply import BlockApplier
from cairn.chain.chain import Chain, open_store
from cairn.chain.events import ChainEvents
from cairn.errors import CairnError, ConfigError, DatadirError, InvalidBlock, InvalidCommit
from cairn.execution.forks import Fork, fork_named
from cairn.genesis.model import Genesis
from cairn.genesis.parse import genesis_to_json, load_genesis
from cairn.txpool.pool import TxPool

log = logging.getLogger("cairn.data")

GENESIS_FILE = "genesis.json"
COMMITS_MAGIC = b"cairn-commits"
COMMITS_VERSION = 1
PROGRESS_EVERY = 5.0  # seconds between progress lines
_READ_CHUNK = 1 << 20


class ChainFileError(CairnError):
    """A block file that cannot be imported: names the file, block and reason."""


def commits_path(path: Path) -> Path:
    """`chain.rlp` -> `chain.rlp.commits`; `chain.rlp.gz` -> `chain.rlp.commits.gz`."""
    if path.suffix == ".gz":
        return path.with_name(path.name[: -len(".gz")] + ".commits.gz")
    return path.with_name(path.name + ".commits")


def _open_read(path: Path) -> BufferedIOBase:
    try:
        raw = path.open("rb")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    if path.suffix == ".gz":
        return gzip.GzipFile(fileobj=raw, mode="rb")
    return raw


def _open_write(path: Path) -> BufferedIOBase:
    try:
        raw = path.open("wb")
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror}") from None
    if path.name.endswith(".gz") or path.name.endswith(".gz.tmp"):
        return gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6)
    return raw


class RlpItems:
    """Each top-level RLP item of a stream of concatenated items, read in 1 MiB chunks.
    `consumed` counts the (uncompressed) bytes of the items handed out, `read` those read so
    far: their ratio, times the share of the file read, estimates the share done."""

    def __init__(self, stream: BufferedIOBase, where: str) -> None:
        self._stream = stream
        self._where = where
        self.consumed = 0
        self.read = 0

    def __iter__(self) -> Iterator[bytes]:
        buffer = b""
        eof = False
        where = self._where
        while True:
            if not eof and len(buffer) < _READ_CHUNK:
                chunk = self._read(_READ_CHUNK)
                if chunk:
                    buffer += chunk
                    continue
                eof = True
            if not buffer:
                return
            offset = self.consumed
            try:
                _, _, length, start = rlp.codec.consume_length_prefix(buffer, 0)
            except (DecodingError, IndexError) as exc:
                if not eof:
                    raise ChainFileError(f"{where}: bad RLP at byte {offset}: {exc}") from None
                raise ChainFileError(f"{where}: truncated or bad RLP at byte {offset}") from None
            end = start + length
            if end > len(buffer):
                if eof:
                    raise ChainFileError(
                        f"{where}: the item at byte {offset} needs {end} bytes, the file ends "
                        f"after {len(buffer)} (truncated?)"
                    )
                chunk = self._read(max(_READ_CHUNK, end - len(buffer)))
                if not chunk:
                    eof = True
                buffer += chunk
                continue
            item = buffer[:end]
            buffer = buffer[end:]
            self.consumed += end
            yield item

    def _read(self, size: int) -> bytes:
        try:
            chunk = self._stream.read(size)
        except (OSError, EOFError) as exc:  # a truncated or corrupt gzip file
            raise ChainFileError(f"{self._where}: cannot read at byte {self.read}: {exc}") from None
        self.read += len(chunk)
        return chunk


def iterate_rlp_items(stream: BufferedIOBase, where: str) -> Iterator[bytes]:
    return iter(RlpItems(stream, where))


class _Progress:
    """One line to stderr every PROGRESS_EVERY seconds: blocks, blocks/s and the ETA."""

    def __init__(self, verb: str, total: int | None, every: float = PROGRESS_EVERY) -> None:
        self.verb = verb
        self.every = every
        self.total = total
        self.started = time.monotonic()
        self._last = self.started
        self.done = 0

    def step(self, number: int, fraction: float | None = None) -> None:
        self.done += 1
        now = time.monotonic()
        if now - self._last < self.every:
            return
        self._last = now
        elapsed = now - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        if fraction is None and self.total:
            fraction = self.done / self.total
        eta = ""
        if fraction and fraction > 0:
            eta = f", ETA {_clock(elapsed * (1 - fraction) / fraction)}"
        share = f" ({fraction:.0%})" if fraction is not None else ""
        print(
            f"{self.verb} block #{number}{share}, {rate:.0f} blocks/s{eta}",
            file=sys.stderr,
            flush=True,
        )

    def summary(self) -> str:
        elapsed = time.monotonic() - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        return f"in {elapsed:.1f}s ({rate:.0f} blocks/s)"


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def _genesis(datadir: Path, genesis_path: str | None) -> Genesis:
    stored = datadir / GENESIS_FILE
    if genesis_path:
        return load_genesis(Path(genesis_path))
    if stored.exists():
        return load_genesis(stored)
    raise ConfigError(
        f"no genesis: pass --genesis genesis.json (none in {datadir}); it must be the genesis "
        "the blocks were made on"
    )


def _open_chain(datadir: Path, genesis: Genesis) -> Chain:
    fork = fork_named(genesis.consensus.fork)
    store = open_store(datadir / "chaindata", genesis, fork)
    try:
        return Chain(store, genesis, fork)
    except BaseException:
        store.close()
        raise


# ------------------------------------------------------------------------------ export
def cmd_export(args: argparse.Namespace) -> int:
    datadir = Path(args.datadir).expanduser()
    if not (datadir / "chaindata").is_dir():
        raise DatadirError(f"{datadir} holds no chain (no chaindata directory)")
    genesis = _genesis(datadir, args.genesis)
    chain = _open_chain(datadir, genesis)
    try:
        head = chain.store.head.number
        first = 0 if args.first is None else args.first
        last = head if args.last is None else args.last
        if first < 0 or last < first:
            raise ConfigError(f"bad range {first}..{last}: first must be <= last and >= 0")
        if last > head:
            raise ConfigError(f"block #{last} is past the head #{head}")
        out = Path(args.file)
        written = _export(chain, out, first, last, args.progress_interval)
    finally:
        chain.store.close()
    print(f"exported blocks #{first}..#{last} to {out} and {commits_path(out)} {written}")
    return 0


def _export(chain: Chain, out: Path, first: int, last: int, every: float) -> str:
    side = commits_path(out)
    tmp_blocks, tmp_commits = (p.with_name(p.name + ".tmp") for p in (out, side))
    progress = _Progress("exported", last - first + 1, every)
    with _open_write(tmp_blocks) as blocks, _open_write(tmp_commits) as commits:
        commits.write(
            rlp.encode([COMMITS_MAGIC, COMMITS_VERSION, chain.chain_id, chain.genesis_hash])
        )
        for number in range(first, last + 1):
            stored = chain.reader.block_by_number(number)
            if stored is None:
                raise DatadirError(f"block #{number} is missing from {chain.store.path}")
            blocks.write(rlp.encode(stored.block))
            commit = chain.store.load_commit(number) or b""
            commits.write(rlp.encode([number, stored.header.hash, commit]))
            progress.step(number)
    # geth overwrites an existing file too; the renames make the pair appear whole or not at all
    tmp_commits.replace(side)
    tmp_blocks.replace(out)
    return progress.summary()


# ------------------------------------------------------------------------------ import
@dataclass(frozen=True)
class CommitRecord:
    number: int
    block_hash: bytes
    commit: bytes


class CommitsFile:
    """The commits side file, read forward alongside the blocks."""

    def __init__(self, path: Path, chain_id: int, genesis_hash: bytes) -> None:
        self.path = path
        self._stream = _open_read(path)
        self._items = iterate_rlp_items(self._stream, str(path))
        header = self._decode(next(self._items, None), "header")
        if (
            len(header) != 4
            or header[0] != COMMITS_MAGIC
            or rlp.sedes.big_endian_int.deserialize(header[1]) != COMMITS_VERSION
        ):
            raise ChainFileError(f"{path}: not a Cairn commits file (version {COMMITS_VERSION})")
        file_chain = rlp.sedes.big_endian_int.deserialize(header[2])
        if file_chain != chain_id or header[3] != genesis_hash:
            raise ChainFileError(
                f"{path}: commits of chain {file_chain} genesis 0x{header[3].hex()}, not of "
                f"this chain {chain_id} genesis 0x{genesis_hash.hex()}"
            )
        self._next: CommitRecord | None = None

    def _decode(self, raw: bytes | None, what: str) -> list[bytes]:
        if raw is None:
            raise ChainFileError(f"{self.path}: empty (no {what})")
        try:
            item = rlp.decode(raw)
        except (DecodingError, DeserializationError) as exc:
            raise ChainFileError(f"{self.path}: bad {what}: {exc}") from None
        if not isinstance(item, list) or not all(isinstance(x, bytes) for x in item):
            raise ChainFileError(f"{self.path}: bad {what}: expected a list of strings")
        return item

    def commit_for(self, number: int, block_hash: bytes) -> bytes | None:
        """The commit recorded for block `number` (records are read forward); None if the
        file has none for it."""
        while True:
            record = self._next
            if record is None:
                raw = next(self._items, None)
                if raw is None:
                    return None
                fields = self._decode(raw, "record")
                if len(fields) != 3:
                    raise ChainFileError(
                        f"{self.path}: bad record: expected [number, hash, commit]"
                    )
                record = CommitRecord(
                    rlp.sedes.big_endian_int.deserialize(fields[0]), fields[1], fields[2]
                )
                self._next = record
            if record.number < number:
                self._next = None
                continue
            if record.number > number:
                return None
            self._next = None
            if record.block_hash != block_hash:
                raise ChainFileError(
                    f"{self.path}: the commit of block #{number} is for 0x"
                    f"{record.block_hash.hex()}, the block file's is 0x{block_hash.hex()}"
                )
            return record.commit

    def close(self) -> None:
        self._stream.close()


@dataclass
class ImportTally:
    imported: int = 0
    skipped: int = 0  # already canonical
    trusted: int = 0


def decode_block(fork: Fork, raw: bytes, where: str) -> BlockAPI:
    try:
        block: BlockAPI = rlp.decode(raw, sedes=fork.vm_class.get_block_class())
    except (DecodingError, DeserializationError) as exc:
        raise ChainFileError(f"{where}: not a {fork.name} block: {exc}") from None
    return block


async def import_file(
    applier: BlockApplier,
    path: Path,
    *,
    trusted: bool,
    tally: ImportTally,
    progress_every: float = PROGRESS_EVERY,
) -> None:
    """Apply every block of `path` in order through `applier` (see the module docstring)."""
    chain = applier.chain
    side = commits_path(path)
    commits = CommitsFile(side, chain.chain_id, chain.genesis_hash) if side.exists() else None
    if commits is None and not trusted:
        raise ChainFileError(
            f"{path} comes without a commits file ({side.name}), so its blocks carry no "
            "producer signatures: import it with --trusted if you trust the file (its blocks "
            "are then served, but peers accept them only by importing the file themselves)"
        )
    # Blocking reads are fine: this loop runs nothing but the import (`cairn import`).
    raw_file = path.open("rb")
    size = path.stat().st_size or 1  # noqa: ASYNC240
    stream: BufferedIOBase = gzip.GzipFile(fileobj=raw_file) if path.suffix == ".gz" else raw_file
    progress = _Progress("imported", None, progress_every)
    items = RlpItems(stream, str(path))
    try:
        for raw in items:
            block = decode_block(chain.fork, raw, f"{path} item {progress.done}")
            header = block.header
            commit = commits.commit_for(header.block_number, header.hash) if commits else None
            if header.block_number <= chain.store.head.number and applier.is_canonical(header):
                tally.skipped += 1
            elif commit:
                await applier.import_block(block, commit)
                tally.imported += 1
            elif trusted:
                await applier.import_block(block, b"", trusted=True)
                tally.imported += 1
                tally.trusted += 1
            else:
                raise ChainFileError(
                    f"block #{header.block_number} 0x{header.hash.hex()} has no commit in "
                    f"{side.name}; import with --trusted to accept it without one"
                )
            share_read = raw_file.tell() / size  # of the file, compressed or not
            progress.step(header.block_number, share_read * items.consumed / max(items.read, 1))
    finally:
        stream.close()
        raw_file.close()
        if commits is not None:
            commits.close()


def cmd_import(args: argparse.Namespace) -> int:
    datadir = Path(args.datadir).expanduser()
    genesis = _genesis(datadir, args.genesis)
    files = [Path(f) for f in args.files]
    for path in files:
        if not path.is_file():
            raise ConfigError(f"{path}: no such file")
    trusted = bool(args.trusted)
    if genesis.consensus.is_foreign and not trusted:
        trusted = True
        print(
            "the genesis has no `cairn` section (a chain made by another client): importing "
            "its blocks as trusted",
            file=sys.stderr,
        )
    chain = _open_chain(datadir, genesis)
    stored = datadir / GENESIS_FILE
    if not stored.exists():
        stored.write_text(_dump(genesis_to_json(genesis)))
    tally = ImportTally()
    started = time.monotonic()
    try:
        asyncio.run(_import_all(chain, files, trusted, tally, args.progress_interval))
    except (InvalidBlock, InvalidCommit) as exc:
        head = chain.store.head
        raise ChainFileError(
            f"{exc}. Blocks up to the head #{head.number} 0x{head.block_hash.hex()} are "
            "imported; nothing after it was written"
        ) from None
    finally:
        chain.store.close()
    elapsed = time.monotonic() - started
    rate = tally.imported / elapsed if elapsed > 0 else 0.0
    note = f", {tally.trusted} of them trusted (no commits)" if tally.trusted else ""
    print(
        f"imported {tally.imported} blocks{note}, skipped {tally.skipped} already present, "
        f"in {elapsed:.1f}s ({rate:.0f} blocks/s); head #{chain.store.head.number} "
        f"0x{chain.store.head.block_hash.hex()}"
    )
    return 0


async def _import_all(
    chain: Chain, files: list[Path], trusted: bool, tally: ImportTally, every: float
) -> None:
    writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cairn-import")
    try:
        pool = TxPool(chain.fork, chain.chain_id, chain.head_view, chain.store)
        applier = BlockApplier(chain, pool, ChainEvents(), writer)
        for path in files:
            await import_file(applier, path, trusted=trusted, tally=tally, progress_every=every)
    finally:
        writer.shutdown(wait=True)


def _dump(data: Any) -> str:
    return json.dumps(data, indent=2) + "\n"


# ------------------------------------------------------------------------------ parser
def add_commands(sub: Any) -> None:
    export = sub.add_parser(
        "export",
        help="write blocks [first [last]] as concatenated RLP (geth's format; .gz compresses)",
    )
    export.add_argument("--datadir", required=True, help="the node's datadir (node stopped)")
    export.add_argument("--genesis", default=None, help="genesis.json (default: the datadir's)")
    export.add_argument("file", help="output file; FILE.commits gets the commits")
    export.add_argument("first", nargs="?", type=int, default=None, help="first block (0)")
    export.add_argument("last", nargs="?", type=int, default=None, help="last block (head)")
    _progress_option(export)
    export.set_defaults(func=cmd_export)

    imp = sub.add_parser(
        "import",
        help="re-execute and store blocks from RLP files (geth's export format; .gz too)",
    )
    imp.add_argument("--datadir", required=True, help="the node's datadir (node stopped)")
    imp.add_argument(
        "--genesis", default=None, help="genesis.json (default: the datadir's); a new datadir "
        "is created from it",
    )  # fmt: skip
    imp.add_argument(
        "--trusted",
        action="store_true",
        help="accept blocks without commits (executed and checked, stored as trusted)",
    )
    imp.add_argument("files", nargs="+", metavar="file", help="block files, imported in order")
    _progress_option(imp)
    imp.set_defaults(func=cmd_import)


def _progress_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--progress.interval",
        dest="progress_interval",
        type=float,
        default=PROGRESS_EVERY,
        metavar="SECONDS",
        help=f"seconds between progress lines on stderr ({PROGRESS_EVERY:g})",
    )
