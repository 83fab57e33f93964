"""Each invalid transaction sent over RPC gets geth's error and changes nothing."""

from __future__ import annotations

import rlp
from eth_account import Account

from tests.support import rpc
from tests.support.chain import ADDRESSES, KEYS, transfer
from tests.support.proc import NodeProcess
from tests.support.wait import wait_until


def snapshot(node: NodeProcess) -> tuple[object, ...]:
    sender = "0x" + ADDRESSES[0].hex()
    return (
        node.call("eth_blockNumber"),
        node.call("eth_getBalance", sender, "latest"),
        node.call("eth_getTransactionCount", sender, "pending"),
        node.call("eth_getBlockByNumber", "latest", False),
    )


def bad_signature(raw: bytes) -> bytes:
    fields = rlp.decode(raw[1:])
    fields[-1] = b""  # s = 0
    return raw[:1] + bytes(rlp.encode(fields))


def test_invalid_transactions_over_rpc(dev_node: NodeProcess) -> None:
    # one valid transaction first, so "nonce too low" has something to be low against
    dev_node.call("eth_sendRawTransaction", "0x" + transfer(0, 0).hex())
    wait_until(lambda: dev_node.call("eth_blockNumber") == "0x1", timeout=30, message="block 1")
    poor = Account.create()
    cases = {
        "bad signature": (bad_signature(transfer(0, 1)), "invalid transaction v, r, s values"),
        "wrong chain id": (transfer(0, 1, chain_id=1), "invalid chain id for signer"),
        "nonce too low": (transfer(0, 0), "nonce too low"),
        "insufficient funds": (
            transfer(0, 1, value=10**30),
            "insufficient funds for gas * price + value",
        ),
        "intrinsic gas too low": (transfer(0, 1, gas=20_999), "intrinsic gas too low"),
        "oversized": (
            transfer(0, 1, gas=29_000_000, data=b"\x01" * (129 * 1024)),
            "oversized data",
        ),
        "fee cap below base fee": (
            transfer(0, 1, max_fee=1, tip=1),
            "max fee per gas less than block base fee",
        ),
        "malformed rlp": (b"\x02\xf8\x05\x01", "rlp"),
        "empty account": (
            bytes(
                Account.sign_transaction(
                    {
                        "type": 2,
                        "chainId": 31337,
                        "nonce": 0,
                        "to": poor.address,
                        "value": 0,
                        "gas": 21000,
                        "maxFeePerGas": 3 * 10**9,
                        "maxPriorityFeePerGas": 1,
                    },
                    poor.key,
                ).raw_transaction
            ),
            "insufficient funds",
        ),
    }
    before = snapshot(dev_node)
    for name, (raw, message) in cases.items():
        answer = rpc.post(
            dev_node.url,
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "eth_sendRawTransaction",
                "params": ["0x" + raw.hex()],
            },
        )
        assert "error" in answer, f"{name} was accepted"
        assert answer["error"]["code"] == -32000, name
        assert message in answer["error"]["message"], f"{name}: {answer['error']['message']}"
        assert snapshot(dev_node) == before, f"{name} changed state"
    pending = rpc.call(dev_node.url, "eth_getBlockByNumber", "pending", False)
    assert pending["number"] == "0x1"
    # the node keeps serving: a valid transaction still goes through
    dev_node.call("eth_sendRawTransaction", "0x" + transfer(0, 1).hex())
    wait_until(lambda: dev_node.call("eth_blockNumber") == "0x2", timeout=30, message="block 2")
    assert KEYS
