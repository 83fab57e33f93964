"""Dev-chain helpers as Anvil and Hardhat name them (evm_*, anvil_*, hardhat_*), signing with
the dev accounts (eth_sign, personal_sign, eth_signTypedData_v4), and `DevSends`: what a dev
chain adds to the send methods of cairn/rpc/send.py (impersonated senders, automine answers).

Answers match Anvil's where the persistent chain allows; the intended differences are in
docs/rpc.md: a state-setting helper commits a block (the block number advances), and
evm_revert deletes blocks from the datadir. With automine a sent transaction is answered
once its block is committed, so its receipt exists as soon as its hash is known: ethers'
`tx.wait()` otherwise races the block (Anvil mines within a millisecond and nearly always
wins that race; a Cairn block takes longer, so the answer waits for it).
Must never act on a node that is not a dev chain: every helper answers "not available"
unless `Backend.dev` is wired.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from typing import Any

from eth_account import Account
from eth_account.messages import encode_defunct
from eth_typing import Address

from cairn.execution.devstate import ImpersonatedTx
from cairn.execution.overrides import AccountOverride
from cairn.execution.reader import StoredBlock
from cairn.rpc import params
from cairn.rpc.backend import Backend, DevControl
from cairn.rpc.dispatch import rpc_method
from cairn.rpc.errors import METHOD_NOT_FOUND, SERVER_ERROR, RpcError, invalid_params
from cairn.rpc.eth import DEFAULT_PRIORITY_FEE
from cairn.rpc.feed import LiveFeed
from cairn.rpc.format import hexb, q

MAX_NONCE = 2**64 - 1
# How long an automine send waits for its block before answering anyway.
INCLUSION_WAIT_SECONDS = 30.0


class DevSends:
    """Dev-chain sends: with automine an answer waits until its transaction is mined, and
    impersonated accounts send without a key."""

    def __init__(self, backend: Backend, feed: LiveFeed) -> None:
        self.b = backend
        self._waiting: dict[bytes, list[asyncio.Future[None]]] = {}
        feed.blocks.add(self._on_block)

    def _on_block(self, stored: StoredBlock) -> None:
        if not self._waiting:
            return
        for tx in stored.transactions:
            for future in self._waiting.pop(tx.hash, []):
                if not future.done():
                    future.set_result(None)
        # a waiting transaction the pool dropped (invalid at build time) will not be mined
        for tx_hash in [h for h in self._waiting if h not in self.b.pool]:
            for future in self._waiting.pop(tx_hash):
                if not future.done():
                    future.set_result(None)

    async def until_mined(self, tx_hash: bytes) -> None:
        """With automine, wait until `tx_hash` is in a committed block, if it can be mined
        now (a transaction queued behind a nonce gap is answered at once)."""
        dev = self.b.dev
        if dev is None or not dev.mining[0] or self.b.chain.reader.tx_location(tx_hash):
            return
        pending = self.b.pool.get(tx_hash)
        if pending is None:
            return
        state_nonce = self.b.chain.head_view().nonce(pending.sender)
        if pending.nonce >= self.b.pool.pending_nonce(pending.sender, state_nonce):
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(tx_hash, []).append(future)
        try:
            await asyncio.wait_for(future, INCLUSION_WAIT_SECONDS)
        except TimeoutError:
            pass  # the hash stays valid; the client polls for the receipt
        finally:
            waiters = self._waiting.get(tx_hash)
            if waiters is not None and future in waiters:
                waiters.remove(future)
                if not waiters:
                    del self._waiting[tx_hash]

    async def send_impersonated(self, sender: Address, tx: dict[str, Any]) -> bytes:
        """eth_sendTransaction from `sender`, which has no dev key: it must be impersonated."""
        dev = self.b.dev
        if dev is None or not dev.is_impersonated(sender):
            raise RpcError(
                SERVER_ERROR,
                f"no key for 0x{sender.hex()}: it is neither a dev account nor impersonated "
                "(anvil_impersonateAccount)",
            )
        call = params.call_params(tx, 0)
        view = self.b.chain.head_view()
        nonce = (
            params.quantity(tx["nonce"], 0, name="nonce")
            if tx.get("nonce") is not None
            else dev.pending_nonce(sender)
        )
        gas = call.gas
        if gas is None:
            gas = await self.b.estimate_gas(view.header, call)
        request = ImpersonatedTx(
            sender=sender,
            nonce=nonce,
            gas=gas,
            to=call.to,
            value=call.value,
            data=call.data,
            access_list=call.access_list,
        )
        if tx.get("gasPrice") is not None:
            price = params.quantity(tx["gasPrice"], 0, name="gasPrice")
            request = replace(request, gas_price=price)
        else:
            tip = (
                params.quantity(tx["maxPriorityFeePerGas"], 0, name="maxPriorityFeePerGas")
                if tx.get("maxPriorityFeePerGas") is not None
                else DEFAULT_PRIORITY_FEE
            )
            cap = (
                params.quantity(tx["maxFeePerGas"], 0, name="maxFeePerGas")
                if tx.get("maxFeePerGas") is not None
                else view.next_base_fee * 2 + tip
            )
            request = replace(request, max_fee=cap, max_tip=tip)
        return await dev.send_impersonated(request)


class DevNamespace:
    def __init__(self, backend: Backend) -> None:
        self.b = backend

    def _dev(self, method: str) -> DevControl:
        dev = self.b.dev
        if dev is None or not self.b.dev_mode:
            raise RpcError(
                METHOD_NOT_FOUND,
                f"the method {method} is not available: dev helpers are answered only by "
                "`cairn dev` nodes",
            )
        return dev

    def _key(self, method: str, who: Address) -> bytes:
        self._dev(method)
        key = self.b.dev_keys.get(who)
        if key is None:
            raise RpcError(SERVER_ERROR, f"unknown account 0x{who.hex()}: not a dev account")
        return key

    # ------------------------------------------------------------ mining
    @rpc_method("evm_mine")
    async def evm_mine(self, options: Any = None) -> str:
        dev = self._dev("evm_mine")
        blocks = 1
        timestamp: int | None = None
        if isinstance(options, dict):
            if options.get("blocks") is not None:
                blocks = params.quantity(options["blocks"], 0, name="blocks")
            if options.get("timestamp") is not None:
                timestamp = params.quantity(options["timestamp"], 0, name="timestamp")
        elif options is not None:
            timestamp = params.quantity(options, 0, name="timestamp")
        if timestamp is not None:
            dev.set_next_timestamp(timestamp)
        await dev.mine(blocks)
        return "0x0"

    @rpc_method("anvil_mine")
    async def anvil_mine(self, blocks: Any = None, interval: Any = None) -> None:
        await self._mine("anvil_mine", blocks, interval)

    @rpc_method("hardhat_mine")
    async def hardhat_mine(self, blocks: Any = None, interval: Any = None) -> None:
        await self._mine("hardhat_mine", blocks, interval)

    async def _mine(self, method: str, blocks: Any, interval: Any) -> None:
        dev = self._dev(method)
        count = params.quantity(blocks, 0, name="blocks") if blocks is not None else 1
        seconds = params.quantity(interval, 1, name="interval") if interval is not None else None
        await dev.mine(count, interval=seconds)

    @rpc_method("evm_setAutomine")
    async def evm_set_automine(self, enabled: Any) -> None:
        self._dev("evm_setAutomine").set_automine(params.boolean(enabled, 0))

    @rpc_method("anvil_setAutomine")
    async def anvil_set_automine(self, enabled: Any) -> None:
        self._dev("anvil_setAutomine").set_automine(params.boolean(enabled, 0))

    @rpc_method("anvil_getAutomine")
    async def anvil_get_automine(self) -> bool:
        return self._dev("anvil_getAutomine").mining[0]

    @rpc_method("hardhat_getAutomine")
    async def hardhat_get_automine(self) -> bool:
        return self._dev("hardhat_getAutomine").mining[0]

    @rpc_method("evm_setIntervalMining")
    async def evm_set_interval_mining(self, seconds: Any) -> None:
        dev = self._dev("evm_setIntervalMining")
        dev.set_interval_mining(params.quantity(seconds, 0, name="seconds"))

    @rpc_method("anvil_setIntervalMining")
    async def anvil_set_interval_mining(self, seconds: Any) -> None:
        dev = self._dev("anvil_setIntervalMining")
        dev.set_interval_mining(params.quantity(seconds, 0, name="seconds"))

    # ------------------------------------------------------------ time
    @rpc_method("evm_increaseTime")
    async def evm_increase_time(self, seconds: Any) -> int:
        dev = self._dev("evm_increaseTime")
        return dev.increase_time(params.quantity(seconds, 0, name="seconds"))

    @rpc_method("anvil_increaseTime")
    async def anvil_increase_time(self, seconds: Any) -> int:
        dev = self._dev("anvil_increaseTime")
        return dev.increase_time(params.quantity(seconds, 0, name="seconds"))

    @rpc_method("evm_setNextBlockTimestamp")
    async def evm_set_next_block_timestamp(self, timestamp: Any) -> None:
        dev = self._dev("evm_setNextBlockTimestamp")
        dev.set_next_timestamp(params.quantity(timestamp, 0, name="timestamp"))

    @rpc_method("anvil_setNextBlockTimestamp")
    async def anvil_set_next_block_timestamp(self, timestamp: Any) -> None:
        dev = self._dev("anvil_setNextBlockTimestamp")
        dev.set_next_timestamp(params.quantity(timestamp, 0, name="timestamp"))

    @rpc_method("anvil_setBlockTimestampInterval")
    async def anvil_set_block_timestamp_interval(self, seconds: Any) -> None:
        dev = self._dev("anvil_setBlockTimestampInterval")
        dev.set_timestamp_interval(params.quantity(seconds, 0, name="seconds"))

    @rpc_method("anvil_removeBlockTimestampInterval")
    async def anvil_remove_block_timestamp_interval(self) -> bool:
        self._dev("anvil_removeBlockTimestampInterval").set_timestamp_interval(None)
        return True

    # ------------------------------------------------------------ snapshots
    @rpc_method("evm_snapshot")
    async def evm_snapshot(self) -> str:
        return q(self._dev("evm_snapshot").snapshot())

    @rpc_method("anvil_snapshot")
    async def anvil_snapshot(self) -> str:
        return q(self._dev("anvil_snapshot").snapshot())

    @rpc_method("evm_revert")
    async def evm_revert(self, snapshot_id: Any) -> bool:
        dev = self._dev("evm_revert")
        return await dev.revert(params.quantity(snapshot_id, 0, name="snapshot id"))

    @rpc_method("anvil_revert")
    async def anvil_revert(self, snapshot_id: Any) -> bool:
        dev = self._dev("anvil_revert")
        return await dev.revert(params.quantity(snapshot_id, 0, name="snapshot id"))

    # ------------------------------------------------------------ state
    async def _set_balance(self, method: str, address: Any, value: Any) -> None:
        dev = self._dev(method)
        who = params.address(address, 0)
        await dev.set_state((AccountOverride(who, balance=params.quantity(value, 1)),))

    @rpc_method("anvil_setBalance")
    async def anvil_set_balance(self, address: Any, value: Any) -> None:
        await self._set_balance("anvil_setBalance", address, value)

    @rpc_method("hardhat_setBalance")
    async def hardhat_set_balance(self, address: Any, value: Any) -> None:
        await self._set_balance("hardhat_setBalance", address, value)

    async def _set_code(self, method: str, address: Any, code: Any) -> None:
        dev = self._dev(method)
        who = params.address(address, 0)
        await dev.set_state((AccountOverride(who, code=params.data(code, 1, name="code")),))

    @rpc_method("anvil_setCode")
    async def anvil_set_code(self, address: Any, code: Any) -> None:
        await self._set_code("anvil_setCode", address, code)

    @rpc_method("hardhat_setCode")
    async def hardhat_set_code(self, address: Any, code: Any) -> None:
        await self._set_code("hardhat_setCode", address, code)

    async def _set_nonce(self, method: str, address: Any, nonce: Any) -> None:
        dev = self._dev(method)
        who = params.address(address, 0)
        value = params.quantity(nonce, 1, name="nonce")
        if value > MAX_NONCE:
            raise invalid_params(f"invalid argument 1 (nonce): {value} does not fit in 64 bits")
        await dev.set_state((AccountOverride(who, nonce=value),))

    @rpc_method("anvil_setNonce")
    async def anvil_set_nonce(self, address: Any, nonce: Any) -> None:
        await self._set_nonce("anvil_setNonce", address, nonce)

    @rpc_method("hardhat_setNonce")
    async def hardhat_set_nonce(self, address: Any, nonce: Any) -> None:
        await self._set_nonce("hardhat_setNonce", address, nonce)

    async def _set_storage(self, method: str, address: Any, slot: Any, value: Any) -> bool:
        dev = self._dev(method)
        who = params.address(address, 0)
        override = AccountOverride(
            who, storage=((_word(slot, 1, "slot"), _word(value, 2, "value")),)
        )
        await dev.set_state((override,))
        return True

    @rpc_method("anvil_setStorageAt")
    async def anvil_set_storage_at(self, address: Any, slot: Any, value: Any) -> bool:
        return await self._set_storage("anvil_setStorageAt", address, slot, value)

    @rpc_method("hardhat_setStorageAt")
    async def hardhat_set_storage_at(self, address: Any, slot: Any, value: Any) -> bool:
        return await self._set_storage("hardhat_setStorageAt", address, slot, value)

    # ------------------------------------------------------------ impersonation
    @rpc_method("anvil_impersonateAccount")
    async def anvil_impersonate(self, address: Any) -> None:
        self._dev("anvil_impersonateAccount").impersonate(params.address(address, 0))

    @rpc_method("hardhat_impersonateAccount")
    async def hardhat_impersonate(self, address: Any) -> None:
        self._dev("hardhat_impersonateAccount").impersonate(params.address(address, 0))

    @rpc_method("anvil_stopImpersonatingAccount")
    async def anvil_stop_impersonating(self, address: Any) -> None:
        dev = self._dev("anvil_stopImpersonatingAccount")
        dev.stop_impersonating(params.address(address, 0))

    @rpc_method("hardhat_stopImpersonatingAccount")
    async def hardhat_stop_impersonating(self, address: Any) -> None:
        dev = self._dev("hardhat_stopImpersonatingAccount")
        dev.stop_impersonating(params.address(address, 0))

    @rpc_method("anvil_autoImpersonateAccount")
    async def anvil_auto_impersonate(self, enabled: Any) -> None:
        dev = self._dev("anvil_autoImpersonateAccount")
        dev.set_auto_impersonate(params.boolean(enabled, 0))

    # ------------------------------------------------------------ signing
    @rpc_method("eth_sign")
    async def eth_sign(self, address: Any, message: Any) -> str:
        key = self._key("eth_sign", params.address(address, 0))
        signed = Account.sign_message(encode_defunct(primitive=params.data(message, 1)), key)
        return hexb(bytes(signed.signature))

    @rpc_method("personal_sign")
    async def personal_sign(self, message: Any, address: Any) -> str:
        key = self._key("personal_sign", params.address(address, 1))
        signed = Account.sign_message(encode_defunct(primitive=params.data(message, 0)), key)
        return hexb(bytes(signed.signature))

    @rpc_method("eth_signTypedData_v4")
    async def sign_typed_data_v4(self, address: Any, typed_data: Any) -> str:
        key = self._key("eth_signTypedData_v4", params.address(address, 0))
        if isinstance(typed_data, str):
            try:
                typed_data = json.loads(typed_data)
            except ValueError as exc:
                raise invalid_params(f"invalid argument 1: typed data is not JSON: {exc}") from None
        if not isinstance(typed_data, dict):
            raise invalid_params("invalid argument 1: expected an EIP-712 typed data object")
        try:
            signed = Account.sign_typed_data(key, full_message=typed_data)
        except (ValueError, TypeError, KeyError) as exc:
            raise invalid_params(f"invalid argument 1: invalid EIP-712 typed data: {exc}") from None
        return hexb(bytes(signed.signature))


def _word(value: Any, index: int, name: str) -> int:
    """A storage slot or value: a quantity, or 32 bytes of hex as Anvil takes them."""
    if isinstance(value, str) and len(value) == 66:
        return int.from_bytes(params.hash32(value, index), "big")
    return params.quantity(value, index, name=name)
