"""Validators running the real BFT engine on real LevelDB chains, in one event loop, over an
in-memory network the test controls: blocks with instant finality, a crash between prevote
and precommit replayed from the WAL, an equivocating validator, an invalid proposal, a
proposal from the wrong proposer, a 2|2 partition, and commits with too few signatures.
After every scenario, every vote ever sent is scanned for double signing."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from eth_keys.datatypes import PrivateKey

from cairn.chain.bundle import BlockBundle
from cairn.chain.commit import Commit
from cairn.consensus.bft.engine import StoredEvidence
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
from cairn.errors import InvalidCommit
from cairn.execution.forks import encode_header
from tests.support.bft_net import KEYS, BftNet, Sends, validators_genesis
from tests.support.chain import transfer
from tests.support.wait import wait_until_async


def run(coro: object) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]


def test_four_validators_make_final_blocks_with_transactions(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with BftNet(tmp_path) as net:
            hashes = [
                r.tx_hash for r in net.nodes[0].pool.add_many([transfer(0, n) for n in range(5)])
            ]
            await net.wait_heights(5)
            net.same_chain(5)
            v0 = net.nodes[0]
            mined = {
                tx.hash
                for n in range(1, v0.head + 1)
                for tx in v0.chain.reader.block_by_number(n).transactions  # type: ignore[union-attr]
            }
            assert set(hashes) <= mined  # gossip reached the other validators' pools too
            for n in range(1, 6):
                raw = v0.chain.store.load_commit(n)
                assert raw is not None
                commit = Commit.decode(raw)
                header = v0.chain.reader.header_by_number(n)
                assert header is not None
                signers = v0.applier.verify_commit(header, raw)
                assert len(signers) >= 3 and commit.height == n
            net.assert_no_double_signing()

    run(scenario())


def test_a_commit_with_two_thirds_or_less_is_refused(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with BftNet(tmp_path) as net:
            await net.wait_heights(2)
            v0 = net.nodes[0]
            header = v0.chain.reader.header_by_number(2)
            raw = v0.chain.store.load_commit(2)
            assert header is not None and raw is not None
            commit = Commit.decode(raw)
            weak = Commit(commit.height, commit.round, commit.block_hash, commit.signatures[:2])
            with pytest.raises(InvalidCommit, match="2 distinct producer signatures, 3 needed"):
                v0.applier.verify_commit(header, weak.encode())

    run(scenario())


def test_a_validator_crashed_between_prevote_and_precommit_replays_its_wal(
    tmp_path: Path,
) -> None:
    """With validator 3 down, 0, 1 and 2 are exactly a quorum. Validator 2 sends its prevote
    at height 3 and crashes before any precommit leaves it: the network cannot decide #3. On
    restart, 2 replays its WAL (its proposal or vote, the messages it had) and #3 is decided,
    with no validator — 2 included — having signed two different things."""

    async def scenario() -> None:
        async with BftNet(tmp_path) as net:
            await net.crash(3)
            await net.wait_heights(2, nodes={0, 1, 2})
            crashed = asyncio.Event()

            def crash_after_prevote(
                sender: int, data: bytes
            ) -> list[tuple[set[int] | None, bytes]]:
                message = decode_message(data)
                if crashed.is_set():
                    return []  # nothing more leaves it
                if (
                    isinstance(message, Vote)
                    and message.height == 3
                    and message.kind == VoteKind.PREVOTE
                ):
                    crashed.set()
                    # from here on nothing reaches it either: it cannot see a quorum, so it
                    # cannot decide #3 before it "crashes"
                    net.down |= {(other, 2) for other in range(4)}
                return [(None, data)]

            net.rewrites[2] = crash_after_prevote
            await wait_until_async(_flag(crashed), within=30, message="validator 2's prevote at #3")
            await net.crash(2)
            del net.rewrites[2]
            net.heal()
            stuck = max(net.nodes[i].head for i in (0, 1))
            assert stuck <= 3
            restarted = net.start(2)
            await net.wait_heights(5, nodes={0, 1, 2})
            assert restarted.engine.status.replayed > 0  # it resumed #3 from its WAL
            net.same_chain(5)
            net.assert_no_double_signing()

    run(scenario())


def _flag(event: asyncio.Event) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return event.is_set()

    return check


def test_an_equivocating_validator_is_caught_and_cannot_split_the_others(tmp_path: Path) -> None:
    """Validator 1 sends every vote it makes for a block, and a conflicting nil vote it also
    signs, each to one half of the network first. The others keep one chain and keep the
    evidence (persisted)."""

    async def scenario() -> None:
        async with BftNet(tmp_path) as net:
            chain_id = net.genesis.chain_id

            def equivocate(sender: int, data: bytes) -> list[tuple[set[int] | None, bytes]]:
                message = decode_message(data)
                if not isinstance(message, Vote) or message.block_hash == NIL:
                    return [(None, data)]
                twin = sign_vote(
                    KEYS[1], chain_id, message.kind, message.height, message.round, NIL
                )
                twin_data = encode_message(twin)
                return [({0, 2}, data), ({3}, twin_data), ({3}, data), ({0, 2}, twin_data)]

            net.rewrites[1] = equivocate
            await net.wait_heights(4)
            net.same_chain(4)
            net.assert_no_double_signing(except_for=frozenset({1}))
            for i in (0, 2, 3):
                evidence = StoredEvidence(net.nodes[i].chain.store).load()
                assert evidence and {e.validator for e in evidence} == {_addr(1)}
            # the peer that published the conflicting votes is penalised at gossip time
            assert {(peer, kind) for _, peer, kind in net.penalties} == {("peer-1", "Equivocation")}

    run(scenario())


def _addr(i: int) -> bytes:
    return KEYS[i].public_key.to_canonical_address()


def test_an_invalid_proposal_is_voted_down_and_never_committed(tmp_path: Path) -> None:
    """Validator 2 proposes blocks whose state root is wrong (correctly signed). The others
    execute them, prevote nil, and the next round's proposer makes the block."""

    async def scenario() -> None:
        async with BftNet(tmp_path) as net:
            chain_id = net.genesis.chain_id
            fork = net.nodes[0].chain.fork
            forged: set[bytes] = set()

            def lie(sender: int, data: bytes) -> Sends:
                message = decode_message(data)
                if not isinstance(message, Proposal):
                    return [(None, data)]
                bundle = BlockBundle.decode(message.block)
                header = fork.decode_header(bundle.header).copy(state_root=b"\x22" * 32)
                block = BlockBundle(encode_header(header), bundle.transactions, b"").encode()
                bad = sign_proposal(
                    KEYS[2],
                    chain_id,
                    message.height,
                    message.round,
                    message.pol_round,
                    header.hash,
                    block,
                )
                forged.add(header.hash)
                return [(None, encode_message(bad))]

            net.rewrites[2] = lie
            await net.wait_heights(6)
            assert forged, "validator 2 never got to propose"
            net.same_chain(6)
            v0 = net.nodes[0]
            for n in range(1, v0.head + 1):
                assert v0.chain.reader.header_by_number(n).hash not in forged  # type: ignore[union-attr]
            net.assert_no_double_signing()

    run(scenario())


