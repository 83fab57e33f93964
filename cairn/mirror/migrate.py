"""Versioned schema migrations: `migrations/NNNN_name.sql`, applied in order, each in its own
transaction, each recorded in `schema_migrations` with a checksum.

Concurrent starters (two nodes, a node and `cairn mirror rebuild`) serialise on an advisory
lock. A database that has migrations this build does not know is refused, never downgraded.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

import asyncpg

from cairn.errors import MirrorError

# Arbitrary, fixed: the advisory lock every Cairn process takes around migrations.
_LOCK_ID = 0x43414952_4E4D4952  # "CAIRNMIR"
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

_CREATE_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " version INTEGER PRIMARY KEY,"
    " name TEXT NOT NULL,"
    " checksum TEXT NOT NULL,"
    " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
)

# Everything the migrations create, dropped by `cairn mirror rebuild`.
MIRROR_TABLES = (
    "blocks",
    "transactions",
    "logs",
    "accounts",
    "network_state",
    "mirror_cursor",
    "schema_migrations",
)


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations() -> tuple[Migration, ...]:
    found = []
    for entry in resources.files("cairn.mirror").joinpath("migrations").iterdir():
        match = _NAME.match(entry.name)
        if match is None:
            continue
        found.append(Migration(int(match.group(1)), match.group(2), entry.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise MirrorError(f"mirror migrations are not numbered 1..n: {versions}")
    return tuple(found)


async def apply_migrations(conn: asyncpg.Connection) -> list[Migration]:
    """Bring the schema up to date; returns the migrations applied now."""
    migrations = load_migrations()
    applied_now: list[Migration] = []
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_ID)
    try:
        await conn.execute(_CREATE_TABLE)
        rows = await conn.fetch("SELECT version, checksum FROM schema_migrations")
        done = {int(r["version"]): str(r["checksum"]) for r in rows}
        known = {m.version for m in migrations}
        newer = sorted(v for v in done if v not in known)
        if newer:
            raise MirrorError(
                f"the mirror database has schema migrations {newer} that this cairn does not "
                "know (a newer cairn wrote it). Use that version, or start over with "
                "`cairn mirror rebuild`."
            )
        for migration in migrations:
            if migration.version in done:
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    migration.version,
                    migration.name,
                    migration.checksum,
                )
            applied_now.append(migration)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_ID)
    return applied_now


async def drop_mirror(conn: asyncpg.Connection) -> None:
    """Drop every mirror table (and only those), in one transaction."""
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_ID)
    try:
        async with conn.transaction():
            for table in MIRROR_TABLES:
                await conn.execute(f"DROP TABLE IF EXISTS {table} CASCADE")
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_ID)
