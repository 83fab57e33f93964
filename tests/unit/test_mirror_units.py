"""Pure parts of the mirror: configuration sources, URL redaction, migration files, and how
account rows of a batch are merged."""

from __future__ import annotations

import argparse

from cairn.mirror.migrate import load_migrations
from cairn.mirror.rows import ACCOUNTS, AccountState, BlockRows, merge_accounts
from cairn.mirror.service import redact
from cairn.node.config import resolve


def _args(**values: object) -> argparse.Namespace:
    return argparse.Namespace(config=None, **values)


def test_mirror_url_from_flag_then_cairn_env_then_database_url() -> None:
    env = {"DATABASE_URL": "postgresql://d/x", "CAIRN_MIRROR_URL": "postgresql://c/x"}
    assert resolve(_args(mirror_url="postgresql://f/x"), env)["mirror_url"] == "postgresql://f/x"
    assert resolve(_args(), env)["mirror_url"] == "postgresql://c/x"
    assert resolve(_args(), {"DATABASE_URL": "postgresql://d/x"})["mirror_url"] == (
        "postgresql://d/x"
    )
    assert resolve(_args(), {})["mirror_url"] is None


def test_redact_hides_only_the_password() -> None:
    assert redact("postgresql://cairn:s3cr%40t@db:5432/x?sslmode=require") == (
        "postgresql://cairn:***@db:5432/x?sslmode=require"
    )
    assert redact("postgresql://cairn@db/x") == "postgresql://cairn@db/x"


def test_migrations_are_numbered_from_one_and_create_every_table() -> None:
    migrations = load_migrations()
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
    sql = "\n".join(m.sql for m in migrations)
    for table in ("blocks", "transactions", "logs", "accounts", "network_state", "mirror_cursor"):
        assert f"CREATE TABLE {table} (" in sql
    for column in ACCOUNTS.names:
        assert f"    {column} " in sql


def _rows(number: int, accounts: dict[bytes, AccountState]) -> BlockRows:
    return BlockRows(number, bytes(32), (number,), (), (), accounts)


def test_batch_keeps_newest_state_and_never_creates_empty_accounts() -> None:
    a, b, c = b"a" * 20, b"b" * 20, b"c" * 20
    batch = [
        _rows(5, {a: AccountState(10, 1, False), b: AccountState(3, 0, False)}),
        _rows(6, {a: AccountState(7, 2, False), c: AccountState(0, 0, False)}),
        _rows(7, {b: AccountState(0, 0, False)}),
    ]
    upserts, updates = merge_accounts(batch)
    assert upserts == [(a, 7, 2, False, 6)]
    # b was drained and c only looked at: they update rows that exist, never create one.
    assert sorted(updates) == [(b, 0, 0, False, 7), (c, 0, 0, False, 6)]
