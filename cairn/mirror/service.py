"""`Mirror`: follows the committed chain into Postgres, on a thread and event loop of its own.

LevelDB is the source of truth: the mirror reads blocks from `mirror_cursor + 1` up to the
head; `BlockCommitted` events only wake it early. Near the head it writes one transaction per
block; far behind, COPY batches with progress in the log. Postgres down or misbehaving means
a log line, a recorded error and a retry with exponential backoff — block production and RPC
never wait on the mirror: they only call `wake()`, `status()` and `health()`, which never block.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from cairn.errors import MirrorError
from cairn.mirror.migrate import apply_migrations
from cairn.mirror.rows import BlockRows
from cairn.mirror.source import ChainSource
from cairn.mirror.writer import (
    Cursor,
    CursorMoved,
    NetworkState,
    Written,
    load_chain_id,
    load_cursor,
    load_genesis_hash,
    prepare_connection,
    save_network_state,
    write_batch,
    write_block,
)

log = logging.getLogger("cairn.mirror")


@dataclass(frozen=True)
class MirrorConfig:
    url: str
    copy_threshold: int = 64  # blocks behind the head above which COPY batches are used
    batch_rows: int = 25_000  # aim for about this many rows per COPY batch
    max_batch_blocks: int = 2_000
    poll_interval: float = 1.0  # re-read the head even without a BlockCommitted wake-up
    heartbeat_interval: float = 5.0  # network_state refresh and liveness check when idle
    backoff_min: float = 0.5
    backoff_max: float = 10.0
    progress_interval: float = 2.0
    connect_timeout: float = 10.0
    command_timeout: float = 120.0


@dataclass(frozen=True)
class NodeInfo:
    """What `network_state` shows beyond the chain itself; given by the node."""

    mode: str
    producers: tuple[bytes, ...]
    client_version: str
    peer_count: Callable[[], int] = lambda: 0


@dataclass(frozen=True)
class MirrorStatus:
    """A snapshot; the mirror thread replaces it whole, readers never see it half-made."""

    phase: str = "starting"  # starting, streaming, catching_up, unavailable, error, stopped
    connected: bool = False
    cursor: int | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    errors_total: int = 0
    blocks_written: int = 0
    rows_written: Mapping[str, int] = field(default_factory=dict)
    catchup_blocks_per_second: float = 0.0
    catchup_rows_per_second: float = 0.0


_SECRET_PARAMETER = re.compile(r"(?i)(^|[&\s])((?:ssl)?password)\s*=\s*(?:'[^']*'|[^&\s]*)")


def redact(url: str) -> str:
    """The URL without its passwords (the user-info one and libpq's `password=` and
    `sslpassword=` parameters, in a URL's query or a key=value string), for logs,
    health output and error messages."""
    if "://" not in url:  # libpq's "host=db password=secret" form
        return _SECRET_PARAMETER.sub(r"\1\2=***", url)
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "<unparseable database URL>"
    if parts.query:
        parts = parts._replace(query=_SECRET_PARAMETER.sub(r"\1\2=***", parts.query))
    if password is not None:
        host = parts.netloc.rsplit("@", 1)[-1]
        parts = parts._replace(netloc=f"{parts.username or ''}:***@{host}")
    return urlunsplit(parts)


def has_password(url: str) -> bool:
    """Whether `url` carries a password (what `redact` would hide)."""
    return redact(url) != url


def is_unavailable(exc: BaseException) -> bool:
    """Postgres unreachable or going away, as opposed to refusing what we sent."""
    return isinstance(
        exc,
        OSError
        | TimeoutError
        | asyncpg.PostgresConnectionError
        | asyncpg.InterfaceError
        | asyncpg.exceptions.AdminShutdownError
        | asyncpg.exceptions.CannotConnectNowError,
    )


def describe(exc: BaseException, unavailable: bool | None = None) -> str:
    text = str(exc).strip() or type(exc).__name__
    if is_unavailable(exc):
        return f"Postgres unavailable: {text}"
    if unavailable:
        return f"Postgres unavailable: connection lost ({text})"
    return text


class _Stopping(Exception):
    pass


class Mirror:
    def __init__(self, source: ChainSource, config: MirrorConfig, node: NodeInfo) -> None:
        self.source = source
        self.config = config
        self.node = node
        self.url_for_logs = redact(config.url)
        self._status = MirrorStatus()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._stop_event: asyncio.Event | None = None
        self._stopping = threading.Event()
        self._reads = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cairn-mirror-read")
        self._last_logged_error: str | None = None

    # ------------------------------------------------------------ the node's side
    def start(self) -> None:
        self._thread = threading.Thread(target=self._thread_main, name="cairn-mirror", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """A block was committed; safe from any thread, never blocks."""
        loop, wake = self._loop, self._wake
        if loop is None or wake is None:
            return
        with contextlib.suppress(RuntimeError):  # the mirror's loop has already closed
            loop.call_soon_threadsafe(wake.set)

    def request_stop(self) -> None:
        self._stopping.set()
        loop, stop = self._loop, self._stop_event
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):  # the mirror's loop has already closed
                loop.call_soon_threadsafe(stop.set)

    async def stop(self) -> None:
        """Stop and wait until the mirror thread no longer touches LevelDB."""
        self.request_stop()
        thread = self._thread
        if thread is not None:
            await asyncio.to_thread(thread.join, 30.0)
            if thread.is_alive():
                log.error("mirror thread did not stop within 30s")

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def status(self) -> MirrorStatus:
        return self._status

    def lag(self) -> int:
        cursor = self._status.cursor
        head = self.source.head_number
        return head + 1 if cursor is None else max(0, head - cursor)

    def health(self) -> tuple[bool, dict[str, Any]]:
        """(reachable, JSON body) for /health/database."""
        status = self._status
        lag = self.lag()
        return status.connected, {
            "status": status.phase,
            "connected": status.connected,
            "database": self.url_for_logs,
            "cursor": status.cursor,
            "head": self.source.head_number,
            "lag": lag,
            "lastError": status.last_error,
            "lastErrorAt": (
                time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(status.last_error_at))
                if status.last_error_at is not None
                else None
            ),
            "blocksWritten": status.blocks_written,
            "rowsWritten": dict(status.rows_written),
        }

    # ------------------------------------------------------------ the mirror thread
    def _set(self, **changes: Any) -> None:
        self._status = replace(self._status, **changes)

    def _thread_main(self) -> None:
        try:
            import uvloop

            factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
        except ImportError:
            factory = asyncio.new_event_loop
        try:
            with asyncio.Runner(loop_factory=factory) as runner:
                runner.run(self._main())
        except Exception:
            log.exception("mirror thread failed")
        finally:
            # Reads of LevelDB must be over before the node may close it.
            self._reads.shutdown(wait=True)
            self._loop = None
            self._set(phase="stopped", connected=False)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        stop = asyncio.Event()
        self._stop_event = stop
        if self._stopping.is_set():
            return
        log.info("mirror: following the chain into %s", self.url_for_logs)
        work = asyncio.create_task(self._work(), name="mirror")
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait({work, stopper}, return_when=asyncio.FIRST_COMPLETED)
        # A stop interrupts whatever is in flight: an uncommitted transaction is simply lost
        # (the cursor did not move) and is written again on the next start.
        work.cancel()
        stopper.cancel()
        await asyncio.gather(work, stopper, return_exceptions=True)
        log.info("mirror stopped at #%s", self._status.cursor)

    async def _work(self) -> None:
        backoff = self.config.backoff_min
        while not self._stopping.is_set():
            conn: asyncpg.Connection | None = None
            try:
                conn = await self._connect()
                backoff = self.config.backoff_min
                await self._follow(conn)
            except _Stopping:
                return
            except Exception as exc:
                if self._stopping.is_set():
                    return
                delay = backoff if not isinstance(exc, MirrorError) else self.config.backoff_max
                # Postgres going away mid-statement can surface as another error (asyncpg:
                # "cannot switch to state 12; another operation is in progress" from the
                # transaction's rollback): a closed connection says what happened.
                lost = conn is not None and conn.is_closed()
                self._record_error(exc, delay, lost)
                backoff = min(backoff * 2, self.config.backoff_max)
                await self._sleep(delay)
            finally:
                if conn is not None:
                    conn.terminate()

    def _record_error(self, exc: Exception, delay: float, lost: bool = False) -> None:
        unavailable = lost or is_unavailable(exc)
        message = describe(exc, unavailable)
        self._set(
            phase="unavailable" if unavailable else "error",
            connected=False,
            last_error=message,
            last_error_at=time.time(),
            errors_total=self._status.errors_total + 1,
        )
        if unavailable or isinstance(exc, MirrorError):
            log.warning("mirror: %s; retrying in %.1fs", message, delay)
        elif message != self._last_logged_error:
            log.error("mirror: write failed; retrying in %.1fs", delay, exc_info=exc)
        else:
            log.warning("mirror: write failed again (%s); retrying in %.1fs", message, delay)
        self._last_logged_error = message

    async def _sleep(self, seconds: float) -> None:
        """Back off; a stop request cancels this task, new blocks do not shorten it."""
        await asyncio.sleep(seconds)

    async def _wait_for_blocks(self, seconds: float) -> None:
        assert self._wake is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)
        self._wake.clear()

    async def _connect(self) -> asyncpg.Connection:
        conn: asyncpg.Connection = await asyncpg.connect(
            self.config.url,
            timeout=self.config.connect_timeout,
            command_timeout=self.config.command_timeout,
            server_settings={"application_name": "cairn-mirror"},
        )
        try:
            applied = await apply_migrations(conn)
            for migration in applied:
                log.info("mirror: applied migration %04d_%s", migration.version, migration.name)
            await prepare_connection(conn)
            cursor = await self._check_identity(conn)
        except BaseException:
            conn.terminate()
            raise
        self._set(connected=True, cursor=None if cursor is None else cursor.number)
        log.info(
            "mirror: connected to %s; cursor #%s, head #%d",
            self.url_for_logs,
            "none" if cursor is None else cursor.number,
            self.source.head_number,
        )
        return conn

    async def _check_identity(self, conn: asyncpg.Connection) -> Cursor | None:
        """Refuse a database that mirrors another chain or another history of this one."""
        source = self.source
        genesis = await load_genesis_hash(conn)
        chain_id = await load_chain_id(conn)
        if (genesis is not None and genesis != source.genesis_hash) or (
            chain_id is not None and chain_id != source.chain_id
        ):
            theirs = f"chain id {chain_id}, genesis 0x{(genesis or b'').hex()}"
            raise MirrorError(
                f"{self.url_for_logs} mirrors another chain ({theirs}; this node has chain id "
                f"{source.chain_id}, genesis 0x{source.genesis_hash.hex()}). Point --mirror.url "
                "at another database or start over with `cairn mirror rebuild`."
            )
        cursor = await load_cursor(conn)
        if cursor is None:
            return None
        local = await self._read(source.block_hash, cursor.number)
        if local != cursor.block_hash:
            found = "is missing" if local is None else f"is 0x{local.hex()}"
            raise MirrorError(
                f"{self.url_for_logs} holds block #{cursor.number} 0x{cursor.block_hash.hex()}, "
                f"but this node's block #{cursor.number} {found} (was the datadir reset?). "
                "Start over with `cairn mirror rebuild` or point --mirror.url at another database."
            )
        return cursor

    async def _read(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a LevelDB read on the mirror's read thread."""
        return await asyncio.get_running_loop().run_in_executor(self._reads, fn, *args)

    def _network_state(self) -> NetworkState:
        source = self.source
        head = source.chain.store.head
        try:
            peers = int(self.node.peer_count())
        except Exception:
            peers = 0
        return NetworkState(
            chain_id=source.chain_id,
            genesis_hash=source.genesis_hash,
            mode=self.node.mode,
            producers=self.node.producers,
            head_number=head.number,
            head_hash=head.block_hash,
            peers=peers,
            client_version=self.node.client_version,
        )

    def _count(self, written: Written, cursor: int) -> None:
        rows = dict(self._status.rows_written)
        for table, n in written.rows.items():
            rows[table] = rows.get(table, 0) + n
        self._set(
            cursor=cursor,
            blocks_written=self._status.blocks_written + written.blocks,
            rows_written=rows,
        )

    async def _follow(self, conn: asyncpg.Connection) -> None:
        last_beat = 0.0
        while True:
            if self._stopping.is_set():
                raise _Stopping
            stored = await load_cursor(conn)
            cursor = -1 if stored is None else stored.number
            self._set(cursor=None if stored is None else cursor)
            head = self.source.head_number
            lag = head - cursor
            if lag > self.config.copy_threshold:
                self._set(phase="catching_up")
                await self._catch_up(conn, cursor, until_lag=self.config.copy_threshold)
                continue
            self._set(phase="streaming")
            if lag > 0:
                try:
                    await self._write_one(conn, cursor + 1)
                except CursorMoved as moved:
                    log.info("mirror: %s; re-reading it", moved)
                continue
            now = time.monotonic()
            if now - last_beat >= self.config.heartbeat_interval:
                # Idle: keep network_state fresh, and notice a dead server without a write.
                await save_network_state(conn, self._network_state())
                last_beat = now
            await self._wait_for_blocks(self.config.poll_interval)

    async def _write_one(self, conn: asyncpg.Connection, number: int) -> None:
        rows: BlockRows = await self._read(self.source.load, number)
        written = await write_block(conn, rows, self._network_state())
        self._count(written, number)

    def _load_batch(self, start: int, count: int) -> list[BlockRows]:
        stop = min(start + count, self.source.head_number + 1)
        return self.source.load_range(start, stop) if stop > start else []

    async def catch_up_once(self) -> int:
        """Connect, COPY everything up to the current head, disconnect; returns the cursor.
        For `cairn mirror rebuild`, outside a running node."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        conn = await self._connect()
        try:
            stored = await load_cursor(conn)
            await self._catch_up(conn, -1 if stored is None else stored.number, until_lag=0)
        finally:
            conn.terminate()
            self._reads.shutdown(wait=True)
        return -1 if self._status.cursor is None else self._status.cursor

    async def _catch_up(self, conn: asyncpg.Connection, cursor: int, until_lag: int) -> None:
        """COPY batches until `until_lag` blocks from the head; the next batch is read while
        one is written."""
        config = self.config
        first = cursor + 1
        target = self.source.head_number
        log.info(
            "mirror: %d blocks behind (cursor #%s, head #%d); catching up with COPY batches",
            target - cursor,
            cursor if cursor >= 0 else "none",
            target,
        )
        started = time.monotonic()
        last_report = started
        blocks_done = rows_done = 0
        per_batch = 100
        loop = asyncio.get_running_loop()
        pending = loop.run_in_executor(self._reads, self._load_batch, first, per_batch)
        while True:
            if self._stopping.is_set():
                raise _Stopping
            batch = await pending
            if not batch:
                break
            rows_in_batch = sum(b.row_count for b in batch)
            per_batch = max(
                1,
                min(config.max_batch_blocks, config.batch_rows * len(batch) // rows_in_batch),
            )
            following = batch[-1].number + 1
            target = self.source.head_number
            more = target - following + 1 > until_lag
            if more:
                pending = loop.run_in_executor(self._reads, self._load_batch, following, per_batch)
            written = await write_batch(conn, batch, self._network_state())
            self._count(written, batch[-1].number)
            blocks_done += written.blocks
            rows_done += written.total_rows
            now = time.monotonic()
            elapsed = max(now - started, 1e-6)
            self._set(
                catchup_blocks_per_second=blocks_done / elapsed,
                catchup_rows_per_second=rows_done / elapsed,
            )
            if blocks_done == written.blocks or now - last_report >= config.progress_interval:
                last_report = now  # the first batch, then every progress_interval
                remaining = target - batch[-1].number
                rate = blocks_done / elapsed
                log.info(
                    "mirror catching up: #%d of #%d (%.0f%%), %.0f blocks/s, %.0f rows/s, ETA %s",
                    batch[-1].number,
                    target,
                    100.0 * (batch[-1].number + 1) / (target + 1),
                    rate,
                    rows_done / elapsed,
                    _eta(remaining, rate),
                )
            if not more:
                break
        elapsed = max(time.monotonic() - started, 1e-6)
        log.info(
            "mirror: caught up to #%s: %d blocks, %d rows in %.1fs (%.0f blocks/s, %.0f rows/s)",
            self._status.cursor,
            blocks_done,
            rows_done,
            elapsed,
            blocks_done / elapsed,
            rows_done / elapsed,
        )


def _eta(remaining: int, rate: float) -> str:
    if rate <= 0:
        return "unknown"
    if remaining / rate < 10:
        return f"{remaining / rate:.1f}s"
    seconds = int(remaining / rate)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
