"""Peer scores: penalties add up, a ban follows the threshold, scores heal, bans expire and
outlive a restart through the ban file."""

from __future__ import annotations

from pathlib import Path

from cairn.p2p.banlist import BANS_FILE, load_bans, save_bans
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


def test_running_bans_survive_a_restart_through_the_ban_file(tmp_path: Path) -> None:
    """A ban is saved as it starts (the hook), read back by a new process with another
    monotonic clock; what is over is dropped, what is left keeps its end."""
    clock, wall = Clock(), 1_700_000_000.0
    saved: list[dict[str, dict[str, float]]] = []
    scores = PeerScores(clock, on_ban=lambda: saved.append(scores.running_bans(wall)))
    for peer in ("a", "b", "c"):  # three ids from one IP: each banned, then the IP
        for _ in range(3):
            scores.penalise(peer, "bad-block", "x", ip="10.0.0.9")
    assert len(saved) == 3
    save_bans(tmp_path, saved[-1])
    assert set(saved[-1]["peers"]) == {"a", "b", "c"} and saved[-1]["ips"] == {
        "10.0.0.9": wall + BAN_SECONDS
    }

    later = Clock()
    later.now = 5.0  # a new process: its monotonic clock starts elsewhere
    restarted = PeerScores(later)
    assert restarted.restore_bans(load_bans(tmp_path), wall + 600) == 4
    assert restarted.banned() == ["a", "b", "c"] and restarted.banned_ips() == ["10.0.0.9"]
    later.now += BAN_SECONDS - 600 - 1
    assert restarted.is_banned("a")
    later.now += 2
    assert not restarted.is_banned("a") and restarted.banned_ips() == []
    # restored after their end: nothing
    assert PeerScores(Clock()).restore_bans(load_bans(tmp_path), wall + BAN_SECONDS + 1) == 0


def test_an_unreadable_ban_file_is_ignored(tmp_path: Path) -> None:
    (tmp_path / BANS_FILE).write_text("{not json")
    assert load_bans(tmp_path) == {}
    (tmp_path / BANS_FILE).write_text('{"peers": {"a": "soon", "b": 12.5}, "ips": [1]}')
    assert load_bans(tmp_path) == {"peers": {"b": 12.5}}
    assert load_bans(tmp_path / "missing") == {}
