"""Blocks, transactions, receipts and logs as JSON, in the shapes geth and Anvil return."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import rlp
from eth._utils.address import generate_contract_address
from eth.abc import BlockHeaderAPI, SignedTransactionAPI
from eth.vm.forks.cancun.constants import (
    BLOB_BASE_FEE_UPDATE_FRACTION,
    GAS_PER_BLOB,
    MIN_BLOB_BASE_FEE,
)
from eth.vm.forks.cancun.state import fake_exponential
from eth.vm.forks.prague.constants import BLOB_BASE_FEE_UPDATE_FRACTION_PRAGUE
from eth_typing import Address

from cairn.execution.fees import effective_gas_price, receipt_status
from cairn.execution.reader import StoredBlock

BLOB_TX_TYPE = 3
EMPTY_ROOT = "0x56e81f171bcc55a6ff8345e692c0f86e5b48e01b996cadc001622fb5e363b421"


def q(value: int) -> str:
    return hex(value)


def hexb(value: bytes) -> str:
    return "0x" + value.hex()


def addr(value: bytes) -> str:
    """Addresses in lower case, as geth and Anvil return them."""
    return "0x" + value.hex()


def bloom(value: int) -> str:
    return "0x" + value.to_bytes(256, "big").hex()


def h32(value: int | bytes) -> str:
    if isinstance(value, int):
        return "0x" + value.to_bytes(32, "big").hex()
    return "0x" + value.rjust(32, b"\x00").hex()


def format_header(header: BlockHeaderAPI) -> dict[str, Any]:
    out: dict[str, Any] = {
        "hash": hexb(header.hash),
        "parentHash": hexb(header.parent_hash),
        "sha3Uncles": hexb(header.uncles_hash),
        "miner": addr(header.coinbase),
        "stateRoot": hexb(header.state_root),
        "transactionsRoot": hexb(header.transaction_root),
        "receiptsRoot": hexb(header.receipt_root),
        "logsBloom": bloom(header.bloom),
        "difficulty": q(header.difficulty),
        "number": q(header.block_number),
        "gasLimit": q(header.gas_limit),
        "gasUsed": q(header.gas_used),
        "timestamp": q(header.timestamp),
        "extraData": hexb(header.extra_data),
        "mixHash": hexb(header.mix_hash),
        "nonce": hexb(header.nonce),
    }
    base_fee = getattr(header, "base_fee_per_gas", None)
    if base_fee is not None:
        out["baseFeePerGas"] = q(base_fee)
    withdrawals_root = getattr(header, "withdrawals_root", None)
    if withdrawals_root is not None:
        out["withdrawalsRoot"] = hexb(withdrawals_root)
    blob_gas_used = getattr(header, "blob_gas_used", None)
    if blob_gas_used is not None:
        out["blobGasUsed"] = q(blob_gas_used)
        out["excessBlobGas"] = q(header.excess_blob_gas)
        out["parentBeaconBlockRoot"] = hexb(getattr(header, "parent_beacon_block_root", b""))
    requests_hash = getattr(header, "requests_hash", None)
    if requests_hash is not None:
        out["requestsHash"] = hexb(requests_hash)
    return out


@dataclass(frozen=True)
class TxContext:
    """Where a transaction sits; all None while it is pending."""

    block_hash: bytes | None = None
    block_number: int | None = None
    index: int | None = None
    base_fee: int | None = None
    timestamp: int | None = None


def format_transaction(
    tx: SignedTransactionAPI, sender: bytes, ctx: TxContext = TxContext()
) -> dict[str, Any]:
    type_id = tx.type_id or 0
    out: dict[str, Any] = {
        "type": q(type_id),
        "hash": hexb(tx.hash),
        "nonce": q(tx.nonce),
        "blockHash": hexb(ctx.block_hash) if ctx.block_hash is not None else None,
        "blockNumber": q(ctx.block_number) if ctx.block_number is not None else None,
        "blockTimestamp": q(ctx.timestamp) if ctx.timestamp is not None else None,
        "transactionIndex": q(ctx.index) if ctx.index is not None else None,
        "from": addr(sender),
        "to": addr(tx.to) if tx.to else None,
        "value": q(tx.value),
        "gas": q(tx.gas),
        "input": hexb(tx.data),
    }
    if tx.chain_id is not None:
        out["chainId"] = q(tx.chain_id)
    if type_id in (0, 1):
        out["gasPrice"] = q(tx.gas_price)
    else:
        out["maxFeePerGas"] = q(tx.max_fee_per_gas)
        out["maxPriorityFeePerGas"] = q(tx.max_priority_fee_per_gas)
        out["gasPrice"] = q(effective_gas_price(tx, ctx.base_fee))
    if type_id != 0:
        out["accessList"] = [
            {
                "address": addr(entry[0]),
                "storageKeys": [h32(k) for k in entry[1]],
            }
            for entry in tx.access_list
        ]
    if type_id == 3:
        out["maxFeePerBlobGas"] = q(tx.max_fee_per_blob_gas)
        out["blobVersionedHashes"] = [hexb(h) for h in tx.blob_versioned_hashes]
    if type_id == 4:
        out["authorizationList"] = [
            {
                "chainId": q(a.chain_id),
                "address": addr(a.address),
                "nonce": q(a.nonce),
                "yParity": q(a.y_parity),
                "r": q(a.r),
                "s": q(a.s),
            }
            for a in tx.authorization_list
        ]
    if type_id == 0:
        out["v"] = q(tx.v)  # type: ignore[attr-defined]  # only legacy transactions carry v
    else:
        out["yParity"] = q(tx.y_parity)
        out["v"] = q(tx.y_parity)
    out["r"] = q(tx.r)
    out["s"] = q(tx.s)
    return out


def format_block(stored: StoredBlock, full: bool) -> dict[str, Any]:
    header = stored.header
    out = format_header(header)
    out["size"] = q(len(rlp.encode(stored.block)))
    out["uncles"] = []
    base_fee = getattr(header, "base_fee_per_gas", None)
    if full:
        out["transactions"] = [
            format_transaction(
                tx,
                sender,
                TxContext(header.hash, header.block_number, i, base_fee, header.timestamp),
            )
            for i, (tx, sender) in enumerate(zip(stored.transactions, stored.senders, strict=True))
        ]
    else:
        out["transactions"] = [hexb(tx.hash) for tx in stored.transactions]
    if hasattr(header, "withdrawals_root"):
        out["withdrawals"] = [
            {
                "index": q(w.index),
                "validatorIndex": q(w.validator_index),
                "address": addr(w.address),
                "amount": q(w.amount),
            }
            for w in getattr(stored.block, "withdrawals", ())
        ]
    return out


def format_logs(stored: StoredBlock, tx_index: int, first_log_index: int) -> list[dict[str, Any]]:
    header = stored.header
    tx = stored.transactions[tx_index]
    return [
        {
            "address": addr(log.address),
            "topics": [h32(t) for t in log.topics],
            "data": hexb(log.data),
            "blockHash": hexb(header.hash),
            "blockNumber": q(header.block_number),
            "blockTimestamp": q(header.timestamp),
            "transactionHash": hexb(tx.hash),
            "transactionIndex": q(tx_index),
            "logIndex": q(first_log_index + i),
            "removed": False,
        }
        for i, log in enumerate(stored.receipts[tx_index].logs)
    ]


def first_log_index(stored: StoredBlock, tx_index: int) -> int:
    return sum(len(r.logs) for r in stored.receipts[:tx_index])


def format_receipt(stored: StoredBlock, tx_index: int) -> dict[str, Any]:
    header = stored.header
    tx = stored.transactions[tx_index]
    sender = stored.senders[tx_index]
    receipt = stored.receipts[tx_index]
    previous = stored.receipts[tx_index - 1].gas_used if tx_index else 0
    contract: Address | None = None
    if not tx.to:
        contract = generate_contract_address(sender, tx.nonce)
    out = {
        "type": q(tx.type_id or 0),
        "status": q(receipt_status(receipt)),
        "cumulativeGasUsed": q(receipt.gas_used),
        "logs": format_logs(stored, tx_index, first_log_index(stored, tx_index)),
        "logsBloom": bloom(receipt.bloom),
        "transactionHash": hexb(tx.hash),
        "transactionIndex": q(tx_index),
        "blockHash": hexb(header.hash),
        "blockNumber": q(header.block_number),
        "blockTimestamp": q(header.timestamp),
        "gasUsed": q(receipt.gas_used - previous),
        "effectiveGasPrice": q(effective_gas_price(tx, getattr(header, "base_fee_per_gas", None))),
        "from": addr(sender),
        "to": addr(tx.to) if tx.to else None,
        "contractAddress": addr(contract) if contract is not None else None,
    }
    if tx.type_id == BLOB_TX_TYPE:
        out["blobGasUsed"] = q(GAS_PER_BLOB * len(tx.blob_versioned_hashes))
        out["blobGasPrice"] = q(blob_base_fee(header))
    return out


def blob_base_fee(header: BlockHeaderAPI) -> int:
    """The blob gas price of a block (EIP-4844), with Prague's update fraction (EIP-7691)
    for Prague headers (those with a requests hash)."""
    fraction = (
        BLOB_BASE_FEE_UPDATE_FRACTION_PRAGUE
        if getattr(header, "requests_hash", None) is not None
        else BLOB_BASE_FEE_UPDATE_FRACTION
    )
    excess = getattr(header, "excess_blob_gas", 0) or 0
    return fake_exponential(MIN_BLOB_BASE_FEE, excess, fraction)
