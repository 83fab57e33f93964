"""ethereum-etl (from PyPI, in its own venv: scripts/etl-venv.sh) against `cairn dev`: blocks
and transactions, receipts and logs, token transfers, geth traces and Parity traces of a chain
with deployments, ERC-20 transfers, reverts and internal calls, checked against the chain."""

from __future__ import annotations

import csv
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import rpc
from tests.support.explorer_chain import PAYEES, ExplorerChain, build_explorer_chain
from tests.support.proc import REPO, NodeProcess

ETL = REPO / ".venv-etl" / "bin" / "ethereumetl"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExplorerChain]:
    subprocess.run([str(REPO / "scripts" / "etl-venv.sh")], check=True, timeout=900)
    node = NodeProcess(Path(tmp_path_factory.mktemp("etl")) / "dev", "dev").start()
    try:
        yield build_explorer_chain(node.url)
    finally:
        node.stop()


def etl(chain: ExplorerChain, out: Path, *args: str, node: bool = True) -> None:
    done = subprocess.run(
        [str(ETL), *args, *(("--provider-uri", chain.url) if node else ())],
        cwd=out,
        # cairn sets ETH_HASH_BACKEND=pysha3 for itself; ethereum-etl's venv has pycryptodome
        env={k: v for k, v in os.environ.items() if k != "ETH_HASH_BACKEND"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]


def rows(path: Path) -> list[dict[str, str]]:
    with path.open() as fh:
        return list(csv.DictReader(fh))


def call(chain: ExplorerChain, method: str, *params: Any) -> Any:
    return rpc.call(chain.url, method, *params)


def test_blocks_transactions_receipts_logs(chain: ExplorerChain, tmp_path: Path) -> None:
    last = str(chain.head)
    etl(chain, tmp_path, "export_blocks_and_transactions", "-s", "0", "-e", last,
        "--blocks-output", "blocks.csv", "--transactions-output", "txs.csv")  # fmt: skip
    blocks, txs = rows(tmp_path / "blocks.csv"), rows(tmp_path / "txs.csv")
    assert [int(b["number"]) for b in blocks] == list(range(chain.head + 1))
    for b in blocks:
        ours = call(chain, "eth_getBlockByNumber", hex(int(b["number"])), False)
        assert (b["hash"], int(b["timestamp"]), int(b["gas_used"])) == (
            ours["hash"], int(ours["timestamp"], 16), int(ours["gasUsed"], 16),
        )  # fmt: skip
        assert int(b["transaction_count"]) == len(ours["transactions"])
    assert len(txs) == chain.tx_count
    for t in txs:
        ours = call(chain, "eth_getTransactionByHash", t["hash"])
        assert (t["from_address"], t["to_address"] or None, int(t["value"])) == (
            ours["from"], ours["to"], int(ours["value"], 16),
        )  # fmt: skip
        assert int(t["block_timestamp"]) == int(ours["blockTimestamp"], 16)

    etl(chain, tmp_path, "extract_csv_column", "--input", "txs.csv", "--column", "hash",
        "--output", "hashes.txt", node=False)  # fmt: skip
    etl(chain, tmp_path, "export_receipts_and_logs", "--transaction-hashes", "hashes.txt",
        "--receipts-output", "receipts.csv", "--logs-output", "logs.csv")  # fmt: skip
    receipts = {r["transaction_hash"]: r for r in rows(tmp_path / "receipts.csv")}
    assert len(receipts) == chain.tx_count
    assert {h for h, r in receipts.items() if r["status"] == "0"} == set(chain.reverted)
    for tx_hash in chain.deployments:
        ours = call(chain, "eth_getTransactionReceipt", tx_hash)
        assert receipts[tx_hash]["contract_address"] == ours["contractAddress"]
    logs = rows(tmp_path / "logs.csv")
    ours_logs = call(chain, "eth_getLogs", {"fromBlock": "0x0", "toBlock": hex(chain.head)})
    assert [(log["transaction_hash"], int(log["log_index"])) for log in logs] == [
        (log["transactionHash"], int(log["logIndex"], 16)) for log in ours_logs
    ]


def test_token_transfers(chain: ExplorerChain, tmp_path: Path) -> None:
    etl(chain, tmp_path, "export_token_transfers", "-s", "0", "-e", str(chain.head),
        "--output", "transfers.csv")  # fmt: skip
    found = [
        (r["transaction_hash"], r["from_address"], r["to_address"], int(r["value"]))
        for r in rows(tmp_path / "transfers.csv")
    ]
    assert {r["token_address"] for r in rows(tmp_path / "transfers.csv")} == {chain.token}
    assert sorted(found) == sorted(chain.token_transfers)  # the reverted one is not there


def test_parity_traces(chain: ExplorerChain, tmp_path: Path) -> None:
    etl(chain, tmp_path, "export_traces", "-s", "0", "-e", str(chain.head), "--output",
        "traces.csv")  # fmt: skip
    traces = rows(tmp_path / "traces.csv")
    ours = [t for n in range(chain.head + 1) for t in call(chain, "trace_block", hex(n))]
    assert len(traces) == len(ours)
    assert len([t for t in traces if t["trace_address"] == ""]) == chain.tx_count
    for tx_hash, value in chain.splits:
        inner = sorted(
            (t for t in traces if t["transaction_hash"] == tx_hash and t["trace_address"]),
            key=lambda t: t["trace_address"],
        )
        assert [(t["to_address"], int(t["value"])) for t in inner] == [
            (PAYEES[0], value // 2),
            (PAYEES[1], value - value // 2),
        ]
        assert all(t["trace_type"] == "call" and t["status"] == "1" for t in inner)
    for tx_hash in chain.reverted:
        top = next(t for t in traces if t["transaction_hash"] == tx_hash)
        assert (top["error"], top["status"]) == ("Reverted", "0")
    creates = {t["to_address"] for t in traces if t["trace_type"] == "create"}
    assert {chain.token, chain.splitter, chain.probe} < creates  # plus Probe's Child
    assert len(creates) == 4


def test_geth_traces(chain: ExplorerChain, tmp_path: Path) -> None:
    # From block 1: geth refuses to trace the genesis too ("genesis is not traceable").
    etl(chain, tmp_path, "export_geth_traces", "-s", "1", "-e", str(chain.head), "--output",
        "geth_traces.json")  # fmt: skip
    lines = [json.loads(line) for line in (tmp_path / "geth_traces.json").read_text().splitlines()]
    assert [line["block_number"] for line in lines] == list(range(1, chain.head + 1))
    per_tx = [t for line in lines for t in line["transaction_traces"]]  # callTracer frames
    assert len(per_tx) == chain.tx_count
    splits = [t for t in per_tx if t["to"] == chain.splitter and t.get("calls")]
    assert [int(t["value"], 16) for t in splits] == [value for _, value in chain.splits]
    assert all([c["to"] for c in t["calls"]] == list(PAYEES) for t in splits)
    etl(chain, tmp_path, "extract_geth_traces", "--input", "geth_traces.json", "--output",
        "extracted.csv", node=False)  # fmt: skip

    def frames(frame: dict[str, Any]) -> int:
        return 1 + sum(frames(c) for c in frame.get("calls", []))

    assert len(rows(tmp_path / "extracted.csv")) == sum(frames(t) for t in per_tx)
