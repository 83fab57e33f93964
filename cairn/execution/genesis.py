"""The genesis block: the allocation applied to an empty state, and its header."""

from __future__ import annotations

from eth.chains.base import ChainContext
from eth.db.backends.memory import MemoryDB

from cairn.execution.builder import BlockResult
from cairn.execution.evmdb import StateOverlay
from cairn.execution.forks import Fork
from cairn.genesis.model import Genesis

ZERO_HASH = b"\x00" * 32


def genesis_block(genesis: Genesis, fork: Fork) -> BlockResult:
    """Execute `genesis` from nothing; the result's hash is the chain's identity."""
    overlay = StateOverlay(MemoryDB())
    draft = fork.vm_class.create_genesis_header(
        gas_limit=genesis.gas_limit,
        timestamp=genesis.timestamp,
        extra_data=genesis.extra_data,
        coinbase=genesis.coinbase,
        mix_hash=genesis.mix_hash,
        nonce=genesis.nonce,
        base_fee_per_gas=genesis.base_fee_per_gas,
        parent_beacon_block_root=ZERO_HASH,
    )
    state = fork.vm_class.build_state(overlay.db, draft, ChainContext(genesis.chain_id))
    for address, account in genesis.alloc.items():
        state.set_balance(address, account.balance)
        state.set_nonce(address, account.nonce)
        if account.code:
            state.set_code(address, account.code)
        for slot, value in account.storage.items():
            state.set_storage(address, slot, value)
    state.persist()
    # Paris headers refuse a difficulty, but a geth genesis reaching the merge by total
    # difficulty (terminalTotalDifficulty) carries one; it is part of the genesis hash.
    header = draft.copy(state_root=state.state_root, difficulty=genesis.difficulty)
    block = fork.vm_class.get_block_class()(header, transactions=[], uncles=[], withdrawals=[])
    return BlockResult(
        block=block,
        receipts=(),
        senders=(),
        computations=(),
        state_writes=overlay.pending(),
        touched=tuple(sorted(genesis.alloc)),
    )
