"""Block parameters resolved one way for every namespace.

A block parameter is a tag (`latest`, `pending`, `safe`, `finalized`, `earliest`), a number,
a hash, or an EIP-1898 object (`{blockHash, requireCanonical}` / `{blockNumber}`), parsed by
`params.block_ref`. Here it becomes a stored block. Cairn's producers finalise instantly
(one sequencer, or BFT), so `safe` and `finalized` are the head, and every stored block is
canonical; `pending` reads the head's state (transaction counts add the pool elsewhere).
"""

from __future__ import annotations

from eth.abc import BlockHeaderAPI

from cairn.execution.reader import ChainReader, StoredBlock
from cairn.rpc.errors import SERVER_ERROR, RpcError
from cairn.rpc.params import BlockRef

HEAD_TAGS = ("latest", "pending", "safe", "finalized")


class BlockResolver:
    def __init__(self, reader: ChainReader) -> None:
        self.reader = reader

    def number(self, ref: BlockRef) -> int | None:
        """The block number `ref` names, or None when this node has no such block."""
        head = self.reader.head_number
        if ref.block_hash is not None:
            return self.reader.store.load_number(ref.block_hash)
        if ref.tag in HEAD_TAGS:
            return head
        if ref.tag == "earliest":
            return 0
        if ref.number is None:
            return None
        return ref.number if ref.number <= head else None

    def header(self, ref: BlockRef) -> BlockHeaderAPI:
        """The header `ref` names; geth's errors when there is none."""
        number = self.number(ref)
        header = None if number is None else self.reader.header_by_number(number)
        if header is None:
            if ref.block_hash is not None:
                raise RpcError(SERVER_ERROR, f"header for hash 0x{ref.block_hash.hex()} not found")
            raise RpcError(SERVER_ERROR, "header not found")
        return header

    def block(self, ref: BlockRef) -> StoredBlock | None:
        number = self.number(ref)
        return None if number is None else self.reader.block_by_number(number)
