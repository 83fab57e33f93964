"""`VoteSet`: the votes of one kind (prevote or precommit) at one height and round, at most one
per validator, tallied by block hash. A validator's second, different vote in the same set is
equivocation: the set keeps the first and hands both back as `Evidence`.

Immutable: `add` returns a new set, so the round state that holds these stays a value.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import msgpack
from eth_typing import Address

from cairn.consensus.bft.messages import (
    InvalidConsensusMessage,
    Vote,
    decode_message,
    encode_message,
)


@dataclass(frozen=True)
class SignedVote:
    """A vote whose signature was checked, with the validator who signed it."""

    vote: Vote
    signer: Address


@dataclass(frozen=True)
class Evidence:
    """Two different votes by one validator for one (height, round, kind)."""

    first: SignedVote
    second: SignedVote

    @property
    def validator(self) -> Address:
        return self.first.signer

    def describe(self) -> str:
        a, b = self.first.vote, self.second.vote
        return f"0x{self.validator.hex()} signed {a.describe()} and {b.describe()}"

    def encode(self) -> bytes:
        packed: bytes = msgpack.packb(
            [
                bytes(self.validator),
                encode_message(self.first.vote),
                encode_message(self.second.vote),
            ]
        )
        return packed

    @classmethod
    def decode(cls, raw: bytes) -> Evidence:
        """Parse stored evidence; raise `InvalidConsensusMessage` for anything malformed."""
        try:
            validator, first, second = msgpack.unpackb(raw)
            if not all(isinstance(v, bytes) for v in (validator, first, second)):
                raise TypeError("evidence fields must be bytes")
        except (ValueError, TypeError, msgpack.UnpackException) as exc:
            raise InvalidConsensusMessage(f"undecodable evidence: {exc}") from exc
        a, b = decode_message(first), decode_message(second)
        if not isinstance(a, Vote) or not isinstance(b, Vote):
            raise InvalidConsensusMessage("evidence holds votes only")
        return cls(SignedVote(a, Address(validator)), SignedVote(b, Address(validator)))


@dataclass(frozen=True)
class VoteSet:
    """Tallied per block hash, each validator at most once per hash. A validator's vote for
    a second hash is evidence, and it still counts for that hash: a proof of lock or a commit
    is about who signed *this* block, and the quorum-intersection argument only counts correct
    validators (CometBFT likewise counts conflicting votes for a block peers claim has +2/3).
    """

    first: Mapping[Address, SignedVote] = field(default_factory=dict)
    by_block: Mapping[bytes, Mapping[Address, SignedVote]] = field(default_factory=dict)

    def add(self, signed: SignedVote) -> tuple[VoteSet, Evidence | None]:
        """The set with `signed` added (unchanged for a repeat), and evidence when it
        conflicts with the signer's earlier vote."""
        block_hash = signed.vote.block_hash
        if signed.signer in self.by_block.get(block_hash, {}):
            return self, None
        earlier = self.first.get(signed.signer)
        first = self.first
        if earlier is None:
            first = {**self.first, signed.signer: signed}
        voters = {**self.by_block.get(block_hash, {}), signed.signer: signed}
        updated = VoteSet(first, {**self.by_block, block_hash: voters})
        return updated, None if earlier is None else Evidence(earlier, signed)

    def count(self, block_hash: bytes) -> int:
        """Validators that voted for `block_hash` (NIL: for no block)."""
        return len(self.by_block.get(block_hash, {}))

    def total(self) -> int:
        """Distinct validators that voted at all."""
        return len(self.first)

    def signatures_for(self, block_hash: bytes) -> tuple[bytes, ...]:
        """The signatures of the votes for `block_hash`, in validator order."""
        voters = self.by_block.get(block_hash, {})
        return tuple(voters[a].vote.signature for a in sorted(voters))
