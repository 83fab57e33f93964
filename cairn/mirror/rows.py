"""Committed blocks as mirror rows: a pure function of a stored block and account states.

The column lists here are the single description of the tables the writer fills and the
verifier compares; they match migrations/0001_initial.sql. Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import rlp
from eth._utils.address import generate_contract_address

from cairn.execution.fees import effective_gas_price, receipt_status
from cairn.execution.reader import StoredBlock

Row = tuple[Any, ...]


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[tuple[str, str], ...]  # (column, Postgres type)
    key: tuple[str, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c for c, _ in self.columns)

    def index(self, column: str) -> int:
        return self.names.index(column)


BLOCKS = Table(
    "blocks",
    (
        ("number", "bigint"),
        ("hash", "bytea"),
        ("parent_hash", "bytea"),
        ("timestamp", "bigint"),
        ("miner", "bytea"),
        ("gas_limit", "bigint"),
        ("gas_used", "bigint"),
        ("base_fee_per_gas", "numeric"),
        ("state_root", "bytea"),
        ("transactions_root", "bytea"),
        ("receipts_root", "bytea"),
        ("logs_bloom", "bytea"),
        ("extra_data", "bytea"),
        ("size", "integer"),
        ("transaction_count", "integer"),
        ("log_count", "integer"),
    ),
    ("number",),
)

TRANSACTIONS = Table(
    "transactions",
    (
        ("hash", "bytea"),
        ("block_number", "bigint"),
        ("transaction_index", "integer"),
        ("type", "smallint"),
        ("from_address", "bytea"),
        ("to_address", "bytea"),
        ("value", "numeric"),
        ("nonce", "numeric"),
        ("gas", "bigint"),
        ("gas_price", "numeric"),
        ("max_fee_per_gas", "numeric"),
        ("max_priority_fee_per_gas", "numeric"),
        ("input", "bytea"),
        ("status", "smallint"),
        ("gas_used", "bigint"),
        ("cumulative_gas_used", "bigint"),
        ("effective_gas_price", "numeric"),
        ("contract_address", "bytea"),
        ("logs_bloom", "bytea"),
        ("log_count", "integer"),
    ),
    ("hash",),
)

LOGS = Table(
    "logs",
    (
        ("block_number", "bigint"),
        ("log_index", "integer"),
        ("transaction_hash", "bytea"),
        ("transaction_index", "integer"),
        ("address", "bytea"),
        ("topic0", "bytea"),
        ("topic1", "bytea"),
        ("topic2", "bytea"),
        ("topic3", "bytea"),
        ("data", "bytea"),
    ),
    ("block_number", "log_index"),
)

ACCOUNTS = Table(
    "accounts",
    (
        ("address", "bytea"),
        ("balance", "numeric"),
        ("nonce", "numeric"),
        ("is_contract", "boolean"),
        ("last_block", "bigint"),
    ),
    ("address",),
)

TABLES = (BLOCKS, TRANSACTIONS, LOGS, ACCOUNTS)


@dataclass(frozen=True)
class AccountState:
    balance: int
    nonce: int
    is_contract: bool

    @property
    def is_empty(self) -> bool:
        """EIP-161 empty: such an account gets no row unless it already has one."""
        return self.balance == 0 and self.nonce == 0 and not self.is_contract


@dataclass(frozen=True)
class BlockRows:
    """Everything one block contributes to the mirror."""

    number: int
    block_hash: bytes
    block: Row
    transactions: tuple[Row, ...]
    logs: tuple[Row, ...]
    accounts: Mapping[bytes, AccountState]  # state after this block, for what it touched

    @property
    def row_count(self) -> int:
        return 1 + len(self.transactions) + len(self.logs) + len(self.accounts)

    def account_rows(self) -> tuple[Row, ...]:
        return tuple(
            (address, s.balance, s.nonce, s.is_contract, self.number)
            for address, s in sorted(self.accounts.items())
        )


def _topics(topics: Iterable[int]) -> tuple[bytes | None, ...]:
    encoded: list[bytes | None] = [t.to_bytes(32, "big") for t in list(topics)[:4]]
    return tuple(encoded + [None] * (4 - len(encoded)))


def block_rows(stored: StoredBlock, accounts: Mapping[bytes, AccountState]) -> BlockRows:
    header = stored.header
    number = header.block_number
    base_fee: int | None = getattr(header, "base_fee_per_gas", None)
    tx_rows: list[Row] = []
    log_rows: list[Row] = []
    previous_cumulative = 0
    for index, (tx, sender, receipt) in enumerate(
        zip(stored.transactions, stored.senders, stored.receipts, strict=True)
    ):
        type_id = tx.type_id or 0
        legacy_pricing = type_id in (0, 1)
        contract = None if tx.to else bytes(generate_contract_address(sender, tx.nonce))
        tx_rows.append(
            (
                bytes(tx.hash),
                number,
                index,
                type_id,
                bytes(sender),
                bytes(tx.to) if tx.to else None,
                int(tx.value),
                int(tx.nonce),
                int(tx.gas),
                int(tx.gas_price) if legacy_pricing else None,
                None if legacy_pricing else int(tx.max_fee_per_gas),
                None if legacy_pricing else int(tx.max_priority_fee_per_gas),
                bytes(tx.data),
                receipt_status(receipt),
                receipt.gas_used - previous_cumulative,
                receipt.gas_used,
                effective_gas_price(tx, base_fee),
                contract,
                receipt.bloom.to_bytes(256, "big"),
                len(receipt.logs),
            )
        )
        previous_cumulative = receipt.gas_used
        for log in receipt.logs:
            log_rows.append(
                (
                    number,
                    len(log_rows),
                    bytes(tx.hash),
                    index,
                    bytes(log.address),
                    *_topics(log.topics),
                    bytes(log.data),
                )
            )
    block: Row = (
        number,
        bytes(header.hash),
        bytes(header.parent_hash),
        int(header.timestamp),
        bytes(header.coinbase),
        int(header.gas_limit),
        int(header.gas_used),
        base_fee,
        bytes(header.state_root),
        bytes(header.transaction_root),
        bytes(header.receipt_root),
        header.bloom.to_bytes(256, "big"),
        bytes(header.extra_data),
        len(rlp.encode(stored.block)),
        len(tx_rows),
        len(log_rows),
    )
    return BlockRows(
        number=number,
        block_hash=bytes(header.hash),
        block=block,
        transactions=tuple(tx_rows),
        logs=tuple(log_rows),
        accounts=dict(accounts),
    )


def merge_accounts(batch: Iterable[BlockRows]) -> tuple[list[Row], list[Row]]:
    """Account rows for a batch of blocks, newest state per address: (upserts, updates).

    Empty accounts (a read of a never-funded address, a drained one) only update rows that
    already exist, so lookups of unused addresses never create rows.
    """
    latest: dict[bytes, Row] = {}
    for rows in batch:
        for row in rows.account_rows():
            latest[row[0]] = row
    upserts: list[Row] = []
    updates: list[Row] = []
    for row in latest.values():
        empty = row[1] == 0 and row[2] == 0 and not row[3]
        (updates if empty else upserts).append(row)
    return upserts, updates
