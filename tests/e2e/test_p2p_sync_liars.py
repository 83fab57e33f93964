"""Issue 12: peers that claim a far head and answer range requests with nothing useful.

A follower that gets no gossip (CAIRN_TEST_P2P_NO_GOSSIP=1, so it reaches new blocks by
status and range sync alone) is joined, one after the other, by three liars that each
claim head #1,000,000, above the honest sequencer's: one replays block #1 (a valid block
we already have) to every range request, one answers no blocks, one answers bundles of
junk. After each one connects, the sequencer makes new blocks: the follower must reach
them from the sequencer within seconds, and the liar must be penalised, then banned.

Before the fix, the replaying liar held the follower for good: a replayed canonical block
counted as imported, so range sync asked the same liar (the highest head) again and again
and never the sequencer, and nobody was penalised.

The three liars share 127.0.0.1 with the honest sequencer: the third ban gets the IP
banned, after which a fourth, well-behaved newcomer from 127.0.0.1 is refused, while the
sequencer (the follower's bootnode) stays connected and the follower keeps following.
"""

from __future__ import annotations

import functools
import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import trio

from cairn.p2p import messages as m
from tests.support.chain import CHAIN_ID, transfer
from tests.support.net import LocalNet, enode, head, log_has, metric, peer_count, wait_receipt
from tests.support.proc import NodeProcess
from tests.support.rogue import RangeAnswer, RoguePeer, empty_range
from tests.support.wait import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

FAR_HEAD = 1_000_000


def test_lying_range_servers_are_skipped_penalised_and_banned(tmp_path: Path) -> None:
    with LocalNet(tmp_path) as net:
        seq = net.start_sequencer()
        follower = net.start_fullnode("follower", env={"CAIRN_TEST_P2P_NO_GOSSIP": "1"})
        wait_until(lambda: peer_count(follower) == 1, timeout=30, message="follower peered")
        nonce = 0
        for _ in range(2):
            wait_receipt(
                seq, str(seq.call("eth_sendRawTransaction", "0x" + transfer(5, nonce).hex()))
            )
            nonce += 1
        wait_until(lambda: head(follower) == head(seq), timeout=15, message="follower at #2")
        genesis = seq.call("eth_getBlockByNumber", "0x0", False)
        assert isinstance(genesis, dict)
        genesis_hash = bytes.fromhex(genesis["hash"][2:])
        # Block #1 as the sequencer serves it: the replaying liar's answer.
        with RoguePeer(CHAIN_ID, genesis_hash) as fetcher:
            seq_id = fetcher.connect(enode(seq))
            block_one = m.decode_blocks(fetcher.request(seq_id, m.SyncRequest("range", 1, 1)))
        assert len(block_one) == 1

        liars: list[tuple[str, RangeAnswer]] = [
            ("replay", lambda _r: m.encode_blocks(block_one)),
            ("empty", empty_range),
            ("junk", lambda _r: m.encode_blocks([b"\xc3junk", b"\x00" * 40])),
        ]
        target = enode(follower)
        for name, answer in liars:
            with RoguePeer(CHAIN_ID, genesis_hash, head=FAR_HEAD, range_answer=answer) as liar:
                liar.connect(target)
                wait_until(lambda: liar.range_requests >= 1, timeout=15, message=f"{name} asked")
                for _ in range(2):
                    raw = "0x" + transfer(5, nonce).hex()
                    wait_receipt(seq, str(seq.call("eth_sendRawTransaction", raw)))
                    nonce += 1
                # Status refresh (2 s) + the follower's poll (1 s) + a few range requests.
                wait_until(
                    lambda: head(follower) == head(seq),
                    timeout=15,
                    message=f"the follower past the {name} liar, at the sequencer's head",
                )
                assert wait_until(
                    functools.partial(log_has, follower, f"penalised peer {liar.peer_id}"),
                    timeout=10,
                    message=f"the {name} liar penalised",
                )
                # It keeps claiming a head nobody can serve: banned within a few rounds.
                wait_until(
                    functools.partial(log_has, follower, f"banned peer {liar.peer_id}"),
                    timeout=20,
                    message=f"the {name} liar banned",
                )
                assert liar.gone.wait(10), f"the {name} liar still connected"
        assert metric(follower, "cairn_p2p_bans_total") == 3
        assert metric(follower, "cairn_p2p_ip_bans_total") == 1
        assert log_has(follower, "banned IP 127.0.0.1 for 1h")
        with urllib.request.urlopen(follower.url + "/status", timeout=5) as response:
            p2p = json.loads(response.read())["p2p"]
        assert p2p["bannedIps"] == ["127.0.0.1"] and len(p2p["banned"]) == 3
        # A fourth id from the same IP is refused, however well it behaves...
        with RoguePeer(CHAIN_ID, genesis_hash) as newcomer:
            with pytest.raises(trio.TooSlowError):
                newcomer.connect(target, timeout=10)
            assert log_has(follower, f"refused peer {newcomer.peer_id}: its IP 127.0.0.1")
        # ...while the bootnode on that IP stays a peer and the follower keeps following.
        assert peer_count(follower) == 1
        raw = "0x" + transfer(5, nonce).hex()
        mined = wait_receipt(seq, str(seq.call("eth_sendRawTransaction", raw)))
        assert wait_receipt(follower, str(mined["transactionHash"]), timeout=15) == mined
        wait_until(lambda: follower.call("eth_syncing") is False, timeout=10, message="synced")
        # The bans outlive a restart: they are in the datadir (p2p/bans.json).
        follower.stop()
        follower.start()
        assert log_has(follower, "restored 4 running bans")
        assert _p2p_status(follower)["bannedIps"] == ["127.0.0.1"]
        assert len(_p2p_status(follower)["banned"]) == 3
        with RoguePeer(CHAIN_ID, genesis_hash) as newcomer, pytest.raises(trio.TooSlowError):
            newcomer.connect(enode(follower), timeout=10)
        assert log_has(follower, f"refused peer {newcomer.peer_id}: its IP 127.0.0.1")
        wait_until(lambda: peer_count(follower) == 1, timeout=30, message="the bootnode back")


def _p2p_status(node: NodeProcess) -> dict[str, Any]:
    with urllib.request.urlopen(node.url + "/status", timeout=5) as response:
        p2p: dict[str, Any] = json.loads(response.read())["p2p"]
    return p2p
