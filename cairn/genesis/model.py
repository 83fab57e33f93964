"""Frozen values describing a chain's genesis and its consensus parameters."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from eth_typing import Address

Mode = Literal["sequencer", "validators"]
FORKS = ("cancun", "prague")
DEFAULT_FORK = "prague"
ZERO_ADDRESS = Address(b"\x00" * 20)


@dataclass(frozen=True)
class AllocAccount:
    balance: int = 0
    nonce: int = 0
    code: bytes = b""
    storage: Mapping[int, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ConsensusParams:
    """The `cairn` section: who may produce blocks and how often."""

    mode: Mode
    producers: tuple[Address, ...]
    block_time: float = 0.0
    empty_blocks: bool = False
    fork: str = DEFAULT_FORK
    # validators: BFT round timeouts for round 0, in seconds (each later round adds half)
    timeout_propose: float = 2.0
    timeout_vote: float = 1.0

    @property
    def is_foreign(self) -> bool:
        """A chain made by another client (its genesis has no `cairn` section): no producer
        can sign its blocks, which enter only by trusted import."""
        return not self.producers

    @property
    def threshold(self) -> int:
        """Distinct producer signatures a commit needs: 1 for a sequencer, > 2/3 otherwise."""
        if self.mode == "sequencer":
            return 1
        return len(self.producers) * 2 // 3 + 1


@dataclass(frozen=True)
class Genesis:
    chain_id: int
    alloc: Mapping[Address, AllocAccount]
    consensus: ConsensusParams
    gas_limit: int = 30_000_000
    base_fee_per_gas: int = 1_000_000_000
    timestamp: int = 0
    extra_data: bytes = b""
    coinbase: Address = ZERO_ADDRESS
    difficulty: int = 0
    mix_hash: bytes = b"\x00" * 32
    nonce: bytes = b"\x00" * 8
