"""`BlockBundle`: a committed block as it travels between nodes (header RLP, raw
transactions, commit bytes), and turning one into a py-evm block.

Owns the bytes only: it decodes, it never judges a block (commit checks live in consensus,
re-execution in the builder) and never touches storage.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgpack
from eth.abc import BlockAPI, BlockHeaderAPI

from cairn.errors import InvalidBlock
from cairn.execution.forks import Fork, encode_header
from cairn.execution.reader import ChainReader

# A bundle bigger than this is never accepted from a peer (a full 30M-gas block of
# calldata is ~1.9 MB; this leaves room and still bounds memory per message).
MAX_BUNDLE_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class BlockBundle:
    header: bytes
    transactions: tuple[bytes, ...]
    commit: bytes

    def encode(self) -> bytes:
        packed: bytes = msgpack.packb([self.header, list(self.transactions), self.commit])
        return packed

    @classmethod
    def decode(cls, raw: bytes) -> BlockBundle:
        """Parse the envelope; raise `InvalidBlock` (number -1) for anything malformed."""
        if len(raw) > MAX_BUNDLE_BYTES:
            raise InvalidBlock(-1, b"", f"block message of {len(raw)} bytes is too large")
        try:
            header, txs, commit = msgpack.unpackb(raw)
            if not (
                isinstance(header, bytes)
                and isinstance(commit, bytes)
                and isinstance(txs, list)
                and all(isinstance(t, bytes) for t in txs)
            ):
                raise TypeError("wrong field types")
        except (ValueError, TypeError, msgpack.UnpackException) as exc:
            raise InvalidBlock(-1, b"", f"undecodable block message: {exc}") from exc
        return cls(header, tuple(txs), commit)

    def decode_header(self, fork: Fork) -> BlockHeaderAPI:
        try:
            return fork.decode_header(self.header)
        except Exception as exc:  # rlp raises a zoo of types for bad bytes
            raise InvalidBlock(-1, b"", f"undecodable header: {exc}") from exc

    def to_block(self, fork: Fork, header: BlockHeaderAPI) -> BlockAPI:
        txs = []
        for index, raw in enumerate(self.transactions):
            try:
                txs.append(fork.decode_transaction(raw))
            except Exception as exc:
                raise InvalidBlock(
                    header.block_number, header.hash, f"transaction {index} undecodable: {exc}"
                ) from exc
        block_class = fork.vm_class.get_block_class()
        block: BlockAPI = block_class(header, transactions=txs, uncles=[], withdrawals=[])
        return block


def bundle_from_parts(header: BlockHeaderAPI, txs: list[bytes], commit: bytes) -> BlockBundle:
    return BlockBundle(encode_header(header), tuple(txs), commit)


def load_bundle(reader: ChainReader, number: int) -> BlockBundle | None:
    """The canonical block at `number` as stored bytes (no decoding of transactions)."""
    store = reader.store
    header = store.load_header(number)
    body = store.load_body(number)
    commit = store.load_commit(number)
    if header is None or body is None or commit is None:
        return None
    return BlockBundle(header, body.transactions, commit)
