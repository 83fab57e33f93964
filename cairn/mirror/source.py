"""What the mirror reads from LevelDB (the source of truth): blocks and the accounts they
touched, with balances, nonces and code read from the state at each block.

Blocking reads, meant for the mirror's own thread; never writes. Uses a `ChainReader` of its
own so catching up does not evict the RPC's caches.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from eth.abc import StateAPI
from eth.constants import BLANK_ROOT_HASH
from eth_typing import Address
from eth_utils import keccak

from cairn.chain.chain import Chain
from cairn.errors import NotFound
from cairn.execution.builder import BlockExecutor
from cairn.execution.reader import ChainReader, StoredBlock
from cairn.mirror.rows import AccountState, BlockRows, block_rows

EMPTY_CODE_HASH = keccak(b"")


class ChainSource:
    def __init__(self, chain: Chain) -> None:
        self.chain = chain
        self.chain_id = chain.chain_id
        self.genesis_hash = chain.genesis_hash
        self._genesis_accounts = tuple(sorted(chain.genesis.alloc))
        self._reader = ChainReader(chain.store, chain.fork, chain.chain_id)
        self._executor: BlockExecutor | None = None

    @property
    def head_number(self) -> int:
        return self.chain.store.head.number

    def block_hash(self, number: int) -> bytes | None:
        header = self._reader.header_by_number(number)
        return None if header is None else bytes(header.hash)

    def stored_block(self, number: int) -> StoredBlock:
        stored = self._reader.block_by_number(number)
        if stored is None:
            raise NotFound(f"block #{number} is not in LevelDB (head #{self.head_number})")
        return stored

    def touched(self, stored: StoredBlock) -> tuple[bytes, ...]:
        number = stored.header.block_number
        recorded = self.chain.store.load_touched(number)
        if recorded is not None:
            return recorded
        if number == 0:
            return self._genesis_accounts
        # Stored before blocks recorded what they touched: re-execute on the archived parent
        # state (nothing is written) to learn it exactly.
        if self._executor is None:
            self._executor = BlockExecutor(self._reader)
        return tuple(bytes(a) for a in self._executor.import_block(stored.block).touched)

    def state_after(self, number: int) -> StateAPI:
        header = self._reader.header_by_number(number)
        if header is None:
            raise NotFound(f"block #{number} is not in LevelDB (head #{self.head_number})")
        return self._reader.state_at(header)

    @staticmethod
    def account_state(state: StateAPI, address: bytes) -> AccountState:
        canonical = Address(address)
        code_hash = state.get_code_hash(canonical)
        return AccountState(
            balance=state.get_balance(canonical),
            nonce=state.get_nonce(canonical),
            is_contract=code_hash not in (EMPTY_CODE_HASH, BLANK_ROOT_HASH, b""),
        )

    def load(self, number: int) -> BlockRows:
        """One block's rows, accounts read at that block's state."""
        return self.load_range(number, number + 1)[0]

    def load_range(self, start: int, stop: int) -> list[BlockRows]:
        """Rows of blocks `start`..`stop - 1`. An account touched several times in the range is
        read once, at the last block that touched it (earlier values would be overwritten)."""
        blocks = [self.stored_block(n) for n in range(start, stop)]
        last_touch: dict[bytes, int] = {}
        for offset, stored in enumerate(blocks):
            for address in self.touched(stored):
                last_touch[address] = offset
        by_block: list[list[bytes]] = [[] for _ in blocks]
        for address, offset in last_touch.items():
            by_block[offset].append(address)
        result = []
        for stored, wanted in zip(blocks, by_block, strict=True):
            states = self.account_states(stored.header.block_number, wanted)
            result.append(block_rows(stored, states))
        return result

    def account_states(self, number: int, addresses: Iterable[bytes]) -> dict[bytes, AccountState]:
        wanted: Sequence[bytes] = sorted(set(addresses))
        if not wanted:
            return {}
        state = self.state_after(number)
        return {a: self.account_state(state, a) for a in wanted}
