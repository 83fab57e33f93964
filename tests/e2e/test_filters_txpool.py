"""Polling filters, their expiry, WebSocket subscription protocol details and the txpool
namespace in geth's formats, against a real `cairn dev` process (filter timeout 2 s)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websockets
from eth_account import Account
from eth_utils import keccak, to_checksum_address

from tests.support import rpc
from tests.support.chain import KEYS
from tests.support.contracts import compile_contract
from tests.support.proc import NodeProcess
from tests.support.txs import calldata, deploy, receipt, sign
from tests.support.wait import wait_until

FILTER_TIMEOUT = 2.0
DEAD = "0x000000000000000000000000000000000000dEaD"
TIMES = "\u00d7"  # geth's multiplication sign in txpool_inspect
PING = "0x" + keccak(text="Ping(address,uint256,bytes32)").hex()


def word(n: int) -> str:
    return "0x" + n.to_bytes(32, "big").hex()


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    datadir: Path = tmp_path_factory.mktemp("filters") / "dev"
    process = NodeProcess(datadir, "dev", "--rpc.filter-timeout", str(FILTER_TIMEOUT)).start()
    yield process
    process.stop()


def call(node: NodeProcess, method: str, *params: Any) -> Any:
    return rpc.call(node.url, method, *params)


def fails(node: NodeProcess, method: str, *params: Any) -> rpc.RpcFailure:
    with pytest.raises(rpc.RpcFailure) as info:
        call(node, method, *params)
    return info.value


def nonce_of(node: NodeProcess, key_index: int) -> int:
    address = Account.from_key(KEYS[key_index]).address
    return int(call(node, "eth_getTransactionCount", address, "pending"), 16)


def test_block_and_pending_filters(node: NodeProcess) -> None:
    blocks = call(node, "eth_newBlockFilter")
    pending = call(node, "eth_newPendingTransactionFilter")
    assert blocks.startswith("0x") and blocks != pending
    assert call(node, "eth_getFilterChanges", blocks) == []
    start = int(call(node, "eth_blockNumber"), 16)
    call(node, "evm_mine", {"blocks": 3})
    hashes = [
        call(node, "eth_getBlockByNumber", hex(n), False)["hash"]
        for n in range(start + 1, start + 4)
    ]
    assert call(node, "eth_getFilterChanges", blocks) == hashes
    assert call(node, "eth_getFilterChanges", blocks) == []  # each change is delivered once
    sent = [
        call(node, "eth_sendRawTransaction", sign(5, nonce_of(node, 5), to=DEAD, value=1)),
        call(node, "eth_sendRawTransaction", sign(6, nonce_of(node, 6), to=DEAD, value=1)),
    ]
    assert call(node, "eth_getFilterChanges", pending) == sent
    assert len(call(node, "eth_getFilterChanges", blocks)) >= 1
    assert fails(node, "eth_getFilterLogs", blocks).message == "filter not found"
    assert call(node, "eth_uninstallFilter", blocks) is True
    assert call(node, "eth_uninstallFilter", blocks) is False
    gone = fails(node, "eth_getFilterChanges", blocks)
    assert (gone.code, gone.message) == (-32000, "filter not found")
    assert call(node, "eth_uninstallFilter", pending) is True


def test_log_filters_match_ranges_and_report_removed_logs(node: NodeProcess) -> None:
    emitter = deploy(node.url, compile_contract("Emitter.sol", "Emitter"))
    start = int(call(node, "eth_blockNumber"), 16)
    matching = call(
        node,
        "eth_newFilter",
        {
            "fromBlock": hex(start),
            "address": emitter,
            "topics": [PING, None, [word(2), word(3)]],
        },
    )
    everything = call(node, "eth_newFilter", {"address": [emitter, DEAD]})
    closed_range = call(node, "eth_newFilter", {"fromBlock": "0x0", "toBlock": hex(start)})
    bad = fails(node, "eth_newFilter", {"fromBlock": "0x5", "toBlock": "0x2"})
    assert bad.message == "invalid from and to block combination"
    nonce = nonce_of(node, 0)
    hashes = []
    for n in range(1, 5):
        raw = sign(0, nonce, to=emitter, data=calldata("ping(uint256)", n))
        hashes.append(call(node, "eth_sendRawTransaction", raw))
        nonce += 1
    for tx_hash in hashes:
        receipt(node.url, tx_hash)
    changes = call(node, "eth_getFilterChanges", matching)
    assert [int(lg["topics"][2], 16) for lg in changes] == [2, 3]
    assert [lg["transactionHash"] for lg in changes] == hashes[1:3]
    assert all(lg["removed"] is False and lg["address"] == emitter.lower() for lg in changes)
    assert call(node, "eth_getFilterLogs", matching) == changes
    assert (
        call(
            node,
            "eth_getLogs",
            {
                "fromBlock": hex(start),
                "address": emitter,
                "topics": [PING, None, [word(2), word(3)]],
            },
        )
        == changes
    )
    assert [
        lg["transactionHash"] for lg in call(node, "eth_getFilterChanges", everything)
    ] == hashes
    assert call(node, "eth_getFilterChanges", closed_range) == []  # blocks past toBlock

    # a revert takes logs back: filters report them again with removed: true
    snapshot = call(node, "evm_snapshot")
    doomed = call(
        node,
        "eth_sendRawTransaction",
        sign(0, nonce, to=emitter, data=calldata("ping(uint256)", 3)),
    )
    receipt(node.url, doomed)
    [added] = call(node, "eth_getFilterChanges", matching)
    assert added["transactionHash"] == doomed and added["removed"] is False
    assert call(node, "evm_revert", snapshot) is True
    [removed] = call(node, "eth_getFilterChanges", matching)
    assert removed == {**added, "removed": True}
    for filter_id in (matching, everything, closed_range):
        assert call(node, "eth_uninstallFilter", filter_id) is True


def test_filters_expire_when_not_polled(node: NodeProcess) -> None:
    kept = call(node, "eth_newBlockFilter")
    idle = call(node, "eth_newBlockFilter")
    began = time.monotonic()

    def polled_past_the_timeout() -> bool:
        call(node, "eth_getFilterChanges", kept)  # raises if it expired while polled
        return time.monotonic() - began > FILTER_TIMEOUT * 1.5

    wait_until(polled_past_the_timeout, interval=FILTER_TIMEOUT / 4, message="polling")
    assert fails(node, "eth_getFilterChanges", idle).message == "filter not found"

    def expired() -> bool:
        try:
            call(node, "eth_getFilterChanges", kept)
        except rpc.RpcFailure as failure:
            return failure.message == "filter not found"
        return False

    began = time.monotonic()
    # the kept filter now goes unpolled: gone after the timeout (checked once per second)
    wait_until(expired, interval=FILTER_TIMEOUT * 2, timeout=10, message="the filter to expire")
    assert time.monotonic() - began >= FILTER_TIMEOUT


def test_txpool_namespace_in_geths_formats(node: NodeProcess) -> None:
    call(node, "evm_setAutomine", False)
    try:
        a, b = Account.from_key(KEYS[7]).address, Account.from_key(KEYS[8]).address
        n = nonce_of(node, 7)
        first = call(node, "eth_sendRawTransaction", sign(7, n, to=DEAD, value=1, gas=21_000))
        second = call(node, "eth_sendRawTransaction", sign(7, n + 1, to=DEAD, value=2, gas=21_000))
        gap = call(node, "eth_sendRawTransaction", sign(7, n + 3, to=DEAD, value=3, gas=21_000))
        create = call(
            node,
            "eth_sendRawTransaction",
            sign(8, nonce_of(node, 8), to=None, data=bytes.fromhex("6000"), gas=60_000),
        )
        assert call(node, "txpool_status") == {"pending": "0x3", "queued": "0x1"}
        content = call(node, "txpool_content")
        assert set(content) == {"pending", "queued"}
        assert set(content["pending"]) == {a, b}  # EIP-55 checksummed keys
        assert list(content["pending"][a]) == [str(n), str(n + 1)]  # decimal nonce keys
        assert list(content["queued"]) == [a] and list(content["queued"][a]) == [str(n + 3)]
        tx = content["pending"][a][str(n)]
        assert tx["hash"] == first and tx["from"] == a.lower()
        assert tx["blockHash"] is None and tx["blockNumber"] is None
        assert tx["transactionIndex"] is None
        assert tx["gasPrice"] == tx["maxFeePerGas"] == hex(20 * 10**9)  # pending: the fee cap
        assert content["pending"][a][str(n + 1)]["hash"] == second
        assert content["queued"][a][str(n + 3)]["hash"] == gap
        assert content["pending"][b][str(nonce_of(node, 8) - 1)]["hash"] == create
        assert call(node, "eth_getTransactionByHash", first) == tx

        inspect = call(node, "txpool_inspect")
        fee = 20 * 10**9
        assert (
            inspect["pending"][a][str(n)]
            == f"{to_checksum_address(DEAD)}: 1 wei + 21000 gas {TIMES} {fee} wei"
        )
        assert (
            inspect["queued"][a][str(n + 3)]
            == f"{to_checksum_address(DEAD)}: 3 wei + 21000 gas {TIMES} {fee} wei"
        )
        [created] = inspect["pending"][b].values()
        assert created == f"contract creation: 0 wei + 60000 gas {TIMES} {fee} wei"

        mine = call(node, "txpool_contentFrom", a.lower())
        assert list(mine["pending"]) == [str(n), str(n + 1)] and list(mine["queued"]) == [
            str(n + 3)
        ]
        assert call(node, "txpool_contentFrom", DEAD) == {"pending": {}, "queued": {}}

        call(node, "evm_mine")
        assert call(node, "txpool_status") == {"pending": "0x0", "queued": "0x1"}
        assert call(node, "eth_getTransactionReceipt", first)["status"] == "0x1"
    finally:
        call(node, "evm_setAutomine", True)


async def _ws(node: NodeProcess, requests: list[dict[str, Any]], notes: int) -> list[Any]:
    """Send `requests` on one connection; collect the answers and `notes` notifications."""
    async with websockets.connect(node.ws_url) as ws:
        answers = []
        for request in requests:
            await ws.send(json.dumps({"jsonrpc": "2.0", **request}))
            answers.append(json.loads(await asyncio.wait_for(ws.recv(), 30)))
        if notes:
            call_ids = [a.get("result") for a in answers]
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, _send_two, node)
            while len(answers) < len(requests) + notes:
                message = json.loads(await asyncio.wait_for(ws.recv(), 30))
                assert message["method"] == "eth_subscription"
                assert message["params"]["subscription"] in call_ids
                answers.append(message["params"]["result"])
        return answers


def _send_two(node: NodeProcess) -> None:
    n = nonce_of(node, 9)
    for i in range(2):
        call(node, "eth_sendRawTransaction", sign(9, n + i, to=DEAD, value=1))


def test_subscription_protocol(node: NodeProcess) -> None:
    over_http = fails(node, "eth_subscribe", "newHeads")
    assert (over_http.code, over_http.message) == (-32601, "notifications not supported")
    answers = asyncio.run(
        _ws(
            node,
            [
                {"id": 1, "method": "eth_subscribe", "params": ["bogus"]},
                {"id": 2, "method": "eth_unsubscribe", "params": ["0x1234"]},
                {"id": 3, "method": "eth_subscribe", "params": ["syncing"]},
                {"id": 4, "method": "eth_unsubscribe", "params": []},
                {"id": 5, "method": "eth_subscribe", "params": ["newPendingTransactions", True]},
                {
                    "id": 6,
                    "method": "eth_subscribe",
                    "params": ["logs", {"blockHash": "0x" + "00" * 32}],
                },
            ],
            notes=2,
        )
    )
    assert answers[0]["error"] == {
        "code": -32601,
        "message": 'no "bogus" subscription in eth namespace',
    }
    assert answers[1]["error"] == {"code": -32000, "message": "subscription not found"}
    assert answers[2]["result"].startswith("0x")
    assert answers[3]["error"]["code"] == -32602
    assert answers[4]["result"].startswith("0x")
    assert answers[5]["error"]["code"] == -32602
    full = answers[6:]
    assert [tx["from"] for tx in full] == [Account.from_key(KEYS[9]).address.lower()] * 2
    assert all(tx["blockHash"] is None and tx["input"] == "0x" for tx in full)
    assert int(full[1]["nonce"], 16) == int(full[0]["nonce"], 16) + 1
