"""The BFT round state machine, driven event by event (no clock, no network, no asyncio):
the happy path, locking and unlocking by proof of lock, nil rounds by timeout, round skip,
invalid and wrong-proposer proposals, equivocation; then a deterministic simulation of four
and seven validators over many seeds, with crashed, byzantine and partitioned validators,
checking agreement (no two blocks decided at one height) and no double signing."""

from __future__ import annotations

import pytest

from cairn.consensus.bft.messages import NIL, Vote, VoteKind
from cairn.consensus.bft.state import (
    BlockChecked,
    CastVote,
    CheckBlock,
    Decide,
    ProposalSeen,
    Propose,
    ReportEvidence,
    RoundState,
    ScheduleTimeout,
    Step,
    TimeoutFired,
    TimeoutKind,
    Timeouts,
    Validators,
    VoteSeen,
    start,
    step,
)
from cairn.consensus.bft.votes import SignedVote
from tests.support.bft_sim import Simulation, address, block_for

VALIDATORS = Validators(tuple(address(i) for i in range(4)))
ME = VALIDATORS.addresses[0]
V = b"\x0a" * 32
W = b"\x0b" * 32


def vote(kind: VoteKind, round_: int, block: bytes, who: int, height: int = 1) -> VoteSeen:
    signer = VALIDATORS.addresses[who]
    return VoteSeen(SignedVote(Vote(kind, height, round_, block, b"sig%d" % who), signer))


def proposal(round_: int, block: bytes, pol_round: int = -1) -> ProposalSeen:
    return ProposalSeen(1, round_, block, pol_round, VALIDATORS.proposer(1, round_))


def feed(state: RoundState, *events: object) -> tuple[RoundState, list[object]]:
    actions: list[object] = []
    for event in events:
        state, new = step(state, event)  # type: ignore[arg-type]
        actions.extend(new)
    return state, actions


def of_type(actions: list[object], kind: type) -> list[object]:
    return [a for a in actions if isinstance(a, kind)]


def fresh() -> RoundState:
    state, _ = start(1, VALIDATORS, ME, Timeouts())
    return state


def test_quorum_and_skip_sizes() -> None:
    assert (VALIDATORS.quorum, VALIDATORS.skip) == (3, 2)
    seven = Validators(tuple(address(i) for i in range(7)))
    assert (seven.quorum, seven.skip) == (5, 3)
    assert {VALIDATORS.proposer(1, r) for r in range(4)} == set(VALIDATORS.addresses)


def test_the_proposer_proposes_and_everyone_starts_a_propose_timeout() -> None:
    height = next(h for h in range(1, 10) if VALIDATORS.proposer(h, 0) == ME)
    _, actions = start(height, VALIDATORS, ME, Timeouts(propose=3.0))
    assert actions[0] == Propose(height, 0, None, -1)
    assert actions[1] == ScheduleTimeout(TimeoutKind.PROPOSE, height, 0, 3.0)


def test_happy_path_decides_with_the_precommit_signatures() -> None:
    state, actions = feed(fresh(), proposal(0, V))
    assert of_type(actions, CheckBlock) == [CheckBlock(1, V)]
    state, actions = feed(state, BlockChecked(1, V, True))
    assert of_type(actions, CastVote) == [CastVote(VoteKind.PREVOTE, 1, 0, V)]
    assert state.step == Step.PREVOTE
    state, actions = feed(state, *(vote(VoteKind.PREVOTE, 0, V, i) for i in range(3)))
    assert CastVote(VoteKind.PRECOMMIT, 1, 0, V) in actions
    assert (state.locked_round, state.locked_value) == (0, V)
    assert (state.valid_round, state.valid_value) == (0, V)
    state, actions = feed(state, *(vote(VoteKind.PRECOMMIT, 0, V, i) for i in (3, 1, 2)))
    decided = of_type(actions, Decide)
    assert decided == [Decide(1, 0, V, (b"sig1", b"sig2", b"sig3"))]
    assert state.step == Step.DECIDED
    # once decided, nothing moves this height any more
    assert step(state, TimeoutFired(TimeoutKind.PRECOMMIT, 1, 0)) == (state, ())


