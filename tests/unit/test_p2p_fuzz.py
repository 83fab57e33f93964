"""Issue 12: fuzzing every decoder of bytes a peer sends (hypothesis).

For each p2p decoder — the status handshake, sync requests and answers (block ranges,
peer lists), transaction batches, block bundles and their headers and commits, BFT
consensus messages, and evidence — arbitrary bytes, arbitrary msgpack values and mutated
valid encodings raise only the decoder's declared error (a `CairnError` subclass), never
anything else; valid encodings round-trip.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import msgpack
import pytest
from eth_keys.datatypes import PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cairn.chain.bundle import BlockBundle
from cairn.chain.commit import Commit
from cairn.consensus.bft.messages import (
    NIL,
    InvalidConsensusMessage,
    Proposal,
    Vote,
    VoteKind,
    decode_message,
    encode_message,
    sign_proposal,
    sign_vote,
)
from cairn.consensus.bft.votes import Evidence, SignedVote
from cairn.errors import CairnError, InvalidBlock, InvalidCommit
from cairn.execution.forks import encode_header, fork_named
from cairn.execution.genesis import genesis_block
from cairn.genesis.dev import dev_genesis
from cairn.p2p import messages as m

STATUS_KEYS = ["v", "chainId", "genesis", "head", "headHash", "port", "client", "full"]
FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FORK = fork_named(dev_genesis().consensus.fork)
KEY = PrivateKey(b"\x07" * 32)

# msgpack values of every kind, nested: what a peer can put in a well-formed envelope.
# Values that broke decoders before (int() of infinity, bytes() of a big int), drawn often.
edges = st.sampled_from([float("inf"), float("-inf"), float("nan"), 2**33, -1, 2**64 - 1, True])
scalars = (
    edges
    | st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
    | st.binary(max_size=80)
)
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=8) | st.dictionaries(st.text(max_size=12), children, max_size=8)
    ),
    max_leaves=12,
)
hashes = st.binary(min_size=32, max_size=32)
heights = st.integers(min_value=0, max_value=2**40)


def _packed_dicts(keys: list[str]) -> st.SearchStrategy[bytes]:
    """msgpack maps with the decoder's own keys holding arbitrary values."""
    return st.dictionaries(st.sampled_from(keys), values, max_size=len(keys) + 1).map(msgpack.packb)


def _full_dicts(keys: list[str]) -> st.SearchStrategy[bytes]:
    """msgpack maps with every one of the decoder's keys, each holding any value."""
    return st.fixed_dictionaries({k: scalars for k in keys}).map(msgpack.packb)


