"""Anvil/Hardhat dev helpers against a real `cairn dev` process: each helper's effect read
back through RPC, then again after the node was stopped and started on the same datadir."""

from __future__ import annotations

import time
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct, encode_typed_data

from tests.support import rpc
from tests.support.chain import ADDRESSES, KEYS
from tests.support.proc import NodeProcess
from tests.support.txs import batch, receipt, sign
from tests.support.wait import wait_until

WHALE = "0x00000000000000000000000000000000000Ba1E5"
OTHER = "0x0000000000000000000000000000000000c0FFEE"
CONTRACT = "0x00000000000000000000000000000000000C0dE1"
DEAD = "0x000000000000000000000000000000000000dEaD"
# runtime code: return the 32-byte word 42 (PUSH1 42, PUSH1 0, MSTORE, PUSH1 32, PUSH1 0, RETURN)
RETURNS_42 = "0x602a60005260206000f3"
OVERRIDE_EXTRA = "0x" + b"cairn dev: state override".hex()
DEV0 = "0x" + ADDRESSES[0].hex()
TYPED = {
    "types": {
        "EIP712Domain": [
            {"name": "name", "type": "string"},
            {"name": "chainId", "type": "uint256"},
        ],
        "Mail": [{"name": "to", "type": "address"}, {"name": "contents", "type": "string"}],
    },
    "primaryType": "Mail",
    "domain": {"name": "Cairn", "chainId": 31337},
    "message": {"to": DEAD, "contents": "hello"},
}


class Client:
    def __init__(self, node: NodeProcess) -> None:
        self.url = node.url

    def __call__(self, method: str, *params: Any) -> Any:
        return rpc.call(self.url, method, *params)

    def fails(self, method: str, *params: Any) -> rpc.RpcFailure:
        with pytest.raises(rpc.RpcFailure) as info:
            rpc.call(self.url, method, *params)
        return info.value

    def number(self) -> int:
        return int(self("eth_blockNumber"), 16)

    def block(self, tag: str | int = "latest") -> dict[str, Any]:
        found: dict[str, Any] = self(
            "eth_getBlockByNumber", hex(tag) if isinstance(tag, int) else tag, False
        )
        return found

    def balance(self, who: str) -> int:
        return int(self("eth_getBalance", who, "latest"), 16)


