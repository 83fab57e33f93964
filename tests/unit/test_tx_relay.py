"""Which refused gossiped transactions count against the peer who sent them."""

from __future__ import annotations

import pytest

from cairn.errors import InvalidTransaction
from cairn.txpool.relay import is_peer_fault


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
