"""The slice of py-evm's `ChainDatabaseAPI` a VM needs, answered from Cairn's own storage.

Headers come from the chain reader; state comes from an in-memory overlay over LevelDB; the
transaction and receipt tries py-evm builds while filling a block go to a scratch memory DB.
"""

from __future__ import annotations

from typing import Protocol

from eth.abc import (
    AtomicDatabaseAPI,
    BlockHeaderAPI,
    ReceiptAPI,
    ReceiptDecoderAPI,
    SignedTransactionAPI,
    TransactionDecoderAPI,
    WithdrawalAPI,
)
from eth.db.atomic import AtomicDB
from eth.db.backends.base import BaseDB
from eth.db.batch import BatchDB
from eth.db.chain import ChainDB
from eth.exceptions import HeaderNotFound
from eth_typing import BlockNumber, Hash32


class HeaderSource(Protocol):
    def header_by_hash(self, block_hash: bytes) -> BlockHeaderAPI | None: ...

    def header_by_number(self, number: int) -> BlockHeaderAPI | None: ...

    def head_header(self) -> BlockHeaderAPI: ...


class StateOverlay:
    """py-evm writes land in memory here; `pending()` is what the block commit must store."""

    def __init__(self, base: BaseDB) -> None:
        self._batch = BatchDB(base)
        self.db: AtomicDatabaseAPI = AtomicDB(self._batch)

    def pending(self) -> dict[bytes, bytes]:
        return dict(self._batch.diff().pending_items())


class EvmChainDB(ChainDB):
    def __init__(self, state_db: AtomicDatabaseAPI, headers: HeaderSource) -> None:
        super().__init__(state_db)
        self._headers = headers
        self._scratch = ChainDB(AtomicDB())
        self._receipts: dict[bytes, tuple[ReceiptAPI, ...]] = {}

    def remember_receipts(self, receipt_root: bytes, receipts: tuple[ReceiptAPI, ...]) -> None:
        """Receipts of the block being assembled, for Prague's request scan."""
        self._receipts[receipt_root] = receipts

    def get_block_header_by_hash(self, block_hash: Hash32) -> BlockHeaderAPI:
        header = self._headers.header_by_hash(block_hash)
        if header is None:
            raise HeaderNotFound(f"no header with hash 0x{block_hash.hex()}")
        return header

    def header_exists(self, block_hash: Hash32) -> bool:
        return self._headers.header_by_hash(block_hash) is not None

    def get_canonical_block_header_by_number(self, block_number: BlockNumber) -> BlockHeaderAPI:
        header = self._headers.header_by_number(block_number)
        if header is None:
            raise HeaderNotFound(f"no canonical header at #{block_number}")
        return header

    def get_canonical_block_hash(self, block_number: BlockNumber) -> Hash32:
        return self.get_canonical_block_header_by_number(block_number).hash

    def get_canonical_head(self) -> BlockHeaderAPI:
        return self._headers.head_header()

    def persist_trie_data_dict(self, trie_data_dict: dict[Hash32, bytes]) -> None:
        self._scratch.persist_trie_data_dict(trie_data_dict)

    def get_block_transactions(
        self, header: BlockHeaderAPI, transaction_decoder: type[TransactionDecoderAPI]
    ) -> tuple[SignedTransactionAPI, ...]:
        return self._scratch.get_block_transactions(header, transaction_decoder)

    def get_receipts(
        self, header: BlockHeaderAPI, receipt_decoder: type[ReceiptDecoderAPI]
    ) -> tuple[ReceiptAPI, ...]:
        remembered = self._receipts.get(header.receipt_root)
        if remembered is not None:
            return remembered
        return tuple(self._scratch.get_receipts(header, receipt_decoder))

    def get_block_withdrawals(self, header: BlockHeaderAPI) -> tuple[WithdrawalAPI, ...]:
        return self._scratch.get_block_withdrawals(header)

    def get_block_uncles(self, uncles_hash: Hash32) -> tuple[BlockHeaderAPI, ...]:
        return ()
