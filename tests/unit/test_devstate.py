"""Dev-chain blocks on a real LevelDB: state overrides and impersonated senders are stored
beside the block and re-execute to the same block; a rewind deletes blocks in one batch."""

from __future__ import annotations

from pathlib import Path

import pytest
from eth_typing import Address
from eth_utils import to_canonical_address

from cairn.chain.chain import Chain
from cairn.chain.commit import make_commit
from cairn.errors import InvalidBlock
from cairn.execution.builder import BlockEnv, BlockResult
from cairn.execution.call import CallRunner
from cairn.execution.devstate import (
    DevExtras,
    ImpersonatedTx,
    build_impersonated,
)
from cairn.execution.overrides import AccountOverride
from cairn.execution.trace import CallFrame, TraceOptions, Tracer
from cairn.storage import schema
from tests.support.chain import PRODUCER, mine, open_chain, transfer

WHALE = Address(to_canonical_address("0x00000000000000000000000000000000000beef1"))
CONTRACT = Address(to_canonical_address("0x00000000000000000000000000000000000c0de1"))


def _build(chain: Chain, env: BlockEnv, txs: list) -> BlockResult:  # type: ignore[type-arg]
    result = chain.executor.build(env, txs)
    commit = make_commit(PRODUCER, chain.chain_id, result.header.block_number, result.header.hash)
    chain.write_block(result, commit.encode())
    return result


def _env(chain: Chain, **extra: object) -> BlockEnv:
    head = chain.head
    return BlockEnv(
        parent=head,
        timestamp=head.timestamp + 1,
        coinbase=chain.genesis.coinbase,
        gas_limit=head.gas_limit,
        **extra,  # type: ignore[arg-type]
    )


def test_extras_round_trip() -> None:
    extras = DevExtras(
        overrides=(
            AccountOverride(
                WHALE, balance=2**255 + 7, nonce=3, code=b"\x60\x00", storage=((1, 2),)
            ),
            AccountOverride(CONTRACT, storage=((2**256 - 1, 0),)),
        ),
        impersonated=((0, WHALE), (3, CONTRACT)),
    )
    assert DevExtras.decode(extras.encode()) == extras
    assert not DevExtras()
    with pytest.raises(ValueError, match="undecodable"):
        DevExtras.decode(b"\x01\x02")