def test_an_invalid_block_gets_a_nil_prevote() -> None:
    _, actions = feed(fresh(), proposal(0, V), BlockChecked(1, V, False))
    assert of_type(actions, CastVote) == [CastVote(VoteKind.PREVOTE, 1, 0, NIL)]


def test_a_proposal_from_the_wrong_proposer_is_ignored() -> None:
    wrong = next(a for a in VALIDATORS.addresses if a != VALIDATORS.proposer(1, 0))
    state, actions = feed(fresh(), ProposalSeen(1, 0, V, -1, wrong), BlockChecked(1, V, True))
    assert actions == [] and state.proposals == {}


def test_timeouts_lead_through_nil_votes_to_the_next_round() -> None:
    state, actions = feed(fresh(), TimeoutFired(TimeoutKind.PROPOSE, 1, 0))
    assert of_type(actions, CastVote) == [CastVote(VoteKind.PREVOTE, 1, 0, NIL)]
    state, actions = feed(state, *(vote(VoteKind.PREVOTE, 0, NIL, i) for i in range(3)))
    assert CastVote(VoteKind.PRECOMMIT, 1, 0, NIL) in actions
    state, actions = feed(state, *(vote(VoteKind.PRECOMMIT, 0, NIL, i) for i in range(3)))
    assert of_type(actions, ScheduleTimeout) == [
        ScheduleTimeout(TimeoutKind.PRECOMMIT, 1, 0, Timeouts().seconds(TimeoutKind.PRECOMMIT, 0))
    ]
    state, actions = feed(state, TimeoutFired(TimeoutKind.PRECOMMIT, 1, 0))
    assert (state.round, state.step) == (1, Step.PROPOSE)
    timeout = of_type(actions, ScheduleTimeout)[0]
    assert isinstance(timeout, ScheduleTimeout)
    assert timeout.seconds > Timeouts().seconds(TimeoutKind.PROPOSE, 0)  # grows per round
    # a stale timeout of round 0 changes nothing in round 1
    assert feed(state, TimeoutFired(TimeoutKind.PROPOSE, 1, 0)) == (state, [])


def test_a_proposal_still_being_executed_is_prevoted_when_its_check_ends() -> None:
    # the proposal came in time; executing it outlasts the propose timeout
    state, actions = feed(fresh(), proposal(0, V), TimeoutFired(TimeoutKind.PROPOSE, 1, 0))
    assert of_type(actions, CastVote) == [] and state.step == Step.PROPOSE
    state, actions = feed(state, BlockChecked(1, V, True))
    assert of_type(actions, CastVote) == [CastVote(VoteKind.PREVOTE, 1, 0, V)]
    # an invalid one still gets nil once checked
    state, actions = feed(fresh(), proposal(0, V), TimeoutFired(TimeoutKind.PROPOSE, 1, 0))
    state, actions = feed(state, BlockChecked(1, V, False))
    assert of_type(actions, CastVote) == [CastVote(VoteKind.PREVOTE, 1, 0, NIL)]


def test_split_prevotes_wait_for_the_prevote_timeout() -> None:
    state, actions = feed(
        fresh(),
        proposal(0, V),
        BlockChecked(1, V, True),
        vote(VoteKind.PREVOTE, 0, V, 1),
        vote(VoteKind.PREVOTE, 0, NIL, 2),
        vote(VoteKind.PREVOTE, 0, W, 3),
    )
    assert of_type(actions, ScheduleTimeout)[-1] == ScheduleTimeout(
        TimeoutKind.PREVOTE, 1, 0, Timeouts().seconds(TimeoutKind.PREVOTE, 0)
    )
    assert state.step == Step.PREVOTE
    state, actions = feed(state, TimeoutFired(TimeoutKind.PREVOTE, 1, 0))
    assert of_type(actions, CastVote) == [CastVote(VoteKind.PRECOMMIT, 1, 0, NIL)]


