"""Dev-mode changes a block can carry besides its transactions: account overrides applied
before the first transaction (anvil_setBalance, anvil_setCode, ...), and transactions sent
from impersonated accounts, which carry no valid signature.

Owns their byte encoding (stored beside the block, so re-executing the block reproduces it
exactly; the overrides are `cairn.execution.overrides`', never replacing storage). Must never
decide whether a chain may use them: only a dev producer puts them into a block.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import msgpack
from eth.abc import SignedTransactionAPI
from eth.vm.spoof import SpoofTransaction
from eth_typing import Address

from cairn.errors import InvalidBlock
from cairn.execution.forks import Fork
from cairn.execution.overrides import AccountOverride


@dataclass(frozen=True)
class DevExtras:
    """What a dev block adds to plain execution; empty for every ordinary block."""

    overrides: tuple[AccountOverride, ...] = ()
    # (index of the transaction in the block, the impersonated sender)
    impersonated: tuple[tuple[int, Address], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.overrides or self.impersonated)

    def encode(self) -> bytes:
        packed: bytes = msgpack.packb(
            [
                1,  # format version
                [
                    [
                        o.address,
                        o.balance.to_bytes(32, "big") if o.balance is not None else None,
                        o.nonce,
                        o.code,
                        [[s.to_bytes(32, "big"), v.to_bytes(32, "big")] for s, v in o.storage],
                    ]
                    for o in self.overrides
                ],
                [[i, a] for i, a in self.impersonated],
            ]
        )
        return packed

    @classmethod
    def decode(cls, raw: bytes) -> DevExtras:
        try:
            version, overrides, impersonated = msgpack.unpackb(raw)
            if version != 1:
                raise ValueError(f"unknown dev extras format {version}")
            return cls(
                overrides=tuple(
                    AccountOverride(
                        address=Address(bytes(address)),
                        balance=int.from_bytes(balance, "big") if balance is not None else None,
                        nonce=int(nonce) if nonce is not None else None,
                        code=bytes(code) if code is not None else None,
                        storage=tuple(
                            (int.from_bytes(s, "big"), int.from_bytes(v, "big")) for s, v in storage
                        ),
                    )
                    for address, balance, nonce, code, storage in overrides
                ),
                impersonated=tuple((int(i), Address(bytes(a))) for i, a in impersonated),
            )
        except (ValueError, TypeError, msgpack.UnpackException) as exc:
            raise ValueError(f"undecodable dev extras: {exc}") from exc


NO_EXTRAS = DevExtras()


def impersonate(tx: SignedTransactionAPI, sender: Address) -> SignedTransactionAPI:
    """`tx` executed as if `sender` had signed it (py-evm never re-checks a typed tx's
    signature during execution; the sender is all it asks for)."""
    spoofed = SpoofTransaction(tx, sender=sender, get_sender=lambda: sender)
    return cast(SignedTransactionAPI, spoofed)


def impersonated_sender(tx: SignedTransactionAPI) -> Address | None:
    if isinstance(tx, SpoofTransaction):
        return Address(tx.sender)
    return None


def unwrap(tx: SignedTransactionAPI) -> SignedTransactionAPI:
    """The transaction as stored in the block (without the impersonation wrapper)."""
    if isinstance(tx, SpoofTransaction):
        return cast(SignedTransactionAPI, tx.spoof_target)
    return tx


def with_impersonation(
    number: int,
    block_hash: bytes,
    txs: Sequence[SignedTransactionAPI],
    impersonated: Iterable[tuple[int, Address]],
) -> list[SignedTransactionAPI]:
    """The block's transactions with the recorded impersonated senders put back."""
    result = list(txs)
    for index, sender in impersonated:
        if not 0 <= index < len(result):
            raise InvalidBlock(
                number, block_hash, f"dev extras name transaction {index} of {len(result)}"
            )
        result[index] = impersonate(result[index], sender)
    return result


@dataclass(frozen=True)
class ImpersonatedTx:
    """A transaction to send from an impersonated account, every field already chosen;
    `gas_price` set makes an EIP-2930 transaction, otherwise EIP-1559 with the fee caps."""

    sender: Address
    nonce: int
    gas: int
    to: Address | None
    value: int
    data: bytes
    gas_price: int | None = None
    max_fee: int = 0
    max_tip: int = 0
    access_list: tuple[tuple[Address, tuple[int, ...]], ...] = ()


def build_impersonated(fork: Fork, chain_id: int, request: ImpersonatedTx) -> SignedTransactionAPI:
    """A typed transaction from `request.sender` with a placeholder signature, wrapped so that
    it executes as the sender's. The signature's r is the sender's address, so two senders'
    otherwise equal transactions still get different hashes."""
    builder: Any = fork.tx_builder
    to = request.to if request.to is not None else Address(b"")
    r, s = int.from_bytes(request.sender, "big") or 1, 1
    common = (request.gas, to, request.value, request.data, request.access_list, 0, r, s)
    if request.gas_price is not None:
        tx = builder.new_access_list_transaction(
            chain_id, request.nonce, request.gas_price, *common
        )
    else:
        tx = builder.new_dynamic_fee_transaction(
            chain_id, request.nonce, request.max_tip, request.max_fee, *common
        )
    # Round-trip through the encoding so the object is exactly what a block stores and reads.
    decoded = fork.decode_transaction(tx.encode())
    return impersonate(decoded, request.sender)
