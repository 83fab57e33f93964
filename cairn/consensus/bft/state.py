"""The BFT round state machine: `step(state, event) -> (state, actions)`, a pure function.

It follows the Tendermint algorithm (Buchman, Kwon, Milosevic, "The latest gossip on BFT
consensus", 2018, Algorithm 1), with equal voting power:
 - the proposer of (height, round) proposes its valid value if it has one, else a new block;
 - a validator prevotes a proposal it finds valid unless it is locked on another block (a
   proposal that re-proposes an earlier round's value with a proof of lock — more than 2/3
   prevotes in that round — may unlock it); otherwise it prevotes nil;
 - more than 2/3 prevotes for a valid block ("a polka") lock it and make the validator
   precommit it; more than 2/3 prevotes for nil make it precommit nil;
 - more than 2/3 precommits for a block decide it; more than 2/3 precommits for anything
   start the precommit timeout, after which the next round starts;
 - f+1 validators seen in a higher round make a validator skip to it;
 - timeouts grow with the round.
Everything impure — building and executing blocks, signing, the WAL, timers, the network — is
the engine's, driven by the actions returned here; results come back as events. So tests can
drive this module deterministically, event by event.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import IntEnum

from eth_typing import Address

from cairn.consensus.bft.messages import NIL, VoteKind
from cairn.consensus.bft.votes import Evidence, SignedVote, VoteSet

# Votes further ahead than this many rounds are ignored (a faulty validator could otherwise
# make every node keep vote sets for arbitrarily many rounds).
MAX_ROUNDS_AHEAD = 64


class Step(IntEnum):
    PROPOSE = 0
    PREVOTE = 1
    PRECOMMIT = 2
    DECIDED = 3


class TimeoutKind(IntEnum):
    PROPOSE = 0
    PREVOTE = 1
    PRECOMMIT = 2


@dataclass(frozen=True)
class Timeouts:
    """Seconds for round 0, and what each later round adds (CometBFT's defaults, scaled)."""

    propose: float = 2.0
    propose_delta: float = 0.5
    vote: float = 1.0
    vote_delta: float = 0.5

    def seconds(self, kind: TimeoutKind, round_: int) -> float:
        if kind == TimeoutKind.PROPOSE:
            return self.propose + self.propose_delta * round_
        return self.vote + self.vote_delta * round_


@dataclass(frozen=True)
class Validators:
    """The validator set: equal power, proposer by round robin over the sorted addresses."""

    addresses: tuple[Address, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "addresses", tuple(sorted(self.addresses)))

    @property
    def size(self) -> int:
        return len(self.addresses)

    @property
    def quorum(self) -> int:
        """More than two thirds: the votes a polka, a lock or a decision needs."""
        return self.size * 2 // 3 + 1

    @property
    def skip(self) -> int:
        """More than one third (f + 1): at least one of them is correct."""
        return self.size // 3 + 1

    def proposer(self, height: int, round_: int) -> Address:
        return self.addresses[(height + round_) % self.size]

    def __contains__(self, address: object) -> bool:
        return address in self.addresses


# ---------------------------------------------------------------------------- events
@dataclass(frozen=True)
class ProposalSeen:
    """A proposal whose signature by `proposer` was checked (the block itself not yet)."""

    height: int
    round: int
    block_hash: bytes
    pol_round: int
    proposer: Address


@dataclass(frozen=True)
class BlockChecked:
    """The engine executed a proposed block: `valid` when every check held."""

    height: int
    block_hash: bytes
    valid: bool


@dataclass(frozen=True)
class VoteSeen:
    """A vote whose signature was checked."""

    signed: SignedVote


@dataclass(frozen=True)
class TimeoutFired:
    kind: TimeoutKind
    height: int
    round: int


Event = ProposalSeen | BlockChecked | VoteSeen | TimeoutFired


# ---------------------------------------------------------------------------- actions
@dataclass(frozen=True)
class Propose:
    """Broadcast a proposal for (height, round): `block_hash` is the valid value to propose
    again (with `pol_round`), or None to build a new block."""

    height: int
    round: int
    block_hash: bytes | None
    pol_round: int


@dataclass(frozen=True)
class CheckBlock:
    """Execute the proposed block `block_hash` and answer with `BlockChecked`."""

    height: int
    block_hash: bytes


@dataclass(frozen=True)
class CastVote:
    """Sign and broadcast a vote (NIL: for no block), then hand it back as `VoteSeen`."""

    kind: VoteKind
    height: int
    round: int
    block_hash: bytes


@dataclass(frozen=True)
class ScheduleTimeout:
    kind: TimeoutKind
    height: int
    round: int
    seconds: float


@dataclass(frozen=True)
class Decide:
    """`block_hash` is final at `height`: commit it with the precommits of `round`."""

    height: int
    round: int
    block_hash: bytes
    precommits: tuple[bytes, ...]


@dataclass(frozen=True)
class ReportEvidence:
    evidence: Evidence


Action = Propose | CheckBlock | CastVote | ScheduleTimeout | Decide | ReportEvidence


# ---------------------------------------------------------------------------- state
@dataclass(frozen=True)
class RoundState:
    height: int
    validators: Validators
    me: Address | None  # None: a node that follows consensus without voting
    timeouts: Timeouts = field(default_factory=Timeouts)
    round: int = 0
    step: Step = Step.PROPOSE
    locked_round: int = -1
    locked_value: bytes | None = None
    valid_round: int = -1
    valid_value: bytes | None = None
    proposals: Mapping[int, ProposalSeen] = field(default_factory=dict)
    checked: Mapping[bytes, bool] = field(default_factory=dict)  # block hash -> valid
    checking: frozenset[bytes] = frozenset()  # blocks handed to the engine to execute
    prevotes: Mapping[int, VoteSet] = field(default_factory=dict)
    precommits: Mapping[int, VoteSet] = field(default_factory=dict)
    done: frozenset[tuple[str, int]] = frozenset()  # "for the first time" rules fired
    decided: bytes | None = None

    def votes(self, kind: VoteKind, round_: int) -> VoteSet:
        book = self.prevotes if kind == VoteKind.PREVOTE else self.precommits
        return book.get(round_, VoteSet())

    def is_valid(self, block_hash: bytes) -> bool | None:
        return self.checked.get(block_hash)


Transition = tuple[RoundState, tuple[Action, ...]]


def start(
    height: int, validators: Validators, me: Address | None, timeouts: Timeouts
) -> Transition:
    """The state at the start of `height`, round 0, and what to do first."""
    return _start_round(RoundState(height, validators, me, timeouts), 0)


def step(state: RoundState, event: Event) -> Transition:
    """Apply one event; events for another height are ignored (the engine routes them)."""
    if _height_of(event) != state.height or state.step == Step.DECIDED:
        return state, ()
    actions: list[Action] = []
    if isinstance(event, ProposalSeen):
        state = _on_proposal(state, event, actions)
    elif isinstance(event, BlockChecked):
        if event.block_hash not in state.checked:
            checked = dict(state.checked)
            checked[event.block_hash] = event.valid
            state = replace(state, checked=checked)
    elif isinstance(event, VoteSeen):
        state = _on_vote(state, event.signed, actions)
    else:
        state = _on_timeout(state, event, actions)
    state = _settle(state, actions)
    return state, tuple(actions)


def _height_of(event: Event) -> int:
    if isinstance(event, VoteSeen):
        return event.signed.vote.height
    return event.height


def _on_proposal(state: RoundState, event: ProposalSeen, actions: list[Action]) -> RoundState:
    if event.proposer != state.validators.proposer(event.height, event.round):
        return state  # the engine refuses these before they get here; never trust it
    if event.round in state.proposals or event.round > state.round + MAX_ROUNDS_AHEAD:
        return state
    proposals = dict(state.proposals)
    proposals[event.round] = event
    state = replace(state, proposals=proposals)
    v = event.block_hash
    if v not in state.checked and v not in state.checking:
        state = replace(state, checking=state.checking | {v})
        actions.append(CheckBlock(state.height, v))
    return state


def _on_vote(state: RoundState, signed: SignedVote, actions: list[Action]) -> RoundState:
    vote = signed.vote
    if signed.signer not in state.validators or vote.round > state.round + MAX_ROUNDS_AHEAD:
        return state
    votes, evidence = state.votes(vote.kind, vote.round).add(signed)
    if evidence is not None:
        actions.append(ReportEvidence(evidence))
    if vote.kind == VoteKind.PREVOTE:
        prevotes = dict(state.prevotes)
        prevotes[vote.round] = votes
        return replace(state, prevotes=prevotes)
    precommits = dict(state.precommits)
    precommits[vote.round] = votes
    return replace(state, precommits=precommits)


def _on_timeout(state: RoundState, event: TimeoutFired, actions: list[Action]) -> RoundState:
    if event.round != state.round:
        return state
    if event.kind == TimeoutKind.PROPOSE and state.step == Step.PROPOSE:
        if _checking_this_rounds_proposal(state):
            # It came in time and is being executed: its check decides the prevote, not the
            # clock (CometBFT checks a complete proposal before its timeout can fire). A full
            # block takes longer to execute than the propose timeout on a busy validator.
            return state
        return _vote(state, VoteKind.PREVOTE, NIL, actions)
    if event.kind == TimeoutKind.PREVOTE and state.step == Step.PREVOTE:
        return _vote(state, VoteKind.PRECOMMIT, NIL, actions)
    if event.kind == TimeoutKind.PRECOMMIT:
        state, started = _start_round(state, state.round + 1)
        actions.extend(started)
    return state


def _checking_this_rounds_proposal(state: RoundState) -> bool:
    proposal = state.proposals.get(state.round)
    if proposal is None:
        return False
    return proposal.block_hash in state.checking and state.is_valid(proposal.block_hash) is None


def _settle(state: RoundState, actions: list[Action]) -> RoundState:
    """Apply every rule whose condition now holds, until none does."""
    for _ in range(64):  # each pass changes step or round or marks a rule done
        before = state
        state = _rules(state, actions)
        if state is before or state.step == Step.DECIDED:
            return state
    return state


def _rules(s: RoundState, actions: list[Action]) -> RoundState:
    quorum = s.validators.quorum
    # Decide: a proposal for v in some round r, v valid, > 2/3 precommits for v in r.
    for r, seen in s.proposals.items():
        v = seen.block_hash
        precommits = s.votes(VoteKind.PRECOMMIT, r)
        if precommits.count(v) >= quorum and s.is_valid(v):
            actions.append(Decide(s.height, r, v, precommits.signatures_for(v)))
            return replace(s, step=Step.DECIDED, decided=v)
    # Skip to a higher round where f + 1 validators are already.
    for r in sorted({*s.prevotes, *s.precommits}):
        if r > s.round and _seen_in(s, r) >= s.validators.skip:
            started, new = _start_round(s, r)
            actions.extend(new)
            return started
    r = s.round
    proposal = s.proposals.get(r)
    prevotes = s.votes(VoteKind.PREVOTE, r)
    if s.step == Step.PROPOSE and proposal is not None:
        v, vr = proposal.block_hash, proposal.pol_round
        valid = s.is_valid(v)
        if valid is not None:
            if vr == -1:
                accept = valid and (s.locked_round == -1 or s.locked_value == v)
                return _vote(s, VoteKind.PREVOTE, v if accept else NIL, actions)
            if 0 <= vr < r and s.votes(VoteKind.PREVOTE, vr).count(v) >= quorum:
                accept = valid and (s.locked_round <= vr or s.locked_value == v)
                return _vote(s, VoteKind.PREVOTE, v if accept else NIL, actions)
    if s.step == Step.PREVOTE and prevotes.total() >= quorum and ("prevote-wait", r) not in s.done:
        actions.append(_timeout(s, TimeoutKind.PREVOTE))
        return _mark(s, "prevote-wait", r)
    if (
        s.step >= Step.PREVOTE
        and proposal is not None
        and s.is_valid(proposal.block_hash)
        and prevotes.count(proposal.block_hash) >= quorum
        and ("polka", r) not in s.done
    ):
        v = proposal.block_hash
        s = replace(_mark(s, "polka", r), valid_value=v, valid_round=r)
        if s.step == Step.PREVOTE:
            s = replace(s, locked_value=v, locked_round=r)
            s = _vote(s, VoteKind.PRECOMMIT, v, actions)
        return s
    if s.step == Step.PREVOTE and prevotes.count(NIL) >= quorum:
        return _vote(s, VoteKind.PRECOMMIT, NIL, actions)
    if s.votes(VoteKind.PRECOMMIT, r).total() >= quorum and ("precommit-wait", r) not in s.done:
        actions.append(_timeout(s, TimeoutKind.PRECOMMIT))
        return _mark(s, "precommit-wait", r)
    return s


def _seen_in(s: RoundState, round_: int) -> int:
    """Distinct validators with a vote (or the proposal) in `round_`."""
    seen = set(s.votes(VoteKind.PREVOTE, round_).first)
    seen |= set(s.votes(VoteKind.PRECOMMIT, round_).first)
    proposal = s.proposals.get(round_)
    if proposal is not None:
        seen.add(proposal.proposer)
    return len(seen)


def _start_round(s: RoundState, round_: int) -> Transition:
    s = replace(s, round=round_, step=Step.PROPOSE)
    actions: list[Action] = []
    if s.me is not None and s.validators.proposer(s.height, round_) == s.me:
        actions.append(Propose(s.height, round_, s.valid_value, s.valid_round))
    actions.append(_timeout(s, TimeoutKind.PROPOSE))
    return s, tuple(actions)


def _vote(s: RoundState, kind: VoteKind, block_hash: bytes, actions: list[Action]) -> RoundState:
    if s.me is not None:
        actions.append(CastVote(kind, s.height, s.round, block_hash))
    return replace(s, step=Step.PREVOTE if kind == VoteKind.PREVOTE else Step.PRECOMMIT)


def _timeout(s: RoundState, kind: TimeoutKind) -> ScheduleTimeout:
    return ScheduleTimeout(kind, s.height, s.round, s.timeouts.seconds(kind, s.round))


def _mark(s: RoundState, rule: str, round_: int) -> RoundState:
    return replace(s, done=s.done | {(rule, round_)})
