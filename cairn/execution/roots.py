"""Transaction and receipt roots without building a persistent trie.

py-evm computes these with `trie.HexaryTrie`, writing every intermediate node to a dict and
rewriting nodes on each insertion; for a block of 1,400 transfers that is a quarter of the
build time. The root of an ordered trie only needs each node hashed once, bottom-up (what
geth's StackTrie does). Hex-prefix encoding comes from the `trie` package; correctness is
checked against `HexaryTrie` in tests/unit/test_roots.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import rlp
from eth.constants import BLANK_ROOT_HASH
from eth_hash.auto import keccak
from trie.utils.nibbles import add_nibbles_terminator, bytes_to_nibbles, encode_nibbles

_Pair = tuple[tuple[int, ...], bytes]


def ordered_trie_root(items: Sequence[bytes]) -> bytes:
    """Root of the trie mapping rlp(index) -> item, as in transactionsRoot / receiptsRoot."""
    if not items:
        return bytes(BLANK_ROOT_HASH)
    pairs = sorted(
        (bytes_to_nibbles(rlp.encode(index)), bytes(item)) for index, item in enumerate(items)
    )
    return bytes(keccak(rlp.encode(_node(pairs, 0))))


def _reference(node: Any) -> Any:
    """How a parent refers to a child: inline when its encoding is short, else its hash."""
    encoded = rlp.encode(node)
    return node if len(encoded) < 32 else keccak(encoded)


def _node(pairs: list[_Pair], depth: int) -> Any:
    if len(pairs) == 1:
        key, value = pairs[0]
        return [encode_nibbles(tuple(add_nibbles_terminator(key[depth:]))), value]
    first, last = pairs[0][0], pairs[-1][0]
    shared = 0
    limit = min(len(first), len(last)) - depth
    while shared < limit and first[depth + shared] == last[depth + shared]:
        shared += 1
    if shared:  # sorted keys: what the first and last share, all share
        child = _node(pairs, depth + shared)
        return [encode_nibbles(first[depth : depth + shared]), _reference(child)]
    branch: list[Any] = [b""] * 17
    start = 0
    if len(pairs[0][0]) == depth:  # a key that ends here carries the branch's value
        branch[16] = pairs[0][1]
        start = 1
    while start < len(pairs):
        nibble = pairs[start][0][depth]
        end = start + 1
        while end < len(pairs) and pairs[end][0][depth] == nibble:
            end += 1
        branch[nibble] = _reference(_node(pairs[start:end], depth + 1))
        start = end
    return branch
