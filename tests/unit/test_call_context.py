"""The block context and price of a call on a real chain (LevelDB, py-evm): the next block's
context (Anvil's, `cairn dev`) or the named block's own (geth's, `cairn run`), and a priced
call paying geth's effective gas price against the block's base fee."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_typing import Address

from cairn.chain.chain import Chain
from cairn.errors import ExecutionFailed
from cairn.execution.call import CallOverrides, CallParams, CallRunner
from cairn.execution.overrides import AccountOverride
from tests.support.chain import ADDRESSES, mine, open_chain, transfer

# Creation code returning NUMBER, GASPRICE, BASEFEE, TIMESTAMP as four words (a call with no
# `to` answers what the creation code returns).
ENV = bytes.fromhex("436000523a602052486040524260605260806000f3")


def _env(output: bytes) -> tuple[int, int, int, int]:
    words = [int.from_bytes(output[i : i + 32], "big") for i in range(0, 128, 32)]
    return words[0], words[1], words[2], words[3]


def _base_fee(chain: Chain) -> int:
    base_fee = chain.head.base_fee_per_gas
    assert base_fee is not None and base_fee > 0
    return base_fee


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[Chain]:
    with open_chain(tmp_path) as opened:
        mine(opened, [transfer(0, 0)])
        yield opened


def test_next_block_context_is_anvils(chain: Chain) -> None:
    runner = CallRunner(chain.reader, 50_000_000, next_block=True)
    number, price, base_fee, timestamp = _env(
        runner.call(chain.head, CallParams(sender=ADDRESSES[0], data=ENV)).output
    )
    assert number == chain.head.block_number + 1
    assert timestamp > chain.head.timestamp
    assert (price, base_fee) == (0, 0)


def test_named_block_context_is_geths(chain: Chain) -> None:
    runner = CallRunner(chain.reader, 50_000_000, next_block=False)
    head = chain.head
    number, price, base_fee, timestamp = _env(
        runner.call(head, CallParams(sender=ADDRESSES[0], data=ENV)).output
    )
    assert (number, timestamp) == (head.block_number, head.timestamp)
    assert (price, base_fee) == (0, 0)  # unpriced: nothing paid, base fee 0 (geth's NoBaseFee)


def test_a_priced_call_pays_the_effective_price(chain: Chain) -> None:
    runner = CallRunner(chain.reader, 50_000_000, next_block=False)
    head = chain.head
    base = _base_fee(chain)
    priced = CallParams(sender=ADDRESSES[0], data=ENV, max_fee=base * 2, max_priority_fee=7)
    _, price, base_fee, _ = _env(runner.call(head, priced).output)
    assert (price, base_fee) == (base + 7, base)
    legacy = CallParams(sender=ADDRESSES[0], data=ENV, gas_price=base + 1)
    assert _env(runner.call(head, legacy).output)[1] == base + 1


def test_a_priced_call_needs_the_funds_and_a_fee_over_the_base_fee(chain: Chain) -> None:
    runner = CallRunner(chain.reader, 50_000_000, next_block=False)
    head = chain.head
    base = _base_fee(chain)
    broke = Address(b"\x42" * 20)
    with pytest.raises(ExecutionFailed, match="insufficient funds"):
        runner.call(head, CallParams(sender=broke, data=ENV, gas_price=base))
    # the same call unpriced runs: nothing to pay
    assert runner.call(head, CallParams(sender=broke, data=ENV)).output
    with pytest.raises(ExecutionFailed, match="max fee per gas less than block base fee"):
        runner.call(head, CallParams(sender=ADDRESSES[0], data=ENV, max_fee=base - 1))


def test_a_priced_estimate_searches_within_the_senders_funds(chain: Chain) -> None:
    runner = CallRunner(chain.reader, 50_000_000, next_block=False)
    head = chain.head
    base = _base_fee(chain)
    rich = CallParams(sender=ADDRESSES[0], to=ADDRESSES[1], gas_price=base)
    assert runner.estimate_gas(head, rich) == 21_000
    # funds for 20,000 gas only: geth's "gas required exceeds allowance"
    poor = Address(b"\x43" * 20)
    overrides = CallOverrides(state=(AccountOverride(poor, balance=20_000 * base),))
    short = CallParams(sender=poor, to=ADDRESSES[1], gas_price=base, overrides=overrides)
    with pytest.raises(ExecutionFailed, match=r"^gas required exceeds allowance \(20000\)$"):
        runner.estimate_gas(head, short)
