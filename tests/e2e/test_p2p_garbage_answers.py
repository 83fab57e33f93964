"""Issue 12: garbage on every protocol the node speaks, at the message level, each attack
followed by proof that honest peers still sync from the node and its health is truthful.

`test_p2p_garbage.py` covers bad frames on the wire (meshsub, status, sync requests);
`test_p2p_byzantine.py` forged and undecodable blocks; `test_p2p_sync_liars.py` lying
and junk range answers; `test_p2p_peer_abuse.py` junk transaction batches and sync
request floods. Here, the rest: a peer whose status answer (the handshake) is garbage,
one whose peer-exchange answer is garbage, and one that gossips undecodable messages on
the consensus topic of a sequencer network (dropped before, unpenalised).
"""

from __future__ import annotations

import functools
import json
import urllib.request
from pathlib import Path

import pytest
import trio

from cairn.p2p import messages as m
from tests.support.chain import CHAIN_ID, transfer
from tests.support.net import (
    LocalNet,
    enode,
    log_has,
    metric,
    peer_count,
    wait_receipt,
    wait_same_head,
)
from tests.support.rogue import RoguePeer
from tests.support.wait import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _ready(node: object) -> int:
    url = node.url + "/health/ready"  # type: ignore[attr-defined]
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_garbage_answers_and_consensus_junk_leave_the_node_serving(tmp_path: Path) -> None:
    with LocalNet(tmp_path) as net:
        seq = net.start_sequencer()
        full = net.start_fullnode("full")
        wait_until(lambda: peer_count(seq) == 1, timeout=30, message="the full node peered")
        block = seq.call("eth_getBlockByNumber", "0x0", False)
        assert isinstance(block, dict)
        genesis_hash = bytes.fromhex(block["hash"][2:])
        target = enode(seq)

        # 1. The handshake: our status request is answered with garbage.
        with RoguePeer(CHAIN_ID, genesis_hash, status_answer=b"\xc1 not msgpack") as rogue:
            with pytest.raises(trio.TooSlowError):
                rogue.connect(target, timeout=10)  # never taken as a peer
            assert wait_until(
                functools.partial(log_has, seq, f"penalised peer {rogue.peer_id}: status answer"),
                timeout=10,
                message="the garbage status penalised",
            )
            assert rogue.gone.wait(10)

        # 2. Peer exchange: our peers request is answered with garbage.
        with RoguePeer(CHAIN_ID, genesis_hash, peers_answer=m.encode_blocks([b"x"])) as rogue:
            rogue.connect(target)
            assert wait_until(
                functools.partial(log_has, seq, f"penalised peer {rogue.peer_id}: peer list"),
                timeout=10,
                message="the garbage peer list penalised",
            )

        # 3. Consensus gossip on a sequencer network: undecodable messages.
        with RoguePeer(CHAIN_ID, genesis_hash, gossip=True) as rogue:
            rogue.connect(target)
            rogue.wait_subscribed(m_id(seq), "consensus")
            sent = 0
            while not rogue.gone.is_set() and sent < 50:
                rogue.publish("consensus", b"\x93junk" + bytes([sent]))
                sent += 1
            assert rogue.gone.wait(15), f"still connected after {sent} junk messages"
            assert log_has(seq, f"banned peer {rogue.peer_id}")
        assert metric(seq, "cairn_p2p_invalid_messages_total", topic="consensus", fault="garbage")

        # After all of it: gossip flows, a newcomer syncs, health tells the truth.
        for nonce in range(2):
            tx_hash = str(full.call("eth_sendRawTransaction", "0x" + transfer(9, nonce).hex()))
            assert wait_receipt(seq, tx_hash, timeout=20) == wait_receipt(full, tx_hash)
        late = net.start_fullnode("late")
        wait_same_head([seq, full, late], at_least=2, timeout=30)
        for node in (full, late):
            assert wait_until(functools.partial(_is_ready, node), timeout=15, message="ready")
        wait_until(lambda: peer_count(seq) == 2, timeout=10, message="the rogues gone")
        with urllib.request.urlopen(seq.url + "/status", timeout=5) as response:
            p2p = json.loads(response.read())["p2p"]
        assert p2p["state"]["status"] == "running" and len(p2p["peers"]) == 2
        assert not log_has(seq, "the p2p thread failed")


def _is_ready(node: object) -> bool:
    return _ready(node) == 200


def m_id(node: object) -> str:
    info = node.call("admin_nodeInfo")  # type: ignore[attr-defined]
    assert isinstance(info, dict)
    return str(info["id"])
