"""Issue 12: every per-peer map in cairn/p2p is bounded, and evicts its least useful entry.

Peer ids cost nothing to make: 20,000 fake ones go through each map.
"""

from __future__ import annotations

import os

import pytest
from libp2p.peer.id import ID
from prometheus_client import CollectorRegistry

from cairn.p2p.limits import MAX_TRACKED_PEERS, BoundedMap, ServeBudget
from cairn.p2p.metrics import P2PMetrics
from cairn.p2p.peers import PeerRecord, PeerTable
from cairn.p2p.scoring import BAN_SECONDS, IP_BAN_AFTER, PENALTIES, PeerScores

MANY = 20_000


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def fake_id() -> ID:
    return ID(b"\x00\x24" + os.urandom(36))


def test_bounded_map_evicts_the_lowest_ranked_or_the_oldest() -> None:
    oldest: BoundedMap[int, int] = BoundedMap(3)
    for i in range(10):
        oldest[i] = i
    assert list(oldest) == [7, 8, 9] and oldest.evicted == 7
    oldest[7] = 70  # written again: the most recent now
    oldest[10] = 10
    assert list(oldest) == [9, 7, 10]
    ranked: BoundedMap[str, int] = BoundedMap(2, rank=lambda _k, v: v)
    ranked["keep"] = 100
    ranked["low"] = 1
    ranked["new"] = 5  # the lowest rank other than the new entry goes
    assert sorted(ranked) == ["keep", "new"]
    with pytest.raises(ValueError, match="room for one"):
        BoundedMap(0)


def test_scores_stay_bounded_and_keep_the_worst_and_the_bans() -> None:
    clock = Clock()
    scores = PeerScores(clock)
    for n in range(3):  # three real offenders, banned
        for _ in range(3):
            scores.penalise(f"bad{n}", "garbage", "junk")
    scores.penalise("worse", "bad-block", "forged")  # -40, not banned
    for n in range(MANY):  # a flood of ids, each with one small fault
        scores.penalise(f"fake{n}", "bad-tx", "stale")
        scores.score(f"never-penalised{n}")  # a lookup stores nothing
    sizes = scores.sizes()
    assert sizes["scores"] <= MAX_TRACKED_PEERS and sizes["banned"] == 3
    assert scores.score("worse") == -PENALTIES["bad-block"]  # the worst are kept
    assert sorted(scores.banned()) == ["bad0", "bad1", "bad2"]
    # A flood of bans keeps the bans that last longest.
    for n in range(MANY):
        clock.now += 0.001
        for _ in range(3):
            scores.penalise(f"banned{n}", "garbage", "junk")
    assert MAX_TRACKED_PEERS * 7 // 8 <= scores.sizes()["banned"] <= MAX_TRACKED_PEERS
    assert scores.is_banned(f"banned{MANY - 1}") and not scores.is_banned("bad0")


def test_ip_ban_after_distinct_ids_from_one_ip_and_never_without_an_ip() -> None:
    clock = Clock()
    scores = PeerScores(clock)

    def ban(peer: str, ip: str) -> str:
        last = None
        for _ in range(3):
            last = scores.penalise(peer, "garbage", "junk", ip)
        assert last is not None and last.banned
        return last.ip_banned

    for n in range(IP_BAN_AFTER - 1):
        assert ban(f"p{n}", "10.0.0.1") == ""
    assert not scores.is_ip_banned("10.0.0.1")
    assert ban("protected-bootnode", "") == ""  # a protected peer's ban counts nowhere
    assert not scores.is_ip_banned("10.0.0.1")
    assert ban("third", "10.0.0.1") == "10.0.0.1"
    assert scores.is_ip_banned("10.0.0.1") and scores.banned_ips() == ["10.0.0.1"]
    assert not scores.is_ip_banned("10.0.0.2")
    clock.now += BAN_SECONDS + 1
    assert not scores.is_ip_banned("10.0.0.1")
    # Bans spread over more than the window never add up to an IP ban.
    for n in range(IP_BAN_AFTER):
        clock.now += BAN_SECONDS
        assert ban(f"slow{n}", "10.0.0.3") == ""
    # Ids over their serving budget count toward the IP at once (they are never banned).
    for n in range(IP_BAN_AFTER - 1):
        assert scores.penalise(f"hog{n}", "over-budget", "flood", "10.0.0.4").ip_banned == ""
    last = scores.penalise("hog-last", "over-budget", "flood", "10.0.0.4")
    assert last.ip_banned == "10.0.0.4" and not last.banned
    # Many IPs: the map of banned ids per IP stays bounded.
    for n in range(MANY // 4):
        ban(f"spread{n}", f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}")
    assert scores.sizes()["banned_ids_by_ip"] <= 1024


def test_serve_budget_refuses_past_the_burst_refills_and_stays_bounded() -> None:
    clock = Clock()
    budget = ServeBudget(clock, requests_per_second=10, request_burst=20, bytes_burst=1000)
    assert all(budget.admit("p") is None for _ in range(20))
    refusal = budget.admit("p")
    assert refusal is not None and "sync requests" in refusal
    assert budget.admit("q") is None  # another peer has its own budget
    clock.now += 1.0
    assert sum(budget.admit("p") is None for _ in range(20)) == 10
    budget.charge("q", 5000)  # one big answer overdraws once...
    bytes_refusal = budget.admit("q")
    assert bytes_refusal is not None and "MiB of sync answers" in bytes_refusal
    for n in range(MANY):
        budget.admit(f"fake{n}")
    assert len(budget) <= MAX_TRACKED_PEERS
    assert budget.admit("p") is not None  # ...and a flood of ids did not refill the indebted


def test_peer_table_maps_stay_bounded_and_keep_connected_peers_addresses() -> None:
    table = PeerTable("me", 25, PeerScores(), P2PMetrics(CollectorRegistry()))
    connected = fake_id()
    table.add(
        PeerRecord(
            connected,
            "10.0.0.9",
            "/ip4/10.0.0.9/tcp/1",
            "/ip4/10.0.0.9/tcp/30333",
            False,
            "cairn",
            1,
            b"\x00" * 32,
            0.0,
            0.0,
        )
    )
    table.known[connected] = "/ip4/10.0.0.9/tcp/30333"
    for n in range(MANY):
        peer = fake_id()
        table.known[peer] = f"/ip4/10.1.0.1/tcp/{n}"
        table.refused[peer] = float(n)
        table.dial_backoff[peer] = (1, float(n))
        table.status_ok[peer] = None
        table.signal(peer, "heard-our-status")
    for m in (table.known, table.refused, table.dial_backoff, table.status_ok):
        assert len(m) <= MAX_TRACKED_PEERS
    assert table.known.get(connected) == "/ip4/10.0.0.9/tcp/30333"
    assert len(table._signals) <= MAX_TRACKED_PEERS
