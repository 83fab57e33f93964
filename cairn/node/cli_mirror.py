"""`cairn mirror verify` and `cairn mirror rebuild`: check or reset the Postgres mirror.

Both read LevelDB directly, so the node must not be running on the datadir (LevelDB allows
one process); `rebuild` without `--datadir` only resets the tables, and a running node's
mirror refills them from block 0 by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

import asyncpg

from cairn.chain.chain import Chain, open_store
from cairn.errors import ConfigError, DatadirError
from cairn.execution.forks import fork_named
from cairn.genesis.model import Genesis
from cairn.genesis.parse import load_genesis
from cairn.mirror.migrate import apply_migrations, drop_mirror
from cairn.mirror.service import Mirror, MirrorConfig, NodeInfo, describe, redact
from cairn.mirror.source import ChainSource
from cairn.mirror.verify import verify
from cairn.node.config import resolve
from cairn.node.logs import setup_logging

log = logging.getLogger("cairn.mirror")


def _common(parser: argparse.ArgumentParser, *, datadir_required: bool) -> None:
    parser.add_argument("--config", metavar="FILE", default=None, help="TOML config file")
    parser.add_argument(
        "--datadir",
        dest="datadir",
        required=datadir_required,
        default=None,
        metavar="DIR",
        help="the node's data directory (the node must be stopped)",
    )
    parser.add_argument(
        "--genesis", dest="genesis", default=None, metavar="FILE",
        help="genesis.json (default: the copy in the datadir)",
    )  # fmt: skip
    parser.add_argument(
        "--mirror.url",
        dest="mirror_url",
        default=None,
        metavar="URL",
        help="Postgres URL (env CAIRN_MIRROR_URL or DATABASE_URL)",
    )
    parser.add_argument(
        "--log.level", dest="log_level", default=None, metavar="LEVEL",
        help="debug, info, warning or error",
    )  # fmt: skip


def add_commands(subparsers: Any) -> None:
    mirror = subparsers.add_parser("mirror", help="check or rebuild the Postgres mirror")
    sub = mirror.add_subparsers(dest="mirror_command", required=True)

    check = sub.add_parser(
        "verify", help="compare the Postgres mirror with LevelDB and list every difference"
    )
    _common(check, datadir_required=True)
    check.add_argument(
        "--from", dest="first", type=int, default=None, metavar="N", help="first block (0)"
    )
    check.add_argument(
        "--to",
        dest="last",
        type=int,
        default=None,
        metavar="M",
        help="last block (default: the mirror's cursor)",
    )
    check.set_defaults(func=cmd_mirror_verify)

    rebuild = sub.add_parser(
        "rebuild", help="drop the mirror tables and start over (fills them with --datadir)"
    )
    _common(rebuild, datadir_required=False)
    rebuild.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    rebuild.set_defaults(func=cmd_mirror_rebuild)


def _url(opts: dict[str, Any]) -> str:
    url = opts.get("mirror_url")
    if not url:
        raise ConfigError("no mirror database: pass --mirror.url or set DATABASE_URL")
    return str(url)


def _genesis(opts: dict[str, Any], datadir: Path) -> Genesis:
    if opts.get("genesis"):
        return load_genesis(Path(opts["genesis"]))
    stored = datadir / "genesis.json"
    if stored.exists():
        return load_genesis(stored)
    raise ConfigError(f"{datadir} holds no genesis.json: pass --genesis")


def _open_chain(opts: dict[str, Any]) -> Chain:
    datadir = Path(opts["datadir"]).expanduser()
    if not (datadir / "chaindata").is_dir():
        raise DatadirError(f"{datadir} holds no chain (no chaindata directory)")
    genesis = _genesis(opts, datadir)
    fork = fork_named(genesis.consensus.fork)
    try:
        store = open_store(datadir / "chaindata", genesis, fork)
    except DatadirError as exc:
        if "locked" in str(exc):
            raise DatadirError(
                f"{exc} `cairn mirror` reads LevelDB itself: stop the node on {datadir} first."
            ) from exc
        raise
    try:
        return Chain(store, genesis, fork)
    except BaseException:
        store.close()
        raise


async def _connect(url: str) -> asyncpg.Connection:
    try:
        conn: asyncpg.Connection = await asyncpg.connect(url, timeout=15)
    except Exception as exc:
        raise ConfigError(f"cannot use {redact(url)}: {describe(exc)}") from exc
    return conn


def cmd_mirror_verify(args: argparse.Namespace) -> int:
    opts = resolve(args)
    setup_logging(opts["log_level"], opts["log_format"])
    url = _url(opts)
    chain = _open_chain(opts)
    try:
        source = ChainSource(chain)

        async def run() -> int:
            conn = await _connect(url)
            try:
                report = await verify(conn, source, args.first, args.last)
            finally:
                await conn.close()
            for difference in report.differences:
                print(difference)
            print(
                f"{len(report.differences)} differences: blocks #{report.first}..#{report.last}"
                f" (cursor #{report.cursor}), {report.blocks} blocks, {report.transactions} "
                f"transactions, {report.logs} logs, {report.accounts} accounts compared with "
                f"LevelDB in {chain.store.path.parent}"
            )
            return 1 if report.differences else 0

        return asyncio.run(run())
    finally:
        chain.store.close()


def cmd_mirror_rebuild(args: argparse.Namespace) -> int:
    opts = resolve(args)
    setup_logging(opts["log_level"], opts["log_format"])
    url = _url(opts)
    # Open LevelDB before dropping anything, so a running node stops us with nothing changed.
    chain = _open_chain(opts) if opts.get("datadir") else None
    try:
        if not args.yes:
            if not sys.stdin.isatty():
                raise ConfigError("rebuild drops every mirror table: pass --yes to confirm")
            answer = input(f"Drop every Cairn mirror table in {redact(url)}? [y/N] ")
            if answer.strip().lower() not in ("y", "yes"):
                print("aborted; nothing was changed")
                return 1

        async def reset() -> None:
            conn = await _connect(url)
            try:
                await drop_mirror(conn)
                await apply_migrations(conn)
            finally:
                await conn.close()

        asyncio.run(reset())
        print(f"dropped and re-created the mirror tables in {redact(url)}")
        if chain is None:
            print("a node started with this --mirror.url refills them from block 0")
            return 0
        genesis = chain.genesis
        mirror = Mirror(
            ChainSource(chain),
            MirrorConfig(url=url),
            NodeInfo(
                mode=genesis.consensus.mode,
                producers=tuple(bytes(p) for p in genesis.consensus.producers),
                client_version="cairn mirror rebuild",
            ),
        )
        cursor = asyncio.run(mirror.catch_up_once())
        print(f"mirrored blocks #0..#{cursor} from {chain.store.path.parent}")
        return 0
    finally:
        if chain is not None:
            chain.store.close()
