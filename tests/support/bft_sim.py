"""A deterministic simulation of n BFT validators driving the real state machine
(`cairn.consensus.bft.state.step`) over a simulated network and clock.

The network delivers every message in a seeded random order, may hold messages across a
partition until it heals, and drops a crashed validator's traffic. Byzantine validators send
two proposals or two votes where an honest one sends one. A decided block is also announced
as committed (validators gossip committed blocks and serve them by range): a validator still
at that height adopts it and moves on, as the engine does when block sync applies a block.
Blocks are hashes; the scenario decides which are valid. Nothing here is asyncio: the
simulation is a loop over a message queue and a timer heap, so a seed replays exactly.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterable
from dataclasses import dataclass, field

from eth_typing import Address
from eth_utils import keccak

from cairn.consensus.bft.messages import NIL, Vote, VoteKind
from cairn.consensus.bft.state import (
    Action,
    BlockChecked,
    CastVote,
    CheckBlock,
    Decide,
    Event,
    ProposalSeen,
    Propose,
    ReportEvidence,
    RoundState,
    ScheduleTimeout,
    TimeoutFired,
    Timeouts,
    Validators,
    VoteSeen,
    start,
    step,
)
from cairn.consensus.bft.votes import Evidence, SignedVote

BLOCK_PERIOD = 1.0
NETWORK_DELAY = 0.01


def address(i: int) -> Address:
    return Address(bytes([i + 1]) * 20)


def block_for(height: int, round_: int, proposer: Address, variant: int = 0) -> bytes:
    return keccak(b"block %d %d %d " % (height, round_, variant) + proposer)


@dataclass
class SimNode:
    index: int
    me: Address
    state: RoundState
    behaviour: str = "honest"  # honest | crashed | equivocate
    decisions: dict[int, bytes] = field(default_factory=dict)  # by its own state machine
    adopted: dict[int, bytes] = field(default_factory=dict)  # committed elsewhere, synced
    signed: list[Vote] = field(default_factory=list)
    evidence: list[Evidence] = field(default_factory=list)

    def height_done(self) -> int:
        """Heights this validator has finished, deciding or adopting."""
        return len(self.decisions.keys() | self.adopted.keys())


class Simulation:
    """Byzantine validators send two proposals or two votes where an honest one sends one,
    both to everyone, in opposite orders to the two halves of the network (so each half may
    count a different one first, and every node can catch the equivocation)."""

    def __init__(
        self,
        n: int,
        *,
        seed: int,
        byzantine: Iterable[int] = (),
        crashed: Iterable[int] = (),
        invalid_proposers: Iterable[int] = (),
        timeouts: Timeouts | None = None,
    ) -> None:
        self.rng = random.Random(seed)
        self.validators = Validators(tuple(address(i) for i in range(n)))
        self.timeouts = timeouts or Timeouts(propose=1.0, propose_delta=0.5, vote=0.5)
        self.now = 0.0
        self._seq = 0
        self._queue: list[
            tuple[float, int, int, Event | _NextHeight | _Committed]
        ] = []  # (time, seq, node, event)
        self.invalid_proposers = {address(i) for i in invalid_proposers}
        self.invalid_blocks: set[bytes] = set()
        self.partition: tuple[set[int], set[int]] | None = None
        self.held: list[tuple[int, int, Event | _Committed]] = []  # (from, to, event)
        byzantine, crashed = set(byzantine), set(crashed)
        self.nodes = []
        for i, me in enumerate(self.validators.addresses):
            behaviour = "crashed" if i in crashed else "equivocate" if i in byzantine else "honest"
            state, actions = start(1, self.validators, me, self.timeouts)
            node = SimNode(i, me, state, behaviour)
            self.nodes.append(node)
            self._act(node, actions)

    # ------------------------------------------------------------ plumbing
    def _push(self, at: float, to: int, event: Event | _NextHeight | _Committed) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (at, self._seq, to, event))

    def _send(self, sender: int, to: int, event: Event | _Committed) -> None:
        if self.nodes[sender].behaviour == "crashed":
            return
        if self.partition is not None and sender != to:
            side = self.partition[0]
            if (sender in side) != (to in side):
                self.held.append((sender, to, event))
                return
        self._push(self.now + NETWORK_DELAY * (1 + self.rng.random()), to, event)

    def _broadcast(self, sender: int, event: Event | _Committed, targets: Iterable[int]) -> None:
        for to in targets:
            self._send(sender, to, event)

    def heal(self) -> None:
        self.partition = None
        held, self.held = self.held, []
        for sender, to, event in held:
            self._send(sender, to, event)

    def _act(self, node: SimNode, actions: Iterable[Action]) -> None:
        halves = (
            [i for i in range(len(self.nodes)) if i % 2 == 0],
            [i for i in range(len(self.nodes)) if i % 2 == 1],
        )
        for action in actions:
            if isinstance(action, Propose):
                if action.block_hash is not None:
                    variants = [action.block_hash]
                elif node.behaviour == "equivocate":
                    variants = [block_for(action.height, action.round, node.me, v) for v in (1, 2)]
                else:
                    variants = [block_for(action.height, action.round, node.me)]
                if node.me in self.invalid_proposers:
                    self.invalid_blocks.update(variants)
                for order, half in enumerate(halves):
                    # an equivocator sends both blocks to everyone, in a different order to
                    # each half, so each half may see a different one first
                    for block in variants if order == 0 else variants[::-1]:
                        seen = ProposalSeen(
                            action.height, action.round, block, action.pol_round, node.me
                        )
                        self._broadcast(node.index, seen, half)
            elif isinstance(action, CheckBlock):
                valid = action.block_hash not in self.invalid_blocks
                self._push(
                    self.now, node.index, BlockChecked(action.height, action.block_hash, valid)
                )
            elif isinstance(action, CastVote):
                hashes = [action.block_hash]
                if node.behaviour == "equivocate" and action.block_hash != NIL:
                    hashes = [action.block_hash, NIL]
                signature = b"sig-%d" % node.index
                votes = [
                    Vote(action.kind, action.height, action.round, h, signature) for h in hashes
                ]
                node.signed.extend(votes)
                for order, half in enumerate(halves):
                    for vote in votes if order == 0 else votes[::-1]:
                        self._broadcast(node.index, VoteSeen(SignedVote(vote, node.me)), half)
            elif isinstance(action, ScheduleTimeout):
                self._push(
                    self.now + action.seconds,
                    node.index,
                    TimeoutFired(action.kind, action.height, action.round),
                )
            elif isinstance(action, Decide):
                assert len(action.precommits) >= self.validators.quorum
                node.decisions[action.height] = action.block_hash
                self._push(self.now + BLOCK_PERIOD, node.index, _NextHeight(action.height + 1))
                committed = _Committed(action.height, action.block_hash)
                self._broadcast(node.index, committed, range(len(self.nodes)))
            elif isinstance(action, ReportEvidence):
                node.evidence.append(action.evidence)

    # ------------------------------------------------------------ running
    def run_until(self, deadline: float, *, heights: int | None = None) -> None:
        """Deliver events in time order until `deadline` (simulated seconds), or until every
        honest node decided `heights` heights."""
        while self._queue and self._queue[0][0] <= deadline:
            if heights is not None and all(len(n.decisions) >= heights for n in self.honest()):
                return
            at, _, index, event = heapq.heappop(self._queue)
            self.now = max(self.now, at)
            node = self.nodes[index]
            if node.behaviour == "crashed":
                continue
            if isinstance(event, _NextHeight):
                if event.height != node.state.height + 1:
                    continue  # already moved on by adopting a committed block
                node.state, actions = start(event.height, self.validators, node.me, self.timeouts)
            elif isinstance(event, _Committed):
                if event.height != node.state.height or event.height in node.decisions:
                    continue
                node.adopted[event.height] = event.block
                node.state, actions = start(
                    event.height + 1, self.validators, node.me, self.timeouts
                )
            else:
                node.state, actions = step(node.state, event)
            self._act(node, actions)
        self.now = max(self.now, deadline)

    def honest(self) -> list[SimNode]:
        return [n for n in self.nodes if n.behaviour == "honest"]

    def assert_agreement(self) -> None:
        """No two honest validators decided different blocks at one height."""
        by_height: dict[int, set[bytes]] = {}
        for node in self.honest():
            for height, block in [*node.decisions.items(), *node.adopted.items()]:
                by_height.setdefault(height, set()).add(block)
        for height, blocks in by_height.items():
            assert len(blocks) == 1, f"height {height}: {len(blocks)} different blocks decided"

    def assert_no_double_signing(self) -> None:
        """No honest validator signed two different votes for one (height, round, kind)."""
        for node in self.honest():
            seen: dict[tuple[int, int, int], bytes] = {}
            for vote in node.signed:
                key = (vote.height, vote.round, int(vote.kind))
                assert seen.setdefault(key, vote.block_hash) == vote.block_hash, key


@dataclass(frozen=True)
class _NextHeight:
    height: int


@dataclass(frozen=True)
class _Committed:
    height: int
    block: bytes


__all__ = ["Simulation", "VoteKind", "address", "block_for"]