def _locked_on_v_in_round_0() -> RoundState:
    state, _ = feed(
        fresh(),
        proposal(0, V),
        BlockChecked(1, V, True),
        *(vote(VoteKind.PREVOTE, 0, V, i) for i in range(3)),
        vote(VoteKind.PRECOMMIT, 0, V, 0),
        vote(VoteKind.PRECOMMIT, 0, NIL, 1),
        vote(VoteKind.PRECOMMIT, 0, NIL, 2),
        TimeoutFired(TimeoutKind.PRECOMMIT, 1, 0),
    )
    assert (state.round, state.locked_value, state.locked_round) == (1, V, 0)
    return state


def test_a_locked_validator_prevotes_nil_for_another_block() -> None:
    _, actions = feed(_locked_on_v_in_round_0(), proposal(1, W), BlockChecked(1, W, True))
    assert of_type(actions, CastVote) == [CastVote(VoteKind.PREVOTE, 1, 1, NIL)]


def test_a_locked_validator_prevotes_its_locked_block_again() -> None:
    _, actions = feed(_locked_on_v_in_round_0(), proposal(1, V))
    assert of_type(actions, CastVote) == [CastVote(VoteKind.PREVOTE, 1, 1, V)]


def test_a_later_proof_of_lock_unlocks() -> None:
    """Locked on V in round 0; a polka for W in round 1 (which this validator missed) and a
    round-2 proposal of W with pol_round 1: locked_round 0 <= 1, so it prevotes W."""
    state = _locked_on_v_in_round_0()
    state, _ = feed(
        state,
        TimeoutFired(TimeoutKind.PROPOSE, 1, 1),
        *(vote(VoteKind.PREVOTE, 1, W, i) for i in (1, 2, 3)),
    )
    # the polka for W in round 1 came without W's proposal: no lock change, nil precommit
    state, _ = feed(state, TimeoutFired(TimeoutKind.PREVOTE, 1, 1))
    state, _ = feed(state, *(vote(VoteKind.PRECOMMIT, 1, NIL, i) for i in (1, 2, 3)))
    state, _ = feed(state, TimeoutFired(TimeoutKind.PRECOMMIT, 1, 1))
    assert state.round == 2 and state.locked_value == V
    state, actions = feed(state, proposal(2, W, pol_round=1), BlockChecked(1, W, True))
    assert of_type(actions, CastVote) == [CastVote(VoteKind.PREVOTE, 1, 2, W)]


def test_a_later_polka_moves_the_lock_and_an_older_one_does_not_unlock() -> None:
    """Locked on V in round 0; in round 1 this validator prevotes nil (locked) but then sees
    a polka for W with W's proposal while still in the prevote step: the lock moves to W
    (Algorithm 1, line 36). A round-2 re-proposal of V citing the round-0 polka is older than
    the lock: nil."""
    state, actions = feed(
        _locked_on_v_in_round_0(),
        proposal(1, W),
        BlockChecked(1, W, True),
        *(vote(VoteKind.PREVOTE, 1, W, i) for i in (1, 2, 3)),
    )
    assert CastVote(VoteKind.PREVOTE, 1, 1, NIL) in actions
    assert CastVote(VoteKind.PRECOMMIT, 1, 1, W) in actions
    assert (state.locked_value, state.locked_round) == (W, 1)
    state, _ = feed(
        state,
        *(vote(VoteKind.PRECOMMIT, 1, NIL, i) for i in (1, 2)),
        TimeoutFired(TimeoutKind.PRECOMMIT, 1, 1),
    )
    assert state.round == 2
    _, actions = feed(state, proposal(2, V, pol_round=0))
    assert of_type(actions, CastVote) == [CastVote(VoteKind.PREVOTE, 1, 2, NIL)]


