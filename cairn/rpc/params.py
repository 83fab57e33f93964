"""Parsing JSON-RPC parameters; every failure is `invalid argument N: ...` (-32602)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_typing import Address
from eth_utils import is_hex_address, to_canonical_address

from cairn.execution.call import CallParams
from cairn.rpc.errors import invalid_params

MAX_QUANTITY = 2**256 - 1


def _where(index: int) -> str:
    return f"invalid argument {index}"


def quantity(value: Any, index: int = 0, *, name: str = "") -> int:
    where = _where(index) + (f" ({name})" if name else "")
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise invalid_params(f"{where}: expected a hex quantity, got {value!r}")
    if isinstance(value, int):
        result = value
    else:
        if not value.startswith(("0x", "0X")):
            raise invalid_params(f"{where}: hex string without 0x prefix")
        digits = value[2:]
        if not digits:
            raise invalid_params(f'{where}: hex string "0x"')
        if len(digits) > 64:
            raise invalid_params(f"{where}: hex number > 256 bits")
        try:
            result = int(digits, 16)
        except ValueError:
            raise invalid_params(f"{where}: invalid hex string {value!r}") from None
    if result < 0 or result > MAX_QUANTITY:
        raise invalid_params(f"{where}: quantity out of range")
    return result


def data(value: Any, index: int = 0, *, name: str = "") -> bytes:
    where = _where(index) + (f" ({name})" if name else "")
    if not isinstance(value, str) or not value.startswith(("0x", "0X")):
        raise invalid_params(f"{where}: expected 0x-prefixed hex data, got {_short(value)}")
    digits = value[2:]
    if len(digits) % 2:
        raise invalid_params(f"{where}: hex string of odd length")
    try:
        return bytes.fromhex(digits)
    except ValueError:
        raise invalid_params(f"{where}: invalid hex string") from None


def hash32(value: Any, index: int = 0) -> bytes:
    raw = data(value, index)
    if len(raw) != 32:
        raise invalid_params(f"{_where(index)}: hex string has length {len(raw) * 2}, want 64")
    return raw


def address(value: Any, index: int = 0, *, name: str = "") -> Address:
    where = _where(index) + (f" ({name})" if name else "")
    if not isinstance(value, str) or not is_hex_address(value):
        raise invalid_params(f"{where}: expected a 20-byte hex address, got {_short(value)}")
    return Address(to_canonical_address(value))


def boolean(value: Any, index: int = 0) -> bool:
    if not isinstance(value, bool):
        raise invalid_params(f"{_where(index)}: expected true or false, got {_short(value)}")
    return value


@dataclass(frozen=True)
class BlockRef:
    """A block parameter: a tag, a number, or a hash (EIP-1898)."""

    tag: str | None = None
    number: int | None = None
    block_hash: bytes | None = None
    require_canonical: bool = False


TAGS = ("latest", "pending", "earliest", "safe", "finalized")


def block_ref(value: Any, index: int = 0, *, default: str | None = None) -> BlockRef:
    if value is None and default is not None:
        return BlockRef(tag=default)
    if isinstance(value, str):
        if value in TAGS:
            return BlockRef(tag=value)
        if value.startswith(("0x", "0X")) and len(value) == 66:
            return BlockRef(block_hash=hash32(value, index))
        return BlockRef(number=quantity(value, index))
    if isinstance(value, int) and not isinstance(value, bool):
        return BlockRef(number=quantity(value, index))
    if isinstance(value, dict):
        if "blockHash" in value and "blockNumber" in value:
            raise invalid_params(f"{_where(index)}: both blockHash and blockNumber given")
        if "blockHash" in value:
            canonical = value.get("requireCanonical", False)
            return BlockRef(
                block_hash=hash32(value["blockHash"], index),
                require_canonical=boolean(canonical, index),
            )
        if "blockNumber" in value:
            number = value["blockNumber"]
            if not isinstance(number, str | int) or isinstance(number, bool):
                raise invalid_params(f"{_where(index)}: blockNumber must be a number or a tag")
            return block_ref(number, index)
        raise invalid_params(f"{_where(index)}: expected blockHash or blockNumber")
    raise invalid_params(f"{_where(index)}: invalid block parameter {_short(value)}")


def call_params(value: Any, index: int = 0) -> CallParams:
    if not isinstance(value, dict):
        raise invalid_params(f"{_where(index)}: expected a transaction object")
    if "input" in value and "data" in value and value["input"] != value["data"]:
        raise invalid_params(
            f'{_where(index)}: both "data" and "input" are set and not equal. '
            'Please use "input" to pass transaction call data'
        )
    raw_data = value.get("input", value.get("data"))
    gas_price = value.get("gasPrice")
    max_fee = value.get("maxFeePerGas")
    tip = value.get("maxPriorityFeePerGas")
    if gas_price is not None and (max_fee is not None or tip is not None):
        raise invalid_params(
            f"{_where(index)}: both gasPrice and (maxFeePerGas or maxPriorityFeePerGas) specified"
        )
    access: list[tuple[Address, tuple[int, ...]]] = []
    for entry in value.get("accessList") or []:
        if not isinstance(entry, dict):
            raise invalid_params(f"{_where(index)}: accessList entries must be objects")
        keys = tuple(
            int.from_bytes(hash32(k, index), "big") for k in entry.get("storageKeys") or []
        )
        access.append((address(entry.get("address"), index, name="accessList"), keys))
    sender = value.get("from")
    to = value.get("to")
    return CallParams(
        sender=address(sender, index, name="from") if sender is not None else Address(b"\x00" * 20),
        to=address(to, index, name="to") if to is not None else None,
        gas=quantity(value["gas"], index, name="gas") if value.get("gas") is not None else None,
        gas_price=quantity(gas_price, index, name="gasPrice") if gas_price is not None else None,
        max_fee=quantity(max_fee, index, name="maxFeePerGas") if max_fee is not None else None,
        max_priority_fee=(
            quantity(tip, index, name="maxPriorityFeePerGas") if tip is not None else None
        ),
        value=quantity(value["value"], index, name="value")
        if value.get("value") is not None
        else 0,
        data=data(raw_data, index, name="input") if raw_data is not None else b"",
        access_list=tuple(access),
    )


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