def test_state_helpers_commit_blocks_that_survive_restart(tmp_path: Path) -> None:
    node = NodeProcess(tmp_path / "dev", "dev").start()
    try:
        c = Client(node)
        start = c.number()
        assert c("anvil_setBalance", WHALE, hex(5 * 10**18)) is None
        assert c.balance(WHALE) == 5 * 10**18
        override_block = c.block()
        assert int(override_block["number"], 16) == start + 1
        assert override_block["transactions"] == []
        assert override_block["extraData"] == OVERRIDE_EXTRA
        assert c("hardhat_setBalance", OTHER, hex(10**18)) is None
        assert c.balance(OTHER) == 10**18

        assert c("anvil_setNonce", WHALE, "0x7") is None
        assert c("eth_getTransactionCount", WHALE, "latest") == "0x7"
        assert c("hardhat_setNonce", OTHER, 3) is None
        assert c("eth_getTransactionCount", OTHER, "latest") == "0x3"

        assert c("anvil_setCode", CONTRACT, RETURNS_42) is None
        assert c("eth_getCode", CONTRACT, "latest") == RETURNS_42
        assert int(c("eth_call", {"to": CONTRACT, "data": "0x"}, "latest"), 16) == 42
        assert c("hardhat_setCode", OTHER, "0x00") is None
        assert c("eth_getCode", OTHER, "latest") == "0x00"

        slot, word = "0x" + "00" * 31 + "05", "0x" + "ab" * 32
        assert c("anvil_setStorageAt", CONTRACT, slot, word) is True
        assert c("eth_getStorageAt", CONTRACT, "0x5", "latest") == word
        assert c("hardhat_setStorageAt", CONTRACT, "0x6", "0x" + "00" * 31 + "07") is True
        assert c("eth_getStorageAt", CONTRACT, "0x6", "latest") == "0x" + "00" * 31 + "07"

        # the history keeps every step: the balance before the first override is still 0
        assert c("eth_getBalance", WHALE, hex(start)) == "0x0"
        # calls arriving together share one block, applied in order
        before = c.number()
        batch(
            c.url,
            [
                ("anvil_setBalance", [DEAD, "0x1"]),
                ("anvil_setBalance", [DEAD, "0x2"]),
                ("anvil_setNonce", [DEAD, "0x9"]),
            ],
        )
        assert c.number() == before + 1
        assert c.balance(DEAD) == 2
        assert c("eth_getTransactionCount", DEAD, "latest") == "0x9"

        # impersonation: send from an address nobody has the key of
        refused = c.fails("eth_sendTransaction", {"from": WHALE, "to": DEAD, "value": "0x5"})
        assert "anvil_impersonateAccount" in refused.message
        assert c("anvil_impersonateAccount", WHALE) is None
        tx_hash = c("eth_sendTransaction", {"from": WHALE, "to": DEAD, "value": "0x5"})
        mined = c("eth_getTransactionReceipt", tx_hash)  # automine answers once mined
        assert mined is not None and mined["status"] == "0x1"
        assert mined["from"] == WHALE.lower()
        assert c("eth_getTransactionByHash", tx_hash)["nonce"] == "0x7"
        assert c("eth_getTransactionCount", WHALE, "latest") == "0x8"
        assert c.balance(DEAD) == 7
        assert c("anvil_stopImpersonatingAccount", WHALE) is None
        c.fails("eth_sendTransaction", {"from": WHALE, "to": DEAD, "value": "0x5"})
        assert c("anvil_autoImpersonateAccount", True) is None
        auto = c(
            "eth_sendTransaction", {"from": OTHER, "to": DEAD, "value": "0x0", "gas": "0x5208"}
        )
        assert c("eth_getTransactionReceipt", auto)["from"] == OTHER.lower()
        assert c("anvil_autoImpersonateAccount", False) is None
        unknown = c.fails("eth_sendTransaction", {"from": OTHER, "to": DEAD, "value": "0x0"})
        assert "impersonated" in unknown.message
        assert c("hardhat_impersonateAccount", WHALE) is None  # kept through the restart

        # signing with the dev accounts
        signature = c("eth_sign", DEV0, "0xdeadbeef")
        message = encode_defunct(primitive=bytes.fromhex("deadbeef"))
        assert (
            Account.recover_message(message, signature=signature)
            == Account.from_key(KEYS[0]).address
        )
        assert c("personal_sign", "0xdeadbeef", DEV0) == signature
        typed = c("eth_signTypedData_v4", DEV0, TYPED)
        assert (
            Account.recover_message(encode_typed_data(full_message=TYPED), signature=typed)
            == Account.from_key(KEYS[0]).address
        )
        assert "unknown account" in c.fails("eth_sign", WHALE, "0x00").message

        # manual mining: an impersonated send waits for a block, durably
        assert c("evm_setAutomine", False) is None
        waiting = c("eth_sendTransaction", {"from": WHALE, "to": DEAD, "value": "0x2"})
        assert c("eth_getTransactionReceipt", waiting) is None

        expected = {
            "whale": c.balance(WHALE),
            "code": c("eth_getCode", CONTRACT, "latest"),
            "storage": c("eth_getStorageAt", CONTRACT, "0x5", "latest"),
            "nonce": c("eth_getTransactionCount", WHALE, "latest"),
            "head": c.block(),
        }
    finally:
        assert node.stop() == 0

    node.start()
    try:
        c = Client(node)
        # the start mines in automine mode again (--block-time), first the waiting send
        mined = receipt(c.url, waiting)
        assert mined["status"] == "0x1" and mined["from"] == WHALE.lower()
        assert int(mined["blockNumber"], 16) == int(expected["head"]["number"], 16) + 1
        assert c.block(int(expected["head"]["number"], 16))["hash"] == expected["head"]["hash"]
        assert c.balance(WHALE) < expected["whale"] - 2
        assert c("eth_getCode", CONTRACT, "latest") == expected["code"]
        assert c("eth_getStorageAt", CONTRACT, "0x5", "latest") == expected["storage"]
        assert c("eth_getTransactionCount", WHALE, "latest") == hex(int(expected["nonce"], 16) + 1)
        # impersonation survived the restart
        again = c("eth_sendTransaction", {"from": WHALE, "to": DEAD, "value": "0x1"})
        assert c("eth_getTransactionReceipt", again)["status"] == "0x1"
    finally:
        node.stop()


