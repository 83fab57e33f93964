"""Commits: producer signatures over (chain id, height, round, block hash), stored beside
each block. Valid when they hold at least `threshold` distinct producer signatures and
nothing else: no repeated signature or signer, no more signatures than producers (a commit
that repeats one signature thousands of times costs the sender, not the receiver).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import msgpack
import rlp
from eth_keys.datatypes import PrivateKey, Signature
from eth_keys.exceptions import BadSignature, ValidationError
from eth_typing import Address
from eth_utils import keccak

from cairn.errors import InvalidCommit

_DOMAIN = b"cairn/commit/v1"


def signing_hash(chain_id: int, height: int, round_: int, block_hash: bytes) -> bytes:
    return keccak(_DOMAIN + rlp.encode([chain_id, height, round_, block_hash]))


@dataclass(frozen=True)
class Commit:
    height: int
    round: int
    block_hash: bytes
    signatures: tuple[bytes, ...]

    def encode(self) -> bytes:
        packed: bytes = msgpack.packb(
            [self.height, self.round, self.block_hash, list(self.signatures)]
        )
        return packed

    @classmethod
    def decode(cls, raw: bytes) -> Commit:
        try:
            height, round_, block_hash, signatures = msgpack.unpackb(raw)
            if not (
                isinstance(height, int)
                and isinstance(round_, int)
                and isinstance(block_hash, bytes)
                and isinstance(signatures, list)
                and all(isinstance(s, bytes) for s in signatures)
            ):
                raise TypeError("wrong field types")
        except (ValueError, TypeError, msgpack.UnpackException) as exc:
            raise InvalidCommit(-1, b"", f"undecodable commit: {exc}") from exc
        return cls(height, round_, block_hash, tuple(signatures))


def sign(key: PrivateKey, chain_id: int, height: int, round_: int, block_hash: bytes) -> bytes:
    return bytes(key.sign_msg_hash(signing_hash(chain_id, height, round_, block_hash)).to_bytes())


def recover_signer(
    signature: bytes, chain_id: int, height: int, round_: int, block_hash: bytes
) -> Address:
    sig = Signature(signature_bytes=signature)
    public = sig.recover_public_key_from_msg_hash(
        signing_hash(chain_id, height, round_, block_hash)
    )
    return Address(public.to_canonical_address())


def validate_commit(
    commit: Commit,
    *,
    chain_id: int,
    number: int,
    block_hash: bytes,
    producers: Collection[Address],
    threshold: int,
) -> set[Address]:
    """Raise `InvalidCommit` unless `commit` proves `block_hash` at `number`; return signers."""

    def fail(reason: str) -> InvalidCommit:
        return InvalidCommit(number, block_hash, reason)

    if commit.height != number:
        raise fail(f"commit is for height {commit.height}")
    if commit.block_hash != block_hash:
        raise fail(f"commit is for block 0x{commit.block_hash.hex()}")
    if len(commit.signatures) > len(producers):
        raise fail(f"{len(commit.signatures)} signatures for {len(producers)} producers")
    if len(set(commit.signatures)) != len(commit.signatures):
        raise fail("the same signature appears twice")
    signers: set[Address] = set()
    for signature in commit.signatures:
        try:
            signer = recover_signer(signature, chain_id, number, commit.round, block_hash)
        except (BadSignature, ValidationError, ValueError) as exc:
            raise fail(f"malformed signature: {exc}") from exc
        if signer not in producers:
            raise fail(f"signature by 0x{signer.hex()}, who is not a producer")
        if signer in signers:
            raise fail(f"two signatures by 0x{signer.hex()}")
        signers.add(signer)
    if len(signers) < threshold:
        raise fail(f"{len(signers)} distinct producer signatures, {threshold} needed")
    return signers


def make_commit(
    key: PrivateKey, chain_id: int, number: int, block_hash: bytes, round_: int = 0
) -> Commit:
    return Commit(number, round_, block_hash, (sign(key, chain_id, number, round_, block_hash),))
