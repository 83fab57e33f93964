"""Which refused gossiped transactions count against the peer who sent them, and what a
gossiped batch costs to admit: repeats and known transactions are never decoded again,
junk is charged every time it comes but decoded once (issue 12)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

import cairn.txpool.pool as pool_module
from cairn.chain.chain import Chain
from cairn.errors import InvalidTransaction
from cairn.txpool.admission import decode_and_check
from cairn.txpool.pool import PoolLimits, TxPool
from cairn.txpool.relay import TxRelay, is_peer_fault
from tests.support.chain import open_chain, transfer


@pytest.mark.parametrize(
    "reason",
    [
        "already known",
        "nonce too low: address 0x00 tx: 1 state: 2",
        "replacement transaction underpriced",
        "insufficient funds for gas * price + value: address 0x00 have 0 want 1",
        "txpool is full",
        "max fee per gas less than block base fee: address 0x00",
    ],
)
def test_state_dependent_refusals_are_not_the_peers_fault(reason: str) -> None:
    assert not is_peer_fault(InvalidTransaction(reason))


@pytest.mark.parametrize(
    "reason",
    [
        "invalid chain id for signer: have 1 want 31337",
        "invalid sender: bad signature",
        "rlp: malformed transaction: junk",
        "intrinsic gas too low: gas 1, minimum needed 21000",
        "oversized data: transaction size 200000, limit 131072",
    ],
)
def test_intrinsic_faults_are(reason: str) -> None:
    assert is_peer_fault(InvalidTransaction(reason))


# ---------------------------------------------------------------- gossiped batches (issue 12)
class CountingDecode:
    """Counts the pool's decode-and-recover calls (the real function still runs)."""

    def __init__(self) -> None:
        self.calls = 0
        self._real = decode_and_check

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return self._real(*args, **kwargs)


def _admit(chain: Chain, batches: list[list[bytes]], decode: CountingDecode) -> list[str]:
    """Admit each batch through a relay on a real pool; the fault raised per batch."""

    async def run() -> list[str]:
        pool = TxPool(chain.fork, chain.chain_id, chain.head_view, chain.store, PoolLimits())
        published: list[list[bytes]] = []
        relay = TxRelay(pool, published.append)
        faults = []
        for batch in batches:
            try:
                relay.admit_gossip(batch)
                faults.append("")
            except InvalidTransaction as exc:
                faults.append(exc.reason)
        relay.close()
        assert len(pool) == 2 and published == []  # nothing from gossip is echoed back
        return faults

    return asyncio.run(run())


def test_repeats_in_a_batch_are_decoded_and_recovered_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    decode = CountingDecode()
    monkeypatch.setattr(pool_module, "decode_and_check", decode)
    one, two = transfer(1, 0), transfer(2, 0)
    with open_chain(tmp_path) as chain:
        faults = _admit(chain, [[one] * 500 + [two] * 3, [two, one] * 100], decode)
    assert faults == ["", ""]
    assert decode.calls == 2  # not 503, and nothing again for the known ones


def test_junk_is_charged_every_time_and_decoded_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    decode = CountingDecode()
    monkeypatch.setattr(pool_module, "decode_and_check", decode)
    honest = [transfer(1, 0), transfer(2, 0)]
    wrong_chain = transfer(3, 0, chain_id=999)
    undecodable = b"\xf8\xff" + b"\x01" * 10
    with open_chain(tmp_path) as chain:
        faults = _admit(
            chain,
            [[*honest, wrong_chain], [wrong_chain] * 200, [undecodable] * 50, [undecodable]],
            decode,
        )
    assert "invalid chain id" in faults[0] and "invalid chain id" in faults[1]
    assert faults[2].startswith("rlp") and faults[3] == faults[2]
    assert decode.calls == 4  # two honest, one wrong-chain, one undecodable
