"""The methods explorers and ETL tools call, on a live `cairn dev` chain of deployments,
ERC-20 transfers, reverts and internal calls: Parity-style trace_*, geth's flatCallTracer and
4byteTracer, debug_traceBlock (RLP), eth_getHeaderBy*, rpc_modules."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_utils import keccak

from tests.support import rpc
from tests.support.explorer_chain import PAYEES, ExplorerChain, build_explorer_chain
from tests.support.proc import NodeProcess

PLACE = ("blockHash", "blockNumber", "transactionHash", "transactionPosition")


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExplorerChain]:
    node = NodeProcess(Path(tmp_path_factory.mktemp("trace")) / "dev", "dev").start()
    try:
        yield build_explorer_chain(node.url)
    finally:
        node.stop()


def call(chain: ExplorerChain, method: str, *params: Any) -> Any:
    return rpc.call(chain.url, method, *params)


def all_traces(chain: ExplorerChain) -> list[dict[str, Any]]:
    return [t for n in range(chain.head + 1) for t in call(chain, "trace_block", hex(n))]


def by_tx(chain: ExplorerChain, tx_hash: str) -> list[dict[str, Any]]:
    return [t for t in all_traces(chain) if t["transactionHash"] == tx_hash]


def test_trace_block_covers_every_transaction_with_its_tree(chain: ExplorerChain) -> None:
    traces = all_traces(chain)
    tops = [t for t in traces if t["traceAddress"] == []]
    assert len(tops) == chain.tx_count
    for t in traces:
        assert t["type"] in ("call", "create", "suicide")
        block = call(chain, "eth_getBlockByNumber", hex(t["blockNumber"]), False)
        assert t["blockHash"] == block["hash"]
        assert block["transactions"][t["transactionPosition"]] == t["transactionHash"]

    for tx_hash, value in chain.splits:
        top, first, second = by_tx(chain, tx_hash)
        assert (top["subtraces"], top["action"]["value"]) == (2, hex(value))
        assert [first["traceAddress"], second["traceAddress"]] == [[0], [1]]
        assert [first["action"]["to"], second["action"]["to"]] == list(PAYEES)
        assert [int(first["action"]["value"], 16), int(second["action"]["value"], 16)] == [
            value // 2,
            value - value // 2,
        ]
        assert first["action"]["callType"] == "call" and first["action"]["from"] == chain.splitter

    for tx_hash in chain.deployments:
        receipt = call(chain, "eth_getTransactionReceipt", tx_hash)
        top = by_tx(chain, tx_hash)[0]
        assert top["type"] == "create" and top["result"]["address"] == receipt["contractAddress"]
        assert top["result"]["code"] == call(chain, "eth_getCode", receipt["contractAddress"])
    probe_deploy = by_tx(chain, chain.deployments[2])
    assert [(t["type"], t["traceAddress"]) for t in probe_deploy] == [
        ("create", []),
        ("create", [0]),
    ]

    for tx_hash in chain.reverted:
        top = by_tx(chain, tx_hash)[0]
        assert top["error"] == "Reverted" and top["result"]["output"].startswith("0x")
        receipt = call(chain, "eth_getTransactionReceipt", tx_hash)
        assert int(top["result"]["gasUsed"], 16) < int(receipt["gasUsed"], 16)

    nested = by_tx(chain, chain.nested[0])
    kinds = [(t["type"], t["action"].get("callType"), t.get("error")) for t in nested]
    assert ("call", "delegatecall", None) in kinds
    assert ("call", "staticcall", "Reverted") in kinds  # the caught (pure) child.fail("inner")
    assert ("call", "staticcall", None) in kinds  # child.peek()


def test_trace_transaction_and_replays_agree_with_trace_block(chain: ExplorerChain) -> None:
    tx_hash = chain.splits[0][0]
    placed = call(chain, "trace_transaction", tx_hash)
    assert placed == by_tx(chain, tx_hash)
    unplaced = [{k: v for k, v in t.items() if k not in PLACE} for t in placed]
    replayed = call(chain, "trace_replayTransaction", tx_hash, ["trace"])
    assert replayed == {"output": "0x", "stateDiff": None, "trace": unplaced, "vmTrace": None}

    number = placed[0]["blockNumber"]
    block = call(chain, "trace_replayBlockTransactions", hex(number), ["trace"])
    hashes = call(chain, "eth_getBlockByNumber", hex(number), False)["transactions"]
    assert [r["transactionHash"] for r in block] == hashes
    assert block[hashes.index(tx_hash)]["trace"] == unplaced

    with pytest.raises(rpc.RpcFailure) as refused:
        call(chain, "trace_replayTransaction", tx_hash, ["stateDiff"])
    assert refused.value.code == -32602 and "stateDiff" in refused.value.message
    missing = "0x" + "ab" * 32
    with pytest.raises(rpc.RpcFailure) as unknown:
        call(chain, "trace_transaction", missing)
    assert unknown.value.message == f"transaction {missing} not found"


def test_trace_get_picks_a_trace_by_its_address(chain: ExplorerChain) -> None:
    tx_hash = chain.splits[0][0]
    top, first, second = call(chain, "trace_transaction", tx_hash)
    assert call(chain, "trace_get", tx_hash, []) == top
    assert call(chain, "trace_get", tx_hash, ["0x0"]) == first
    assert call(chain, "trace_get", tx_hash, ["0x1"]) == second
    assert call(chain, "trace_get", tx_hash, ["0x2"]) is None
    assert call(chain, "trace_get", tx_hash, ["0x0", "0x0"]) is None


def test_trace_filter_by_range_address_and_page(chain: ExplorerChain) -> None:
    everything = all_traces(chain)
    whole = {"fromBlock": "0x0", "toBlock": hex(chain.head)}
    assert call(chain, "trace_filter", whole) == everything
    from_splitter = call(chain, "trace_filter", {**whole, "fromAddress": [chain.splitter]})
    assert from_splitter == [t for t in everything if t["action"].get("from") == chain.splitter]
    assert len(from_splitter) == 2 * len(chain.splits)
    to_payee = call(chain, "trace_filter", {**whole, "toAddress": [PAYEES[0]]})
    assert to_payee == [t for t in everything if t["action"].get("to") == PAYEES[0]]
    # both lists: a trace must match both (OpenEthereum), or either with mode "union" (Erigon)
    both = {**whole, "fromAddress": [chain.splitter], "toAddress": [PAYEES[1]]}
    assert call(chain, "trace_filter", both) == [
        t for t in from_splitter if t["action"]["to"] == PAYEES[1]
    ]
    union = call(chain, "trace_filter", {**both, "mode": "union"})
    assert union == [
        t
        for t in everything
        if t["action"].get("from") == chain.splitter or t["action"].get("to") == PAYEES[1]
    ]
    created = [t["result"]["address"] for t in everything if t["type"] == "create"]
    assert call(chain, "trace_filter", {**whole, "toAddress": created[:1]})[0]["type"] == "create"
    page = call(chain, "trace_filter", {**whole, "after": 3, "count": 4})
    assert page == everything[3:7]
    number = everything[-1]["blockNumber"]
    one_block = call(chain, "trace_filter", {"fromBlock": hex(number), "toBlock": hex(number)})
    assert one_block == call(chain, "trace_block", hex(number))

    for bad, code in [
        ({"fromBlock": hex(chain.head), "toBlock": "0x0"}, -32602),
        ({**whole, "mode": "both"}, -32602),
        ({**whole, "fromAddress": "0x12"}, -32602),
        ({**whole, "topics": []}, -32602),
    ]:
        with pytest.raises(rpc.RpcFailure) as refused:
            call(chain, "trace_filter", bad)
        assert refused.value.code == code, bad


def test_prestate_of_a_call_is_that_of_the_same_mined_transaction(chain: ExplorerChain) -> None:
    """debug_traceCall with prestateTracer on the block before a mined split (automine: one
    transaction per block; `cairn dev` runs calls in the next block's context) reads what the
    mined transaction read; in diff mode the payees gain their halves and, at price 0, the
    sender pays the value alone."""
    tx_hash, value = chain.splits[1]
    tx = call(chain, "eth_getTransactionByHash", tx_hash)
    before = hex(int(tx["blockNumber"], 16) - 1)
    request = {"from": tx["from"], "to": tx["to"], "input": tx["input"], "value": tx["value"]}
    mined = call(chain, "debug_traceTransaction", tx_hash, {"tracer": "prestateTracer"})
    traced = call(chain, "debug_traceCall", request, before, {"tracer": "prestateTracer"})
    assert traced == mined
    assert {tx["from"], chain.splitter, *PAYEES} <= set(traced)

    diff = call(
        chain,
        "debug_traceCall",
        request,
        before,
        {"tracer": "prestateTracer", "tracerConfig": {"diffMode": True}},
    )
    pre, post = diff["pre"], diff["post"]
    halves = (value // 2, value - value // 2)
    for payee, half in zip(PAYEES, halves, strict=True):
        gained = int(post[payee]["balance"], 16) - int(pre.get(payee, {}).get("balance", "0x0"), 16)
        assert gained == half
    sender_pre, sender_post = pre[tx["from"]], post[tx["from"]]
    assert int(sender_pre["balance"], 16) - int(sender_post["balance"], 16) == value
    assert sender_post["nonce"] == sender_pre["nonce"] + 1


def test_geth_flat_and_4byte_tracers(chain: ExplorerChain) -> None:
    tx_hash = chain.nested[0]
    flat = call(chain, "debug_traceTransaction", tx_hash, {"tracer": "flatCallTracer"})
    assert flat == call(chain, "trace_transaction", tx_hash)
    counts = call(chain, "debug_traceTransaction", tx_hash, {"tracer": "4byteTracer"})

    def key(signature: str, arg_bytes: int) -> str:
        return f"0x{keccak(text=signature)[:4].hex()}-{arg_bytes}"

    assert counts[key("nested(uint256)", 32)] == 1
    assert counts[key("store(uint256)", 32)] == 1
    assert counts[key("peek()", 0)] == 2  # the static call and the delegatecall
    assert counts[key("fail(string)", 96)] == 1
    block = call(chain, "eth_getTransactionReceipt", tx_hash)["blockNumber"]
    per_tx = call(chain, "debug_traceBlockByNumber", block, {"tracer": "flatCallTracer"})
    assert [r["result"] for r in per_tx if r["txHash"] == tx_hash] == [flat]


def test_debug_trace_block_from_rlp(chain: ExplorerChain) -> None:
    number = call(chain, "eth_getTransactionReceipt", chain.splits[1][0])["blockNumber"]
    raw = call(chain, "debug_getRawBlock", number)
    assert call(chain, "debug_traceBlock", raw, {"tracer": "callTracer"}) == call(
        chain, "debug_traceBlockByNumber", number, {"tracer": "callTracer"}
    )
    with pytest.raises(rpc.RpcFailure) as bad:
        call(chain, "debug_traceBlock", "0x1234")
    assert "could not decode block" in bad.value.message


def test_headers_and_modules(chain: ExplorerChain) -> None:
    block = call(chain, "eth_getBlockByNumber", hex(chain.head), False)
    header = call(chain, "eth_getHeaderByNumber", hex(chain.head))
    expected = {
        k: v for k, v in block.items() if k not in ("transactions", "uncles", "withdrawals", "size")
    }
    assert header == expected
    assert call(chain, "eth_getHeaderByHash", block["hash"]) == header
    assert call(chain, "eth_getHeaderByNumber", hex(chain.head + 100)) is None
    modules = call(chain, "rpc_modules")
    assert {"eth", "net", "web3", "debug", "trace", "txpool", "rpc"} <= set(modules)
    assert set(modules.values()) == {"1.0"}


def test_trace_filter_range_is_bounded(chain: ExplorerChain) -> None:
    """Last in the module: it mines 1,000 empty blocks onto the shared chain."""
    call(chain, "anvil_mine", hex(1000))
    with pytest.raises(rpc.RpcFailure) as refused:
        call(chain, "trace_filter", {"fromBlock": "0x0", "toBlock": "latest"})
    assert refused.value.code == -32005 and "at most 1000 blocks" in refused.value.message