def test_time_mining_snapshots_and_restart(tmp_path: Path) -> None:
    node = NodeProcess(tmp_path / "dev", "dev").start()
    try:
        c = Client(node)
        # evm_increaseTime returns the total offset, as Anvil
        assert c("evm_increaseTime", 3600) == 3600
        assert c("anvil_increaseTime", "0x10") == 3616
        assert c("evm_mine") == "0x0"
        assert int(c.block()["timestamp"], 16) >= int(time.time()) + 3600 - 5

        target = int(c.block()["timestamp"], 16) + 1000
        assert c("evm_setNextBlockTimestamp", target) is None
        assert c("evm_mine") == "0x0"
        assert int(c.block()["timestamp"], 16) == target
        too_low = c.fails("evm_setNextBlockTimestamp", target)
        assert too_low.code == -32602 and "not after the latest block" in too_low.message
        assert c("evm_mine", target + 50) == "0x0"
        assert int(c.block()["timestamp"], 16) == target + 50

        before = c.number()
        assert c("evm_mine", {"blocks": 3}) == "0x0"
        assert c.number() == before + 3
        assert c("anvil_mine", 4, 10) is None
        assert c.number() == before + 7
        stamps = [int(c.block(n)["timestamp"], 16) for n in range(before + 3, before + 8)]
        assert [b - a for a, b in pairwise(stamps)] == [10] * 4
        assert c("hardhat_mine", "0x2") is None
        assert c.number() == before + 9
        assert c("anvil_setBlockTimestampInterval", 100) is None
        assert c("evm_mine", {"blocks": 2}) == "0x0"
        spaced = [int(c.block(c.number() - i)["timestamp"], 16) for i in (2, 1, 0)]
        assert [b - a for a, b in pairwise(spaced)] == [100, 100]
        assert c("anvil_removeBlockTimestampInterval") is True
        too_many = c.fails("anvil_mine", 1_000_000)
        assert too_many.code == -32602 and "at most" in too_many.message

        # manual mining: a transaction waits in the pool until evm_mine
        assert c("anvil_getAutomine") is True
        assert c("evm_setAutomine", False) is None
        assert c("hardhat_getAutomine") is False
        nonce = int(c("eth_getTransactionCount", DEV0, "pending"), 16)
        pending_hash = c("eth_sendRawTransaction", sign(0, nonce, to=DEAD, value=1))
        assert c("txpool_status") == {"pending": "0x1", "queued": "0x0"}
        assert c("eth_getTransactionReceipt", pending_hash) is None
        assert c("evm_mine") == "0x0"
        assert c("eth_getTransactionReceipt", pending_hash)["status"] == "0x1"
        # interval mining makes blocks on its own, then 0 turns it off again
        first = c.number()
        assert c("evm_setIntervalMining", 1) is None
        wait_until(lambda: c.number() >= first + 2, timeout=20, message="interval blocks")
        assert c("evm_setIntervalMining", 0) is None
        assert c("anvil_getAutomine") is False
        assert c("evm_setAutomine", True) is None
        # with automine, a raw transaction is answered once it is mined, as Anvil does
        nonce = int(c("eth_getTransactionCount", DEV0, "pending"), 16)
        instant = c("eth_sendRawTransaction", sign(0, nonce, to=DEAD, value=1))
        assert c("eth_getTransactionReceipt", instant)["status"] == "0x1"

        # snapshots: revert rewinds blocks, state, receipts and the clock
        offset = c("evm_increaseTime", 0)
        snap = c("evm_snapshot")
        at_snapshot = c.block()
        whale_before = c.balance(WHALE)
        c("anvil_setBalance", WHALE, "0x1234")
        nonce = int(c("eth_getTransactionCount", DEV0, "pending"), 16)
        gone = c("eth_sendRawTransaction", sign(0, nonce, to=DEAD, value=3))
        receipt(c.url, gone)
        c("evm_increaseTime", 86_400)
        inner = c("evm_snapshot")
        c("evm_mine", {"blocks": 2})
        assert c("evm_revert", snap) is True
        assert c.block()["hash"] == at_snapshot["hash"]
        assert c.balance(WHALE) == whale_before
        assert c("eth_getTransactionReceipt", gone) is None
        assert c("eth_getTransactionByHash", gone) is None
        assert c("eth_getBlockByNumber", hex(c.number() + 1), False) is None
        assert c("evm_revert", snap) is False  # used up, with every later snapshot
        assert c("evm_revert", inner) is False
        assert c("evm_increaseTime", 0) == offset  # the clock went back too
        # the chain goes on from the snapshot, at the same height, with new blocks
        nonce = int(c("eth_getTransactionCount", DEV0, "pending"), 16)
        assert nonce == int(c("eth_getTransactionCount", DEV0, "latest"), 16)
        replacement = c("eth_sendRawTransaction", sign(0, nonce, to=DEAD, value=4))
        assert int(c("eth_getTransactionReceipt", replacement)["blockNumber"], 16) == (
            int(at_snapshot["number"], 16) + 1
        )

        durable = c("evm_snapshot")
        durable_head = c.block()
        c("anvil_setBalance", WHALE, "0x99")
        c("evm_increaseTime", 7)
    finally:
        assert node.stop() == 0

    node.start()
    try:
        c = Client(node)
        assert c.balance(WHALE) == 0x99
        assert c("evm_increaseTime", 0) == offset + 7  # the offset survived the restart
        assert c("evm_revert", durable) is True  # and so did the snapshot
        assert c.block()["hash"] == durable_head["hash"]
        assert c.balance(WHALE) == whale_before
    finally:
        node.stop()
    # the rewind was durable: a third start still sees the reverted head
    node.start()
    try:
        assert Client(node).block()["hash"] == durable_head["hash"]
    finally:
        node.stop()


def test_block_time_mines_empty_blocks_and_keeps_them(tmp_path: Path) -> None:
    """`--block-time N` makes a block every N seconds with or without transactions, as
    Anvil's does; the blocks, one second apart, are still there after a restart."""
    node = NodeProcess(tmp_path / "dev", "dev", "--block-time", "1").start()
    try:
        c = Client(node)
        wait_until(lambda: c.number() >= 3, timeout=20, message="three empty blocks")
        blocks = [c.block(n) for n in range(1, 4)]
        assert all(b["transactions"] == [] for b in blocks)
        stamps = [int(b["timestamp"], 16) for b in blocks]
        assert all(1 <= b - a <= 2 for a, b in pairwise(stamps)), stamps
        hashes = [b["hash"] for b in blocks]
    finally:
        node.stop()
    node = NodeProcess(tmp_path / "dev", "dev", "--block-time", "1").start()
    try:
        c = Client(node)
        assert [c.block(n)["hash"] for n in range(1, 4)] == hashes
        height = c.number()
        wait_until(lambda: c.number() > height, timeout=20, message="mining goes on")
    finally:
        node.stop()
