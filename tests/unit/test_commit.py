from __future__ import annotations

import pytest
from eth_keys.datatypes import PrivateKey
from eth_typing import Address

from cairn.consensus.commit import Commit, make_commit, sign, validate_commit
from cairn.errors import InvalidCommit

KEYS = [PrivateKey(bytes([i + 1]) * 32) for i in range(4)]
PRODUCERS = [Address(k.public_key.to_canonical_address()) for k in KEYS]
BLOCK = b"\xab" * 32
CHAIN = 31337


def check(
    commit: Commit, threshold: int = 1, producers: list[Address] | None = None
) -> set[Address]:
    return validate_commit(
        commit,
        chain_id=CHAIN,
        number=7,
        block_hash=BLOCK,
        producers=producers if producers is not None else PRODUCERS[:1],
        threshold=threshold,
    )


def test_sequencer_commit_round_trips_and_verifies() -> None:
    commit = make_commit(KEYS[0], CHAIN, 7, BLOCK)
    assert Commit.decode(commit.encode()) == commit
    assert check(commit) == {PRODUCERS[0]}


@pytest.mark.parametrize(
    ("commit", "fragment"),
    [
        (make_commit(KEYS[0], CHAIN, 8, BLOCK), "height 8"),
        (make_commit(KEYS[0], CHAIN, 7, b"\xcd" * 32), "for block 0xcdcd"),
        (make_commit(KEYS[1], CHAIN, 7, BLOCK), "not a producer"),
        (make_commit(KEYS[0], 1, 7, BLOCK), "not a producer"),  # signed for another chain
        (Commit(7, 0, BLOCK, ()), "0 distinct producer signatures, 1 needed"),
        (Commit(7, 0, BLOCK, (b"\x00" * 65,)), "malformed signature"),
        (Commit(7, 0, BLOCK, (b"\x01" * 10,)), "malformed signature"),
    ],
)
def test_bad_commits_are_refused(commit: Commit, fragment: str) -> None:
    with pytest.raises(InvalidCommit, match=fragment):
        check(commit)


def test_validator_threshold_counts_distinct_signers() -> None:
    sigs = tuple(sign(k, CHAIN, 7, 0, BLOCK) for k in KEYS[:3])
    assert check(Commit(7, 0, BLOCK, sigs), threshold=3, producers=PRODUCERS) == set(PRODUCERS[:3])
    duplicated = Commit(7, 0, BLOCK, (sigs[0], sigs[0], sigs[1]))
    with pytest.raises(InvalidCommit, match="2 distinct producer signatures, 3 needed"):
        check(duplicated, threshold=3, producers=PRODUCERS)


def test_round_is_part_of_what_is_signed() -> None:
    sig = sign(KEYS[0], CHAIN, 7, 0, BLOCK)
    with pytest.raises(InvalidCommit):
        check(Commit(7, 1, BLOCK, (sig,)))


@pytest.mark.parametrize("raw", [b"", b"\x00", b"\x94\x01\x02\x03\x04", b"\x94\x01\x00\x01\x90"])
def test_garbage_does_not_decode(raw: bytes) -> None:
    with pytest.raises(InvalidCommit, match="undecodable"):
        Commit.decode(raw)
