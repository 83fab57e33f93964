from __future__ import annotations

import pytest
from eth_keys.datatypes import PrivateKey
from eth_typing import Address

from cairn.chain.commit import Commit, make_commit, sign, validate_commit
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
    with pytest.raises(InvalidCommit, match="2 distinct producer signatures, 3 needed"):
        check(Commit(7, 0, BLOCK, sigs[:2]), threshold=3, producers=PRODUCERS)


def test_a_repeated_signature_is_refused_before_any_recovery() -> None:
    """A gossiped commit that repeats one valid signature thousands of times used to be
    accepted (and every copy recovered): it costs the sender now, not the receiver."""
    sigs = tuple(sign(k, CHAIN, 7, 0, BLOCK) for k in KEYS[:3])
    with pytest.raises(InvalidCommit, match="the same signature appears twice"):
        check(Commit(7, 0, BLOCK, (sigs[0], sigs[0], sigs[1])), threshold=3, producers=PRODUCERS)
    flood = Commit(7, 0, BLOCK, (sigs[0],) * 5000)
    with pytest.raises(InvalidCommit, match="5000 signatures for 1 producers"):
        check(flood)


def test_two_signatures_by_one_signer_are_refused() -> None:
    """ECDSA's (r, n - s) twin of a signature recovers the same signer: still one vote."""
    sig = sign(KEYS[0], CHAIN, 7, 0, BLOCK)
    r, s, v = sig[:32], int.from_bytes(sig[32:64], "big"), sig[64]
    n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
    twin = r + (n - s).to_bytes(32, "big") + bytes([v ^ 1])
    with pytest.raises(InvalidCommit, match="two signatures by 0x"):
        check(Commit(7, 0, BLOCK, (sig, twin)), threshold=1, producers=PRODUCERS)


def test_round_is_part_of_what_is_signed() -> None:
    sig = sign(KEYS[0], CHAIN, 7, 0, BLOCK)
    with pytest.raises(InvalidCommit):
        check(Commit(7, 1, BLOCK, (sig,)))


@pytest.mark.parametrize("raw", [b"", b"\x00", b"\x94\x01\x02\x03\x04", b"\x94\x01\x00\x01\x90"])
def test_garbage_does_not_decode(raw: bytes) -> None:
    with pytest.raises(InvalidCommit, match="undecodable"):
        Commit.decode(raw)
