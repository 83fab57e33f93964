"""Merkle proofs (EIP-1186) of accounts and storage slots from the archived state trie.

Owns walking the state trie of any stored block with the `trie` package and picking the nodes
geth's `Trie.Prove` returns. Reads only; must never write a node.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import rlp
from eth.constants import BLANK_ROOT_HASH
from eth.rlp.accounts import Account
from eth_typing import Address
from eth_utils import keccak
from rlp.sedes import big_endian_int
from trie.exceptions import MissingTrieNode
from trie.hexary import HexaryTrie

from cairn.errors import NotFound

ZERO_HASH = b"\x00" * 32


@dataclass(frozen=True)
class StorageProof:
    slot: int
    value: int
    proof: tuple[bytes, ...]


@dataclass(frozen=True)
class AccountProof:
    """geth's AccountResult. A missing account has zero code hash and storage hash, as in
    geth (its proof then shows the account's absence)."""

    address: Address
    exists: bool
    nonce: int
    balance: int
    code_hash: bytes
    storage_hash: bytes
    proof: tuple[bytes, ...]
    storage: tuple[StorageProof, ...]


def prove(db: Any, state_root: bytes, address: Address, slots: Sequence[int]) -> AccountProof:
    """Proofs for `address` and its `slots` in the state whose root is `state_root`.

    `db` maps node hashes to node RLP (the store's state namespace).
    """
    state_trie = HexaryTrie(db, state_root)
    account_key = keccak(address)
    try:
        raw_account = state_trie.get(account_key)
        account_nodes = _proof_nodes(state_trie, account_key)
    except MissingTrieNode as exc:
        raise NotFound(f"state 0x{state_root.hex()} is not in this node's database: {exc}") from exc
    if raw_account:
        account = rlp.decode(raw_account, sedes=Account)
        nonce, balance = account.nonce, account.balance
        storage_root, code_hash = account.storage_root, account.code_hash
    else:
        nonce, balance, storage_root, code_hash = 0, 0, ZERO_HASH, ZERO_HASH
    storage: list[StorageProof] = []
    has_storage = storage_root not in (BLANK_ROOT_HASH, ZERO_HASH)
    storage_trie = HexaryTrie(db, storage_root) if has_storage else None
    for slot in slots:
        if storage_trie is None:
            storage.append(StorageProof(slot, 0, ()))
            continue
        slot_key = keccak(slot.to_bytes(32, "big"))
        raw_value = storage_trie.get(slot_key)
        value = rlp.decode(raw_value, sedes=big_endian_int) if raw_value else 0
        storage.append(StorageProof(slot, value, _proof_nodes(storage_trie, slot_key)))
    return AccountProof(
        address=address,
        exists=bool(raw_account),
        nonce=nonce,
        balance=balance,
        code_hash=code_hash,
        storage_hash=storage_root,
        proof=account_nodes,
        storage=tuple(storage),
    )


def _proof_nodes(trie: HexaryTrie, key: bytes) -> tuple[bytes, ...]:
    """The encoded nodes on the path to `key`; like geth, nodes embedded in their parent
    (shorter than 32 bytes) are left out, except the root."""
    path = trie.get_proof(key)  # type: ignore[no-untyped-call]  # trie 4 leaves it untyped
    nodes = [rlp.encode(node) for node in path]
    return tuple(bytes(n) for i, n in enumerate(nodes) if i == 0 or len(n) >= 32)
