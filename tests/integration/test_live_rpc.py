"""A whole dev node in-process (real LevelDB, real aiohttp server, real WebSocket clients):
subscriptions end with their connection, whether it closes cleanly or just drops."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp

from cairn.node.service import Node
from tests.support.chain import dev_node_settings, transfer
from tests.support.wait import wait_until_async


async def _call(
    ws: aiohttp.ClientWebSocketResponse,
    id_: int,
    method: str,
    *params: Any,
    notes: list[Any] | None = None,
) -> Any:
    """The answer to one request; notifications that come first go to `notes`."""
    await ws.send_str(json.dumps({"jsonrpc": "2.0", "id": id_, "method": method, "params": params}))
    while True:
        message = json.loads((await ws.receive(timeout=30)).data)
        if message.get("id") == id_:
            return message
        assert notes is not None, message
        notes.append(message)


async def _scenario(datadir: Path) -> None:
    node = Node(dev_node_settings(datadir))
    await node.start()
    try:
        feed, subs = node.methods.feed, node.methods.subscriptions
        baseline = [len(feed.blocks), len(feed.txs), len(feed.rewinds), len(feed.sync)]
        url = f"http://127.0.0.1:{node.rpc.bound_ports[0]}/"
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(url)
            ids = []
            kinds: list[list[Any]] = [
                ["newHeads"],
                ["logs", {}],
                ["newPendingTransactions"],
                ["syncing"],
            ]
            for i, params in enumerate(kinds):
                ids.append((await _call(ws, i, "eth_subscribe", *params))["result"])
            assert subs.active() == 4
            assert [len(feed.blocks), len(feed.txs), len(feed.rewinds), len(feed.sync)] == [
                baseline[0] + 2,
                baseline[1] + 1,
                baseline[2] + 1,
                baseline[3] + 1,
            ]
            assert (await _call(ws, 9, "eth_unsubscribe", ids[2]))["result"] is True
            assert subs.active() == 3
            # a notification arrives, then the client goes away without a word
            raw = "0x" + transfer(0, 0).hex()
            notes: list[Any] = []
            # automine answers once the block is committed, so its newHeads comes first
            await _call(ws, 10, "eth_sendRawTransaction", raw, notes=notes)
            assert [n["params"]["subscription"] for n in notes] == [ids[0]]
            ws._response.connection.transport.abort()  # type: ignore[union-attr]

            async def drained() -> bool:
                return subs.active() == 0

            await wait_until_async(drained, message="subscriptions of a dropped connection")
            assert [len(feed.blocks), len(feed.txs), len(feed.rewinds), len(feed.sync)] == baseline

            # many connections closing cleanly leave nothing behind either
            sockets = [await http.ws_connect(url) for _ in range(20)]
            for n, sock in enumerate(sockets):
                await _call(sock, n, "eth_subscribe", "newHeads")
            assert subs.active() == 20
            await asyncio.gather(*(sock.close() for sock in sockets))
            await wait_until_async(drained, message="subscriptions of closed connections")
            assert len(feed.blocks) == baseline[0]
    finally:
        await node.stop()


def test_subscriptions_end_with_their_connection(tmp_path: Path) -> None:
    asyncio.run(_scenario(tmp_path / "dev"))
