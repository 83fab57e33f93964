"""Contract deployment and calls as signed raw transactions from the dev accounts, for tests
that drive a node over plain JSON-RPC (no client library in the way)."""

from __future__ import annotations

from typing import Any

from eth_abi.abi import encode
from eth_account import Account
from eth_utils import keccak, to_checksum_address

from tests.support import rpc
from tests.support.chain import CHAIN_ID, KEYS
from tests.support.contracts import Compiled
from tests.support.wait import wait_until


def selector(signature: str) -> bytes:
    return keccak(text=signature)[:4]


def calldata(signature: str, *args: Any) -> bytes:
    types = signature[signature.index("(") + 1 : -1].split(",") if "()" not in signature else []
    return selector(signature) + encode(types, list(args))


def sign(key_index: int, nonce: int, *, to: str | None, data: bytes = b"", **extra: Any) -> str:
    fields: dict[str, Any] = {
        "type": 2,
        "chainId": CHAIN_ID,
        "nonce": nonce,
        "value": 0,
        "gas": 1_000_000,
        "maxFeePerGas": 20 * 10**9,
        "maxPriorityFeePerGas": 10**9,
        "data": data,
    }
    if to is not None:
        fields["to"] = to_checksum_address(to)
    fields.update(extra)
    return "0x" + bytes(Account.sign_transaction(fields, KEYS[key_index]).raw_transaction).hex()


def receipt(url: str, tx_hash: str, timeout: float = 30.0) -> dict[str, Any]:
    found: dict[str, Any] = wait_until(
        lambda: rpc.call(url, "eth_getTransactionReceipt", tx_hash),
        timeout=timeout,
        message=f"receipt of {tx_hash}",
    )
    return found


def deploy(url: str, compiled: Compiled, key_index: int = 0, args: bytes = b"") -> str:
    """Deploy `compiled` from dev account `key_index`; return the contract address."""
    sender = Account.from_key(KEYS[key_index]).address
    nonce = int(rpc.call(url, "eth_getTransactionCount", sender, "pending"), 16)
    raw = sign(key_index, nonce, to=None, data=bytes.fromhex(compiled.bytecode[2:]) + args)
    mined = receipt(url, rpc.call(url, "eth_sendRawTransaction", raw))
    assert mined["status"] == "0x1", mined
    address: str = mined["contractAddress"]
    return address


def batch(url: str, calls: list[tuple[str, list[Any]]]) -> list[Any]:
    """One JSON-RPC batch; returns results in order, raising on the first error."""
    payload = [
        {"jsonrpc": "2.0", "id": i, "method": m, "params": p} for i, (m, p) in enumerate(calls)
    ]
    answers = {a["id"]: a for a in rpc.post(url, payload)}
    results = []
    for i in range(len(calls)):
        answer = answers[i]
        if "error" in answer:
            raise rpc.RpcFailure(answer["error"])
        results.append(answer["result"])
    return results
