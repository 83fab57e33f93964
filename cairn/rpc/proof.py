"""eth_getProof and eth_createAccessList: state proofs and access lists at any stored block.

Both read archived state (and re-run calls) on the Backend's read executor. Owns their JSON
shapes, which follow geth's. Must never change chain state.
"""

from __future__ import annotations

from typing import Any, TypeVar

from cairn.execution.proof import AccountProof, prove
from cairn.execution.trace import Tracer
from cairn.rpc import params
from cairn.rpc.backend import Backend
from cairn.rpc.blocks import BlockResolver
from cairn.rpc.dispatch import rpc_method
from cairn.rpc.errors import invalid_params
from cairn.rpc.format import addr, hexb, q

T = TypeVar("T")
MAX_PROOF_KEYS = 1024  # geth's maxGetProofKeys


class ProofNamespace:
    def __init__(self, backend: Backend) -> None:
        self.b = backend
        self.reader = backend.chain.reader
        self.blocks = BlockResolver(self.reader)
        self.tracer = Tracer(self.reader, backend.calls)

    @rpc_method("eth_getProof")
    async def get_proof(self, address: Any, storage_keys: Any, block: Any = None) -> dict[str, Any]:
        who = params.address(address, 0)
        if not isinstance(storage_keys, list):
            raise invalid_params("invalid argument 1: expected an array of storage keys")
        if len(storage_keys) > MAX_PROOF_KEYS:
            raise invalid_params(
                f"too many storage keys requested (max {MAX_PROOF_KEYS}, got {len(storage_keys)})"
            )
        keys = [decode_storage_key(k) for k in storage_keys]
        header = self.blocks.header(params.block_ref(block, 2, default="latest"))
        db = self.reader.store.state_db()
        slots = [slot for slot, _ in keys]
        result = await self.b.run_read(lambda: prove(db, header.state_root, who, slots))
        return format_proof(result, [shown for _, shown in keys])

    @rpc_method("eth_createAccessList")
    async def create_access_list(self, tx: Any, block: Any = None) -> dict[str, Any]:
        call = params.call_params(tx, 0)
        header = self.blocks.header(params.block_ref(block, 1, default="latest"))
        result = await self.b.run_call(lambda: self.tracer.create_access_list(header, call))
        out: dict[str, Any] = {
            "accessList": [
                {
                    "address": addr(address),
                    "storageKeys": ["0x" + k.to_bytes(32, "big").hex() for k in keys],
                }
                for address, keys in result.access_list
            ]
        }
        if result.error is not None:
            out["error"] = result.error
        out["gasUsed"] = q(result.gas_used)
        return out


def decode_storage_key(value: Any) -> tuple[int, str]:
    """geth's lenient decodeStorageKey: 0x optional, odd length padded, at most 32 bytes.

    Returns the slot and the key as geth echoes it: a 32-byte key as given (lower case),
    a shorter one as a quantity.
    """
    if not isinstance(value, str):
        raise invalid_params(f"invalid storage key: expected a hex string, got {value!r}")
    text = value[2:] if value[:2] in ("0x", "0X") else value
    if len(text) % 2:
        text = "0" + text
    if len(text) > 64:
        raise invalid_params(f'storage key too long (want at most 32 bytes): "{value}"')
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise invalid_params(f'invalid hex in storage key: "{value}"') from None
    slot = int.from_bytes(raw, "big")
    shown = "0x" + raw.hex() if len(raw) == 32 else q(slot)
    return slot, shown


def format_proof(result: AccountProof, shown_keys: list[str]) -> dict[str, Any]:
    return {
        "address": addr(result.address),
        "accountProof": [hexb(node) for node in result.proof],
        "balance": q(result.balance),
        "codeHash": hexb(result.code_hash),
        "nonce": q(result.nonce),
        "storageHash": hexb(result.storage_hash),
        "storageProof": [
            {"key": shown, "value": q(item.value), "proof": [hexb(n) for n in item.proof]}
            for shown, item in zip(shown_keys, result.storage, strict=True)
        ],
    }
