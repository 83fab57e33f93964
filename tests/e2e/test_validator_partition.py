"""Network partitions of four validators, each a `cairn run` process on a host of its own (a
network namespace on a private LAN), the partition a real one: packets between the two
sides vanish (blackhole routes), connections are neither refused nor reset.

- 3 | 1: the three keep a quorum (3 of 4 > 2/3) and blocks go on; the one alone commits
  nothing, and after the heal it catches up onto the same chain.
- 2 | 2: neither side has a quorum: the chain halts, no side commits a block the other does
  not have, every validator reports the stall and keeps resending its votes; after the heal
  blocks resume and all four are on one chain.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.support.net import head
from tests.support.netns import Lan, netns_unavailable
from tests.support.proc import NodeProcess
from tests.support.validator_net import ValidatorNet
from tests.support.wait import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

WHY_NOT = netns_unavailable()
# After a heal, TCP retransmits what the partition swallowed with exponential back-off
# (Linux doubles from 0.2 s): after ~20 s apart the next try may be ~13 s away.
RESUME_WITHIN = 60.0


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lan, ValidatorNet]]:
    if WHY_NOT is not None:
        pytest.skip(f"network namespaces: {WHY_NOT}")
    with Lan(4) as lan, ValidatorNet(tmp_path_factory.mktemp("partition"), lan=lan) as vnet:
        vnet.start_all()
        vnet.wait_height(3, timeout=180)
        yield lan, vnet


def _heights(nodes: list[NodeProcess]) -> list[int]:
    return [head(n)[0] for n in nodes]


def _stalled(node: NodeProcess) -> int:
    """Vote timeouts the validator has waited at its height without progress."""
    status = node.call("cairn_consensusStatus")
    assert isinstance(status, dict)
    return int(status["stalled"])


def _same_blocks(nodes: list[NodeProcess], upto: int) -> None:
    """Every node that has block n has the same block n, for n up to `upto`."""
    for number in range(1, upto + 1):
        hashes = set()
        for node in nodes:
            block = node.call("eth_getBlockByNumber", hex(number), False)
            if block is not None:
                assert isinstance(block, dict)
                hashes.add(block["hash"])
        assert len(hashes) <= 1, f"#{number}: conflicting blocks {hashes}"


def test_three_keep_committing_and_the_one_alone_catches_up(
    net: tuple[Lan, ValidatorNet],
) -> None:
    lan, vnet = net
    nodes = [vnet.validators[i] for i in range(4)]
    majority, alone = nodes[:3], nodes[3]
    lan.partition((0, 1, 2), (3,))
    try:
        cut_at = max(_heights(nodes))
        # the three go on well past anything that was in flight at the cut
        vnet.wait_height(cut_at + 5, majority, timeout=90)
        assert head(alone)[0] <= cut_at + 1
        wait_until(lambda: _stalled(alone) >= 3, timeout=30, message="the one alone to stall")
    finally:
        lan.heal()
    top = max(_heights(majority))
    vnet.wait_height(top, [alone], timeout=RESUME_WITHIN)
    _same_blocks(nodes, top)


def test_two_and_two_halt_without_conflict_and_resume_after_the_heal(
    net: tuple[Lan, ValidatorNet],
) -> None:
    lan, vnet = net
    nodes = [vnet.validators[i] for i in range(4)]
    vnet.wait_height(max(_heights(nodes)), timeout=60)  # everyone level before the cut
    lan.partition((0, 1), (2, 3))
    try:
        cut_at = max(_heights(nodes))
        # No side has 2/3 of the prevotes: every validator waits in its round (Tendermint
        # moves to the next round only on 2/3 of any votes), resending its votes.
        wait_until(
            lambda: all(_stalled(n) >= 5 for n in nodes),
            timeout=60,
            message="every validator to stall without a quorum",
        )
        halted_at = _heights(nodes)
        assert max(halted_at) <= cut_at + 1  # at most the block already in flight
        _same_blocks(nodes, max(halted_at))
    finally:
        healed = time.monotonic()
        lan.heal()
    vnet.wait_height(max(halted_at) + 3, nodes, timeout=RESUME_WITHIN)
    resumed_in = time.monotonic() - healed
    print(f"blocks resumed on all four {resumed_in:.1f}s after the heal")
    top = min(_heights(nodes))
    _same_blocks(nodes, top)
