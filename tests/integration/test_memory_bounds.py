"""A whole dev node in-process (real LevelDB, real aiohttp server, HTTP clients) under tens of
thousands of transfers while every new block is read back as clients do (a receipt, the full
block, the block's receipts, recent logs): every cache stays within its share of `--cache`,
the pool within `--txpool.max-bytes`, and nothing is kept per transaction once it is mined.

Issue 18: decoded blocks were cached by count (256 blocks), ~2 KB per transaction each, so
memory grew by ~2.4 KB per transaction as long as blocks were read. Sizes are asserted here,
never resident memory (noisy) or timings.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import rlp
from eth_utils import keccak
from trie.hexary import HexaryTrie

from cairn.memory import MIB, Footprint, MemoryBudget
from cairn.node.service import Node
from tests.support.chain import ADDRESSES, KEYS, dev_node_settings
from tests.support.wallet import sign_range

DEAD = "0x000000000000000000000000000000000000dEaD"
BATCHES = 100  # HTTP batches, each answered once its block is mined (automine) ...
PER_BATCH = 18  # ... with this many transfers from each of the dev keys 1-9 (16,200) ...
LOG_CALLS = 20  # ... and this many calls from key 0 that emit 10 logs each (2,000)
EMPTY_BLOCKS = 300  # mined first: more headers than the header cache holds
BUDGET = MemoryBudget(cache_mib=4, txpool_bytes=2 * MIB)  # caches of 0.5-1 MiB each
CACHES = ("headers", "blocks", "rpc_blocks", "rpc_receipts", "log_index")
# A contract whose every call emits 10 logs: LOG2(mem[0:32], topics CALLER, i) for i < 10.
EMITTER_RUNTIME = b"".join(bytes([0x60, i, 0x33, 0x60, 0x20, 0x60, 0x00, 0xA2]) for i in range(10))
EMITTER_INIT = (
    bytes([0x60, len(EMITTER_RUNTIME), 0x80, 0x60, 0x0B, 0x60, 0x00, 0x39, 0x60, 0x00, 0xF3])
    + EMITTER_RUNTIME
)


async def _rpc(
    http: aiohttp.ClientSession, url: str, calls: list[tuple[str, list[Any]]]
) -> list[Any]:
    body = [{"jsonrpc": "2.0", "id": i, "method": m, "params": p} for i, (m, p) in enumerate(calls)]
    async with http.post(url, json=body) as response:
        answers = await response.json(content_type=None)
    by_id = {a["id"]: a for a in answers}
    for i, (method, _) in enumerate(calls):
        assert "error" not in by_id[i], (method, by_id[i])
    return [by_id[i]["result"] for i in range(len(calls))]


def _sizes(node: Node) -> dict[str, Footprint]:
    return {f.name: f for f in node.memory_figures()}


async def _scenario(datadir: Path) -> None:
    node = Node(replace(dev_node_settings(datadir), memory=BUDGET))
    await node.start()
    try:
        url = f"http://127.0.0.1:{node.rpc.bound_ports[0]}/"
        deploy = sign_range(KEYS[0], 0, 1, to="", data=EMITTER_INIT, gas=200_000, value=0)[0]
        emitter = "0x" + keccak(rlp.encode([ADDRESSES[0], 0]))[12:].hex()
        calls = sign_range(KEYS[0], 1, BATCHES * LOG_CALLS, to=emitter, gas=100_000, value=0)
        sends = [sign_range(key, 0, BATCHES * PER_BATCH, to=DEAD) for key in KEYS[1:]]
        seen: list[dict[str, Footprint]] = []
        blocks_read: set[int] = set()
        head = 0
        async with aiohttp.ClientSession() as http:
            await _rpc(http, url, [("anvil_mine", [hex(EMPTY_BLOCKS)])])
            created = await _rpc(http, url, [("eth_sendRawTransaction", ["0x" + deploy.hex()])])
            (deployed,) = await _rpc(http, url, [("eth_getTransactionReceipt", created)])
            assert deployed["contractAddress"] == emitter
            for n in range(BATCHES):
                chunk = calls[n * LOG_CALLS : (n + 1) * LOG_CALLS] + [
                    sent[n * PER_BATCH + i] for i in range(PER_BATCH) for sent in sends
                ]
                hashes = await _rpc(
                    http, url, [("eth_sendRawTransaction", ["0x" + r.hex()]) for r in chunk]
                )
                receipt, block, _, logs, _ = await _rpc(
                    http,
                    url,
                    [
                        ("eth_getTransactionReceipt", [hashes[0]]),
                        ("eth_getBlockByNumber", ["latest", True]),
                        ("eth_getBlockReceipts", ["latest"]),
                        (
                            "eth_getLogs",
                            [{"fromBlock": hex(max(0, head - 4)), "toBlock": "latest"}],
                        ),
                        # every header since genesis, through the bloom check (no log of DEAD)
                        ("eth_getLogs", [{"fromBlock": "earliest", "address": DEAD}]),
                    ],
                )
                assert receipt is not None and len(receipt["logs"]) == 10
                assert len(logs) >= 10 * LOG_CALLS
                head = int(block["number"], 16)
                blocks_read.add(head)
                seen.append(_sizes(node))
        final = _sizes(node)
    finally:
        await node.stop()

    assert head >= EMPTY_BLOCKS + BATCHES
    # every byte-bounded structure stayed within its bound, at every step
    for sizes in seen:
        for name, footprint in sizes.items():
            if footprint.limit_bytes:
                assert footprint.bytes <= footprint.limit_bytes, (name, footprint)
    # ... and the bound did the work: each cache filled past half of it (its entries are
    # whole blocks: one more would not fit) and let blocks go that were read
    for name in CACHES:
        high = max(s[name].bytes for s in seen)
        assert high >= 0.5 * final[name].limit_bytes, (name, high, final[name])
        if name != "headers":
            assert final[name].entries < len(blocks_read), (name, final[name])
    assert final["headers"].entries < head  # the logs scans read every header
    # after warm-up nothing grows: the last third holds no more than the middle third
    third = len(seen) // 3
    for name in (*CACHES, "leveldb"):
        middle = max(s[name].bytes for s in seen[third : 2 * third])
        last = max(s[name].bytes for s in seen[2 * third :])
        limit = final[name].limit_bytes
        assert last <= max(middle, limit), (name, middle, last)
    # nothing is kept per transaction once it is mined
    assert (final["txpool"].entries, final["txpool"].bytes) == (0, 0)
    assert final["txpool_senders"].entries == 0
    assert HexaryTrie._cached_create_node_to_db_mapping.cache_info().currsize == 0


@pytest.mark.slow
def test_caches_and_pool_stay_bounded_under_tens_of_thousands_of_transfers(
    tmp_path: Path,
) -> None:
    asyncio.run(_scenario(tmp_path / "dev"))


async def _refusals(datadir: Path) -> None:
    node = Node(dev_node_settings(datadir))
    await node.start()
    try:
        raws = ["0x" + r.hex() for r in sign_range(KEYS[0], 0, 5, to=DEAD)]
        ids = itertools.count()

        def request(raw: str) -> dict[str, Any]:
            return {
                "jsonrpc": "2.0",
                "id": next(ids),
                "method": "eth_sendRawTransaction",
                "params": [raw],
            }

        await node.dispatcher.handle([request(r) for r in raws])  # mined: known from now on
        gc.collect()
        gc.disable()
        try:
            for _ in range(200):
                answers = await node.dispatcher.handle([request(r) for r in raws])
                assert all("error" in a for a in answers)
            found = gc.collect()
        finally:
            gc.enable()
    finally:
        await node.stop()
    # 1,000 refusals through the dispatcher: what they allocated was freed by reference
    # counting, not left in cycles for a full collection (there were ~30 objects per refusal)
    assert found < 200, found


def test_refused_sends_leave_no_garbage_cycles(tmp_path: Path) -> None:
    asyncio.run(_refusals(tmp_path / "dev"))
