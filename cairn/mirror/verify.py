"""`cairn mirror verify`: compare what Postgres holds with LevelDB and list every difference.

Blocks, transactions (with receipt fields) and logs are compared row by row and field by
field over a block range; rows the cursor does not cover are reported; accounts are compared
with the state at the cursor block, and every non-empty account the range touched must have
a row. Read-only on both sides.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import asyncpg

from cairn.mirror.rows import ACCOUNTS, BLOCKS, LOGS, TRANSACTIONS, Row, Table, block_rows
from cairn.mirror.source import ChainSource
from cairn.mirror.writer import load_cursor

CHUNK = 500


@dataclass(frozen=True)
class Difference:
    where: str
    what: str

    def __str__(self) -> str:
        return f"{self.where}: {self.what}"


@dataclass
class Report:
    first: int = 0
    last: int = -1
    cursor: int | None = None
    blocks: int = 0
    transactions: int = 0
    logs: int = 0
    accounts: int = 0
    differences: list[Difference] = field(default_factory=list)

    def add(self, where: str, what: str) -> None:
        self.differences.append(Difference(where, what))


def _normal(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value)
    if isinstance(value, memoryview):
        return bytes(value)
    return value


def _show(value: Any) -> str:
    if isinstance(value, bytes):
        return (
            "0x" + value.hex()
            if len(value) <= 64
            else f"0x{value[:32].hex()}… ({len(value)} bytes)"
        )
    return repr(value)


def _compare_rows(
    report: Report,
    table: Table,
    expected: Sequence[Row],
    actual: Sequence[Row],
    label: Callable[[Row], str],
) -> None:
    key_at = [table.index(k) for k in table.key]

    def key(row: Row) -> tuple[Any, ...]:
        return tuple(row[i] for i in key_at)

    wanted = {key(r): r for r in expected}
    found = {key(r): r for r in actual}
    for k, row in wanted.items():
        have = found.get(k)
        if have is None:
            report.add(label(row), f"missing from postgres table {table.name}")
            continue
        for column, mine, theirs in zip(table.names, row, have, strict=True):
            if mine != theirs:
                report.add(
                    label(row),
                    f"{table.name}.{column} is {_show(theirs)} in postgres, "
                    f"{_show(mine)} in LevelDB",
                )
    for k, row in found.items():
        if k not in wanted:
            report.add(label(row), f"row in postgres table {table.name} that LevelDB does not have")


async def _fetch(conn: asyncpg.Connection, table: Table, column: str, a: int, b: int) -> list[Row]:
    records = await conn.fetch(
        f"SELECT {', '.join(table.names)} FROM {table.name} WHERE {column} BETWEEN $1 AND $2",
        a,
        b,
    )
    return [tuple(_normal(v) for v in r) for r in records]


def _chunks(first: int, last: int) -> Iterator[tuple[int, int]]:
    start = first
    while start <= last:
        yield start, min(last, start + CHUNK - 1)
        start += CHUNK


async def verify(
    conn: asyncpg.Connection,
    source: ChainSource,
    first: int | None = None,
    last: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> Report:
    report = Report()
    cursor = await load_cursor(conn)
    head = source.head_number
    if cursor is None:
        report.add("mirror_cursor", "no cursor: nothing has been mirrored into this database")
        return report
    report.cursor = cursor.number
    local = source.block_hash(cursor.number)
    if local is None:
        report.add("mirror_cursor", f"cursor #{cursor.number} is beyond LevelDB's head #{head}")
    elif local != cursor.block_hash:
        report.add(
            "mirror_cursor",
            f"cursor block hash is {_show(cursor.block_hash)}, LevelDB has {_show(local)}",
        )
    report.first = 0 if first is None else first
    report.last = cursor.number if last is None else last
    if report.last > head:
        report.add(
            "range", f"--to #{report.last} is beyond LevelDB's head #{head}; checking to #{head}"
        )
        report.last = head
    if report.last > cursor.number:
        report.add(
            "range",
            f"blocks #{cursor.number + 1}..#{report.last} are not mirrored yet (cursor "
            f"#{cursor.number}); they are reported missing below",
        )

    def tx_label(row: Row) -> str:
        return f"block #{row[1]} transaction {_show(row[0])}"

    def log_label(row: Row) -> str:
        return f"block #{row[0]} log {row[1]}"

    def block_label(row: Row) -> str:
        return f"block #{row[0]}"

    for a, b in _chunks(report.first, report.last):
        expected = [block_rows(source.stored_block(n), {}) for n in range(a, b + 1)]
        _compare_rows(
            report, BLOCKS, [e.block for e in expected], await _fetch(conn, BLOCKS, "number", a, b),
            block_label,
        )  # fmt: skip
        expected_txs = [t for e in expected for t in e.transactions]
        _compare_rows(
            report,
            TRANSACTIONS,
            expected_txs,
            await _fetch(conn, TRANSACTIONS, "block_number", a, b),
            tx_label,
        )
        expected_logs = [g for e in expected for g in e.logs]
        _compare_rows(
            report, LOGS, expected_logs, await _fetch(conn, LOGS, "block_number", a, b), log_label
        )
        report.blocks += len(expected)
        report.transactions += len(expected_txs)
        report.logs += len(expected_logs)
        if progress is not None:
            progress(f"checked blocks #{a}..#{b}")

    # Rows past the cursor mean a write escaped its transaction.
    for table, column in (
        (BLOCKS, "number"),
        (TRANSACTIONS, "block_number"),
        (LOGS, "block_number"),
    ):
        beyond = await conn.fetchval(
            f"SELECT count(*) FROM {table.name} WHERE {column} > $1", cursor.number
        )
        if beyond:
            report.add(table.name, f"{beyond} rows beyond the cursor #{cursor.number}")

    await _verify_accounts(conn, source, report, cursor.number)
    return report


async def _verify_accounts(
    conn: asyncpg.Connection, source: ChainSource, report: Report, cursor: int
) -> None:
    """Every account row equals the state at the cursor; every non-empty account touched in
    the checked range has a row."""
    if source.block_hash(cursor) is None:
        return
    state = source.state_after(cursor)
    seen: set[bytes] = set()
    async with conn.transaction():
        async for record in conn.cursor(
            f"SELECT {', '.join(ACCOUNTS.names)} FROM accounts ORDER BY address", prefetch=2_000
        ):
            row = tuple(_normal(v) for v in record)
            address = row[0]
            seen.add(address)
            report.accounts += 1
            actual = source.account_state(state, address)
            where = f"account {_show(address)}"
            for column, mine in (
                ("balance", actual.balance),
                ("nonce", actual.nonce),
                ("is_contract", actual.is_contract),
            ):
                theirs = row[ACCOUNTS.index(column)]
                if theirs != mine:
                    report.add(
                        where,
                        f"accounts.{column} is {_show(theirs)} in postgres, {_show(mine)} in "
                        f"LevelDB at the cursor block #{cursor}",
                    )
            last_block = row[ACCOUNTS.index("last_block")]
            if last_block > cursor:
                report.add(where, f"last_block #{last_block} is beyond the cursor #{cursor}")
    last = min(report.last, cursor)
    touched: set[bytes] = set()
    for number in range(report.first, last + 1):
        touched.update(source.touched(source.stored_block(number)))
    for address in sorted(touched - seen):
        if not source.account_state(state, address).is_empty:
            report.add(
                f"account {_show(address)}",
                "touched by a mirrored block, holds value in LevelDB, has no row in postgres",
            )