def _mutated(valid: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    """A valid encoding with bytes flipped, cut or inserted."""

    @st.composite
    def mutate(draw: st.DrawFn) -> bytes:
        raw = bytearray(draw(valid))
        for _ in range(draw(st.integers(1, 4))):
            op = draw(st.sampled_from(["flip", "cut", "insert"]))
            at = draw(st.integers(0, max(0, len(raw) - 1)))
            if op == "flip" and raw:
                raw[at] ^= draw(st.integers(1, 255))
            elif op == "cut":
                del raw[at:]
            else:
                raw[at:at] = draw(st.binary(min_size=1, max_size=8))
        return bytes(raw)

    return mutate()


statuses = st.builds(
    m.Status,
    st.integers(0, 2**63),
    hashes,
    heights,
    hashes,
    st.integers(0, 65535),
    st.text(max_size=100),
    st.booleans(),
)
sync_requests = st.builds(
    m.SyncRequest, st.sampled_from(["status", "peers", "range"]), heights, st.integers(0, 128)
)
commits = st.builds(
    Commit,
    heights,
    st.integers(0, 1000),
    hashes,
    st.lists(st.binary(min_size=65, max_size=65), max_size=4).map(tuple),
)
votes = st.builds(
    lambda kind, h, r, block: sign_vote(KEY, 31337, kind, h, r, block),
    st.sampled_from(list(VoteKind)),
    heights,
    st.integers(0, 50),
    hashes | st.just(NIL),
)
proposals = st.builds(
    lambda h, r, block_hash, block: sign_proposal(KEY, 31337, h, r + 1, r, block_hash, block),
    heights,
    st.integers(-1, 50),
    hashes,
    st.binary(max_size=200),
)


HEADER = encode_header(genesis_block(dev_genesis(), FORK).header)


def _bundle(header: bytes, txs: list[bytes], commit: bytes) -> bytes:
    return BlockBundle(header, tuple(txs), commit).encode()


def _evidence(a: Vote, b: Vote) -> bytes:
    signer = a.signer(31337)
    return Evidence(SignedVote(a, signer), SignedVote(b, signer)).encode()


def _decode_bundle_fully(raw: bytes) -> None:
    bundle = BlockBundle.decode(raw)
    header = bundle.decode_header(FORK)
    bundle.to_block(FORK, header)
    Commit.decode(bundle.commit)


DECODERS: dict[str, tuple[Callable[[bytes], Any], type[CairnError], st.SearchStrategy[bytes]]] = {
    "status": (
        m.Status.decode,
        m.PeerMessageError,
        statuses.map(lambda s: s.encode()) | _packed_dicts(STATUS_KEYS) | _full_dicts(STATUS_KEYS),
    ),
    "sync request": (
        m.SyncRequest.decode,
        m.PeerMessageError,
        sync_requests.map(lambda r: r.encode())
        | _packed_dicts(["t", "start", "count"])
        | _full_dicts(["t", "start", "count"]),
    ),
    "block range": (
        m.decode_blocks,
        m.PeerMessageError,
        st.lists(st.binary(max_size=64), max_size=140).map(m.encode_blocks),
    ),
    "peer list": (
        m.decode_peers,
        m.PeerMessageError,
        st.lists(st.text(max_size=60), max_size=40).map(m.encode_peers),
    ),
    "tx batch": (
        m.decode_txs,
        m.PeerMessageError,
        st.lists(st.binary(max_size=64), min_size=1, max_size=40).map(m.encode_txs),
    ),
    "block bundle": (
        _decode_bundle_fully,
        InvalidBlock,
        st.builds(
            _bundle,
            st.just(HEADER) | st.binary(max_size=600),
            st.lists(st.binary(max_size=64), max_size=4),
            commits.map(lambda c: c.encode()),
        ),
    ),
    "commit": (Commit.decode, InvalidCommit, commits.map(lambda c: c.encode())),
    "consensus message": (
        decode_message,
        InvalidConsensusMessage,
        (votes | proposals).map(encode_message),
    ),
    "evidence": (
        Evidence.decode,
        InvalidConsensusMessage,
        st.builds(_evidence, votes, votes),
    ),
}


@pytest.mark.parametrize("name", list(DECODERS))
@FUZZ
@given(data=st.data())
def test_decoders_raise_only_their_declared_error(name: str, data: st.DataObject) -> None:
    decode, error, valid = DECODERS[name]
    raw = data.draw(
        st.binary(max_size=2048) | values.map(msgpack.packb) | valid | _mutated(valid),
        label="raw",
    )
    with contextlib.suppress(error):  # the declared error; anything else fails the test
        decode(raw)


GOOD_STATUS = {"chainId": 1, "genesis": b"\x01" * 32, "head": 0, "headHash": b"", "port": 1}


@pytest.mark.parametrize(
    ("decode", "value"),
    [
        # int(inf) raised OverflowError out of both decoders
        (m.Status.decode, {**GOOD_STATUS, "chainId": float("inf")}),
        (m.SyncRequest.decode, {"t": "range", "start": float("inf"), "count": 1}),
        # bytes(2**33) would have allocated 8 GiB for a 60-byte status
        (m.Status.decode, {**GOOD_STATUS, "client": "x", "genesis": 2**33}),
        (m.Status.decode, [1, 2, 3]),
        (m.SyncRequest.decode, {"t": ["range"], "start": 0}),
    ],
)
def test_found_by_fuzzing(decode: Callable[[bytes], Any], value: object) -> None:
    with pytest.raises(m.PeerMessageError, match="malformed"):
        decode(msgpack.packb(value))


@FUZZ
@given(status=statuses, request=sync_requests)
def test_status_and_requests_round_trip(status: m.Status, request: m.SyncRequest) -> None:
    assert m.Status.decode(status.encode()) == status
    assert m.SyncRequest.decode(request.encode()) == request


@FUZZ
@given(
    blocks=st.lists(st.binary(max_size=64), max_size=m.MAX_RANGE_BLOCKS),
    peers=st.lists(st.text(max_size=60), max_size=m.MAX_PEERS_SHARED),
    txs=st.lists(st.binary(max_size=64), min_size=1, max_size=40),
    commit=commits,
)
def test_lists_and_commits_round_trip(
    blocks: list[bytes], peers: list[str], txs: list[bytes], commit: Commit
) -> None:
    assert m.decode_blocks(m.encode_blocks(blocks)) == blocks
    assert m.decode_peers(m.encode_peers(peers)) == peers
    assert m.decode_txs(m.encode_txs(txs)) == txs
    assert Commit.decode(commit.encode()) == commit


@FUZZ
@given(message=votes | proposals, other=votes)
def test_consensus_messages_and_evidence_round_trip(message: Vote | Proposal, other: Vote) -> None:
    assert decode_message(encode_message(message)) == message
    assert message.signer(31337) == KEY.public_key.to_canonical_address()
    first = sign_vote(KEY, 31337, other.kind, other.height, other.round, NIL)
    evidence = Evidence.decode(_evidence(first, other))
    assert (evidence.first.vote, evidence.second.vote) == (first, other)
    assert evidence.validator == KEY.public_key.to_canonical_address()


@FUZZ
@given(txs=st.lists(st.binary(max_size=64), max_size=4), commit=commits)
def test_bundles_round_trip(txs: list[bytes], commit: Commit) -> None:
    header = HEADER
    bundle = BlockBundle.decode(_bundle(header, txs, commit.encode()))
    assert bundle == BlockBundle(header, tuple(txs), commit.encode())
    assert encode_header(bundle.decode_header(FORK)) == header
