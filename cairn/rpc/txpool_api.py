"""The txpool namespace in geth's formats: txpool_content, txpool_contentFrom,
txpool_status and txpool_inspect. Read-only: must never change the pool.

As geth: accounts are EIP-55 checksummed keys, nonces are decimal string keys, pending
transactions have null block fields and gasPrice = their fee cap, and inspect prints
"<to>: <value> wei + <gas> gas x <gasPrice> wei" (with geth's multiplication sign).
"""

from __future__ import annotations

from typing import Any

from eth_utils import to_checksum_address

from cairn.rpc import params
from cairn.rpc.dispatch import rpc_method
from cairn.rpc.format import format_transaction, q
from cairn.txpool.admission import DecodedTx
from cairn.txpool.pool import TxPool

TIMES = "\u00d7"  # geth prints U+00D7, not the letter x


def _inspect(d: DecodedTx) -> str:
    tx = d.tx
    price = tx.gas_price if (tx.type_id or 0) in (0, 1) else tx.max_fee_per_gas
    where = to_checksum_address(tx.to) if tx.to else "contract creation"
    return f"{where}: {tx.value} wei + {tx.gas} gas {TIMES} {price} wei"


def _full(d: DecodedTx) -> dict[str, Any]:
    return format_transaction(d.tx, d.sender)


class TxPoolNamespace:
    def __init__(self, pool: TxPool) -> None:
        self._pool = pool

    def _grouped(self, render: Any) -> dict[str, dict[str, dict[str, Any]]]:
        pending, queued = self._pool.content()
        return {
            name: {
                to_checksum_address(sender): {str(d.nonce): render(d) for d in txs}
                for sender, txs in group.items()
            }
            for name, group in (("pending", pending), ("queued", queued))
        }

    @rpc_method("txpool_status")
    async def status(self) -> dict[str, str]:
        pending, queued = self._pool.counts()
        return {"pending": q(pending), "queued": q(queued)}

    @rpc_method("txpool_content")
    async def content(self) -> dict[str, dict[str, dict[str, Any]]]:
        return self._grouped(_full)

    @rpc_method("txpool_contentFrom")
    async def content_from(self, address: Any) -> dict[str, dict[str, Any]]:
        who = params.address(address, 0)
        pending, queued = self._pool.content()
        return {
            "pending": {str(d.nonce): _full(d) for d in pending.get(who, [])},
            "queued": {str(d.nonce): _full(d) for d in queued.get(who, [])},
        }

    @rpc_method("txpool_inspect")
    async def inspect(self) -> dict[str, dict[str, dict[str, Any]]]:
        return self._grouped(_inspect)