def test_messages_from_the_wrong_signer_are_refused(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with BftNet(tmp_path) as net:
            await net.wait_heights(1)
            v0 = net.nodes[0]
            chain_id = net.genesis.chain_id
            height = v0.head + 1
            proposer = v0.engine.validators.proposer(height, 0)
            impostor = next(k for k in KEYS[:4] if k.public_key.to_canonical_address() != proposer)
            fake = sign_proposal(impostor, chain_id, height, 0, -1, b"\x01" * 32, b"\x90")
            with pytest.raises(InvalidConsensusMessage, match="not the round's proposer"):
                await v0.engine.on_message(encode_message(fake))
            stranger = sign_vote(
                PrivateKey(b"\x77" * 32), chain_id, VoteKind.PREVOTE, height, 0, NIL
            )
            with pytest.raises(InvalidConsensusMessage, match="not a validator"):
                await v0.engine.on_message(encode_message(stranger))
            with pytest.raises(InvalidConsensusMessage, match="undecodable"):
                await v0.engine.on_message(b"\x93\x01")

    run(scenario())


def test_a_two_two_partition_halts_and_heals_into_one_chain(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with BftNet(tmp_path) as net:
            await net.wait_heights(2)
            net.cut({0, 1}, {2, 3})
            cut_at = max(node.head for node in net.nodes.values())

            async def stuck() -> bool:
                # Every validator has sent its messages of the height after the cut again and
                # again without getting further: neither side has more than two thirds.
                return all(
                    node.engine.status.height > cut_at and node.engine.status.stalled >= 3
                    for node in net.nodes.values()
                )

            await wait_until_async(stuck, within=60, message="every validator stuck")
            assert all(node.head <= cut_at + 1 for node in net.nodes.values())
            net.heal()
            await net.wait_heights(cut_at + 3)
            net.same_chain(cut_at + 3)
            net.assert_no_double_signing()

    run(scenario())


def test_without_empty_blocks_a_height_waits_for_a_transaction(tmp_path: Path) -> None:
    async def scenario() -> None:
        genesis = validators_genesis(4, empty_blocks=False)
        async with BftNet(tmp_path, genesis=genesis) as net:

            async def waiting() -> bool:
                return all(n.engine.status.step == "waiting" for n in net.nodes.values())

            await wait_until_async(waiting, within=30, message="every validator waiting")
            assert all(node.head == 0 for node in net.nodes.values())
            net.nodes[3].pool.add(transfer(0, 0))
            await net.wait_heights(1)
            block = net.nodes[0].chain.reader.block_by_number(1)
            assert block is not None and len(block.transactions) == 1

    run(scenario())
