"""`BftEngine`: the single writer of a validator's consensus.

One task owns the round state and reads one queue: peer messages, its own messages, timeouts,
executed blocks and blocks applied by sync. Each input is appended to the WAL before it is
handled (own proposals and votes fsync'd, and checked by the sign guard, before they are
sent); the pure state machine (`state.step`) turns it into actions, which this module carries
out: build a block to propose, execute a proposed block, sign and send a vote, start a timer,
apply a decided block with its precommits as the commit (`BlockApplier.apply`), keep
evidence. At start the WAL of the height in progress is replayed, so a restarted validator
resumes with its locks and never signs against what it signed before.

Talks to the network through `ConsensusTransport` (bytes out) and `on_message` (bytes in);
never imports p2p.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Protocol

from eth.abc import BlockAPI
from eth_keys.datatypes import PrivateKey
from eth_typing import Address

from cairn.chain.apply import BlockApplier
from cairn.chain.bundle import BlockBundle, bundle_from_parts
from cairn.chain.chain import Chain
from cairn.chain.commit import Commit
from cairn.chain.events import BlockCommitted
from cairn.consensus.bft import state as sm
from cairn.consensus.bft.messages import (
    NIL,
    InvalidConsensusMessage,
    Message,
    Proposal,
    Vote,
    VoteKind,
    decode_message,
    encode_message,
    sign_proposal,
    sign_vote,
)
from cairn.consensus.bft.votes import Evidence, SignedVote
from cairn.consensus.bft.wal import (
    DoubleSign,
    LastSigned,
    Record,
    RecordKind,
    SignGuard,
    SignStep,
    Wal,
)
from cairn.errors import CairnError, Equivocation, InvalidBlock
from cairn.execution.builder import BlockEnv, BlockResult
from cairn.storage.store import ChainStore
from cairn.txpool.pool import TxPool

log = logging.getLogger("cairn.bft")

# A proposal must fit one gossip message (py-libp2p splits or drops RPCs over 1 MiB).
MAX_PROPOSAL_BYTES = 900_000
CANDIDATE_GAS_FACTOR = 3
MAX_CANDIDATES = 20_000
# A proposed block may be this far ahead of our clock (clocks of validators drift).
MAX_CLOCK_DRIFT_SECONDS = 15
# Messages for the next heights are kept until we get there (a validator a little ahead
# votes before we finish); at most this many.
MAX_FUTURE_MESSAGES = 4096
FUTURE_HEIGHTS = 2


def judge_message(
    data: bytes, chain_id: int, validators: sm.Validators, next_height: int
) -> Message | None:
    """Decode and check a consensus message from the network: signed by a validator (a
    proposal by its round's proposer) and for a height near `next_height`; None for a stale
    or far-ahead one (dropped, not relayed); `InvalidConsensusMessage` for anything that
    could only come from a faulty or hostile sender."""
    message = decode_message(data)
    if not next_height - 1 <= message.height <= next_height + FUTURE_HEIGHTS:
        return None
    signer = message.signer(chain_id)
    if signer not in validators:
        raise InvalidConsensusMessage(
            f"{message.describe()} signed by 0x{signer.hex()}, who is not a validator"
        )
    if isinstance(message, Proposal):
        expected = validators.proposer(message.height, message.round)
        if signer != expected:
            raise InvalidConsensusMessage(
                f"{message.describe()} signed by 0x{signer.hex()}, not the round's proposer "
                f"0x{expected.hex()}"
            )
    return message


def _step_of(message: Message) -> SignStep:
    if isinstance(message, Proposal):
        return SignStep.PROPOSAL
    return SignStep.PREVOTE if message.kind == VoteKind.PREVOTE else SignStep.PRECOMMIT


class ConsensusTransport(Protocol):
    """The network as consensus sees it."""

    def broadcast(self, data: bytes) -> None: ...

    def penalise(self, peer: str, error: CairnError) -> None: ...


class Outbox:
    """Consensus messages on their way out, and penalties for the peers that published
    faulty ones: the engine writes, the transport that connects (p2p, or a test network)
    acts. Nothing is queued before one connects."""

    def __init__(self) -> None:
        self._sinks: list[Callable[[bytes], None]] = []
        self._penalisers: list[Callable[[str, CairnError], None]] = []

    def connect(self, sink: Callable[[bytes], None]) -> None:
        self._sinks.append(sink)

    def connect_penaliser(self, penalise: Callable[[str, CairnError], None]) -> None:
        self._penalisers.append(penalise)

    def broadcast(self, data: bytes) -> None:
        for sink in self._sinks:
            sink(data)

    def penalise(self, peer: str, error: CairnError) -> None:
        for penalise in self._penalisers:
            penalise(peer, error)


class EquivocationWatch:
    """Signed consensus messages seen on the wire, by (height, round, step, signer), so the
    peer that published a second, different one is penalised at once — whatever consensus
    later makes of it (the messages are still relayed: they are the evidence)."""

    def __init__(self, limit: int = 100_000) -> None:
        self._limit = limit
        self._seen: dict[tuple[int, int, int, bytes], bytes] = {}

    def observe(self, message: Message, signer: Address) -> Equivocation | None:
        key = (message.height, message.round, int(_step_of(message)), bytes(signer))
        first = self._seen.setdefault(key, message.block_hash)
        if len(self._seen) > self._limit:
            newest = max(height for height, _, _, _ in self._seen)
            self._seen = {k: v for k, v in self._seen.items() if k[0] >= newest - 1}
        if first == message.block_hash:
            return None
        return Equivocation(
            bytes(signer),
            f"{message.describe()} after 0x{first.hex()[:16] or 'nil'} at the same step",
        )


class ConsensusRelay:
    """What a full node of a validator network does with consensus gossip: check it, relay
    what holds, penalise what could only come from a faulty sender (and the publisher of an
    equivocation)."""

    def __init__(self, chain: Chain, penalties: Outbox) -> None:
        self._chain = chain
        self._validators = sm.Validators(chain.genesis.consensus.producers)
        self._penalties = penalties
        self._watch = EquivocationWatch()

    async def on_message(self, data: bytes, origin: str = "") -> bool:
        next_height = self._chain.store.head.number + 1
        message = judge_message(data, self._chain.chain_id, self._validators, next_height)
        if message is None:
            return False
        conflict = self._watch.observe(message, message.signer(self._chain.chain_id))
        if conflict is not None and origin:
            self._penalties.penalise(origin, conflict)
        return True


class EvidenceSink(Protocol):
    """Where evidence of equivocation goes (persisted, shown over RPC and metrics)."""

    def save_evidence(self, evidence: Evidence) -> None: ...


class StoredEvidence:
    """Evidence kept in the chain's LevelDB, one record per (height, round, kind, signer)."""

    def __init__(self, store: ChainStore) -> None:
        self._store = store

    def save_evidence(self, evidence: Evidence) -> None:
        vote = evidence.first.vote
        self._store.save_evidence(
            vote.height, vote.round, int(vote.kind), bytes(evidence.validator), evidence.encode()
        )

    def load(self, limit: int = 1000) -> list[Evidence]:
        return [Evidence.decode(raw) for raw in self._store.load_evidence(limit)]


@dataclass(frozen=True)
class BftConfig:
    key: PrivateKey
    coinbase: Address
    gas_limit: int
    block_time: float  # the period between heights
    empty_blocks: bool  # False: a height starts when transactions wait (or a peer starts it)
    timeouts: sm.Timeouts = field(default_factory=sm.Timeouts)
    extra_data: bytes = b"cairn"


@dataclass(frozen=True)
class _Timeout:
    kind: sm.TimeoutKind
    height: int
    round: int


@dataclass(frozen=True)
class _Incoming:
    data: bytes


@dataclass(frozen=True)
class _Checked:
    height: int
    block_hash: bytes
    result: BlockResult | None  # None: invalid
    reason: str = ""


@dataclass(frozen=True)
class _Built:
    height: int
    round: int
    bundle: bytes
    result: BlockResult


@dataclass(frozen=True)
class _HeadMoved:
    number: int


@dataclass(frozen=True)
class _Start:
    height: int


@dataclass(frozen=True)
class _Resend:
    pass


_Input = _Timeout | _Incoming | _Checked | _Built | _HeadMoved | _Start | _Resend


@dataclass
class ConsensusStatus:
    """What health, metrics and RPC show."""

    height: int = 0
    round: int = 0
    step: str = "starting"
    last_commit_at: float | None = None  # wall time
    rounds_last_height: int = 0
    votes_received: int = 0
    proposals_made: int = 0
    missed_proposals: dict[str, int] = field(default_factory=dict)  # proposer -> rounds
    equivocations: int = 0
    replayed: int = 0  # WAL records replayed at start
    stalled: int = 0  # resend ticks spent in the current (height, round) so far


class BftEngine:
    def __init__(
        self,
        applier: BlockApplier,
        pool: TxPool,
        writer: Executor,
        config: BftConfig,
        transport: ConsensusTransport,
        wal: Wal,
        guard: SignGuard,
        evidence: StoredEvidence,
    ) -> None:
        self._applier = applier
        self._chain = applier.chain
        self._pool = pool
        self._writer = writer
        self.config = config
        self._transport = transport
        self._wal = wal
        self._guard = guard
        self._evidence: EvidenceSink = evidence
        self._watch = EquivocationWatch()
        self._evidence_store = evidence
        self.me = Address(config.key.public_key.to_canonical_address())
        self.validators = sm.Validators(self._chain.genesis.consensus.producers)
        self._chain_id = self._chain.chain_id
        self._queue: asyncio.Queue[_Input] = asyncio.Queue()
        self._state: sm.RoundState | None = None
        self._proposals: dict[bytes, Proposal] = {}  # this height, by block hash
        self._executed: dict[bytes, BlockResult] = {}  # this height's valid blocks
        self._own: list[Message] = []  # what we signed at this height (re-sent when stuck)
        self._future: deque[bytes] = deque(maxlen=MAX_FUTURE_MESSAGES)
        self._timers: list[asyncio.TimerHandle] = []
        self._task: asyncio.Task[None] | None = None
        self._building: asyncio.Task[None] | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Future[None]] = set()  # blocks being executed
        self._replaying = False
        self._started = False  # round 0 of the current height has begun
        self._pending: list[sm.Event] = []  # arrived before round 0 began
        self._waiting_for_txs: asyncio.Future[None] | None = None
        self._decided: sm.Decide | None = None
        self._height_started_at = time.monotonic()
        self.status = ConsensusStatus()
        applier.events.subscribe(self._on_block)
        pool.subscribe(self._on_txs)

    # ------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="bft")
        self._heartbeat = asyncio.create_task(self._resend_loop(), name="bft-resend")

    async def _resend_loop(self) -> None:
        """Ask the writer, now and then, to send this round's own messages again. Gossip may
        lose messages and a partition drops them; peers that missed them (or that were cut
        off) can only get them again this way (CometBFT's gossip routines do the same)."""
        period = max(0.1, self.config.timeouts.vote)
        while True:
            await asyncio.sleep(period)
            self._queue.put_nowait(_Resend())

    async def stop(self) -> None:
        for timer in self._timers:
            timer.cancel()
        for task in (self._building, self._task, self._heartbeat, *self._tasks):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._wal.close()

    # ------------------------------------------------------------ inputs
    async def on_message(self, data: bytes, origin: str = "") -> bool:
        """A gossiped consensus message: check it before it is relayed (True: relay it).
        Raise `InvalidConsensusMessage` for one that is malformed or badly signed (its sender
        is penalised); stale ones are dropped quietly. `origin`, the peer that published it,
        is penalised for an equivocation (which is still relayed and kept as evidence)."""
        message = judge_message(
            data, self._chain_id, self.validators, self._chain.store.head.number + 1
        )
        if message is None:
            return False
        conflict = self._watch.observe(message, message.signer(self._chain_id))
        if conflict is not None and origin:
            self._transport.penalise(origin, conflict)
        self._queue.put_nowait(_Incoming(data))
        return True

    def _on_block(self, event: BlockCommitted) -> None:
        self._queue.put_nowait(_HeadMoved(event.number))

    def _on_txs(self, txs: Sequence[Any]) -> None:
        waiting = self._waiting_for_txs
        if txs and waiting is not None and not waiting.done():
            waiting.set_result(None)

    # ------------------------------------------------------------ the single writer
    async def _run(self) -> None:
        height = self._chain.store.head.number + 1
        await self._enter_height(height, replay=True)
        while True:
            item = await self._queue.get()
            try:
                await self._handle(item)
            except asyncio.CancelledError:
                raise
            except CairnError as exc:
                log.warning("consensus: %s", exc)

    async def _handle(self, item: _Input) -> None:
        state = self._state
        if isinstance(item, _HeadMoved):
            if state is None or item.number >= state.height:
                await self._enter_height(item.number + 1, replay=False)
            return
        if isinstance(item, _Start):
            if state is not None and item.height == state.height:
                self._begin(force=False)
            return
        if state is None:
            return
        if isinstance(item, _Resend):
            if self._started and state.step != sm.Step.DECIDED:
                self._resend_own(state.round)
                self.status.stalled += 1
                if self.status.stalled % 10 == 0:
                    self._log_stall(state)
            return
        if isinstance(item, _Incoming):
            self._receive(item.data, log_to_wal=True)
        elif isinstance(item, _Timeout):
            if item.height == state.height:
                if (
                    item.kind == sm.TimeoutKind.PROPOSE
                    and item.round == state.round
                    and item.round not in state.proposals
                ):
                    proposer = "0x" + self.validators.proposer(item.height, item.round).hex()
                    missed = self.status.missed_proposals
                    missed[proposer] = missed.get(proposer, 0) + 1
                self._wal.append(
                    RecordKind.TIMEOUT, [int(item.kind), item.height, item.round], sync=False
                )
                self._step(sm.TimeoutFired(item.kind, item.height, item.round))
                self._resend_own(item.round)
        elif isinstance(item, _Checked):
            if item.height == state.height:
                if item.result is not None:
                    self._executed[item.block_hash] = item.result
                else:
                    log.warning(
                        "proposed block 0x%s at #%d is invalid: %s",
                        item.block_hash.hex()[:16],
                        item.height,
                        item.reason,
                    )
                self._step(sm.BlockChecked(item.height, item.block_hash, item.result is not None))
        elif isinstance(item, _Built) and (item.height, item.round) == (state.height, state.round):
            self._propose_built(item)
        await self._after_step()

    # ------------------------------------------------------------ heights
    async def _enter_height(self, height: int, *, replay: bool) -> None:
        """Leave the current height (its block is applied) and start `height`."""
        if self._state is not None and height <= self._state.height:
            return
        for timer in self._timers:
            timer.cancel()
        self._timers = []
        if self._building is not None:
            self._building.cancel()
            self._building = None
        previous = self._state
        if previous is not None:
            self.status.rounds_last_height = previous.round + 1
            self.status.last_commit_at = time.time()
        self._proposals.clear()
        self._executed.clear()
        self._own = []
        records = self._wal.open_height(height)
        self._state, _ = sm.start(height, self.validators, self.me, self.config.timeouts)
        self._started = False
        self._pending = []
        self._update_status()
        if replay and records:
            self._replay(records)
            return
        # Pace heights: the next one starts `block_time` after the previous one started, and
        # never before the wall clock reaches the head's timestamp + 1 (timestamps are whole
        # seconds and must grow: faster heights would run ahead of every validator's clock).
        paced = self._height_started_at + self.config.block_time - time.monotonic()
        clock = self._chain.head.timestamp + 1 - time.time()
        delay = max(0.0, paced, clock)
        loop = asyncio.get_running_loop()
        self._timers.append(loop.call_later(delay, self._queue.put_nowait, _Start(height)))
        # Messages for this height that arrived early are handled now (they may start it).
        early = [raw for raw in self._future]
        self._future.clear()
        for raw in early:
            self._queue.put_nowait(_Incoming(raw))

    def _begin(self, *, force: bool) -> None:
        """Start round 0 of the current height, once. Without empty blocks it waits for a
        transaction, unless `force` (a peer already started the height: it has transactions
        we lack, or our clock is behind)."""
        state = self._state
        if state is None or self._started:
            return
        if not force and not self.config.empty_blocks and not self._pool.has_executable():
            if self._waiting_for_txs is None or self._waiting_for_txs.done():
                waiting = asyncio.get_running_loop().create_future()
                height = state.height
                waiting.add_done_callback(lambda _: self._queue.put_nowait(_Start(height)))
                self._waiting_for_txs = waiting
            return
        if self._waiting_for_txs is not None and not self._waiting_for_txs.done():
            self._waiting_for_txs.cancel()
        self._started = True
        self._height_started_at = time.monotonic()
        state, actions = sm.start(state.height, self.validators, self.me, self.config.timeouts)
        for event in self._pending:
            state, more = sm.step(state, event)
            actions = (*actions, *more)
        self._pending = []
        self._state = state
        self._act(actions)
        self._update_status()

    # ------------------------------------------------------------ messages
    def _receive(self, data: bytes, *, log_to_wal: bool) -> None:
        state = self._state
        assert state is not None
        try:
            message = decode_message(data)
            signer = message.signer(self._chain_id)
        except InvalidConsensusMessage as exc:
            log.debug("dropping consensus message: %s", exc)
            return
        if message.height > state.height:
            self._future.append(data)
            return
        if message.height < state.height:
            return
        if log_to_wal:
            self._wal.append(RecordKind.PEER_MESSAGE, data, sync=False)
        event = self._event_of(message, signer)
        if event is None:
            return
        if not self._started:
            self._pending.append(event)
            self._begin(force=True)
            return
        self._step(event)

    def _event_of(self, message: Message, signer: Address) -> sm.Event | None:
        if isinstance(message, Proposal):
            if signer != self.validators.proposer(message.height, message.round):
                return None
            known = self._proposals.setdefault(message.block_hash, message)
            if known.block != message.block:
                return None
            return sm.ProposalSeen(
                message.height, message.round, message.block_hash, message.pol_round, signer
            )
        self.status.votes_received += 1
        return sm.VoteSeen(SignedVote(message, signer))

    def _step(self, event: sm.Event) -> None:
        state = self._state
        assert state is not None
        self._state, actions = sm.step(state, event)
        self._act(actions)
        self._update_status()

    # ------------------------------------------------------------ actions
    def _act(self, actions: Sequence[sm.Action]) -> None:
        for action in actions:
            if isinstance(action, sm.Propose):
                self._propose(action)
            elif isinstance(action, sm.CheckBlock):
                self._check(action)
            elif isinstance(action, sm.CastVote):
                self._vote(action)
            elif isinstance(action, sm.ScheduleTimeout):
                timeout = _Timeout(action.kind, action.height, action.round)
                loop = asyncio.get_running_loop()
                self._timers.append(
                    loop.call_later(action.seconds, self._queue.put_nowait, timeout)
                )
            elif isinstance(action, sm.Decide):
                self._decided = action
            elif isinstance(action, sm.ReportEvidence):
                self.status.equivocations += 1
                log.warning("equivocation: %s", action.evidence.describe())
                self._evidence.save_evidence(action.evidence)

    def _propose(self, action: sm.Propose) -> None:
        if action.block_hash is not None:
            # re-propose our valid value (with its proof-of-lock round)
            known = self._proposals.get(action.block_hash)
            if known is None:
                return
            self._send_proposal(action.height, action.round, action.pol_round, known.block)
            return
        for message in self._own:  # replayed: we proposed in this round before the crash
            if isinstance(message, Proposal) and message.round == action.round:
                self._transport.broadcast(encode_message(message))
                return
        self._building = asyncio.ensure_future(self._build(action.height, action.round))

    async def _build(self, height: int, round_: int) -> None:
        head = self._chain.head
        if head.block_number + 1 != height:
            return
        env = BlockEnv(
            parent=head,
            timestamp=max(int(time.time()), head.timestamp + 1),
            coinbase=self.config.coinbase,
            gas_limit=self.config.gas_limit,
            extra_data=self.config.extra_data,
        )
        candidates = self._candidates(self._chain.head_view().next_base_fee)
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(
            self._writer, self._chain.executor.build, env, candidates
        )
        bundle = bundle_from_parts(
            result.header, [tx.encode() for tx in result.block.transactions], b""
        ).encode()
        self._queue.put_nowait(_Built(height, round_, bundle, result))

    def _candidates(self, base_fee: int) -> list[Any]:
        budget = self.config.gas_limit * CANDIDATE_GAS_FACTOR
        size = 0
        chosen = []
        for tx in self._pool.executable(base_fee):
            size += len(tx.raw)
            if size > MAX_PROPOSAL_BYTES:
                break
            chosen.append(tx.tx)
            budget -= tx.gas
            if budget <= 0 or len(chosen) >= MAX_CANDIDATES:
                break
        return chosen

    def _propose_built(self, built: _Built) -> None:
        block_hash = built.result.header.hash
        self._executed[block_hash] = built.result
        self._send_proposal(built.height, built.round, -1, built.bundle)

    def _send_proposal(self, height: int, round_: int, pol_round: int, block: bytes) -> None:
        bundle = BlockBundle.decode(block)
        block_hash = bundle.decode_header(self._chain.fork).hash
        signature = self._sign(height, round_, SignStep.PROPOSAL, block_hash)
        if signature is None:
            return
        if signature == b"":
            proposal = sign_proposal(
                self.config.key, self._chain_id, height, round_, pol_round, block_hash, block
            )
            self._guard.record(
                LastSigned(height, round_, SignStep.PROPOSAL, block_hash, proposal.signature)
            )
        else:
            proposal = Proposal(height, round_, pol_round, block_hash, block, signature)
        self._send_own(proposal)
        self.status.proposals_made += 1
        log.info(
            "proposing #%d round %d: 0x%s (%d txs)",
            height,
            round_,
            block_hash.hex()[:16],
            len(bundle.transactions),
        )

    def _vote(self, action: sm.CastVote) -> None:
        step = SignStep.PREVOTE if action.kind == VoteKind.PREVOTE else SignStep.PRECOMMIT
        signature = self._sign(action.height, action.round, step, action.block_hash)
        if signature is None:
            return
        if signature == b"":
            vote = sign_vote(
                self.config.key,
                self._chain_id,
                action.kind,
                action.height,
                action.round,
                action.block_hash,
            )
            self._guard.record(
                LastSigned(action.height, action.round, step, action.block_hash, vote.signature)
            )
        else:
            vote = Vote(action.kind, action.height, action.round, action.block_hash, signature)
        self._send_own(vote)

    def _sign(self, height: int, round_: int, step: SignStep, block_hash: bytes) -> bytes | None:
        """b"" to sign anew, the earlier signature to reuse, or None when the guard refuses."""
        for message in self._own:  # signed before (a replayed height): the same signature
            if (message.height, message.round) == (height, round_) and _step_of(message) == step:
                return message.signature if message.block_hash == block_hash else None
        try:
            earlier = self._guard.check(height, round_, step, block_hash)
        except DoubleSign as exc:
            log.error("consensus: %s", exc)
            return None
        return b"" if earlier is None else earlier

    def _send_own(self, message: Message) -> None:
        """WAL (fsync'd) first, then the network, then our own state machine."""
        data = encode_message(message)
        if not self._replaying:
            self._wal.append(RecordKind.OWN_MESSAGE, data, sync=True)
        self._own.append(message)
        self._transport.broadcast(data)
        event = self._event_of(message, self.me)
        if event is not None:
            if isinstance(message, Proposal):
                self._step(event)
                self._step(sm.BlockChecked(message.height, message.block_hash, True))
            else:
                self._step(event)

    def _resend_own(self, round_: int) -> None:
        """After a timeout, send this round's own messages again (gossip may have lost
        them; nothing is signed anew)."""
        for message in self._own:
            if message.round == round_:
                self._transport.broadcast(encode_message(message))

    def _check(self, action: sm.CheckBlock) -> None:
        proposal = self._proposals.get(action.block_hash)
        if proposal is None:
            return
        if action.block_hash in self._executed:
            self._queue.put_nowait(
                _Checked(action.height, action.block_hash, self._executed[action.block_hash])
            )
            return
        task = asyncio.ensure_future(self._execute(action.height, proposal))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _execute(self, height: int, proposal: Proposal) -> None:
        try:
            bundle = BlockBundle.decode(proposal.block)
            header = bundle.decode_header(self._chain.fork)
            if header.hash != proposal.block_hash:
                raise InvalidBlock(height, proposal.block_hash, "the proposal's block hash")
            block = bundle.to_block(self._chain.fork, header)
            self._check_header(block)
            loop = asyncio.get_running_loop()
            result = await loop.run_in_executor(
                self._writer, self._chain.executor.import_block, block
            )
        except CairnError as exc:
            self._queue.put_nowait(_Checked(height, proposal.block_hash, None, str(exc)))
            return
        self._queue.put_nowait(_Checked(height, proposal.block_hash, result))

    def _check_header(self, block: BlockAPI) -> None:
        header = block.header
        head = self._chain.head
        if header.parent_hash != head.hash:
            raise InvalidBlock(header.block_number, header.hash, "does not extend our head")
        if header.timestamp > time.time() + MAX_CLOCK_DRIFT_SECONDS:
            raise InvalidBlock(
                header.block_number,
                header.hash,
                f"timestamp {header.timestamp} is too far ahead of our clock",
            )

    # ------------------------------------------------------------ decisions
    async def _after_step(self) -> None:
        decided, self._decided = self._decided, None
        if decided is None:
            return
        result = self._executed.get(decided.block_hash)
        head = self._chain.store.head
        if head.number >= decided.height:
            return  # block sync or gossip applied it first
        if result is None:
            log.warning("decided 0x%s but never executed it", decided.block_hash.hex()[:16])
            return
        commit = Commit(decided.height, decided.round, decided.block_hash, decided.precommits)
        try:
            event = await self._applier.apply(result, commit.encode())
        except InvalidBlock as exc:
            log.warning("decided block not applied: %s", exc)
            return
        log.info(
            "committed block #%d 0x%s round %d txs=%d (%d precommits)",
            event.number,
            event.block_hash.hex()[:16],
            decided.round,
            len(result.block.transactions),
            len(decided.precommits),
        )

    # ------------------------------------------------------------ replay
    def _replay(self, records: list[Record]) -> None:
        """Rebuild this height's round state from its WAL: peer messages, own messages and
        timeouts go through the state machine in the order they were logged; own messages are
        not signed again (the sign guard would hand back the same signatures anyway)."""
        log.info("consensus: replaying %d WAL records of height %d", len(records), self.height)
        self.status.replayed = len(records)
        self._replaying = True
        # Own messages first: a proposal we made before the crash is sent again, not rebuilt.
        for record in records:
            if record.kind == RecordKind.OWN_MESSAGE:
                with contextlib.suppress(InvalidConsensusMessage):
                    message = decode_message(bytes(record.payload))
                    self._own.append(message)
                    if isinstance(message, Proposal):
                        self._proposals.setdefault(message.block_hash, message)
        self._begin(force=True)
        try:
            for record in records:
                if record.kind in (RecordKind.PEER_MESSAGE, RecordKind.OWN_MESSAGE):
                    self._receive(bytes(record.payload), log_to_wal=False)
                elif record.kind == RecordKind.TIMEOUT:
                    kind, height, round_ = record.payload
                    self._step(sm.TimeoutFired(sm.TimeoutKind(kind), height, round_))
        finally:
            self._replaying = False
        for message in self._own:  # peers may not have them
            self._transport.broadcast(encode_message(message))

    @property
    def height(self) -> int:
        return self._state.height if self._state is not None else 0

    def snapshot(self) -> dict[str, Any]:
        """What RPC (cairn_consensusStatus), /status and health show."""
        status = self.status
        return {
            "validator": "0x" + self.me.hex(),
            "validators": ["0x" + a.hex() for a in self.validators.addresses],
            "height": status.height,
            "round": status.round,
            "step": status.step,
            "proposer": "0x" + self.validators.proposer(status.height, status.round).hex(),
            "lastCommitAt": status.last_commit_at,
            "roundsLastHeight": status.rounds_last_height,
            "votesReceived": status.votes_received,
            "proposalsMade": status.proposals_made,
            "missedProposals": dict(status.missed_proposals),
            "equivocations": status.equivocations,
            "stalled": status.stalled,
        }

    def evidence(self) -> list[dict[str, Any]]:
        """The equivocation evidence this validator kept, oldest height first."""
        return [_evidence_json(e) for e in self._evidence_store.load()]

    def _log_stall(self, state: sm.RoundState) -> None:
        """Say what a height waits for, so an operator can tell a missing quorum from a
        silent proposer."""
        prevotes = state.votes(VoteKind.PREVOTE, state.round)
        precommits = state.votes(VoteKind.PRECOMMIT, state.round)
        proposer = self.validators.proposer(state.height, state.round)
        log.warning(
            "consensus at #%d round %d has waited %d ticks in %s: proposal %s (proposer "
            "0x%s), %d of %d validators prevoted, %d precommitted; %d needed",
            state.height,
            state.round,
            self.status.stalled,
            state.step.name.lower(),
            "seen" if state.round in state.proposals else "missing",
            proposer.hex()[:8],
            prevotes.total(),
            self.validators.size,
            precommits.total(),
            self.validators.quorum,
        )

    def _update_status(self) -> None:
        state = self._state
        if state is None:
            return
        status = self.status
        if (status.height, status.round) != (state.height, state.round):
            status.stalled = 0
            if state.round > 0 and state.height == status.height:
                log.info("consensus at #%d: round %d", state.height, state.round)
        status.height, status.round = state.height, state.round
        status.step = state.step.name.lower() if self._started else "waiting"


def _evidence_json(evidence: Evidence) -> dict[str, Any]:
    def vote(v: Vote) -> dict[str, Any]:
        return {
            "blockHash": "0x" + v.block_hash.hex() if v.block_hash != NIL else None,
            "signature": "0x" + v.signature.hex(),
        }

    first = evidence.first.vote
    return {
        "validator": "0x" + evidence.validator.hex(),
        "height": first.height,
        "round": first.round,
        "kind": first.kind.name.lower(),
        "votes": [vote(first), vote(evidence.second.vote)],
    }
