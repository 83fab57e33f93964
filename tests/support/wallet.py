"""Signing dev-account transactions with fixed fees (so two nodes see identical bytes)."""

from __future__ import annotations

from typing import Any

from eth_account import Account

from tests.support import rpc
from tests.support.wait import wait_until

GWEI = 10**9


class Wallet:
    def __init__(self, key: bytes, nonce: int = 0) -> None:
        self.key = key
        self.nonce = nonce

    def sign(
        self, to: str | None, *, value: int = 0, data: str = "0x", gas: int = 21_000, **extra: Any
    ) -> str:
        """A type-2 transaction at the next nonce: 3 gwei fee cap, 1 gwei tip."""
        fields: dict[str, Any] = {
            "type": 2,
            "chainId": 31337,
            "nonce": self.nonce,
            "value": value,
            "gas": gas,
            "maxFeePerGas": 3 * GWEI,
            "maxPriorityFeePerGas": GWEI,
            "data": data,
            **extra,
        }
        if to is not None:
            fields["to"] = to
        self.nonce += 1
        return "0x" + bytes(Account.sign_transaction(fields, self.key).raw_transaction).hex()


def send_and_wait(url: str, raw: str, timeout: float = 30.0) -> dict[str, Any]:
    """eth_sendRawTransaction, then the receipt once the transaction is mined."""
    tx_hash = rpc.call(url, "eth_sendRawTransaction", raw)
    receipt: dict[str, Any] = wait_until(
        lambda: rpc.call(url, "eth_getTransactionReceipt", tx_hash),
        timeout=timeout,
        message=f"receipt of {tx_hash}",
    )
    return receipt
