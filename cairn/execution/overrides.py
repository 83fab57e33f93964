"""New values for accounts, and writing them into a py-evm state: what the dev helpers
(`anvil_setBalance` & co., stored with the block that applies them, `devstate`) and geth's
call overrides (`eth_call`, `debug_traceCall`, `eth_simulateV1`: thrown away with the call)
both are. Must never decide where they may be applied."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from eth.abc import StateAPI
from eth_typing import Address


@dataclass(frozen=True)
class AccountOverride:
    """One account's new values; None (or no slots) leaves a field as it is. `storage` sets
    slots; with `replace_storage` (geth's `state`, as opposed to its `stateDiff`) the
    account's storage is cleared first."""

    address: Address
    balance: int | None = None
    nonce: int | None = None
    code: bytes | None = None
    storage: tuple[tuple[int, int], ...] = ()
    replace_storage: bool = False


def apply_overrides(state: StateAPI, overrides: Iterable[AccountOverride]) -> None:
    """Write `overrides` into `state`, in order (a later one wins on the same field)."""
    for o in overrides:
        if o.balance is not None:
            state.set_balance(o.address, o.balance)
        if o.nonce is not None:
            state.set_nonce(o.address, o.nonce)
        if o.code is not None:
            state.set_code(o.address, o.code)
        if o.replace_storage:
            state.delete_storage(o.address)
        for slot, value in o.storage:
            state.set_storage(o.address, slot, value)
