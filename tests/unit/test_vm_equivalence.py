"""Cairn's VM subclasses (cairn/execution/vm.py) change how py-evm spends its time, never what
it computes: the same block built with py-evm's own VM class has the same header (every
root, gas used, bloom, requests hash) and the same receipts."""

from __future__ import annotations

from pathlib import Path

import pytest
import rlp
from eth_abi.abi import encode as abi_encode
from eth_utils import function_signature_to_4byte_selector, keccak, to_checksum_address

from cairn.execution.builder import BlockEnv, BlockExecutor
from cairn.execution.forks import _FORKS
from cairn.genesis.dev import dev_genesis
from tests.support.chain import ADDRESSES, KEYS, legacy, mine, open_chain, transfer
from tests.support.contracts import compile_contract
from tests.support.wallet import Wallet


@pytest.mark.parametrize("fork", sorted(_FORKS))
def test_cairn_vm_builds_what_py_evm_builds(tmp_path: Path, fork: str) -> None:
    token = compile_contract("Token.sol", "Token")
    constructor = abi_encode(["string", "string", "uint256"], ["Eq", "EQ", 10**24])
    deploy = Wallet(KEYS[0]).sign(None, data=token.bytecode + constructor.hex(), gas=2_000_000)
    address = to_checksum_address(keccak(rlp.encode([ADDRESSES[0], 0]))[12:])
    select = function_signature_to_4byte_selector("transfer(address,uint256)")
    calls = [select + abi_encode(["address", "uint256"], [a, 10**18]) for a in ADDRESSES[1:6]]
    transfers = [
        transfer(0, 1 + i, to=address, value=0, gas=90_000, data=data)
        for i, data in enumerate(calls)
    ]
    plain = [transfer(1, n) for n in range(3)] + [legacy(2, 0), transfer(3, 0, value=10**18)]
    with open_chain(tmp_path, dev_genesis(fork=fork)) as chain:
        # the token's code is then read from storage, as in real use
        mine(chain, [bytes.fromhex(deploy[2:])])
        head = chain.head
        env = BlockEnv(head, head.timestamp + 1, chain.genesis.coinbase, head.gas_limit)
        txs = [chain.fork.decode_transaction(r) for r in transfers + plain]
        ours = chain.executor.build(env, txs)
        reference = BlockExecutor(chain.reader)
        reference.vm_class = _FORKS[fork][0]  # py-evm's VM, none of Cairn's subclasses
        theirs = reference.build(env, txs)
    assert chain.executor.vm_class is not reference.vm_class
    assert not ours.rejected and not theirs.rejected
    assert rlp.encode(ours.header) == rlp.encode(theirs.header)
    assert [r.encode() for r in ours.receipts] == [r.encode() for r in theirs.receipts]
    assert ours.state_writes == theirs.state_writes
