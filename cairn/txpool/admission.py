"""Stateless admission checks: decoding, type, size, chain id, signature, intrinsic gas.

Messages follow geth (core/error.go, core/txpool/errors.go) so tools that match on them work.
"""

from __future__ import annotations

from dataclasses import dataclass

import rlp
from eth.abc import SignedTransactionAPI
from eth.exceptions import UnrecognizedTransactionType
from eth_keys.exceptions import BadSignature
from eth_typing import Address
from eth_utils import ValidationError

from cairn.errors import InvalidTransaction
from cairn.execution.forks import Fork

MAX_TX_SIZE = 128 * 1024
SECP256K1_HALF_N = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0
BLOB_TX_TYPE = 3


@dataclass(frozen=True)
class DecodedTx:
    """A transaction that passed every check that needs no state."""

    tx: SignedTransactionAPI
    raw: bytes
    hash: bytes
    sender: Address
    nonce: int
    gas: int
    fee_cap: int
    tip_cap: int
    value: int

    @property
    def max_cost(self) -> int:
        return self.gas * self.fee_cap + self.value

    def effective_tip(self, base_fee: int) -> int:
        return min(self.tip_cap, self.fee_cap - base_fee)


def decode_and_check(
    raw: bytes,
    fork: Fork,
    chain_id: int,
    block_gas_limit: int,
    *,
    known_sender: bytes | None = None,
) -> DecodedTx:
    """Decode `raw` and run the checks that need no state; raise `InvalidTransaction`.
    `known_sender` is the sender a trusted worker already recovered from these same bytes."""
    if len(raw) > MAX_TX_SIZE:
        raise InvalidTransaction(
            f"oversized data: transaction size {len(raw)}, limit {MAX_TX_SIZE}"
        )
    if not raw:
        raise InvalidTransaction("typed transaction too short")
    if raw[0] == BLOB_TX_TYPE:
        raise InvalidTransaction(
            "transaction type not supported: blob transactions (type 3) need a blob pool "
            "and a consensus layer, which Cairn does not have"
        )
    try:
        tx = fork.decode_transaction(raw)
    except UnrecognizedTransactionType as exc:
        raise InvalidTransaction(f"transaction type not supported: type {exc.args[0]}") from exc
    except (rlp.DecodingError, rlp.DeserializationError, ValidationError, ValueError) as exc:
        raise InvalidTransaction(f"rlp: malformed transaction: {exc}") from exc
    tx_hash = bytes(tx.hash)

    def fail(reason: str) -> InvalidTransaction:
        return InvalidTransaction(reason, tx_hash)

    tx_chain_id = tx.chain_id
    if tx_chain_id is not None and tx_chain_id != chain_id:
        raise fail(f"invalid chain id for signer: have {tx_chain_id} want {chain_id}")
    if tx.s > SECP256K1_HALF_N or tx.r == 0 or tx.s == 0:
        raise fail("invalid transaction v, r, s values")
    if known_sender is not None:
        # py-evm caches `sender` (a cached_property) in the instance dict; seed it.
        tx.__dict__["sender"] = Address(known_sender)
    try:
        sender = Address(bytes(tx.sender))  # recovery validates the signature (once)
    except (ValidationError, BadSignature, ValueError) as exc:
        raise fail(f"invalid sender: {exc}") from exc
    try:
        tx.validate()
    except ValidationError as exc:
        raise fail(_validation_reason(str(exc), tx)) from exc
    fee_cap = tx.max_fee_per_gas
    tip_cap = tx.max_priority_fee_per_gas
    if tip_cap > fee_cap:
        raise fail(
            "max priority fee per gas higher than max fee per gas: address "
            f"0x{sender.hex()}, maxPriorityFeePerGas: {tip_cap}, maxFeePerGas: {fee_cap}"
        )
    if tx.gas > block_gas_limit:
        raise fail(f"exceeds block gas limit: gas {tx.gas}, block gas limit {block_gas_limit}")
    intrinsic = tx.intrinsic_gas
    if tx.gas < intrinsic:
        raise fail(f"intrinsic gas too low: gas {tx.gas}, minimum needed {intrinsic}")
    return DecodedTx(
        tx=tx,
        raw=raw,
        hash=tx_hash,
        sender=sender,
        nonce=tx.nonce,
        gas=tx.gas,
        fee_cap=fee_cap,
        tip_cap=tip_cap,
        value=tx.value,
    )


def _validation_reason(message: str, tx: SignedTransactionAPI) -> str:
    lowered = message.lower()
    if "intrinsic" in lowered:
        return f"intrinsic gas too low: gas {tx.gas}, minimum needed {tx.intrinsic_gas}"
    if "init code" in lowered or "initcode" in lowered:
        return f"max initcode size exceeded: {message}"
    return f"invalid transaction: {message}"
