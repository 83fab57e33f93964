"""The dev chain: chain id 31337 and Anvil's ten accounts from the well-known test mnemonic.

The keys here are public knowledge; they exist so that scripts written for Anvil run unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from eth_account import Account
from eth_typing import Address
from eth_utils import keccak, to_canonical_address

from cairn.genesis.model import DEFAULT_FORK, AllocAccount, ConsensusParams, Genesis

DEV_MNEMONIC = "test test test test test test test test test test test junk"
DEV_CHAIN_ID = 31337
DEV_BALANCE = 10_000 * 10**18
DEV_ACCOUNT_COUNT = 10
# The dev sequencer signs commits only; it is not a funded account. Public, like the mnemonic.
DEV_PRODUCER_KEY = keccak(b"cairn dev sequencer key (public, never use outside dev)")


@dataclass(frozen=True)
class DevAccount:
    address: Address
    private_key: bytes


@cache
def dev_accounts(count: int = DEV_ACCOUNT_COUNT) -> tuple[DevAccount, ...]:
    """m/44'/60'/0'/0/i of the test mnemonic, as Anvil and Hardhat derive them."""
    Account.enable_unaudited_hdwallet_features()
    result = []
    for i in range(count):
        acct = Account.from_mnemonic(DEV_MNEMONIC, account_path=f"m/44'/60'/0'/0/{i}")
        result.append(DevAccount(Address(to_canonical_address(acct.address)), bytes(acct.key)))
    return tuple(result)


def dev_producer_address() -> Address:
    return Address(to_canonical_address(Account.from_key(DEV_PRODUCER_KEY).address))


def dev_genesis(
    *,
    chain_id: int = DEV_CHAIN_ID,
    gas_limit: int = 30_000_000,
    base_fee_per_gas: int = 1_000_000_000,
    block_time: float = 0.0,
    accounts: int = DEV_ACCOUNT_COUNT,
    balance: int = DEV_BALANCE,
    fork: str = DEFAULT_FORK,
) -> Genesis:
    return Genesis(
        chain_id=chain_id,
        alloc={a.address: AllocAccount(balance=balance) for a in dev_accounts(accounts)},
        consensus=ConsensusParams(
            mode="sequencer",
            producers=(dev_producer_address(),),
            block_time=block_time,
            fork=fork,
        ),
        gas_limit=gas_limit,
        base_fee_per_gas=base_fee_per_gas,
    )
