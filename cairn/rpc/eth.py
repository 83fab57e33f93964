"""The web3, net and eth namespaces."""

from __future__ import annotations

import string
from dataclasses import replace
from typing import Any, TypeVar

from eth.abc import BlockHeaderAPI, StateAPI
from eth.vm.forks.london.headers import calculate_expected_base_fee_per_gas
from eth_utils import keccak

from cairn.execution.fees import effective_gas_price
from cairn.execution.reader import StoredBlock
from cairn.memory import Footprint, SizedLru
from cairn.rpc import params
from cairn.rpc.backend import Backend
from cairn.rpc.blocks import BlockResolver
from cairn.rpc.cache import RawJson
from cairn.rpc.dispatch import rpc_method
from cairn.rpc.errors import LIMIT_EXCEEDED, SERVER_ERROR, RpcError, invalid_params
from cairn.rpc.format import (
    TxContext,
    blob_base_fee,
    format_block,
    format_header,
    format_receipt,
    format_transaction,
    hexb,
    q,
)
from cairn.rpc.logs import parse_filter
from cairn.rpc.overrides import parse_overrides

T = TypeVar("T")
DEFAULT_PRIORITY_FEE = 1_000_000_000


class EthNamespace:
    def __init__(self, backend: Backend) -> None:
        self.b = backend
        self.chain = backend.chain
        self.reader = backend.chain.reader
        self.blocks = BlockResolver(self.reader)
        # Formatted committed blocks and receipts, keyed by block hash (blocks never change).
        # Held as JSON text: the server embeds it in answers without re-encoding. Each cache
        # holds half of the `--cache` share for RPC JSON, counted in bytes of JSON text.
        limit = backend.memory.rpc_json // 2
        self._formatted: SizedLru[tuple[bytes, bool], RawJson] = SizedLru(
            "rpc_blocks", limit, _json_size
        )
        self._receipts: SizedLru[bytes, RawJson] = SizedLru("rpc_receipts", limit, _json_size)

    def footprints(self) -> list[Footprint]:
        return [self._formatted.footprint(), self._receipts.footprint()]

    # ------------------------------------------------------------ helpers

    def _number_of(self, ref: params.BlockRef) -> int | None:
        return self.blocks.number(ref)

    def _header(self, ref: params.BlockRef) -> BlockHeaderAPI:
        return self.blocks.header(ref)

    def _state(self, ref: params.BlockRef) -> StateAPI:
        header = self._header(ref)
        view = self.chain.head_view()
        if view.header.hash == header.hash:
            return view.state
        return self.reader.state_at(header)

    def _formatted_block(self, stored: StoredBlock, full: bool) -> RawJson:
        """Formatted once per block: a 1,400-transaction block costs tens of ms to format."""
        return self._formatted.get_or_build(
            (stored.header.hash, full), lambda: RawJson.of(format_block(stored, full))
        )

    def _formatted_receipts(self, stored: StoredBlock) -> RawJson:
        return self._receipts.get_or_build(
            stored.header.hash,
            lambda: RawJson.of(
                [format_receipt(stored, i) for i in range(len(stored.transactions))]
            ),
        )

    def _block(self, ref: params.BlockRef) -> StoredBlock | None:
        return self.blocks.block(ref)

    # ------------------------------------------------------------ web3 / net
    @rpc_method("web3_clientVersion")
    async def client_version(self) -> str:
        return self.b.client_version

    @rpc_method("web3_sha3")
    async def sha3(self, data: Any) -> str:
        return hexb(keccak(params.data(data, 0)))

    @rpc_method("net_version")
    async def net_version(self) -> str:
        return str(self.chain.chain_id)

    @rpc_method("net_listening")
    async def net_listening(self) -> bool:
        return True

    @rpc_method("net_peerCount")
    async def net_peer_count(self) -> str:
        return q(self.b.peer_count())

    # ------------------------------------------------------------ chain info
    @rpc_method("eth_chainId")
    async def chain_id(self) -> str:
        return q(self.chain.chain_id)

    @rpc_method("eth_blockNumber")
    async def block_number(self) -> str:
        return q(self.reader.head_number)

    @rpc_method("eth_syncing")
    async def syncing(self) -> Any:
        return self.b.syncing()

    @rpc_method("eth_accounts")
    async def accounts(self) -> list[str]:
        return [hexb(a) for a in self.b.dev_keys] if self.b.dev_mode else []

    @rpc_method("eth_coinbase")
    async def coinbase(self) -> str:
        return hexb(self.chain.head.coinbase)

    @rpc_method("eth_mining")
    async def mining(self) -> bool:
        return self.b.mining

    @rpc_method("eth_hashrate")
    async def hashrate(self) -> str:
        return "0x0"

    @rpc_method("eth_gasPrice")
    async def gas_price(self) -> str:
        return q(self.chain.head_view().next_base_fee + DEFAULT_PRIORITY_FEE)

    @rpc_method("eth_maxPriorityFeePerGas")
    async def max_priority_fee(self) -> str:
        return q(DEFAULT_PRIORITY_FEE)

    @rpc_method("eth_blobBaseFee")
    async def blob_base_fee(self) -> str:
        return q(blob_base_fee(self.chain.head))

    @rpc_method("eth_feeHistory")
    async def fee_history(
        self, block_count: Any, newest: Any, percentiles: Any = None
    ) -> dict[str, Any]:
        count = params.quantity(block_count, 0)
        if count < 1:
            raise invalid_params("invalid argument 0: block count must be at least 1")
        count = min(count, 1024)
        last = self._header(params.block_ref(newest, 1)).block_number
        wanted: list[float] = []
        if percentiles is not None:
            if not isinstance(percentiles, list) or not all(
                isinstance(p, int | float) and not isinstance(p, bool) for p in percentiles
            ):
                raise invalid_params("invalid argument 2: expected an array of numbers")
            wanted = [float(p) for p in percentiles]
            if any(p < 0 or p > 100 for p in wanted) or wanted != sorted(wanted):
                raise invalid_params(
                    "invalid argument 2: reward percentiles must be ascending and within [0, 100]"
                )
        first = max(0, last - count + 1)

        def compute() -> dict[str, Any]:
            base_fees: list[str] = []
            ratios: list[float] = []
            rewards: list[list[str]] = []
            header = None
            for n in range(first, last + 1):
                stored = self.reader.block_by_number(n)
                assert stored is not None
                header = stored.header
                base_fee = getattr(header, "base_fee_per_gas", 0)
                base_fees.append(q(base_fee))
                ratios.append(header.gas_used / header.gas_limit if header.gas_limit else 0.0)
                if percentiles is not None:
                    rewards.append([q(r) for r in _rewards(stored, base_fee, wanted)])
            assert header is not None
            base_fees.append(q(calculate_expected_base_fee_per_gas(header)))
            result: dict[str, Any] = {
                "oldestBlock": q(first),
                "baseFeePerGas": base_fees,
                "gasUsedRatio": ratios,
                "baseFeePerBlobGas": ["0x1"] * len(base_fees),
                "blobGasUsedRatio": [0.0] * len(ratios),
            }
            if percentiles is not None:
                result["reward"] = rewards
            return result

        return await self.b.run_read(compute)

    # ------------------------------------------------------------ state
    @rpc_method("eth_getBalance")
    async def get_balance(self, address: Any, block: Any = None) -> str:
        who = params.address(address, 0)
        return q(self._state(params.block_ref(block, 1, default="latest")).get_balance(who))

    @rpc_method("eth_getTransactionCount")
    async def get_transaction_count(self, address: Any, block: Any = None) -> str:
        who = params.address(address, 0)
        ref = params.block_ref(block, 1, default="latest")
        nonce = self._state(ref).get_nonce(who)
        if ref.tag == "pending":
            nonce = self.b.pool.pending_nonce(who, nonce)
        return q(nonce)

    @rpc_method("eth_getCode")
    async def get_code(self, address: Any, block: Any = None) -> str:
        who = params.address(address, 0)
        return hexb(self._state(params.block_ref(block, 1, default="latest")).get_code(who))

    @rpc_method("eth_getStorageAt")
    async def get_storage_at(self, address: Any, slot: Any, block: Any = None) -> str:
        who = params.address(address, 0)
        index = _storage_key(slot)
        value = self._state(params.block_ref(block, 2, default="latest")).get_storage(who, index)
        return "0x" + value.to_bytes(32, "big").hex()

    @rpc_method("eth_call")
    async def call(
        self, tx: Any, block: Any = None, overrides: Any = None, block_overrides: Any = None
    ) -> str:
        call = params.call_params(tx, 0)
        extra = parse_overrides(overrides, block_overrides, 2)
        if extra is not None:
            call = replace(call, overrides=extra)
        header = self._header(params.block_ref(block, 1, default="latest"))
        return hexb(await self.b.call(header, call))

    @rpc_method("eth_estimateGas")
    async def estimate_gas(self, tx: Any, block: Any = None) -> str:
        call = params.call_params(tx, 0)
        header = self._header(params.block_ref(block, 1, default="latest"))
        gas = await self.b.estimate_gas(header, call)
        return q(gas)

    # ------------------------------------------------------------ transactions
    @rpc_method("eth_getTransactionByHash")
    async def get_transaction_by_hash(self, tx_hash: Any) -> dict[str, Any] | None:
        h = params.hash32(tx_hash, 0)
        location = self.reader.tx_location(h)
        if location is not None:
            number, index = location
            stored = self.reader.block_by_number(number)
            if stored is not None:
                return _tx_in_block(stored, index)
        pending = self.b.pool.get(h)
        if pending is not None:
            return format_transaction(pending.tx, pending.sender)
        return None

    @rpc_method("eth_getTransactionReceipt")
    async def get_transaction_receipt(self, tx_hash: Any) -> dict[str, Any] | None:
        location = self.reader.tx_location(params.hash32(tx_hash, 0))
        if location is None:
            return None
        number, index = location
        stored = self.reader.block_by_number(number)
        return None if stored is None else format_receipt(stored, index)

    # ------------------------------------------------------------ blocks
    @rpc_method("eth_getBlockByNumber")
    async def get_block_by_number(self, block: Any, full: Any = False) -> RawJson | None:
        stored = self._block(params.block_ref(block, 0))
        return None if stored is None else self._formatted_block(stored, params.boolean(full, 1))

    @rpc_method("eth_getBlockByHash")
    async def get_block_by_hash(self, block_hash: Any, full: Any = False) -> RawJson | None:
        stored = self.reader.block_by_hash(params.hash32(block_hash, 0))
        return None if stored is None else self._formatted_block(stored, params.boolean(full, 1))

    @rpc_method("eth_getHeaderByNumber")
    async def get_header_by_number(self, block: Any) -> dict[str, Any] | None:
        """geth's header: a block's fields without transactions, uncles, withdrawals, size."""
        number = self.blocks.number(params.block_ref(block, 0))
        header = None if number is None else self.reader.header_by_number(number)
        return None if header is None else format_header(header)

    @rpc_method("eth_getHeaderByHash")
    async def get_header_by_hash(self, block_hash: Any) -> dict[str, Any] | None:
        header = self.reader.header_by_hash(params.hash32(block_hash, 0))
        return None if header is None else format_header(header)

    @rpc_method("eth_getBlockTransactionCountByNumber")
    async def tx_count_by_number(self, block: Any) -> str | None:
        stored = self._block(params.block_ref(block, 0))
        return None if stored is None else q(len(stored.transactions))

    @rpc_method("eth_getBlockTransactionCountByHash")
    async def tx_count_by_hash(self, block_hash: Any) -> str | None:
        stored = self.reader.block_by_hash(params.hash32(block_hash, 0))
        return None if stored is None else q(len(stored.transactions))

    @rpc_method("eth_getTransactionByBlockNumberAndIndex")
    async def tx_by_number_and_index(self, block: Any, index: Any) -> dict[str, Any] | None:
        stored = self._block(params.block_ref(block, 0))
        i = params.quantity(index, 1)
        if stored is None or i >= len(stored.transactions):
            return None
        return _tx_in_block(stored, i)

    @rpc_method("eth_getTransactionByBlockHashAndIndex")
    async def tx_by_hash_and_index(self, block_hash: Any, index: Any) -> dict[str, Any] | None:
        stored = self.reader.block_by_hash(params.hash32(block_hash, 0))
        i = params.quantity(index, 1)
        if stored is None or i >= len(stored.transactions):
            return None
        return _tx_in_block(stored, i)

    @rpc_method("eth_getBlockReceipts")
    async def get_block_receipts(self, block: Any) -> RawJson | None:
        stored = self._block(params.block_ref(block, 0))
        if stored is None:
            return None
        return self._formatted_receipts(stored)

    @rpc_method("eth_getUncleCountByBlockNumber")
    async def uncle_count_by_number(self, block: Any) -> str | None:
        return None if self._block(params.block_ref(block, 0)) is None else "0x0"

    @rpc_method("eth_getUncleCountByBlockHash")
    async def uncle_count_by_hash(self, block_hash: Any) -> str | None:
        found = self.reader.block_by_hash(params.hash32(block_hash, 0))
        return None if found is None else "0x0"

    @rpc_method("eth_getUncleByBlockNumberAndIndex")
    async def uncle_by_number(self, block: Any, index: Any) -> None:
        params.block_ref(block, 0)
        params.quantity(index, 1)
        return None

    @rpc_method("eth_getUncleByBlockHashAndIndex")
    async def uncle_by_hash(self, block_hash: Any, index: Any) -> None:
        params.hash32(block_hash, 0)
        params.quantity(index, 1)
        return None

    # ------------------------------------------------------------ logs
    @rpc_method("eth_getLogs")
    async def get_logs(self, filter_object: Any) -> list[dict[str, Any]]:
        flt = parse_filter(filter_object, 0)
        if flt.block_hash is not None:
            stored = self.reader.block_by_hash(flt.block_hash)
            if stored is None:
                raise RpcError(SERVER_ERROR, "unknown block")
            return list(flt.logs_in(stored, self.b.log_index))
        head = self.reader.head_number
        start = self._number_of(flt.from_block)
        end = self._number_of(flt.to_block)
        if start is None:
            return []
        end = head if end is None else end
        if start > end:
            raise RpcError(SERVER_ERROR, "invalid block range params")
        limit = self.b.config.logs_block_range
        if end - start + 1 > limit:
            raise RpcError(
                LIMIT_EXCEEDED,
                f"query exceeds max block range {limit}: blocks {start}..{end} "
                f"({end - start + 1} blocks); split the query or raise --rpc.logs-range",
            )
        max_results = self.b.config.logs_max_results

        def scan() -> list[dict[str, Any]]:
            found: list[dict[str, Any]] = []
            for number in range(start, end + 1):
                header = self.reader.header_by_number(number)  # decoded once, then cached
                if header is None or not flt.could_match(header.bloom):
                    continue
                stored = self.reader.block_by_number(number)
                if stored is None:
                    continue
                found.extend(flt.logs_in(stored, self.b.log_index))
                if len(found) > max_results:
                    raise RpcError(
                        LIMIT_EXCEEDED,
                        f"query returned more than {max_results} results; narrow the "
                        "block range or the address/topics",
                    )
            return found

        return await self.b.run_read(scan)


