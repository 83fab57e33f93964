"""Issue 12: range sync asks the next peer when one stalls, and asks it last from then on.

A real `P2PService` (py-libp2p on loopback, a real chain on LevelDB) and two real peers
(`RoguePeer`): one announces head #101 and never answers a range request, the other
announces #100 and answers. The request timeout is shortened to 1 s for the test. Before
the fix, the staller (the highest head) was asked first every time and never penalised,
so every range request waited out the timeout on it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

import cairn.p2p.sync as sync_module
from cairn.node.p2p_wiring import StoreChainView
from cairn.p2p import messages as m
from cairn.p2p.api import P2PConfig
from cairn.p2p.scoring import PENALTIES
from cairn.p2p.service import P2PService
from tests.support.chain import open_chain
from tests.support.rogue import RoguePeer
from tests.support.wait import wait_until_async
from tests.unit.test_p2p_supervisor import Ignore


def test_a_stalling_peer_is_penalised_and_asked_last(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sync_module, "REQUEST_TIMEOUT", 1.0)

    async def scenario() -> None:
        with open_chain(tmp_path / "chain") as chain:
            view = StoreChainView(chain)
            service = P2PService(
                P2PConfig(tmp_path / "p2p", listen_addr="127.0.0.1", port=0),
                view,
                Ignore(),
                CollectorRegistry(),
            )
            await service.start()
            target = f"/ip4/127.0.0.1/tcp/{service.network.listen_port}/p2p/{service.peer_id}"
            staller = RoguePeer(
                view.chain_id, view.genesis_hash, head=101, range_answer=lambda _r: None
            )
            honest = RoguePeer(
                view.chain_id,
                view.genesis_hash,
                head=100,
                range_answer=lambda r: m.encode_blocks([b"block %d" % r.start]),
            )
            try:
                with staller, honest:
                    await asyncio.to_thread(staller.connect, target)
                    await asyncio.to_thread(honest.connect, target)

                    async def both_peered() -> bool:
                        return service.peer_count() == 2

                    await wait_until_async(both_peered, within=10, message="both peered")
                    first = await service.fetch_range(1, 10)
                    assert first == (honest.peer_id, [b"block 1"])
                    assert staller.range_requests == 1
                    scores = {p.peer_id: p.score for p in service.peers()}
                    # (healing at 0.1 point/s since)
                    assert scores[staller.peer_id] == pytest.approx(-PENALTIES["slow-sync"], abs=1)
                    assert scores[honest.peer_id] == 0
                    # From now on the honest peer is asked first: no wait on the staller.
                    for start in (11, 21, 31):
                        assert await service.fetch_range(start, 10) == (
                            honest.peer_id,
                            [b"block %d" % start],
                        )
                    assert staller.range_requests == 1
            finally:
                await service.stop()

    asyncio.run(scenario())
