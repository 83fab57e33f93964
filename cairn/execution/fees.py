"""Derived transaction facts every reader needs the same way (RPC, mirror)."""

from __future__ import annotations

from eth.abc import ReceiptAPI, SignedTransactionAPI

LEGACY_TYPES = (None, 0, 1)


def effective_gas_price(tx: SignedTransactionAPI, base_fee: int | None) -> int:
    """What a transaction paid per gas: its gas price, or min(fee cap, base fee + tip)."""
    if tx.type_id in LEGACY_TYPES:
        return int(tx.gas_price)
    if base_fee is None:
        return int(tx.max_fee_per_gas)
    return int(min(tx.max_fee_per_gas, base_fee + tx.max_priority_fee_per_gas))


def receipt_status(receipt: ReceiptAPI) -> int:
    """1 for success, 0 for failure (py-evm keeps it in the receipt's state_root field)."""
    return 0 if receipt.state_root == b"" else 1
