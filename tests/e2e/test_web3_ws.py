"""web3.py over WebSocket (AsyncWeb3 + WebSocketProvider) against `cairn dev`: newHeads and
logs subscriptions deliver every block and every event of a scripted run, in order, none
missing, while transactions arrive in fast back-to-back batches from another connection."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from eth_account import Account
from web3 import AsyncWeb3, WebSocketProvider

from tests.support import rpc
from tests.support.chain import KEYS
from tests.support.contracts import compile_contract
from tests.support.proc import NodeProcess
from tests.support.txs import calldata, deploy, sign
from tests.support.wait import wait_until_async

SENDERS = (1, 2, 3, 4)
ROUNDS = 10


def _script(url: str, emitter: str) -> list[str]:
    """Batches of transactions: events (1..4 per tx), plain transfers and on-chain reverts."""
    nonces = {
        i: int(rpc.call(url, "eth_getTransactionCount", Account.from_key(KEYS[i]).address), 16)
        for i in SENDERS
    }
    hashes: list[str] = []
    n = 0
    for round_ in range(ROUNDS):
        raws = []
        for i in SENDERS:
            kind = (round_ + i) % 4
            if kind == 0:
                raw = sign(i, nonces[i], to=emitter, data=calldata("ping(uint256)", n))
            elif kind == 1:
                data = calldata("pingMany(uint256,uint256)", n, 1 + (round_ % 3))
                raw = sign(i, nonces[i], to=emitter, data=data)
            elif kind == 2:
                raw = sign(i, nonces[i], to=emitter, data=calldata("ping(uint256)", 10**9))
            else:
                raw = sign(i, nonces[i], to="0x000000000000000000000000000000000000dEaD", value=7)
            nonces[i] += 1
            n += 1
            raws.append(raw)
        answers = rpc.post(
            url,
            [
                {"jsonrpc": "2.0", "id": k, "method": "eth_sendRawTransaction", "params": [r]}
                for k, r in enumerate(raws)
            ],
        )
        assert all("result" in a for a in answers), answers
        hashes.extend(a["result"] for a in answers)
        if round_ == ROUNDS // 2:
            rpc.call(url, "anvil_mine", 25)  # a burst of blocks with nothing in between
    return hashes


async def _run(node: NodeProcess, emitter: str) -> None:
    async with AsyncWeb3(WebSocketProvider(node.ws_url)) as w3:
        heads_id = await w3.eth.subscribe("newHeads")
        logs_id = await w3.eth.subscribe("logs", {"address": w3.to_checksum_address(emitter)})
        first = await w3.eth.block_number + 1
        heads: list[Any] = []
        logs: list[Any] = []

        async def consume() -> None:
            async for message in w3.socket.process_subscriptions():
                if message["subscription"] == heads_id:
                    heads.append(message["result"])
                elif message["subscription"] == logs_id:
                    logs.append(message["result"])

        consumer = asyncio.create_task(consume())
        loop = asyncio.get_running_loop()
        with ThreadPoolExecutor(1) as pool:
            hashes = await loop.run_in_executor(pool, _script, node.url, emitter)

            def all_mined() -> int:
                for tx_hash in hashes:
                    if rpc.call(node.url, "eth_getTransactionReceipt", tx_hash) is None:
                        return -1
                return int(rpc.call(node.url, "eth_blockNumber"), 16)

            head: int = await wait_until_async(
                lambda: _positive(loop.run_in_executor(pool, all_mined)),
                within=60,
                message="every transaction of the script to be mined",
            )
            expected_logs = await loop.run_in_executor(
                pool,
                lambda: rpc.call(
                    node.url,
                    "eth_getLogs",
                    {"address": emitter, "fromBlock": hex(first), "toBlock": hex(head)},
                ),
            )

        async def caught_up() -> bool:
            return len(heads) >= head - first + 1 and len(logs) >= len(expected_logs)

        await wait_until_async(caught_up, message="the subscriptions to catch up with the chain")
        consumer.cancel()
        assert await w3.eth.unsubscribe(heads_id) is True
        assert await w3.eth.unsubscribe(logs_id) is True

        # the run really had many blocks arriving back to back
        assert head - first + 1 >= 28, (first, head)
        assert [h["number"] for h in heads] == list(range(first, head + 1))
        for header in heads:
            block = await w3.eth.get_block(header["number"])
            assert header["hash"] == block["hash"]
            assert header["parentHash"] == block["parentHash"]
            assert header["stateRoot"] == block["stateRoot"]
            assert header["timestamp"] == block["timestamp"]
        # every event, in order, none missing, none extra
        assert len(expected_logs) >= ROUNDS * 2
        got = [
            (lg["blockNumber"], lg["logIndex"], lg["transactionHash"].to_0x_hex()) for lg in logs
        ]
        want = [
            (int(lg["blockNumber"], 16), int(lg["logIndex"], 16), lg["transactionHash"])
            for lg in expected_logs
        ]
        assert got == want
        assert [lg["topics"][0].to_0x_hex() for lg in logs] == [
            lg["topics"][0] for lg in expected_logs
        ]
        assert [lg["data"].to_0x_hex() for lg in logs] == [lg["data"] for lg in expected_logs]
        assert all(lg["removed"] is False for lg in logs)


async def _positive(value: Awaitable[int]) -> int | None:
    found = await value
    return found if found >= 0 else None


def test_web3_subscriptions_deliver_every_block_and_event(dev_node: NodeProcess) -> None:
    emitter = deploy(dev_node.url, compile_contract("Emitter.sol", "Emitter"))
    asyncio.run(_run(dev_node, emitter))
