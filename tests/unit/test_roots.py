from __future__ import annotations

from typing import Any

import rlp
from eth.db.trie import make_trie_root_and_nodes
from hypothesis import given, settings
from hypothesis import strategies as st
from trie.hexary import HexaryTrie

from cairn.execution.roots import ordered_trie_root


def reference_root(items: list[bytes]) -> bytes:
    trie = HexaryTrie({})
    for index, item in enumerate(items):
        trie[rlp.encode(index)] = item
    return bytes(trie.root_hash)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=80), max_size=300))
def test_matches_hexary_trie(items: list[bytes]) -> None:
    assert ordered_trie_root(items) == reference_root(items)


def test_empty_and_large_blocks() -> None:
    assert ordered_trie_root([]) == reference_root([])
    big = [bytes([i % 251]) * (i % 97 + 1) for i in range(1500)]
    assert ordered_trie_root(big) == reference_root(big)


class _Encoded:
    def __init__(self, raw: bytes) -> None:
        self.raw = raw

    def encode(self) -> bytes:
        return self.raw


def test_agrees_with_py_evm() -> None:
    items = [bytes([i]) * 40 for i in range(200)]
    encoded: Any = [_Encoded(i) for i in items]  # duck-typed: py-evm only calls .encode()
    root, _ = make_trie_root_and_nodes(encoded)
    assert ordered_trie_root(items) == root
