"""Backups of a datadir: a consistent copy of the chain (a LevelDB snapshot: whole blocks only,
taken while the node keeps writing), its genesis.json and keystore, into a new directory that
`cairn run`/`cairn dev --datadir` start from as they would from the original.

A running node holds LevelDB's lock, so `cairn backup` asks it over the datadir's control
socket (`control.sock`, mode 0600: whoever may read the datadir may back it up); without a
running node the CLI copies the datadir itself. Never writes inside the datadir it copies.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import cairn
from cairn.errors import DatadirError
from cairn.storage.store import ChainStore, Head

log = logging.getLogger("cairn.backup")

CONTROL_SOCKET = "control.sock"
MANIFEST = "BACKUP.json"
# sockaddr_un's sun_path is 108 bytes with its terminating NUL
_MAX_SOCKET_PATH = 107


def validate_target(datadir: Path, out: Path) -> Path:
    """The absolute backup directory; refused when it is inside the datadir or not empty."""
    out = out.expanduser().absolute()
    source = datadir.expanduser().absolute()
    if out == source or source in out.parents:
        raise DatadirError(f"backup target {out} is inside the datadir {source}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DatadirError(f"backup target {out} exists and is not an empty directory")
    return out


def write_backup(store: ChainStore, datadir: Path, out: Path) -> dict[str, Any]:
    """Copy `store` (open, possibly being written) and the datadir's files into `out`."""
    out = validate_target(datadir, out)
    started = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    try:
        head: Head = store.snapshot_to(out / "chaindata")
        genesis = datadir / "genesis.json"
        if genesis.exists():
            shutil.copy2(genesis, out / "genesis.json")
        keystore = datadir / "keystore"
        if keystore.is_dir():
            shutil.copytree(keystore, out / "keystore")
        summary: dict[str, Any] = {
            "blockNumber": head.number,
            "blockHash": "0x" + head.block_hash.hex(),
            "source": str(datadir.absolute()),
            "createdAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "version": cairn.__version__,
            "seconds": round(time.monotonic() - started, 3),
        }
        (out / MANIFEST).write_text(json.dumps(summary, indent=2) + "\n")
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)  # no half backup left looking like a whole one
        raise
    return summary


def control_path(datadir: Path) -> Path:
    return datadir.expanduser().absolute() / CONTROL_SOCKET


Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


class ControlServer:
    """One JSON request per line on `<datadir>/control.sock`, one JSON answer per line."""

    def __init__(self, datadir: Path, handlers: dict[str, Handler]) -> None:
        self.path = control_path(datadir)
        self._handlers = handlers
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        if len(str(self.path).encode()) > _MAX_SOCKET_PATH:
            log.warning(
                "control socket off: %s is longer than a Unix socket path may be; "
                "`cairn backup` of this running node is unavailable",
                self.path,
            )
            return
        # The node holds the datadir's LevelDB lock: a socket file here is a dead node's.
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self._server = await asyncio.start_unix_server(self._serve, path=str(self.path))
        os.chmod(self.path, 0o600)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            answer = await self._answer(line)
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client left; whatever it asked for finished or failed on its own
        finally:
            writer.close()

    async def _answer(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
            handler = self._handlers[request["command"]]
        except (ValueError, KeyError, TypeError):
            return {"ok": False, "error": f"unknown request {line[:200]!r}"}
        try:
            return {"ok": True, **await handler(request)}
        except DatadirError as exc:
            return {"ok": False, "error": str(exc)}
        except OSError as exc:
            return {"ok": False, "error": f"{exc.filename or ''}: {exc.strerror or exc}"}


class NodeBackups:
    """The running node's `backup` control command: one backup at a time, off the loop."""

    def __init__(self, store: ChainStore, datadir: Path) -> None:
        self._store = store
        self._datadir = datadir
        self._lock = asyncio.Lock()

    async def backup(self, request: dict[str, Any]) -> dict[str, Any]:
        out = request.get("out")
        if not isinstance(out, str) or not os.path.isabs(out):
            raise DatadirError("backup needs an absolute target directory")
        if self._lock.locked():
            raise DatadirError("a backup of this node is already running")
        async with self._lock:
            summary = await asyncio.to_thread(write_backup, self._store, self._datadir, Path(out))
        log.info(
            "backup of head #%d written to %s in %.1f s",
            summary["blockNumber"],
            out,
            summary["seconds"],
        )
        return summary

    async def wait_idle(self) -> None:
        """Returns once no backup is being written (the node stops after it, not during)."""
        async with self._lock:
            return


def ask_node(datadir: Path, request: dict[str, Any], timeout: float) -> dict[str, Any] | None:
    """Send `request` to the node running on `datadir`; None when no node answers there."""
    path = control_path(datadir)
    if not path.exists() or len(str(path).encode()) > _MAX_SOCKET_PATH:
        return None
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except (ConnectionRefusedError, FileNotFoundError):
            return None  # a socket file left by a node that was killed
        try:
            sock.sendall(json.dumps(request).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        except TimeoutError:
            raise DatadirError(
                f"the node on {datadir} did not answer within {timeout:.0f} s "
                "(--timeout); it may still be writing the backup"
            ) from None
    try:
        answer: dict[str, Any] = json.loads(data)
    except ValueError:
        raise DatadirError(
            f"the node on {datadir} closed the control socket without an answer "
            "(did it stop?); nothing can be assumed about the backup"
        ) from None
    return answer
