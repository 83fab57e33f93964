"""The workloads of `make bench`, each run against one started target (Cairn or Anvil).

W1 transfers: 10,000 pre-signed EIP-1559 transfers from 100 senders in HTTP batches, timed
   from the first submit until every transaction has a receipt.
W2 erc20: 2,000 ERC-20 transfers (20 from each of 100 holders), timed the same way.
W3 reads: p50/p99 latency of read methods under 64 concurrent clients.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import time
from typing import Any

from eth_abi.abi import encode as abi_encode
from eth_account import Account
from eth_utils import function_signature_to_4byte_selector, keccak

from bench.harness import (
    CHAIN_ID,
    REPO,
    Client,
    Target,
    addresses,
    keys,
)

SENDERS = 100
BATCH = 500
IN_FLIGHT = 4
GAS_PRICE = {"maxFeePerGas": 100 * 10**9, "maxPriorityFeePerGas": 10**9}


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


async def settle(
    client: Client, tx_hashes: list[str], target: Target, limit: float
) -> tuple[float, int]:
    """Wait until every hash has a receipt. Anvil's automine stops mining when a flood of
    submissions ends with thousands pending (seen with anvil 1.7.1); for it alone, a block
    is requested with evm_mine after 1 s without progress, and the nudges are counted."""
    remaining = list(tx_hashes)
    deadline = time.monotonic() + limit
    last_progress = time.monotonic()
    nudges = 0
    while remaining:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{target.name}: {len(remaining)} transactions without receipt")
        probe = remaining[:200]
        answers = await client.batch([("eth_getTransactionReceipt", [h]) for h in probe])
        done = {
            h
            for h, a in zip(probe, answers, strict=True)
            if isinstance(a, dict) and a.get("blockHash")
        }
        if done:
            remaining = [h for h in remaining if h not in done]
            last_progress = time.monotonic()
            continue
        if (
            target.name == "anvil"
            and target.block_time == 0
            and time.monotonic() - last_progress > 1
        ):
            await client.call("evm_mine")
            nudges += 1
            last_progress = time.monotonic()
        await asyncio.sleep(0.02)
    return time.monotonic(), nudges


async def timed_run(
    client: Client, target: Target, raws: list[str], tail: int = 1
) -> dict[str, Any]:
    """Submit `raws` and wait for the receipts of the last `tail` (each sender's last nonce:
    a sender's transactions are mined in nonce order, so the rest are mined too)."""
    start_block = int(await client.call("eth_blockNumber"), 16)
    t0 = time.monotonic()
    hashes = await submit(client, raws)
    submitted = time.monotonic()
    done, nudges = await settle(client, hashes[-tail:], target, 900)
    end_block = int(await client.call("eth_blockNumber"), 16)
    seconds = done - t0
    result = {
        "transactions": len(raws),
        "seconds": round(seconds, 3),
        "tx_per_s": round(len(raws) / seconds, 1),
        "submit_seconds": round(submitted - t0, 3),
        "blocks": end_block - start_block,
    }
    if nudges:
        result["evm_mine_nudges"] = nudges
    return result


# ---------------------------------------------------------------- W1
async def transfers(client: Client, target: Target, rounds: list[list[str]]) -> dict[str, Any]:
    flat = [raw for row in rounds for raw in row]  # round-major: the last row is every last nonce
    return await timed_run(client, target, flat, tail=len(rounds[-1]))


# ---------------------------------------------------------------- W2
def compile_token() -> dict[str, Any]:
    script = REPO / "tests" / "clients" / "compile.js"
    source = REPO / "tests" / "contracts" / "Token.sol"
    out = subprocess.run(
        ["node", str(script), str(source)], capture_output=True, text=True, check=True, cwd=REPO
    )
    token: dict[str, Any] = json.loads(out.stdout)["Token"]
    return token


def _signed(key: bytes, nonce: int, to: str | None, data: bytes, gas: int) -> str:
    tx: dict[str, Any] = {
        "type": 2,
        "chainId": CHAIN_ID,
        "nonce": nonce,
        "value": 0,
        "gas": gas,
        "data": data,
        **GAS_PRICE,
    }
    if to is not None:
        tx["to"] = to
    return "0x" + bytes(Account.sign_transaction(tx, key).raw_transaction).hex()


def transfer_call(to: str, amount: int) -> bytes:
    selector = function_signature_to_4byte_selector("transfer(address,uint256)")
    return selector + abi_encode(["address", "uint256"], [to, amount])


class Erc20Plan:
    """Pre-signed deployment, funding and the 2,000 timed transfers (identical for both nodes)."""

    def __init__(self, first_nonces: dict[int, int], per_holder: int = 20) -> None:
        token = compile_token()
        signing = keys(SENDERS)
        holders = addresses(SENDERS)
        owner_nonce = first_nonces[0]
        constructor = abi_encode(["string", "string", "uint256"], ["Bench", "BNC", 10**30])
        self.deploy = _signed(
            signing[0], owner_nonce, None, bytes.fromhex(token["bytecode"]) + constructor, 2_000_000
        )
        owner = holders[0]
        self.address = "0x" + keccak(rlp_create(owner, owner_nonce))[12:].hex()
        self.fund = [
            _signed(
                signing[0],
                owner_nonce + 1 + i,
                self.address,
                transfer_call(holders[i], 10**24),
                100_000,
            )
            for i in range(1, SENDERS)
        ]
        self.transfers: list[str] = []
        for r in range(per_holder):
            for i in range(SENDERS):
                nonce = first_nonces[i] + r + (SENDERS if i == 0 else 0)
                recipient = holders[(i + r + 1) % SENDERS]
                self.transfers.append(
                    _signed(
                        signing[i], nonce, self.address, transfer_call(recipient, 1 + r), 100_000
                    )
                )
        self.owner = owner


def rlp_create(sender: str, nonce: int) -> bytes:
    import rlp

    return bytes(rlp.encode([bytes.fromhex(sender[2:]), nonce]))


async def erc20(client: Client, target: Target, plan: Erc20Plan) -> dict[str, Any]:
    await timed_run(client, target, [plan.deploy])
    await timed_run(client, target, plan.fund)
    return await timed_run(client, target, plan.transfers, tail=SENDERS)


# ---------------------------------------------------------------- W3
async def latency(
    client: Client, calls: list[tuple[str, list[Any]]], workers: int, per_worker: int
) -> dict[str, float]:
    samples: list[float] = []

    async def worker(offset: int) -> None:
        for i in range(per_worker):
            method, params = calls[(offset + i) % len(calls)]
            t0 = time.perf_counter()
            await client.call(method, *params)
            samples.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(workers)))
    elapsed = time.perf_counter() - t0
    samples.sort()
    return {
        "p50_ms": round(statistics.median(samples) * 1000, 2),
        "p99_ms": round(samples[int(len(samples) * 0.99) - 1] * 1000, 2),
        "requests": len(samples),
        "requests_per_s": round(len(samples) / elapsed, 1),
    }


