"""Signing dev-account transactions with fixed fees (so two nodes see identical bytes)."""

from __future__ import annotations

from typing import Any

import coincurve
import rlp
from eth_account import Account
from eth_utils import keccak

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


def sign_range(
    key: bytes,
    first_nonce: int,
    count: int,
    *,
    to: str,
    value: int = 1,
    data: bytes = b"",
    gas: int = 21_000,
    max_fee: int = 3 * GWEI,
    tip: int = GWEI,
    chain_id: int = 31337,
) -> list[bytes]:
    """Raw type-2 transactions of one key at nonces first_nonce.., signed with libsecp256k1
    directly: the same bytes as eth_account (RFC 6979, low s), ~3x faster, for tests and
    benchmarks that need tens of thousands. `to=""` creates a contract from `data`."""
    signer = coincurve.PrivateKey(key)
    recipient = bytes.fromhex(to.removeprefix("0x"))
    out = []
    for nonce in range(first_nonce, first_nonce + count):
        fields = [chain_id, nonce, tip, max_fee, gas, recipient, value, data, []]
        signature = signer.sign_recoverable(keccak(b"\x02" + rlp.encode(fields)), hasher=None)
        r = int.from_bytes(signature[:32], "big")
        s = int.from_bytes(signature[32:64], "big")
        out.append(b"\x02" + rlp.encode([*fields, signature[64], r, s]))
    return out
