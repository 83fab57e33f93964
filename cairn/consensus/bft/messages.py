"""Consensus messages and their signatures.

A proposal carries the proposed block (header and transactions, as a `BlockBundle` without a
commit) signed by the round's proposer. A vote is a prevote or a precommit for a block hash or
for nil (no block). Signatures are secp256k1 over domain-separated hashes, so no message can
pass for another kind; a precommit for a block is signed over exactly what a commit signature
covers (`cairn.chain.commit.signing_hash`), so a block's commit is simply its precommits.
Owns the bytes and the signature checks; never decides what a message means for consensus.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import msgpack
import rlp
from eth_keys.datatypes import PrivateKey, Signature
from eth_keys.exceptions import BadSignature, ValidationError
from eth_typing import Address
from eth_utils import keccak

from cairn.chain.commit import signing_hash
from cairn.errors import CairnError

NIL = b""  # the block hash of a vote for no block
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
_VOTE_DOMAIN = b"cairn/vote/v1"
_PROPOSAL_DOMAIN = b"cairn/proposal/v1"


class InvalidConsensusMessage(CairnError):
    """A consensus message that cannot be decoded or whose signature does not hold."""


class VoteKind(IntEnum):
    PREVOTE = 1
    PRECOMMIT = 2


def vote_signing_hash(
    chain_id: int, kind: VoteKind, height: int, round_: int, block_hash: bytes
) -> bytes:
    if kind == VoteKind.PRECOMMIT and block_hash != NIL:
        return signing_hash(chain_id, height, round_, block_hash)
    return keccak(_VOTE_DOMAIN + rlp.encode([chain_id, int(kind), height, round_, block_hash]))


def proposal_signing_hash(
    chain_id: int, height: int, round_: int, pol_round: int, block_hash: bytes
) -> bytes:
    # pol_round is -1 for "no proof of lock": shifted by one to stay an rlp integer
    return keccak(
        _PROPOSAL_DOMAIN + rlp.encode([chain_id, height, round_, pol_round + 1, block_hash])
    )


def _recover(message_hash: bytes, signature: bytes) -> Address:
    try:
        public = Signature(signature_bytes=signature).recover_public_key_from_msg_hash(message_hash)
    except (BadSignature, ValidationError, ValueError) as exc:
        raise InvalidConsensusMessage(f"malformed signature: {exc}") from exc
    return Address(public.to_canonical_address())


@dataclass(frozen=True)
class Vote:
    kind: VoteKind
    height: int
    round: int
    block_hash: bytes  # NIL for a vote for no block
    signature: bytes

    @property
    def is_nil(self) -> bool:
        return self.block_hash == NIL

    def signer(self, chain_id: int) -> Address:
        return _recover(
            vote_signing_hash(chain_id, self.kind, self.height, self.round, self.block_hash),
            self.signature,
        )

    def describe(self) -> str:
        target = "nil" if self.is_nil else "0x" + self.block_hash.hex()[:16]
        return f"{self.kind.name.lower()} #{self.height}/{self.round} for {target}"


def sign_vote(
    key: PrivateKey, chain_id: int, kind: VoteKind, height: int, round_: int, block_hash: bytes
) -> Vote:
    message_hash = vote_signing_hash(chain_id, kind, height, round_, block_hash)
    signature = bytes(key.sign_msg_hash(message_hash).to_bytes())
    return Vote(kind, height, round_, block_hash, signature)


@dataclass(frozen=True)
class Proposal:
    height: int
    round: int
    pol_round: int  # the round of the proof of lock this proposal re-proposes, or -1
    block_hash: bytes
    block: bytes  # the encoded `BlockBundle` (header and transactions, no commit)
    signature: bytes

    def signer(self, chain_id: int) -> Address:
        return _recover(
            proposal_signing_hash(
                chain_id, self.height, self.round, self.pol_round, self.block_hash
            ),
            self.signature,
        )

    def describe(self) -> str:
        return f"proposal #{self.height}/{self.round} 0x{self.block_hash.hex()[:16]}"


def sign_proposal(
    key: PrivateKey,
    chain_id: int,
    height: int,
    round_: int,
    pol_round: int,
    block_hash: bytes,
    block: bytes,
) -> Proposal:
    message_hash = proposal_signing_hash(chain_id, height, round_, pol_round, block_hash)
    signature = bytes(key.sign_msg_hash(message_hash).to_bytes())
    return Proposal(height, round_, pol_round, block_hash, block, signature)


Message = Vote | Proposal
_VOTE, _PROPOSAL = 1, 2


def encode_message(message: Message) -> bytes:
    if isinstance(message, Vote):
        fields: list[object] = [
            _VOTE,
            int(message.kind),
            message.height,
            message.round,
            message.block_hash,
            message.signature,
        ]
    else:
        fields = [
            _PROPOSAL,
            message.height,
            message.round,
            message.pol_round,
            message.block_hash,
            message.block,
            message.signature,
        ]
    packed: bytes = msgpack.packb(fields)
    return packed


def decode_message(raw: bytes) -> Message:
    """Parse a message; raise `InvalidConsensusMessage` for anything malformed."""
    if len(raw) > MAX_MESSAGE_BYTES:
        raise InvalidConsensusMessage(f"consensus message of {len(raw)} bytes is too large")
    try:
        fields = msgpack.unpackb(raw)
        if not isinstance(fields, list) or not fields:
            raise TypeError("not a list")
        tag = fields[0]
        if tag == _VOTE:
            _, kind, height, round_, block_hash, signature = fields
            vote = Vote(VoteKind(kind), height, round_, block_hash, signature)
            _check_ints(height, round_)
            _check_hash(block_hash, allow_nil=True)
            _check_bytes(signature)
            return vote
        if tag == _PROPOSAL:
            _, height, round_, pol_round, block_hash, block, signature = fields
            _check_ints(height, round_)
            if not isinstance(pol_round, int) or not -1 <= pol_round < round_:
                raise ValueError(f"proof-of-lock round {pol_round!r} for round {round_}")
            _check_hash(block_hash, allow_nil=False)
            _check_bytes(block, signature)
            return Proposal(height, round_, pol_round, block_hash, block, signature)
        raise ValueError(f"unknown message type {tag!r}")
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise InvalidConsensusMessage(f"undecodable consensus message: {exc}") from exc


def _check_ints(*values: object) -> None:
    for value in values:
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**63:
            raise ValueError(f"{value!r} is not a height or round")


def _check_hash(value: object, *, allow_nil: bool) -> None:
    if not isinstance(value, bytes) or not (len(value) == 32 or (allow_nil and value == NIL)):
        raise ValueError("a block hash must be 32 bytes")


def _check_bytes(*values: object) -> None:
    for value in values:
        if not isinstance(value, bytes):
            raise TypeError("expected bytes")
