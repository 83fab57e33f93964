"""eth_getProof's data: account and storage proofs from the archived trie in LevelDB, checked
with the `trie` package's own verifier against each block's state root."""

from __future__ import annotations

from pathlib import Path

import rlp
from eth.constants import BLANK_ROOT_HASH
from eth.rlp.accounts import Account
from eth_typing import Address
from eth_utils import keccak, to_checksum_address
from rlp.sedes import big_endian_int
from trie.hexary import HexaryTrie
from web3 import Web3

from cairn.execution.proof import ZERO_HASH, AccountProof, prove
from tests.support.chain import ADDRESSES, mine, open_chain, transfer
from tests.support.contracts import compile_contract


def _from_proof(root: bytes, key: bytes, proof: tuple[bytes, ...]) -> bytes:
    """The `trie` package's own verifier: the value at `key` under `root`, or b""."""
    nodes = [rlp.decode(node) for node in proof]
    found: bytes = HexaryTrie.get_from_proof(root, key, nodes)  # type: ignore[no-untyped-call]
    return found


def _proven_account(root: bytes, proof: AccountProof) -> bytes:
    return _from_proof(root, keccak(proof.address), proof.proof)


def _proven_slot(proof: AccountProof, index: int) -> int:
    item = proof.storage[index]
    raw = _from_proof(proof.storage_hash, keccak(item.slot.to_bytes(32, "big")), item.proof)
    value: int = rlp.decode(raw, sedes=big_endian_int) if raw else 0
    return value


def test_proofs_verify_against_every_blocks_state_root(tmp_path: Path) -> None:
    compiled = compile_contract("Probe.sol", "Probe")
    with open_chain(tmp_path) as chain:
        deploy = transfer(0, 0, to="", gas=3_000_000, data=bytes.fromhex(compiled.bytecode[2:]))
        address = Address(mine(chain, [deploy]).computations[0].msg.storage_address)
        contract = Web3().eth.contract(address=to_checksum_address(address), abi=compiled.abi)
        set_slot = bytes.fromhex(contract.encode_abi("setSlot", [5, 0x1234])[2:])
        before = chain.head
        after = mine(
            chain,
            [transfer(0, 1, to=to_checksum_address(address), value=0, gas=100_000, data=set_slot)],
        ).header
        slot = int.from_bytes(keccak((5).to_bytes(32, "big") + (1).to_bytes(32, "big")), "big")
        db = chain.store.state_db()

        for header, expected in ((before, 0), (after, 0x1234)):
            proof = prove(db, header.state_root, address, [slot, 0, 2, 12345])
            account = rlp.decode(_proven_account(header.state_root, proof), sedes=Account)
            # nonce 2 (1 at creation, EIP-161, +1 for the Child it made); the deploy sent 1 wei
            assert (account.nonce, account.balance) == (proof.nonce, proof.balance) == (2, 1)
            assert account.storage_root == proof.storage_hash
            assert (
                account.code_hash == proof.code_hash == keccak(bytes.fromhex(compiled.deployed[2:]))
            )
            assert [_proven_slot(proof, i) for i in range(4)] == [
                expected,
                0,
                chain.reader.state_at(header).get_storage(address, 2),
                0,
            ]
            assert [s.value for s in proof.storage] == [expected, 0, proof.storage[2].value, 0]
            assert proof.proof[0] and keccak(proof.proof[0]) == header.state_root

        sender = prove(db, after.state_root, ADDRESSES[0], [])
        account = rlp.decode(_proven_account(after.state_root, sender), sedes=Account)
        assert account.nonce == 2 and sender.storage_hash == BLANK_ROOT_HASH
        assert sender.storage == ()


def test_a_missing_account_proves_its_absence(tmp_path: Path) -> None:
    with open_chain(tmp_path) as chain:
        mine(chain, [transfer(0, 0)])
        root = chain.head.state_root
        nobody = Address(b"\x42" * 20)
        proof = prove(chain.store.state_db(), root, nobody, [1])
        assert not proof.exists
        assert (proof.nonce, proof.balance) == (0, 0)
        assert proof.code_hash == proof.storage_hash == ZERO_HASH  # as geth answers
        assert _proven_account(root, proof) == b""
        assert proof.storage[0].value == 0 and proof.storage[0].proof == ()
