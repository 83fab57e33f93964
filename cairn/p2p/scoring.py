"""Peer scores: every invalid message costs its sender points; past a threshold the peer is
banned (disconnected, refused, its gossip dropped) for an hour. A new peer id costs nothing
to make, so bans escalate to the IP address once `IP_BAN_AFTER` distinct ids from one IP
were banned (or went over their sync serving budget) within the ban window (never for a
protected peer: a bootnode).

Pure bookkeeping with an injected clock, every map bounded (`limits.BoundedMap`): the
host decides what a ban does on the wire.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from cairn.p2p.limits import MAX_TRACKED_PEERS, BoundedMap

# Points a peer loses per fault. Forged or undecodable data is never an honest accident;
# a transaction that turns out invalid may be (the sender's view of state can be older).
PENALTIES = {
    "garbage": 40.0,
    "bad-commit": 40.0,
    "bad-block": 40.0,
    "bad-tx": 10.0,
    "bad-sync": 40.0,
    # no answer to a range request within 30 s: rare for an honest peer, so it pays less
    "slow-sync": 20.0,
    "protocol": 20.0,
    "over-budget": 25.0,
    # two conflicting signed consensus messages: proof of a faulty author, banned at once
    "equivocation": 120.0,
}
BAN_THRESHOLD = -100.0
# Scores heal slowly, so an honest peer's rare mistake is forgotten but a flood is not.
RECOVERY_PER_SECOND = 0.1
BAN_SECONDS = 3600.0
# Distinct banned peer ids from one IP, within BAN_SECONDS, that get the IP banned too.
# On loopback and on one compose network every honest peer shares an IP with the bad one:
# one bad id (or two) never costs its neighbours anything; a third is an attacker minting
# ids. Bootnodes are never refused by IP.
IP_BAN_AFTER = 3
# Faults that count an id toward its IP's ban at once, banned or not.
IP_STRIKES = frozenset({"over-budget"})
MAX_BANNED_IPS = 1024


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
    ip_banned: str = ""  # the IP this penalty got banned, if it did


class PeerScores:
    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        limit: int = MAX_TRACKED_PEERS,
        on_ban: Callable[[], None] | None = None,
    ) -> None:
        """`on_ban` is called after a new ban (of a peer id or an IP) is recorded."""
        self._clock = clock
        self._on_ban = on_ban
        # Evicted first: the least penalised score (it would have healed anyway); a ban
        # is kept apart and evicted soonest-expiring first.
        self._scores: BoundedMap[str, PeerScore] = BoundedMap(limit, rank=lambda _k, s: -s.score)
        self._banned_until: BoundedMap[str, float] = BoundedMap(limit, rank=lambda _k, t: t)
        self._banned_ids_by_ip: BoundedMap[str, dict[str, float]] = BoundedMap(
            MAX_BANNED_IPS, rank=lambda _k, ids: len(ids)
        )
        self._ip_banned_until: BoundedMap[str, float] = BoundedMap(
            MAX_BANNED_IPS, rank=lambda _k, t: t
        )

    def _healed(self, entry: PeerScore, now: float) -> None:
        elapsed = now - entry.updated
        if elapsed > 0 and entry.score < 0:
            entry.score = min(0.0, entry.score + elapsed * RECOVERY_PER_SECOND)
        entry.updated = now

    def score(self, peer: str) -> float:
        """The peer's score now (0 for a peer never penalised; nothing is stored)."""
        entry = self._scores.get(peer)
        if entry is None:
            return 0.0
        self._healed(entry, self._clock())
        return entry.score

    def penalise(self, peer: str, kind: str, reason: str, ip: str = "") -> Penalty:
        """Charge `peer` for one fault; `ip` (its address, "" when protected or unknown)
        counts a ban toward banning that IP."""
        now = self._clock()
        entry = self._scores.get(peer)
        if entry is None:
            entry = PeerScore(updated=now)
        self._healed(entry, now)
        entry.score -= PENALTIES.get(kind, PENALTIES["protocol"])
        entry.faults[kind] = entry.faults.get(kind, 0) + 1
        entry.last_reason = reason
        self._scores[peer] = entry
        banned = entry.score <= BAN_THRESHOLD and not self.is_banned(peer)
        if banned:
            self._banned_until[peer] = now + BAN_SECONDS
        ip_banned = ""
        # An id over its serving budget counts toward the IP like a banned one: an honest
        # node never goes over it, and an id made per connection would never be banned.
        strike = bool(ip) and (banned or kind in IP_STRIKES)
        if strike and self._count_ban_from(ip, peer, now) >= IP_BAN_AFTER:
            if not self.is_ip_banned(ip):
                ip_banned = ip
            self._ip_banned_until[ip] = now + BAN_SECONDS
        if (banned or ip_banned) and self._on_ban is not None:
            self._on_ban()
        return Penalty(peer, kind, entry.score, banned, ip_banned)

    def running_bans(self, wall_now: float) -> dict[str, dict[str, float]]:
        """The bans still running, by kind ("peers", "ips"), as wall-clock end times."""
        now = self._clock()
        return {
            "peers": {p: wall_now + self._banned_until[p] - now for p in self.banned()},
            "ips": {ip: wall_now + self._ip_banned_until[ip] - now for ip in self.banned_ips()},
        }

    def restore_bans(self, saved: dict[str, dict[str, float]], wall_now: float) -> int:
        """Take back bans `running_bans` gave (after a restart): those not over yet, none
        longer than a ban lasts. How many were restored."""
        now = self._clock()
        restored = 0
        for kind, table in (("peers", self._banned_until), ("ips", self._ip_banned_until)):
            for key, until in saved.get(kind, {}).items():
                left = min(until - wall_now, BAN_SECONDS)
                if left > 0:
                    table[key] = now + left
                    restored += 1
        return restored

    def _count_ban_from(self, ip: str, peer: str, now: float) -> int:
        ids = self._banned_ids_by_ip.get(ip) or {}
        ids = {p: t for p, t in ids.items() if now - t < BAN_SECONDS}
        ids[peer] = now
        if len(ids) > IP_BAN_AFTER:  # only the latest few matter
            ids = dict(sorted(ids.items(), key=lambda kv: kv[1])[-IP_BAN_AFTER:])
        self._banned_ids_by_ip[ip] = ids
        return len(ids)

    def is_banned(self, peer: str) -> bool:
        until = self._banned_until.get(peer)
        if until is None:
            return False
        if self._clock() >= until:
            del self._banned_until[peer]
            self._scores.pop(peer, None)
            return False
        return True

    def is_ip_banned(self, ip: str) -> bool:
        until = self._ip_banned_until.get(ip)
        if until is None:
            return False
        if self._clock() >= until:
            del self._ip_banned_until[ip]
            self._banned_ids_by_ip.pop(ip, None)
            return False
        return True

    def banned(self) -> list[str]:
        return [p for p in list(self._banned_until) if self.is_banned(p)]

    def banned_ips(self) -> list[str]:
        return [ip for ip in list(self._ip_banned_until) if self.is_ip_banned(ip)]

    def faults(self, peer: str) -> dict[str, int]:
        entry = self._scores.get(peer)
        return dict(entry.faults) if entry else {}

    def sizes(self) -> dict[str, int]:
        """Entries per map (for tests and memory figures)."""
        return {
            "scores": len(self._scores),
            "banned": len(self._banned_until),
            "banned_ids_by_ip": len(self._banned_ids_by_ip),
            "banned_ips": len(self._ip_banned_until),
        }
