"""Writing rows to Postgres with asyncpg: one transaction per block near the head, COPY
batches when far behind. Every write is an idempotent upsert and moves `mirror_cursor` in
the same transaction, so a crash or an outage can only leave the cursor at a block boundary
and a replay never duplicates a row.

This module never reads LevelDB and never decides what to write: it writes what it is given.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from cairn.errors import MirrorError
from cairn.mirror.rows import (
    ACCOUNTS,
    BLOCKS,
    LOGS,
    TABLES,
    TRANSACTIONS,
    BlockRows,
    Row,
    Table,
    merge_accounts,
)


class CursorMoved(MirrorError):
    """Another writer (a second node, a rebuild) moved the cursor; re-read it and go on."""

    def __init__(self, cursor: int, first: int) -> None:
        self.cursor = cursor
        self.first = first
        super().__init__(
            f"mirror cursor is at #{cursor}, cannot append block #{first}; another writer "
            "is using this database"
        )


@dataclass(frozen=True)
class Cursor:
    number: int
    block_hash: bytes


@dataclass(frozen=True)
class NetworkState:
    chain_id: int
    genesis_hash: bytes
    mode: str
    producers: tuple[bytes, ...]
    head_number: int
    head_hash: bytes
    peers: int
    client_version: str


@dataclass(frozen=True)
class Written:
    blocks: int
    rows: dict[str, int]

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())


def _update_set(table: Table) -> str:
    return ", ".join(f"{c} = EXCLUDED.{c}" for c in table.names if c not in table.key)


def _upsert_tail(table: Table) -> str:
    tail = f"ON CONFLICT ({', '.join(table.key)}) DO UPDATE SET {_update_set(table)}"
    if table is ACCOUNTS:
        # A replay of an older block must never overwrite a newer account state.
        tail += " WHERE accounts.last_block <= EXCLUDED.last_block"
    return tail


def _unnest_sql(table: Table) -> str:
    casts = ", ".join(f"${i}::{t}[]" for i, (_, t) in enumerate(table.columns, start=1))
    return (
        f"INSERT INTO {table.name} ({', '.join(table.names)}) "
        f"SELECT * FROM unnest({casts}) {_upsert_tail(table)}"
    )


def _staging(table: Table) -> str:
    return f"mirror_stage_{table.name}"


def _merge_sql(table: Table) -> str:
    cols = ", ".join(table.names)
    return (
        f"INSERT INTO {table.name} ({cols}) SELECT {cols} FROM {_staging(table)} "
        f"{_upsert_tail(table)}"
    )


_UPDATE_EMPTY_ACCOUNTS = (
    "UPDATE accounts AS a SET balance = u.balance, nonce = u.nonce, "
    "is_contract = u.is_contract, last_block = u.last_block "
    "FROM unnest($1::bytea[], $2::numeric[], $3::numeric[], $4::boolean[], $5::bigint[]) "
    "AS u(address, balance, nonce, is_contract, last_block) "
    "WHERE a.address = u.address AND a.last_block <= u.last_block"
)

_SET_CURSOR = (
    "INSERT INTO mirror_cursor (id, block_number, block_hash, updated_at) "
    "VALUES (1, $1, $2, now()) ON CONFLICT (id) DO UPDATE SET "
    "block_number = EXCLUDED.block_number, block_hash = EXCLUDED.block_hash, updated_at = now()"
)

_SET_NETWORK = (
    "INSERT INTO network_state (id, chain_id, genesis_hash, mode, producers, head_number, "
    "head_hash, peers, client_version, updated_at) "
    "VALUES (1, $1, $2, $3, $4, $5, $6, $7, $8, now()) ON CONFLICT (id) DO UPDATE SET "
    "chain_id = EXCLUDED.chain_id, genesis_hash = EXCLUDED.genesis_hash, mode = EXCLUDED.mode, "
    "producers = EXCLUDED.producers, head_number = EXCLUDED.head_number, "
    "head_hash = EXCLUDED.head_hash, peers = EXCLUDED.peers, "
    "client_version = EXCLUDED.client_version, updated_at = now()"
)


def _columns(rows: Sequence[Row], width: int) -> list[list[Any]]:
    return [[row[i] for row in rows] for i in range(width)]


async def load_cursor(conn: asyncpg.Connection, *, lock: bool = False) -> Cursor | None:
    sql = "SELECT block_number, block_hash FROM mirror_cursor WHERE id = 1"
    row = await conn.fetchrow(sql + (" FOR UPDATE" if lock else ""))
    return None if row is None else Cursor(int(row[0]), bytes(row[1]))


async def load_genesis_hash(conn: asyncpg.Connection) -> bytes | None:
    value = await conn.fetchval("SELECT hash FROM blocks WHERE number = 0")
    return None if value is None else bytes(value)


async def load_chain_id(conn: asyncpg.Connection) -> int | None:
    value = await conn.fetchval("SELECT chain_id FROM network_state WHERE id = 1")
    return None if value is None else int(value)


async def save_network_state(conn: asyncpg.Connection, state: NetworkState) -> None:
    await conn.execute(
        _SET_NETWORK,
        state.chain_id,
        state.genesis_hash,
        state.mode,
        list(state.producers),
        state.head_number,
        state.head_hash,
        state.peers,
        state.client_version,
    )


def _counts(batch: Sequence[BlockRows], accounts: int) -> Written:
    return Written(
        blocks=len(batch),
        rows={
            BLOCKS.name: len(batch),
            TRANSACTIONS.name: sum(len(b.transactions) for b in batch),
            LOGS.name: sum(len(b.logs) for b in batch),
            ACCOUNTS.name: accounts,
        },
    )


async def _check_cursor(conn: asyncpg.Connection, first: int) -> None:
    """Inside the write transaction: the rows must extend the cursor exactly."""
    cursor = await load_cursor(conn, lock=True)
    expected = -1 if cursor is None else cursor.number
    if first != expected + 1:
        raise CursorMoved(expected, first)


async def write_block(
    conn: asyncpg.Connection, rows: BlockRows, network: NetworkState | None = None
) -> Written:
    """One block in one transaction, with `unnest` upserts (a round trip per table)."""
    upserts, updates = merge_accounts([rows])
    async with conn.transaction():
        await _check_cursor(conn, rows.number)
        await conn.execute(_unnest_sql(BLOCKS), *_columns([rows.block], len(BLOCKS.columns)))
        if rows.transactions:
            await conn.execute(
                _unnest_sql(TRANSACTIONS),
                *_columns(rows.transactions, len(TRANSACTIONS.columns)),
            )
        if rows.logs:
            await conn.execute(_unnest_sql(LOGS), *_columns(rows.logs, len(LOGS.columns)))
        if upserts:
            await conn.execute(_unnest_sql(ACCOUNTS), *_columns(upserts, len(ACCOUNTS.columns)))
        if updates:
            await conn.execute(_UPDATE_EMPTY_ACCOUNTS, *_columns(updates, len(ACCOUNTS.columns)))
        await conn.execute(_SET_CURSOR, rows.number, rows.block_hash)
        if network is not None:
            await save_network_state(conn, network)
    return _counts([rows], len(upserts) + len(updates))


async def prepare_connection(conn: asyncpg.Connection) -> None:
    """Per-connection set-up `write_batch` needs: temp staging tables for COPY."""
    for table in TABLES:
        await conn.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {_staging(table)} "
            f"(LIKE {table.name} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )


async def write_batch(
    conn: asyncpg.Connection, batch: Sequence[BlockRows], network: NetworkState | None = None
) -> Written:
    """Consecutive blocks in one transaction: COPY into temp staging tables, then one
    upsert per table from there (COPY alone cannot resolve conflicts on a replay).
    The connection must have been through `prepare_connection`."""
    if not batch:
        return Written(0, {})
    for previous, current in itertools.pairwise(batch):
        if current.number != previous.number + 1:
            raise ValueError(f"batch is not consecutive at #{previous.number}")
    upserts, updates = merge_accounts(batch)
    staged: list[tuple[Table, Sequence[Row]]] = [
        (BLOCKS, [b.block for b in batch]),
        (TRANSACTIONS, [t for b in batch for t in b.transactions]),
        (LOGS, [g for b in batch for g in b.logs]),
        (ACCOUNTS, upserts),
    ]
    async with conn.transaction():
        await _check_cursor(conn, batch[0].number)
        for table, records in staged:
            if not records:
                continue
            await conn.copy_records_to_table(
                _staging(table), records=records, columns=list(table.names)
            )
            await conn.execute(_merge_sql(table))
        if updates:
            await conn.execute(_UPDATE_EMPTY_ACCOUNTS, *_columns(updates, len(ACCOUNTS.columns)))
        last = batch[-1]
        await conn.execute(_SET_CURSOR, last.number, last.block_hash)
        if network is not None:
            await save_network_state(conn, network)
    return _counts(batch, len(upserts) + len(updates))
