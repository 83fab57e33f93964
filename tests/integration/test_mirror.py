"""The mirror in-process against a real Postgres and a real LevelDB chain: migrations,
internal transfers in accounts, idempotent replays, verify finding what was changed, and a
database of another chain refused."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import asyncpg
import pytest
from eth._utils.address import generate_contract_address
from eth_typing import Address

from cairn.chain.chain import Chain
from cairn.chain.commit import make_commit
from cairn.errors import MirrorError
from cairn.execution.builder import BlockEnv
from cairn.genesis.dev import dev_genesis
from cairn.mirror.migrate import apply_migrations, load_migrations
from cairn.mirror.service import Mirror, MirrorConfig, NodeInfo
from cairn.mirror.source import ChainSource
from cairn.mirror.verify import Report, verify
from tests.support.chain import ADDRESSES, PRODUCER, mine, open_chain, transfer
from tests.support.contracts import compile_contract
from tests.support.mirror import call, constructor_args, deploy
from tests.support.postgres import PostgresServer
from tests.support.proc import free_port
from tests.support.wait import wait_until

PAYEE_A = bytes.fromhex("a1" * 20)
PAYEE_B = bytes.fromhex("b2" * 20)


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[Chain]:
    with open_chain(tmp_path / "node") as opened:
        yield opened


def run_mirror(chain: Chain, url: str) -> int:
    mirror = Mirror(ChainSource(chain), MirrorConfig(url=url), NodeInfo("sequencer", (), "test"))
    return asyncio.run(mirror.catch_up_once())


def run_verify(chain: Chain, url: str, first: int | None = None) -> Report:
    async def go() -> Report:
        conn = await asyncpg.connect(url)
        try:
            return await verify(conn, ChainSource(chain), first)
        finally:
            await conn.close()

    return asyncio.run(go())


def splitter_chain(chain: Chain) -> str:
    """Blocks with a contract deployment, value split by internal calls, events, a revert."""
    compiled = compile_contract("Splitter.sol", "Splitter")
    code = bytes.fromhex(compiled.bytecode[2:]) + constructor_args(
        ["address", "address"], [PAYEE_A, PAYEE_B]
    )
    result = mine(chain, [deploy(0, 0, code), transfer(1, 0, value=7)])
    contract = "0x" + _created(chain, result.header.block_number).hex()
    mine(chain, [call(1, 1, contract, "split()", value=1_001), call(2, 0, contract, "fail()")])
    mine(chain, [call(3, 0, contract, "split()", value=10**18)])
    return contract


def _created(chain: Chain, number: int) -> bytes:
    stored = chain.reader.block_by_number(number)
    assert stored is not None
    return bytes(generate_contract_address(stored.senders[0], stored.transactions[0].nonce))


def test_migrations_recorded_once_and_newer_schema_refused(mirror_db: str) -> None:
    async def go() -> None:
        conn = await asyncpg.connect(mirror_db)
        try:
            first = await apply_migrations(conn)
            again = await apply_migrations(conn)
            assert [m.version for m in first] == [m.version for m in load_migrations()]
            assert again == []
            rows = await conn.fetch("SELECT version, checksum FROM schema_migrations")
            assert {(r["version"], r["checksum"]) for r in rows} == {
                (m.version, m.checksum) for m in load_migrations()
            }
            await conn.execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES (999, 'x', 'y')"
            )
            with pytest.raises(MirrorError, match=r"\[999\].*newer cairn"):
                await apply_migrations(conn)
        finally:
            await conn.close()

    asyncio.run(go())


def test_internal_transfers_events_and_reverts_are_mirrored(
    chain: Chain, mirror_db: str, postgres: PostgresServer
) -> None:
    contract = splitter_chain(chain)
    assert run_mirror(chain, mirror_db) == chain.store.head.number
    state = chain.head_view()

    def balance_row(address: bytes) -> str:
        return postgres.psql(
            f"SELECT balance, nonce, is_contract, last_block FROM accounts "
            f"WHERE address = '\\x{address.hex()}'",
            mirror_db.rsplit("/", 1)[1],
        )

    db = mirror_db.rsplit("/", 1)[1]
    # The payees never appear in a transaction; only internal calls paid them.
    half = 1_001 // 2
    assert state.balance(Address(PAYEE_A)) == half + 10**18 // 2
    assert balance_row(PAYEE_A) == f"{half + 10**18 // 2}|0|f|3"
    assert balance_row(PAYEE_B) == f"{1_001 - half + 10**18 // 2}|0|f|3"
    assert balance_row(bytes.fromhex(contract[2:])) == "0|1|t|3"
    for index in range(4):
        assert balance_row(ADDRESSES[index]).split("|")[:2] == [
            str(state.balance(ADDRESSES[index])),
            str(state.nonce(ADDRESSES[index])),
        ]
    # Statuses: the deploy, transfer and splits succeeded; fail() reverted.
    statuses = postgres.psql(
        "SELECT block_number, transaction_index, status, contract_address IS NOT NULL "
        "FROM transactions ORDER BY block_number, transaction_index",
        db,
    ).splitlines()
    assert statuses == ["1|0|1|t", "1|1|1|f", "2|0|1|f", "2|1|0|f", "3|0|1|f"]
    # Split(address indexed payer, uint256 amount): topic1 = payer, data = amount.
    events = postgres.psql(
        "SELECT block_number, log_index, encode(topic1, 'hex'), encode(data, 'hex') FROM logs "
        f"WHERE address = '\\x{contract[2:]}' ORDER BY block_number, log_index",
        db,
    ).splitlines()
    payer1, payer3 = (ADDRESSES[i].rjust(32, bytes(1)).hex() for i in (1, 3))
    assert events == [
        f"2|0|{payer1}|{(1_001).to_bytes(32, 'big').hex()}",
        f"3|0|{payer3}|{(10**18).to_bytes(32, 'big').hex()}",
    ]
    # Addresses only looked up (the empty system contracts py-evm reads) get no row.
    assert postgres.psql("SELECT count(*) FROM accounts WHERE balance = 0 AND nonce = 0", db) == "0"
    assert run_verify(chain, mirror_db).differences == []


def test_blocks_stored_without_touched_accounts_are_re_executed(
    chain: Chain, mirror_db: str, postgres: PostgresServer
) -> None:
    """Blocks written before the executor recorded touched accounts (an older datadir): the
    mirror re-executes them on the archived parent state to find the payees."""
    compiled = compile_contract("Splitter.sol", "Splitter")
    code = bytes.fromhex(compiled.bytecode[2:])
    code += constructor_args(["address", "address"], [PAYEE_A, PAYEE_B])
    mine(chain, [deploy(0, 0, code)])
    contract = "0x" + _created(chain, 1).hex()
    head = chain.head
    env = BlockEnv(head, head.timestamp + 1, chain.genesis.coinbase, head.gas_limit)
    tx = chain.fork.decode_transaction(call(1, 0, contract, "split()", value=5_000))
    result = chain.executor.build(env, [tx])
    assert PAYEE_A in result.touched and PAYEE_B in result.touched
    commit = make_commit(PRODUCER, chain.chain_id, 2, result.header.hash).encode()
    chain.store.commit_block(replace(result.to_record(commit), touched=()))
    assert chain.store.load_touched(2) is None

    assert run_mirror(chain, mirror_db) == 2
    db = mirror_db.rsplit("/", 1)[1]
    rows = postgres.psql(
        "SELECT encode(address, 'hex'), balance FROM accounts WHERE address IN "
        f"('\\x{PAYEE_A.hex()}', '\\x{PAYEE_B.hex()}') ORDER BY address",
        db,
    )
    assert rows.splitlines() == [f"{PAYEE_A.hex()}|2500", f"{PAYEE_B.hex()}|2500"]
    assert run_verify(chain, mirror_db).differences == []


def test_replays_never_duplicate_and_streaming_follows(
    chain: Chain, mirror_db: str, postgres: PostgresServer
) -> None:
    db = mirror_db.rsplit("/", 1)[1]
    for i in range(10):
        mine(chain, [transfer(i % 3, i // 3, value=i + 1)])
    assert run_mirror(chain, mirror_db) == 10
    before = postgres.psql(
        "SELECT (SELECT count(*) FROM blocks), (SELECT count(*) FROM transactions), "
        "(SELECT count(*) FROM accounts)",
        db,
    )
    # Rewind the cursor as a crash between COPY and commit would look to the next start;
    # the replay rewrites blocks 4..10 over the rows already there.
    postgres.psql("UPDATE mirror_cursor SET block_number = 3, block_hash = "
                  f"'\\x{chain.reader.header_by_number(3).hash.hex()}'", db)  # type: ignore[union-attr]  # fmt: skip
    assert run_mirror(chain, mirror_db) == 10
    after = postgres.psql(
        "SELECT (SELECT count(*) FROM blocks), (SELECT count(*) FROM transactions), "
        "(SELECT count(*) FROM accounts)",
        db,
    )
    assert after == before
    assert run_verify(chain, mirror_db).differences == []

    # The service thread: near the head it writes block by block as blocks are committed.
    mirror = Mirror(
        ChainSource(chain),
        MirrorConfig(url=mirror_db, poll_interval=0.1),
        NodeInfo("sequencer", (bytes(20),), "test"),
    )
    mirror.start()
    try:
        for i in range(10, 15):
            mine(chain, [transfer(i % 3, i // 3, value=i + 1)])
            mirror.wake()
        wait_until(lambda: mirror.status().cursor == 15, timeout=30, message="block 15 mirrored")
        status = mirror.status()
        assert status.phase == "streaming"
        assert status.blocks_written == 5
        assert status.rows_written["transactions"] == 5
        assert mirror.health()[0] is True
        assert mirror.health()[1]["lag"] == 0
    finally:
        asyncio.run(mirror.stop())
    assert postgres.psql("SELECT head_number, peers, mode FROM network_state", db) == (
        f"{chain.store.head.number}|0|sequencer"
    )
    assert run_verify(chain, mirror_db).differences == []


def test_verify_lists_every_difference(
    chain: Chain, mirror_db: str, postgres: PostgresServer
) -> None:
    db = mirror_db.rsplit("/", 1)[1]
    splitter_chain(chain)
    run_mirror(chain, mirror_db)
    postgres.psql("UPDATE transactions SET status = 1 WHERE status = 0", db)
    postgres.psql("DELETE FROM logs WHERE block_number = 3", db)
    postgres.psql(f"UPDATE accounts SET balance = 1 WHERE address = '\\x{PAYEE_A.hex()}'", db)
    postgres.psql(f"DELETE FROM accounts WHERE address = '\\x{PAYEE_B.hex()}'", db)
    postgres.psql("INSERT INTO blocks SELECT number + 100, hash || '\\x00', parent_hash, "
                  "timestamp, miner, gas_limit, gas_used, base_fee_per_gas, state_root, "
                  "transactions_root, receipts_root, logs_bloom, extra_data, size, "
                  "transaction_count, log_count FROM blocks WHERE number = 1", db)  # fmt: skip
    found = [str(d) for d in run_verify(chain, mirror_db).differences]
    assert len(found) == 5, found
    assert any("transactions.status is 1 in postgres, 0 in LevelDB" in d for d in found)
    assert any(d.startswith("block #3 log 0: missing") for d in found)
    assert any(PAYEE_A.hex() in d and "balance is 1 in postgres" in d for d in found)
    assert any(PAYEE_B.hex() in d and "has no row" in d for d in found)
    assert any("1 rows beyond the cursor" in d for d in found)
    # A range that avoids the damaged blocks still sees the account damage.
    partial = [str(d) for d in run_verify(chain, mirror_db, first=4).differences]
    assert not any("log" in d or "transactions.status" in d for d in partial)


def test_database_of_another_chain_is_refused(tmp_path: Path, mirror_db: str) -> None:
    with open_chain(tmp_path / "a") as chain_a:
        mine(chain_a, [transfer(0, 0)])
        run_mirror(chain_a, mirror_db)
    with (
        open_chain(tmp_path / "b", dev_genesis(chain_id=4242)) as chain_b,
        pytest.raises(MirrorError, match=r"mirrors another chain.*cairn mirror rebuild"),
    ):
        run_mirror(chain_b, mirror_db)
    # Same genesis, different history (a reset datadir): refused as well.
    with open_chain(tmp_path / "c") as chain_c:
        mine(chain_c, [transfer(1, 0)])
        with pytest.raises(MirrorError, match=r"was the datadir reset"):
            run_mirror(chain_c, mirror_db)


def test_postgres_unreachable_is_retried_and_reported(chain: Chain) -> None:
    mine(chain, [transfer(0, 0)])
    port = free_port()  # nothing listens there
    mirror = Mirror(
        ChainSource(chain),
        MirrorConfig(url=f"postgresql://cairn:secret@127.0.0.1:{port}/none", backoff_max=0.5),
        NodeInfo("sequencer", (), "test"),
    )
    mirror.start()
    try:
        wait_until(lambda: mirror.status().errors_total >= 3, timeout=30, message="3 retries")
        connected, body = mirror.health()
        assert connected is False
        assert body["status"] == "unavailable"
        assert "Postgres unavailable" in body["lastError"]
        assert body["lag"] == 2  # genesis and block 1 not written
        assert "secret" not in body["database"]
    finally:
        asyncio.run(mirror.stop())
    assert mirror.status().phase == "stopped"
