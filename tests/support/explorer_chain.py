"""A small chain of what explorers and ETL tools index, made on a live `cairn dev` node:
contract deployments (one deploying another), ERC-20 transfers, reverts (mined, status 0),
value moved by internal calls, nested calls with a delegatecall and a caught revert."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from eth_abi.abi import encode
from eth_account import Account
from eth_utils import keccak, to_checksum_address

from tests.support import rpc
from tests.support.chain import KEYS
from tests.support.contracts import compile_contract
from tests.support.wait import wait_until

CHAIN_ID = 31337
PAYEES = ("0x" + "a1" * 20, "0x" + "b2" * 20)


@dataclass
class ExplorerChain:
    url: str
    token: str = ""
    splitter: str = ""
    probe: str = ""
    deployments: list[str] = field(default_factory=list)  # tx hashes
    token_transfers: list[tuple[str, str, str, int]] = field(
        default_factory=list
    )  # tx, from, to, value
    reverted: list[str] = field(default_factory=list)
    splits: list[tuple[str, int]] = field(default_factory=list)  # tx, value
    nested: list[str] = field(default_factory=list)
    tx_count: int = 0
    head: int = 0


def _selector(signature: str) -> bytes:
    return keccak(text=signature)[:4]


class _Sender:
    def __init__(self, url: str, key_index: int) -> None:
        self.url = url
        self.account = Account.from_key(KEYS[key_index])
        self.nonce = int(
            rpc.call(url, "eth_getTransactionCount", self.account.address, "pending"), 16
        )

    def send(
        self, to: str | None, data: bytes = b"", value: int = 0, gas: int = 3_000_000
    ) -> dict[str, Any]:
        tx: dict[str, Any] = {
            "type": 2,
            "chainId": CHAIN_ID,
            "nonce": self.nonce,
            "value": value,
            "gas": gas,
            "maxFeePerGas": 10 * 10**9,
            "maxPriorityFeePerGas": 10**9,
            "data": data,
        }
        if to is not None:
            tx["to"] = to_checksum_address(to)
        self.nonce += 1
        raw = Account.sign_transaction(tx, self.account.key).raw_transaction
        tx_hash = rpc.call(self.url, "eth_sendRawTransaction", "0x" + bytes(raw).hex())
        receipt: dict[str, Any] = {}

        def mined() -> bool:
            receipt.update(rpc.call(self.url, "eth_getTransactionReceipt", tx_hash) or {})
            return bool(receipt)

        wait_until(mined, timeout=30, message=f"receipt of {tx_hash}")
        return receipt


def build_explorer_chain(url: str) -> ExplorerChain:
    chain = ExplorerChain(url)
    owner, other = _Sender(url, 0), _Sender(url, 1)

    token = compile_contract("Token.sol", "Token")
    created = owner.send(
        None,
        bytes.fromhex(token.bytecode[2:])
        + encode(["string", "string", "uint256"], ["Cairn Test", "CTT", 10**24]),
    )
    chain.token = created["contractAddress"]
    chain.deployments.append(created["transactionHash"])
    chain.token_transfers.append(
        (created["transactionHash"], "0x" + "00" * 20, owner.account.address.lower(), 10**24)
    )

    splitter = compile_contract("Splitter.sol", "Splitter")
    created = owner.send(
        None, bytes.fromhex(splitter.bytecode[2:]) + encode(["address", "address"], list(PAYEES))
    )
    chain.splitter = created["contractAddress"]
    chain.deployments.append(created["transactionHash"])

    probe = compile_contract("Probe.sol", "Probe")
    created = owner.send(None, bytes.fromhex(probe.bytecode[2:]), value=10)
    chain.probe = created["contractAddress"]
    chain.deployments.append(created["transactionHash"])  # deploys a Child from its constructor

    transfer = _selector("transfer(address,uint256)")
    for i, (sender, to, value) in enumerate(
        [
            (owner, other.account.address, 5 * 10**18),
            (owner, PAYEES[0], 7),
            (owner, other.account.address, 11),
        ]
    ):
        receipt = sender.send(
            chain.token, transfer + encode(["address", "uint256"], [to, value]), gas=100_000
        )
        assert int(receipt["status"], 16) == 1, i
        chain.token_transfers.append(
            (receipt["transactionHash"], sender.account.address.lower(), to.lower(), value)
        )
    receipt = other.send(
        chain.token, transfer + encode(["address", "uint256"], [PAYEES[1], 2 * 10**18]), gas=100_000
    )
    chain.token_transfers.append(
        (receipt["transactionHash"], other.account.address.lower(), PAYEES[1], 2 * 10**18)
    )

    # reverts, mined with a fixed gas: more than the balance, and Splitter.fail()
    receipt = other.send(
        chain.token, transfer + encode(["address", "uint256"], [PAYEES[0], 10**30]), gas=100_000
    )
    assert int(receipt["status"], 16) == 0
    chain.reverted.append(receipt["transactionHash"])
    receipt = owner.send(chain.splitter, _selector("fail()"), gas=100_000)
    assert int(receipt["status"], 16) == 0
    chain.reverted.append(receipt["transactionHash"])

    for value in (1000, 3001):
        receipt = owner.send(chain.splitter, _selector("split()"), value=value, gas=200_000)
        assert int(receipt["status"], 16) == 1
        chain.splits.append((receipt["transactionHash"], value))

    receipt = owner.send(
        chain.probe, _selector("nested(uint256)") + encode(["uint256"], [21]), gas=500_000
    )
    assert int(receipt["status"], 16) == 1
    chain.nested.append(receipt["transactionHash"])

    chain.tx_count = 3 + 4 + 2 + 2 + 1
    chain.head = int(rpc.call(url, "eth_blockNumber"), 16)
    return chain