def test_f_plus_one_in_a_higher_round_skips_to_it() -> None:
    state, actions = feed(
        fresh(), vote(VoteKind.PREVOTE, 5, NIL, 1), vote(VoteKind.PRECOMMIT, 5, NIL, 2)
    )
    assert state.round == 5 and state.step == Step.PROPOSE
    assert any(isinstance(a, ScheduleTimeout) and a.round == 5 for a in actions)


def test_a_second_different_vote_is_evidence() -> None:
    state, actions = feed(fresh(), vote(VoteKind.PREVOTE, 0, V, 2), vote(VoteKind.PREVOTE, 0, W, 2))
    evidence = of_type(actions, ReportEvidence)
    assert len(evidence) == 1
    # each signed vote counts for its own block; the validator counts once in the total
    votes = state.votes(VoteKind.PREVOTE, 0)
    assert (votes.count(V), votes.count(W), votes.total()) == (1, 1, 1)
    # the same vote again is not evidence
    _, actions = feed(state, vote(VoteKind.PREVOTE, 0, V, 2))
    assert actions == []


def test_votes_of_strangers_and_far_rounds_are_ignored() -> None:
    stranger = VoteSeen(SignedVote(Vote(VoteKind.PREVOTE, 1, 0, V, b"x"), address(99)))
    state, actions = feed(fresh(), stranger, vote(VoteKind.PREVOTE, 10_000, V, 1))
    assert actions == [] and state.prevotes == {}


@pytest.mark.parametrize("seed", range(25))
def test_simulated_four_validators_agree_with_one_crashed(seed: int) -> None:
    sim = Simulation(4, seed=seed, crashed=[seed % 4])
    sim.run_until(120.0, heights=5)
    assert all(n.height_done() >= 5 for n in sim.honest())
    sim.assert_agreement()
    sim.assert_no_double_signing()


@pytest.mark.parametrize("seed", range(25))
def test_simulated_byzantine_validator_cannot_split_the_honest_ones(seed: int) -> None:
    sim = Simulation(4, seed=seed, byzantine=[seed % 4])
    sim.run_until(120.0, heights=4)
    assert all(n.height_done() >= 4 for n in sim.honest())
    sim.assert_agreement()
    sim.assert_no_double_signing()
    # every honest validator caught the equivocator, and nobody else
    for node in sim.honest():
        assert {e.validator for e in node.evidence} == {address(seed % 4)}


@pytest.mark.parametrize("seed", range(10))
def test_simulated_seven_validators_with_two_byzantine_and_an_invalid_proposer(seed: int) -> None:
    sim = Simulation(7, seed=seed, byzantine=[1, 4], invalid_proposers=[2])
    sim.run_until(200.0, heights=4)
    assert all(n.height_done() >= 4 for n in sim.honest())
    sim.assert_agreement()
    sim.assert_no_double_signing()
    invalid = {block_for(h, r, address(2)) for h in range(1, 6) for r in range(10)}
    assert not any(b in invalid for n in sim.honest() for b in n.decisions.values())


@pytest.mark.parametrize("seed", range(10))
def test_simulated_partition_two_two_halts_then_heals(seed: int) -> None:
    sim = Simulation(4, seed=seed)
    sim.run_until(5.0, heights=2)
    decided = [n.height_done() for n in sim.nodes]
    sim.partition = ({0, 1}, {2, 3})
    sim.run_until(sim.now + 30.0)
    # no side has a quorum: at most the height in flight at the cut can still finish
    assert all(n.height_done() <= d + 1 for n, d in zip(sim.nodes, decided, strict=True))
    stalled = max(n.height_done() for n in sim.nodes)
    sim.heal()
    sim.run_until(sim.now + 120.0, heights=stalled + 3)
    assert all(n.height_done() >= stalled + 3 for n in sim.nodes)
    sim.assert_agreement()
    sim.assert_no_double_signing()
