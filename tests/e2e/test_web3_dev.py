"""web3.py, unmodified, against `cairn dev`: a transfer, then an ERC-20 compiled with solc-js."""

from __future__ import annotations

from typing import Any, cast

from web3 import Web3
from web3.types import TxParams

from tests.support.chain import KEYS
from tests.support.contracts import compile_contract
from tests.support.proc import NodeProcess

RECIPIENT = Web3.to_checksum_address("0x70997970C51812dc3A010C7d01b50e0d17dc79C8")


def test_transfer_with_web3(dev_node: NodeProcess) -> None:
    w3 = Web3(Web3.HTTPProvider(dev_node.url))
    sender = w3.eth.account.from_key(KEYS[0])
    assert w3.eth.chain_id == 31337
    before_sender = w3.eth.get_balance(sender.address)
    before_recipient = w3.eth.get_balance(RECIPIENT)
    tx = {
        "to": RECIPIENT,
        "value": Web3.to_wei(1.5, "ether"),
        "nonce": w3.eth.get_transaction_count(sender.address, "pending"),
        "chainId": w3.eth.chain_id,
        "gas": 21_000,
        "maxFeePerGas": w3.eth.gas_price * 2,
        "maxPriorityFeePerGas": w3.eth.max_priority_fee,
    }
    tx_hash = w3.eth.send_raw_transaction(sender.sign_transaction(tx).raw_transaction)
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30)
    assert receipt["status"] == 1
    assert receipt["gasUsed"] == 21_000
    fee = receipt["gasUsed"] * receipt["effectiveGasPrice"]
    assert w3.eth.get_balance(RECIPIENT) == before_recipient + Web3.to_wei(1.5, "ether")
    assert w3.eth.get_balance(sender.address) == before_sender - Web3.to_wei(1.5, "ether") - fee
    block = w3.eth.get_block(receipt["blockNumber"], full_transactions=True)
    first = block["transactions"][0]
    assert not isinstance(first, bytes)
    assert first["hash"] == tx_hash
    assert w3.eth.get_transaction(tx_hash)["from"] == sender.address


def test_erc20_with_web3_and_solc(dev_node: NodeProcess) -> None:
    compiled = compile_contract("Token.sol", "Token")
    w3 = Web3(Web3.HTTPProvider(dev_node.url))
    owner = w3.eth.account.from_key(KEYS[0])
    token_factory = w3.eth.contract(abi=compiled.abi, bytecode=compiled.bytecode)

    def send(tx: dict[str, Any]) -> dict[str, Any]:
        tx.setdefault("nonce", w3.eth.get_transaction_count(owner.address, "pending"))
        tx.setdefault("chainId", 31337)
        tx.setdefault("gas", w3.eth.estimate_gas(cast(TxParams, {**tx, "from": owner.address})))
        tx.setdefault("maxFeePerGas", w3.eth.gas_price * 2)
        tx.setdefault("maxPriorityFeePerGas", w3.eth.max_priority_fee)
        tx_hash = w3.eth.send_raw_transaction(owner.sign_transaction(tx).raw_transaction)
        return dict(w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30))

    supply = 10**6 * 10**18
    deploy = token_factory.constructor("Cairn Test", "CTT", supply).build_transaction(
        {"from": owner.address, "nonce": w3.eth.get_transaction_count(owner.address, "pending")}
    )
    deploy_receipt = send({k: v for k, v in deploy.items() if k != "from"})
    assert deploy_receipt["status"] == 1
    address = deploy_receipt["contractAddress"]
    assert address is not None
    assert w3.eth.get_code(address) == bytes.fromhex(compiled.deployed[2:])
    token = w3.eth.contract(address=address, abi=compiled.abi)
    assert token.functions.symbol().call() == "CTT"
    assert token.functions.balanceOf(owner.address).call() == supply

    call = token.functions.transfer(RECIPIENT, 12345).build_transaction(
        {"from": owner.address, "nonce": w3.eth.get_transaction_count(owner.address, "pending")}
    )
    receipt = send({k: v for k, v in call.items() if k != "from"})
    assert receipt["status"] == 1
    assert token.functions.balanceOf(RECIPIENT).call() == 12345
    assert token.functions.balanceOf(owner.address).call() == supply - 12345
    events = token.events.Transfer().process_receipt(receipt)
    assert len(events) == 1
    assert events[0]["args"]["from"] == owner.address
    assert events[0]["args"]["to"] == RECIPIENT
    assert events[0]["args"]["value"] == 12345
    assert receipt["logs"][0]["address"] == address
