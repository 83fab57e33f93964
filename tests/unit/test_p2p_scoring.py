"""Peer scores: penalties add up, a ban follows the threshold, scores heal, bans expire."""

from __future__ import annotations

from cairn.p2p.scoring import BAN_SECONDS, BAN_THRESHOLD, PENALTIES, PeerScores


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_three_forged_blocks_ban_a_peer() -> None:
    clock = Clock()
    scores = PeerScores(clock)
    first = scores.penalise("p", "bad-commit", "forged commit")
    assert first.score == -PENALTIES["bad-commit"] and not first.banned
    assert not scores.penalise("p", "garbage", "junk").banned
    third = scores.penalise("p", "bad-block", "state root")
    assert third.banned and third.score <= BAN_THRESHOLD
    assert scores.is_banned("p") and scores.banned() == ["p"]
    assert scores.faults("p") == {"bad-commit": 1, "garbage": 1, "bad-block": 1}
    # A fourth fault does not ban again (one ban event per ban).
    assert not scores.penalise("p", "garbage", "more").banned
    assert not scores.is_banned("q")


def test_scores_heal_and_bans_expire() -> None:
    clock = Clock()
    scores = PeerScores(clock)
    scores.penalise("p", "bad-tx", "stale nonce")
    clock.now += 50  # 0.1 point per second
    assert scores.score("p") == -PENALTIES["bad-tx"] + 5
    clock.now += 1000
    assert scores.score("p") == 0.0  # never above zero
    for _ in range(3):
        scores.penalise("p", "bad-block", "x")
    assert scores.is_banned("p")
    clock.now += BAN_SECONDS + 1
    assert not scores.is_banned("p")
    assert scores.score("p") == 0.0 and scores.faults("p") == {}
