"""A real `cairn dev --mirror.url` process mirrors 1,000+ transactions (contract deployments,
events, internal value transfers, reverts) into a real Postgres, and every row matches what
JSON-RPC answers."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import asyncpg
from eth._utils.address import generate_contract_address
from eth_utils import to_checksum_address

from tests.support.chain import ADDRESSES, transfer
from tests.support.contracts import compile_contract
from tests.support.mirror import (
    assert_no_gap_no_duplicate,
    batch_call,
    call,
    constructor_args,
    deploy,
    head,
    metric,
    send_batch,
    wait_mirrored,
)
from tests.support.postgres import PostgresServer
from tests.support.proc import NodeProcess, run_cli
from tests.support.wait import wait_until

TOKEN_SUPPLY = 10**24


def hx(value: bytes | None) -> str | None:
    return None if value is None else "0x" + value.hex()


def fetch(url: str, sql: str) -> list[dict[str, Any]]:
    async def go() -> list[dict[str, Any]]:
        conn = await asyncpg.connect(url)
        try:
            return [dict(r) for r in await conn.fetch(sql)]
        finally:
            await conn.close()

    return asyncio.run(go())


def contract_of(sender: int, nonce: int) -> str:
    return "0x" + bytes(generate_contract_address(ADDRESSES[sender], nonce)).hex()


def build_workload() -> tuple[list[bytes], list[bytes], set[str]]:
    """(deployments, calls, addresses that must end up with an account row)."""
    token = compile_contract("Token.sol", "Token")
    splitter = compile_contract("Splitter.sol", "Splitter")
    token_code = bytes.fromhex(token.bytecode[2:])
    deployments: list[bytes] = []
    tokens = []
    for i in range(3):
        args = constructor_args(["string", "string", "uint256"], [f"T{i}", f"T{i}", TOKEN_SUPPLY])
        deployments.append(deploy(0, i, token_code + args))
        tokens.append(contract_of(0, i))
    payees = [bytes([0xC0 + i]) * 20 for i in range(4)]
    splitters = []
    for i in range(2):
        args = constructor_args(["address", "address"], payees[2 * i : 2 * i + 2])
        deployments.append(deploy(1, i, bytes.fromhex(splitter.bytecode[2:]) + args))
        splitters.append(contract_of(1, i))

    calls: list[bytes] = []
    fresh = [bytes([0xE0, i % 256, i // 256]) + bytes(17) for i in range(400)]
    for i in range(300):  # ERC-20 transfers: Transfer events
        recipient = "0x" + fresh[i].hex()
        calls.append(
            call(0, 3 + i, tokens[i % 3], "transfer(address,uint256)", ["address", "uint256"],
                 [recipient, 1_000 + i], gas=100_000)
        )  # fmt: skip
    for i in range(200):  # value split by internal calls: Split events
        calls.append(call(1, 2 + i, splitters[i % 2], "split()", value=10**15 + i, gas=100_000))
    for i in range(200):  # plain transfers to fresh addresses and between senders
        to = fresh[i] if i % 2 == 0 else ADDRESSES[3]
        calls.append(transfer(2, i, to=to_checksum_address(to), value=10**12 + i))
        calls.append(transfer(3, i, to=to_checksum_address(fresh[200 + i]), value=7 + i))
    for i in range(100):  # ERC-20 transfer without tokens: reverts (InsufficientBalance)
        calls.append(
            call(4, i, tokens[0], "transfer(address,uint256)", ["address", "uint256"],
                 ["0x" + ADDRESSES[5].hex(), 1], gas=100_000)
        )  # fmt: skip
    for i in range(100):  # revert("always fails")
        calls.append(call(5, i, splitters[0], "fail()", gas=100_000))

    must_have = {"0x" + ADDRESSES[i].hex() for i in range(6)}
    must_have |= set(tokens) | set(splitters) | {"0x" + p.hex() for p in payees}
    must_have |= {"0x" + fresh[i].hex() for i in range(0, 200, 2)}
    must_have |= {"0x" + fresh[200 + i].hex() for i in range(200)}
    return deployments, calls, must_have


def test_thousand_transactions_rows_match_rpc(
    tmp_path: Path, mirror_db: str, postgres: PostgresServer
) -> None:
    deployments, calls, must_have = build_workload()
    node = NodeProcess(tmp_path / "dev", "dev", "--mirror.url", mirror_db).start()
    try:
        hashes = send_batch(node.url, deployments)
        wait_until(
            lambda: all(r is not None for r in batch_call(
                node.url, [("eth_getTransactionReceipt", [h]) for h in hashes])),
            timeout=60,
            message="contracts deployed",
        )  # fmt: skip
        for start in range(0, len(calls), 100):
            hashes += send_batch(node.url, calls[start : start + 100])
        assert len(hashes) >= 1_000

        def all_mined() -> list[Any] | None:
            receipts = batch_call(node.url, [("eth_getTransactionReceipt", [h]) for h in hashes])
            return receipts if all(r is not None for r in receipts) else None

        receipts = wait_until(all_mined, timeout=180, interval=0.5, message="all mined")
        wait_mirrored(node)
        txs = batch_call(node.url, [("eth_getTransactionByHash", [h]) for h in hashes])
        last = head(node)
        blocks = batch_call(node.url, [("eth_getBlockByNumber", [hex(n), False]) for n in
                                       range(last + 1)])  # fmt: skip

        # ---- transactions and receipts
        rows = {hx(r["hash"]): r for r in fetch(mirror_db, "SELECT * FROM transactions")}
        assert len(rows) == sum(len(b["transactions"]) for b in blocks) == len(hashes)
        statuses = {0: 0, 1: 0}
        for tx, receipt in zip(txs, receipts, strict=True):
            row = rows[tx["hash"]]
            statuses[row["status"]] += 1
            assert row["status"] == int(receipt["status"], 16), tx["hash"]
            assert row["block_number"] == int(receipt["blockNumber"], 16)
            assert row["transaction_index"] == int(receipt["transactionIndex"], 16)
            assert row["gas_used"] == int(receipt["gasUsed"], 16)
            assert row["cumulative_gas_used"] == int(receipt["cumulativeGasUsed"], 16)
            assert row["effective_gas_price"] == int(receipt["effectiveGasPrice"], 16)
            assert hx(row["contract_address"]) == receipt["contractAddress"]
            assert hx(row["logs_bloom"]) == receipt["logsBloom"]
            assert row["log_count"] == len(receipt["logs"])
            assert hx(row["from_address"]) == tx["from"]
            assert hx(row["to_address"]) == tx["to"]
            assert row["value"] == int(tx["value"], 16)
            assert row["nonce"] == int(tx["nonce"], 16)
            assert row["gas"] == int(tx["gas"], 16)
            assert hx(row["input"]) == tx["input"]
            assert row["type"] == int(tx["type"], 16)
            assert row["max_fee_per_gas"] == int(tx["maxFeePerGas"], 16)
        assert statuses == {0: 200, 1: len(hashes) - 200}

        # ---- logs
        logs = fetch(mirror_db, "SELECT * FROM logs ORDER BY block_number, log_index")
        rpc_logs = [log for r in receipts for log in r["logs"]]
        rpc_logs.sort(key=lambda g: (int(g["blockNumber"], 16), int(g["logIndex"], 16)))
        assert len(logs) == len(rpc_logs) == 3 + 300 + 200  # mints, transfers, splits
        for row, log in zip(logs, rpc_logs, strict=True):
            topics = [hx(row[f"topic{i}"]) for i in range(4) if row[f"topic{i}"] is not None]
            assert topics == log["topics"]
            assert hx(row["address"]) == log["address"]
            assert hx(row["data"]) == log["data"]
            assert hx(row["transaction_hash"]) == log["transactionHash"]
            assert row["log_index"] == int(log["logIndex"], 16)
            assert row["block_number"] == int(log["blockNumber"], 16)

        # ---- blocks
        block_rows = fetch(mirror_db, "SELECT * FROM blocks ORDER BY number")
        assert len(block_rows) == last + 1
        for row, block in zip(block_rows, blocks, strict=True):
            assert hx(row["hash"]) == block["hash"]
            assert hx(row["parent_hash"]) == block["parentHash"]
            assert hx(row["miner"]) == block["miner"]
            assert hx(row["state_root"]) == block["stateRoot"]
            assert hx(row["logs_bloom"]) == block["logsBloom"]
            assert row["gas_used"] == int(block["gasUsed"], 16)
            assert row["gas_limit"] == int(block["gasLimit"], 16)
            assert row["timestamp"] == int(block["timestamp"], 16)
            assert row["base_fee_per_gas"] == int(block["baseFeePerGas"], 16)
            assert row["size"] == int(block["size"], 16)
            assert row["transaction_count"] == len(block["transactions"])

        # ---- accounts: balances and nonces as RPC reports them, payees of internal calls too
        accounts = fetch(mirror_db, "SELECT * FROM accounts")
        assert must_have <= {hx(a["address"]) for a in accounts}
        answers = batch_call(
            node.url,
            [(m, [hx(a["address"]), "latest"]) for a in accounts
             for m in ("eth_getBalance", "eth_getTransactionCount", "eth_getCode")],
        )  # fmt: skip
        for i, account in enumerate(accounts):
            balance, nonce, code = answers[3 * i : 3 * i + 3]
            assert account["balance"] == int(balance, 16), hx(account["address"])
            assert account["nonce"] == int(nonce, 16)
            assert account["is_contract"] == (code != "0x")
            assert account["last_block"] <= last
        payee_balance = fetch(mirror_db, "SELECT balance FROM accounts WHERE address = "
                              "'\\xc0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0'")  # fmt: skip
        assert payee_balance[0]["balance"] > 0

        # ---- network state and metrics
        network = fetch(mirror_db, "SELECT * FROM network_state")[0]
        assert network["chain_id"] == 31337
        assert network["mode"] == "dev"
        assert network["head_number"] == last
        assert metric(node, "cairn_mirror_lag_blocks") == 0
        assert (metric(node, "cairn_mirror_rows_written_total") or 0) >= len(hashes) + len(logs)
        assert metric(node, "cairn_mirror_up") == 1
    finally:
        node.stop()
    db = mirror_db.rsplit("/", 1)[1]
    assert assert_no_gap_no_duplicate(postgres, db) == last
    verified = run_cli("mirror", "verify", "--datadir", str(tmp_path / "dev"),
                       "--mirror.url", mirror_db, timeout=300)  # fmt: skip
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.strip().splitlines()[-1].startswith("0 differences")
