"""geth's state and block overrides (eth_call's third and fourth parameters, debug_traceCall's
`stateOverrides` / `blockOverrides`) parsed into `CallOverrides`. Must never apply them: the
call runner does, on the call's throw-away state."""

from __future__ import annotations

from typing import Any

from cairn.execution.call import BlockOverrides, CallOverrides
from cairn.execution.overrides import AccountOverride
from cairn.rpc import params
from cairn.rpc.errors import invalid_params

_ACCOUNT_KEYS = {"balance", "nonce", "code", "state", "statediff"}
_BLOCK_KEYS = {"number", "time", "gaslimit", "feerecipient", "coinbase", "prevrandao", "random"}


def parse_overrides(state: Any, block: Any, index: int) -> CallOverrides | None:
    """`index` numbers the state-override parameter in error messages (block is index + 1)."""
    if state is None and block is None:
        return None
    return CallOverrides(
        state=_state(state, index) if state is not None else (),
        block=_block(block, index + 1) if block is not None else None,
    )


def _slots(value: Any, index: int, where: str) -> tuple[tuple[int, int], ...]:
    if not isinstance(value, dict):
        raise invalid_params(
            f"invalid argument {index}: {where} must be an object of slot -> value"
        )
    return tuple(
        (
            int.from_bytes(params.hash32(k, index), "big"),
            int.from_bytes(params.hash32(v, index), "big"),
        )
        for k, v in value.items()
    )


def _state(value: Any, index: int) -> tuple[AccountOverride, ...]:
    if not isinstance(value, dict):
        raise invalid_params(f"invalid argument {index}: expected an object of address -> account")
    out = []
    for key, account in value.items():
        who = params.address(key, index)
        if not isinstance(account, dict):
            raise invalid_params(f"invalid argument {index}: override of {key} must be an object")
        keys = {k.lower(): v for k, v in account.items()}
        unknown = sorted(set(keys) - _ACCOUNT_KEYS)
        if unknown:
            raise invalid_params(
                f"invalid argument {index}: {', '.join(unknown)} not supported in a state "
                "override (balance, nonce, code, state, stateDiff are)"
            )
        if keys.get("state") is not None and keys.get("statediff") is not None:
            raise invalid_params(
                f"invalid argument {index}: account {key} has both 'state' and 'stateDiff'"
            )
        replaced = keys.get("state")
        slots = replaced if replaced is not None else keys.get("statediff")
        out.append(
            AccountOverride(
                address=who,
                balance=params.quantity(keys["balance"], index)
                if keys.get("balance") is not None
                else None,
                nonce=params.quantity(keys["nonce"], index)
                if keys.get("nonce") is not None
                else None,
                code=params.data(keys["code"], index) if keys.get("code") is not None else None,
                storage=_slots(slots, index, "state" if replaced is not None else "stateDiff")
                if slots is not None
                else (),
                replace_storage=replaced is not None,
            )
        )
    return tuple(out)


def _block(value: Any, index: int) -> BlockOverrides:
    if not isinstance(value, dict):
        raise invalid_params(f"invalid argument {index}: expected a block overrides object")
    keys = {k.lower(): v for k, v in value.items() if v is not None}
    unknown = sorted(set(keys) - _BLOCK_KEYS)
    if unknown:
        raise invalid_params(
            f"invalid argument {index}: {', '.join(unknown)} not supported in block overrides "
            "(number, time, gasLimit, feeRecipient, prevRandao are)"
        )
    recipient = keys.get("feerecipient", keys.get("coinbase"))
    randao = keys.get("prevrandao", keys.get("random"))
    return BlockOverrides(
        number=params.quantity(keys["number"], index) if "number" in keys else None,
        time=params.quantity(keys["time"], index) if "time" in keys else None,
        gas_limit=params.quantity(keys["gaslimit"], index) if "gaslimit" in keys else None,
        fee_recipient=params.address(recipient, index) if recipient is not None else None,
        prev_randao=params.hash32(randao, index) if randao is not None else None,
    )