def _json_size(value: RawJson) -> int:
    return 64 + len(value.raw)


def _tx_in_block(stored: StoredBlock, index: int) -> dict[str, Any]:
    header = stored.header
    return format_transaction(
        stored.transactions[index],
        stored.senders[index],
        TxContext(
            header.hash,
            header.block_number,
            index,
            getattr(header, "base_fee_per_gas", None),
            header.timestamp,
        ),
    )


def _rewards(stored: StoredBlock, base_fee: int, percentiles: list[float]) -> list[int]:
    if not stored.transactions:
        return [0 for _ in percentiles]
    items: list[tuple[int, int]] = []
    previous = 0
    for tx, receipt in zip(stored.transactions, stored.receipts, strict=True):
        used = receipt.gas_used - previous
        previous = receipt.gas_used
        items.append((effective_gas_price(tx, base_fee) - base_fee, used))
    items.sort()
    total = sum(used for _, used in items)
    rewards: list[int] = []
    for p in percentiles:
        threshold = total * p / 100
        cumulative = 0
        chosen = items[-1][0]
        for reward, used in items:
            cumulative += used
            if cumulative >= threshold:
                chosen = reward
                break
        rewards.append(chosen)
    return rewards


def _storage_key(slot: Any) -> int:
    """A storage slot as geth decodes it: hex of at most 32 bytes, with geth's errors (-32000
    "unable to decode storage key: ...", which clients match)."""
    if not isinstance(slot, str):
        raise invalid_params("invalid argument 1: storage key must be a hex string")
    text = slot[2:] if slot[:2] in ("0x", "0X") else None
    if text is None:
        raise RpcError(SERVER_ERROR, "unable to decode storage key: hex string without 0x prefix")
    if len(text) > 64:
        raise RpcError(
            SERVER_ERROR, "unable to decode storage key: hex string too long, want at most 32 bytes"
        )
    if not all(c in string.hexdigits for c in text):
        raise RpcError(SERVER_ERROR, "unable to decode storage key: hex string invalid")
    return int(text or "0", 16)
