"""Workload 1: 10,000 pre-signed EIP-1559 transfers from 100 senders over HTTP batches.

Timed from the first submit until every transaction has a receipt (for Cairn: its block is
committed with a synced LevelDB write; Anvil keeps blocks in memory).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from bench.harness import Client, Target, sign_transfers, wait_for_receipts

SENDERS = 100
PER_SENDER = 100
BATCH = 500
IN_FLIGHT = 4


async def submit(client: Client, raws: list[str]) -> list[str]:
    """Send `raws` in batches of BATCH, IN_FLIGHT batches at a time; return the hashes."""
    batches = [raws[i : i + BATCH] for i in range(0, len(raws), BATCH)]
    hashes: list[str] = []
    for start in range(0, len(batches), IN_FLIGHT):
        group = batches[start : start + IN_FLIGHT]
        answers = await asyncio.gather(
            *(client.batch([("eth_sendRawTransaction", [r]) for r in b]) for b in group)
        )
        for answer in answers:
            for item in answer:
                if not isinstance(item, str):
                    raise RuntimeError(f"submission refused: {item}")
                hashes.append(item)
    return hashes


async def measure(target: Target, rounds: list[list[str]]) -> dict[str, Any]:
    client = Client(target.url)
    try:
        flat = [raw for row in rounds for raw in row]
        start_block = int(await client.call("eth_blockNumber"), 16)
        t0 = time.monotonic()
        hashes = await submit(client, flat)
        submitted = time.monotonic()
        done = await wait_for_receipts(client, hashes[-SENDERS:], limit=600)
        end_block = int(await client.call("eth_blockNumber"), 16)
        seconds = done - t0
        return {
            "transactions": len(flat),
            "seconds": round(seconds, 3),
            "tx_per_s": round(len(flat) / seconds, 1),
            "submit_seconds": round(submitted - t0, 3),
            "blocks": end_block - start_block,
        }
    finally:
        await client.close()


def run(block_time: float, senders: int = SENDERS, per_sender: int = PER_SENDER) -> dict[str, Any]:
    rounds = sign_transfers(senders, per_sender)
    results: dict[str, Any] = {"block_time": block_time, "gas_limit": 30_000_000}
    for name in ("cairn", "anvil"):
        target = Target(name, block_time=block_time, accounts=senders)
        try:
            target.start()
            results[name] = asyncio.run(measure(target, rounds))
            results[name]["rss_mib"] = round(target.rss_mib(), 1)
        finally:
            target.cleanup()
    results["ratio_cairn_to_anvil"] = round(
        results["cairn"]["tx_per_s"] / results["anvil"]["tx_per_s"], 3
    )
    return results


if __name__ == "__main__":
    import sys

    block_time = float(sys.argv[1]) if len(sys.argv) > 1 else 0.0
    print(json.dumps(run(block_time), indent=2))
