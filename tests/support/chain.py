"""An in-process chain on a real LevelDB in a temp dir, and signed transactions for it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_keys.datatypes import PrivateKey

from cairn.chain.chain import Chain, open_store
from cairn.chain.commit import make_commit
from cairn.execution.builder import BlockEnv, BlockResult
from cairn.execution.forks import fork_named
from cairn.genesis.dev import DEV_PRODUCER_KEY, dev_accounts, dev_genesis
from cairn.genesis.model import Genesis
from cairn.node.service import NodeSettings
from tests.support.proc import free_port

ACCOUNTS = dev_accounts()
KEYS = [a.private_key for a in ACCOUNTS]
ADDRESSES = [a.address for a in ACCOUNTS]
PRODUCER = PrivateKey(DEV_PRODUCER_KEY)
CHAIN_ID = 31337
DEAD = "0x000000000000000000000000000000000000dEaD"


def dev_node_settings(datadir: Path) -> NodeSettings:
    """An in-process `cairn dev` node: dev genesis, automine, a free HTTP port, no WebSocket."""
    return NodeSettings(
        datadir=datadir,
        genesis=dev_genesis(),
        http_port=free_port(),
        ws_port=None,
        producer_key=PRODUCER,
        block_time=0.0,
        dev=True,
        dev_keys={a.address: a.private_key for a in ACCOUNTS},
    )


@contextmanager
def open_chain(datadir: Path, genesis: Genesis | None = None) -> Iterator[Chain]:
    genesis = genesis or dev_genesis()
    fork = fork_named(genesis.consensus.fork)
    store = open_store(datadir / "chaindata", genesis, fork)
    try:
        yield Chain(store, genesis, fork)
    finally:
        store.close()


def transfer(
    key_index: int,
    nonce: int,
    *,
    to: str = DEAD,
    value: int = 1,
    gas: int = 21_000,
    max_fee: int = 3 * 10**9,
    tip: int = 10**9,
    chain_id: int = CHAIN_ID,
    data: bytes = b"",
    **extra: Any,
) -> bytes:
    fields: dict[str, Any] = {
        "type": 2,
        "chainId": chain_id,
        "nonce": nonce,
        "to": to,
        "value": value,
        "gas": gas,
        "maxFeePerGas": max_fee,
        "maxPriorityFeePerGas": tip,
        "data": data,
    }
    fields.update(extra)
    return bytes(Account.sign_transaction(fields, KEYS[key_index]).raw_transaction)


def legacy(key_index: int, nonce: int, *, gas_price: int = 2 * 10**9, **extra: Any) -> bytes:
    fields: dict[str, Any] = {
        "chainId": CHAIN_ID,
        "nonce": nonce,
        "to": DEAD,
        "value": 1,
        "gas": 21_000,
        "gasPrice": gas_price,
    }
    fields.update(extra)
    return bytes(Account.sign_transaction(fields, KEYS[key_index]).raw_transaction)


def mine(chain: Chain, raws: list[bytes], timestamp: int | None = None) -> BlockResult:
    """Build a block of `raws` (in this order) on the head and commit it."""
    head = chain.head
    txs = [chain.fork.decode_transaction(r) for r in raws]
    env = BlockEnv(
        parent=head,
        timestamp=timestamp or head.timestamp + 1,
        coinbase=chain.genesis.coinbase,
        gas_limit=head.gas_limit,
    )
    result = chain.executor.build(env, txs)
    commit = make_commit(PRODUCER, chain.chain_id, result.header.block_number, result.header.hash)
    chain.write_block(result, commit.encode())
    return result
