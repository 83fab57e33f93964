from __future__ import annotations

import hashlib
from pathlib import Path

import plyvel
import pytest
from eth_typing import Address

from cairn.errors import DatadirError, GenesisMismatch
from cairn.genesis.dev import dev_genesis
from cairn.storage import schema
from cairn.storage.store import BlockRecord, ChainIdentity, ChainStore
from tests.support.chain import mine, open_chain, transfer

IDENTITY = ChainIdentity(b"\x01" * 32, 5)


def test_key_prefixes_are_distinct_and_widths_fixed() -> None:
    h = b"\x11" * 32
    keys = [
        schema.header_key(7),
        schema.body_key(7),
        schema.receipts_key(7),
        schema.commit_key(7),
        schema.hash_to_number_key(h),
        schema.tx_lookup_key(h),
        schema.state_key(h),
        schema.journal_key(h),
        schema.HEAD_KEY,
        schema.GENESIS_HASH_KEY,
        schema.SCHEMA_VERSION_KEY,
    ]
    assert len({k[:1] for k in keys[:8]}) == 8
    assert all(len(k) == 9 for k in keys[:4])
    assert all(len(k) == 33 for k in keys[4:8])
    assert all(k.startswith(b"m") for k in keys[8:])
    # big-endian numbers sort like integers, so a prefix scan walks blocks in order
    assert schema.header_key(255) < schema.header_key(256)


def test_bad_key_inputs_are_refused() -> None:
    with pytest.raises(ValueError):
        schema.header_key(-1)
    with pytest.raises(ValueError):
        schema.tx_lookup_key(b"short")


def _dir_digest(path: Path) -> dict[str, str]:
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


def test_foreign_genesis_is_refused_and_nothing_changes(tmp_path: Path) -> None:
    with open_chain(tmp_path) as chain:
        mine(chain, [transfer(0, 0)])
        original = chain.genesis_hash
    before = _dir_digest(tmp_path)
    other = dev_genesis(gas_limit=20_000_000)
    with pytest.raises(GenesisMismatch) as caught, open_chain(tmp_path, other):
        pass
    assert original.hex() in str(caught.value)
    assert "cairn db reset" in str(caught.value)
    assert _dir_digest(tmp_path) == before


def test_other_chain_id_is_refused(tmp_path: Path) -> None:
    with open_chain(tmp_path):
        pass
    with (
        pytest.raises(DatadirError, match="chain id 31337"),
        open_chain(tmp_path, dev_genesis(chain_id=999)),
    ):
        pass


def test_foreign_leveldb_is_refused(tmp_path: Path) -> None:
    db = plyvel.DB(str(tmp_path / "chaindata"), create_if_missing=True)
    db.put(b"someone-else", b"data")
    db.close()
    before = _dir_digest(tmp_path)
    with pytest.raises(DatadirError, match="not a Cairn chain directory"):
        ChainStore(tmp_path / "chaindata", IDENTITY)
    assert _dir_digest(tmp_path) == before


def test_second_process_gets_a_lock_error(tmp_path: Path) -> None:
    store = ChainStore(tmp_path / "chaindata", IDENTITY)
    try:
        with pytest.raises(DatadirError, match="locked"):
            ChainStore(tmp_path / "chaindata", IDENTITY)
    finally:
        store.close()


def test_commit_writes_everything_in_one_batch(tmp_path: Path) -> None:
    with open_chain(tmp_path) as chain:
        store = chain.store
        raw = transfer(1, 0)
        tx_hash = chain.fork.decode_transaction(raw).hash
        store.save_journal([(tx_hash, raw)])
        assert store.load_journal() == [raw]
        result = mine(chain, [raw])
        n = result.header.block_number
        assert store.head.number == n == 1
        assert store.head.block_hash == result.header.hash
        assert store.load_number(result.header.hash) == n
        assert store.load_tx_location(tx_hash) == (n, 0)
        assert store.load_commit(n)
        assert store.load_receipts(n) is not None
        # the mined transaction left the journal in the same batch
        assert store.load_journal() == []


def test_commit_refuses_a_gap(tmp_path: Path) -> None:
    with open_chain(tmp_path) as chain:
        record = BlockRecord(
            number=5,
            block_hash=b"\x01" * 32,
            header=b"",
            transactions=(),
            tx_hashes=(),
            senders=(),
            receipts=(),
            commit=b"",
        )
        with pytest.raises(ValueError, match="does not extend"):
            chain.store.commit_block(record)
        assert chain.store.head.number == 0


def test_chain_survives_reopen_with_history(tmp_path: Path) -> None:
    with open_chain(tmp_path) as chain:
        first = mine(chain, [transfer(0, 0, value=5)])
        mine(chain, [transfer(0, 1, value=7)])
    with open_chain(tmp_path) as chain:
        assert chain.head.block_number == 2
        reader = chain.reader
        old = reader.state_at(first.header)
        new = reader.state_at(chain.head)
        dead = Address(bytes.fromhex("000000000000000000000000000000000000dEaD"))
        assert old.get_balance(dead) == 5  # archive: state at block 1 is still there
        assert new.get_balance(dead) == 12