def test_override_and_impersonation_reexecute_identically(tmp_path: Path) -> None:
    with open_chain(tmp_path / "a") as chain:
        mine(chain, [transfer(0, 0)])
        overrides = (
            AccountOverride(WHALE, balance=10**21, nonce=5),
            AccountOverride(CONTRACT, code=b"\x60\x2a\x60\x00\x55\x00", storage=((7, 99),)),
        )
        override_block = _build(chain, _env(chain, overrides=overrides), [])
        assert override_block.dev_extras.overrides == overrides
        assert len(override_block.block.transactions) == 0
        state = chain.reader.state_at(chain.head)
        assert state.get_balance(WHALE) == 10**21
        assert state.get_nonce(WHALE) == 5
        assert state.get_code(CONTRACT) == b"\x60\x2a\x60\x00\x55\x00"
        assert state.get_storage(CONTRACT, 7) == 99

        spoofed = build_impersonated(
            chain.fork,
            chain.chain_id,
            ImpersonatedTx(
                WHALE,
                nonce=5,
                gas=100_000,
                to=CONTRACT,
                value=10**18,
                data=b"",
                max_fee=10**10,
                max_tip=10**9,
            ),
        )
        # an ordinary signed transaction rides in the same block, after the impersonated one
        normal = chain.fork.decode_transaction(transfer(1, 0))
        imp_block = _build(chain, _env(chain), [spoofed, normal])
        assert len(imp_block.block.transactions) == 2
        assert imp_block.senders[0] == WHALE
        assert imp_block.dev_extras.impersonated == ((0, WHALE),)
        state = chain.reader.state_at(chain.head)
        assert state.get_nonce(WHALE) == 6
        assert state.get_balance(CONTRACT) == 10**18
        assert state.get_storage(CONTRACT, 0) == 42  # the code ran
        stored = chain.reader.block_by_number(imp_block.header.block_number)
        assert stored is not None and stored.senders[0] == WHALE
        raw_extras = chain.store.load_dev_extras(imp_block.header.block_number)
        assert raw_extras is not None
        blocks = [chain.reader.block_by_number(n) for n in range(1, chain.head.block_number + 1)]
        extras = [chain.store.load_dev_extras(n) for n in range(1, chain.head.block_number + 1)]
        assert extras[0] is None  # an ordinary block has no dev record

        # tracing replays with the same execution and the same dev record: the impersonated
        # sender is the trace's sender, and every root of the block is reproduced
        tracer = Tracer(chain.reader, CallRunner(chain.reader, gas_cap=50_000_000))
        traces = tracer.trace_block(imp_block.header.block_number, TraceOptions("callTracer"))
        assert [t.tx_hash for t in traces] == [tx.hash for tx in imp_block.block.transactions]
        first_frame = traces[0].result
        assert isinstance(first_frame, CallFrame)
        assert (first_frame.sender, first_frame.value) == (WHALE, 10**18)

    # a second chain re-executes every block from what the first one stored
    with open_chain(tmp_path / "b") as replica:
        for stored_block, raw in zip(blocks, extras, strict=True):
            assert stored_block is not None
            result = replica.executor.replay(
                stored_block.block, DevExtras.decode(raw) if raw else DevExtras()
            )
            assert result.header.hash == stored_block.header.hash
            replica.write_block(result, b"")
        assert replica.head.hash == imp_block.header.hash

    # without the dev record the override block does not re-execute: the check is real
    with open_chain(tmp_path / "c") as strict:
        first = blocks[0]
        assert first is not None
        strict.write_block(strict.executor.import_block(first.block), b"")
        with pytest.raises(InvalidBlock, match="state_root mismatch"):
            strict.executor.import_block(blocks[1].block)  # type: ignore[union-attr]


def test_rewind_deletes_blocks_in_one_batch_and_survives_reopen(tmp_path: Path) -> None:
    with open_chain(tmp_path) as chain:
        results = [mine(chain, [transfer(0, n)]) for n in range(4)]
        snap_a = chain.store.save_dev_snapshot(b"a")
        snap_b = chain.store.save_dev_snapshot(b"b")
        assert (snap_a, snap_b) == (0, 1)
        removed = chain.rewind(2, drop_snapshots_from=snap_b)
        assert [b.header.block_number for b in removed] == [3, 4]
        assert chain.head.block_number == 2
        assert chain.reader.block_by_number(3) is None
        gone_tx = results[2].block.transactions[0].hash
        assert chain.reader.tx_location(gone_tx) is None
        assert chain.store.load_number(results[3].header.hash) is None
        assert chain.store.load_dev_snapshot(snap_a) == b"a"
        assert chain.store.load_dev_snapshot(snap_b) is None
        # the chain goes on at the same heights with different blocks; caches don't lie
        replacement = mine(chain, [transfer(1, 0)])
        assert replacement.header.block_number == 3
        fetched = chain.reader.block_by_number(3)
        assert fetched is not None and fetched.header.hash == replacement.header.hash
        assert chain.store.save_dev_snapshot(b"c") == 2  # ids are never reused
        with pytest.raises(ValueError, match="cannot rewind"):
            chain.rewind(9)
    with open_chain(tmp_path) as reopened:
        assert reopened.head.block_number == 3
        assert reopened.head.hash == replacement.header.hash
        assert reopened.store.load_header(4) is None
        with reopened.store._db.iterator(prefix=b"H", include_value=False) as it:
            assert [schema.decode_number(k[1:]) for k in it] == [0, 1, 2, 3]
