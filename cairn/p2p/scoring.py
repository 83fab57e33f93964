"""Peer scores: every invalid message costs its sender points; past a threshold the peer is
banned (disconnected, refused, its gossip dropped) for a while. Pure bookkeeping with an
injected clock: the host decides what a ban does on the wire.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

# Points a peer loses per fault. Forged or undecodable data is never an honest accident;
# a transaction that turns out invalid may be (the sender's view of state can be older).
PENALTIES = {
    "garbage": 40.0,
    "bad-commit": 40.0,
    "bad-block": 40.0,
    "bad-tx": 10.0,
    "bad-sync": 40.0,
    "protocol": 20.0,
    # two conflicting signed consensus messages: proof of a faulty author, banned at once
    "equivocation": 120.0,
}
BAN_THRESHOLD = -100.0
# Scores heal slowly, so an honest peer's rare mistake is forgotten but a flood is not.
RECOVERY_PER_SECOND = 0.1
BAN_SECONDS = 3600.0


@dataclass
class PeerScore:
    score: float = 0.0
    updated: float = 0.0
    faults: dict[str, int] = field(default_factory=dict)
    last_reason: str = ""


@dataclass(frozen=True)
class Penalty:
    peer: str
    kind: str
    score: float
    banned: bool


class PeerScores:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._scores: dict[str, PeerScore] = {}
        self._banned_until: dict[str, float] = {}

    def _current(self, peer: str) -> PeerScore:
        now = self._clock()
        entry = self._scores.setdefault(peer, PeerScore(updated=now))
        elapsed = now - entry.updated
        if elapsed > 0 and entry.score < 0:
            entry.score = min(0.0, entry.score + elapsed * RECOVERY_PER_SECOND)
        entry.updated = now
        return entry

    def score(self, peer: str) -> float:
        return self._current(peer).score

    def penalise(self, peer: str, kind: str, reason: str) -> Penalty:
        entry = self._current(peer)
        entry.score -= PENALTIES.get(kind, PENALTIES["protocol"])
        entry.faults[kind] = entry.faults.get(kind, 0) + 1
        entry.last_reason = reason
        banned = entry.score <= BAN_THRESHOLD and not self.is_banned(peer)
        if banned:
            self._banned_until[peer] = self._clock() + BAN_SECONDS
        return Penalty(peer, kind, entry.score, banned)

    def is_banned(self, peer: str) -> bool:
        until = self._banned_until.get(peer)
        if until is None:
            return False
        if self._clock() >= until:
            del self._banned_until[peer]
            self._scores.pop(peer, None)
            return False
        return True

    def banned(self) -> list[str]:
        return [p for p in list(self._banned_until) if self.is_banned(p)]

    def faults(self, peer: str) -> dict[str, int]:
        entry = self._scores.get(peer)
        return dict(entry.faults) if entry else {}
