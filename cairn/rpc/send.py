"""eth_sendRawTransaction and eth_sendTransaction: the two ways a client hands the node a
transaction, registered here only.

Raw transactions go to the txpool's intake (group commit, one journal fsync). On a dev chain
eth_sendTransaction also signs with the dev accounts, sends from impersonated accounts, and
with automine answers once the transaction is mined (`DevSends`, cairn/rpc/dev.py).
"""

from __future__ import annotations

from typing import Any

from eth_account import Account
from eth_utils import to_checksum_address

from cairn.errors import InvalidTransaction
from cairn.rpc import params
from cairn.rpc.backend import Backend
from cairn.rpc.dev import DevSends
from cairn.rpc.dispatch import rpc_method
from cairn.rpc.errors import SERVER_ERROR, RpcError, invalid_params
from cairn.rpc.eth import DEFAULT_PRIORITY_FEE
from cairn.rpc.format import hexb
from cairn.txpool.intake import Intake


class SendNamespace:
    def __init__(self, backend: Backend, dev: DevSends | None) -> None:
        self.b = backend
        self.intake = Intake(backend.pool, backend.recovery)
        self._dev = dev

    @rpc_method("eth_sendRawTransaction")
    async def send_raw_transaction(self, raw: Any) -> str:
        result = await self.intake.submit(params.data(raw, 0))
        if result.error is not None:
            # A fresh error: raising the one `result` holds would put it in a reference cycle
            # with this frame (through its traceback), garbage only a full GC pass frees.
            raise InvalidTransaction(result.error.reason, result.error.tx_hash)
        assert result.tx_hash is not None
        if self._dev is not None:
            await self._dev.until_mined(result.tx_hash)
        return hexb(result.tx_hash)

    @rpc_method("eth_sendTransaction")
    async def send_transaction(self, tx: Any) -> str:
        if not self.b.dev_mode:
            raise RpcError(
                SERVER_ERROR,
                "eth_sendTransaction needs an unlocked account: "
                "sign locally and use eth_sendRawTransaction",
            )
        if not isinstance(tx, dict) or "from" not in tx:
            raise invalid_params('invalid argument 0: transaction object with "from" required')
        sender = params.address(tx["from"], 0, name="from")
        key = self.b.dev_keys.get(sender)
        if key is None:
            if self._dev is not None:
                return hexb(await self._dev.send_impersonated(sender, tx))
            raise RpcError(SERVER_ERROR, f"no unlocked dev account for 0x{sender.hex()}")
        call = params.call_params(tx, 0)
        view = self.b.chain.head_view()
        nonce = (
            params.quantity(tx["nonce"], 0, name="nonce")
            if tx.get("nonce") is not None
            else self.b.pool.pending_nonce(sender, view.nonce(sender))
        )
        gas = call.gas
        if gas is None:
            gas = await self.b.estimate_gas(view.header, call)
        fields: dict[str, Any] = {
            "chainId": self.b.chain.chain_id,
            "nonce": nonce,
            "gas": gas,
            "value": call.value,
            "data": call.data,
        }
        if call.to is not None:
            fields["to"] = to_checksum_address(call.to)  # eth_account refuses lower case
        if tx.get("gasPrice") is not None:
            fields["gasPrice"] = params.quantity(tx["gasPrice"], 0, name="gasPrice")
        else:
            tip = (
                params.quantity(tx["maxPriorityFeePerGas"], 0)
                if tx.get("maxPriorityFeePerGas") is not None
                else DEFAULT_PRIORITY_FEE
            )
            fields["maxPriorityFeePerGas"] = tip
            fields["maxFeePerGas"] = (
                params.quantity(tx["maxFeePerGas"], 0)
                if tx.get("maxFeePerGas") is not None
                else view.next_base_fee * 2 + tip
            )
            fields["type"] = 2
        if call.access_list:
            fields["accessList"] = [
                {
                    "address": "0x" + a.hex(),
                    "storageKeys": ["0x" + k.to_bytes(32, "big").hex() for k in keys],
                }
                for a, keys in call.access_list
            ]
        signed = Account.sign_transaction(fields, key)
        tx_hash: str = await self.send_raw_transaction(hexb(bytes(signed.raw_transaction)))
        return tx_hash