async def reads(
    client: Client, plan: Erc20Plan, workers: int = 64, per_worker: int = 40
) -> dict[str, Any]:
    head = int(await client.call("eth_blockNumber"), 16)
    biggest, most = head, -1
    for n in range(max(1, head - 60), head + 1):
        count = int(await client.call("eth_getBlockTransactionCountByNumber", hex(n)), 16)
        if count > most:
            biggest, most = n, count
    holders = addresses(SENDERS)
    balance_of = function_signature_to_4byte_selector("balanceOf(address)")
    transfer_topic = "0x" + keccak(text="Transfer(address,address,uint256)").hex()
    suites: dict[str, list[tuple[str, list[Any]]]] = {
        "eth_blockNumber": [("eth_blockNumber", [])],
        "eth_getBalance": [("eth_getBalance", [h, "latest"]) for h in holders],
        "eth_getBlockByNumber(full)": [("eth_getBlockByNumber", [hex(biggest), True])],
        "eth_call": [
            (
                "eth_call",
                [
                    {
                        "to": plan.address,
                        "data": "0x" + (balance_of + abi_encode(["address"], [h])).hex(),
                    },
                    "latest",
                ],
            )
            for h in holders
        ],
        "eth_getLogs": [
            (
                "eth_getLogs",
                [
                    {
                        "fromBlock": hex(max(0, head - 20)),
                        "toBlock": hex(head),
                        "address": plan.address,
                        "topics": [transfer_topic],
                    }
                ],
            )
        ],
    }
    results: dict[str, Any] = {"workers": workers, "full_block_transactions": most}
    for name, calls in suites.items():
        await latency(client, calls, 8, 5)  # warm caches and connections
        results[name] = await latency(client, calls, workers, per_worker)
    return results
