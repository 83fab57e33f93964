"""geth's own RPC fixtures (ethereum/execution-apis `tests/`, vendored under
tests/fixtures/execution-apis): `cairn import` the chain into a fresh datadir, serve it with
`cairn run`, replay every exchange and compare as hive's rpc-compat does.

Every exchange must match, or be listed in `DOCUMENTED` below with the reason docs/
conformance.md gives; a listed exchange that starts to match fails the test too, so the list
and the document stay true.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.proc import REPO, NodeProcess, run_cli
from tests.support.rpc_compat import load_exchanges, replay

FIXTURES = REPO / "tests" / "fixtures" / "execution-apis"
HEAD = "0x514c48e760c62a38f91e011149b1b4a619bb3a7f750ec4430061bf19c3336635"  # headfcu.json

# Fields added to the spec after the fixtures were recorded (execution-apis #729; geth
# #33709 for transactions, and logs/receipts before it): Cairn serves them, the fixtures do not
# know them. These exchanges must match exactly once the fields are taken out.
NEWER_FIELDS = frozenset({"blockTimestamp"})
BLOCK_TIMESTAMP = {
    "eth_getBlockByHash/get-block-by-hash",
    "eth_getBlockByNumber/get-block-eip7685-requests",
    "eth_getBlockByNumber/get-block-n",
    "eth_getBlockByNumber/get-finalized",
    "eth_getBlockByNumber/get-latest",
    "eth_getBlockByNumber/get-safe",
    "eth_getBlockReceipts/get-block-receipts-by-hash",
    "eth_getBlockReceipts/get-block-receipts-latest",
    "eth_getBlockReceipts/get-block-receipts-n",
    "eth_getLogs/contract-addr",
    "eth_getLogs/no-topics",
    "eth_getLogs/topic-exact-match",
    "eth_getLogs/topic-wildcard",
    "eth_getTransactionByBlockHashAndIndex/get-block-n",
    "eth_getTransactionByBlockNumberAndIndex/get-block-n",
    "eth_getTransactionByHash/get-access-list",
    "eth_getTransactionByHash/get-blob-tx",
    "eth_getTransactionByHash/get-dynamic-fee",
    "eth_getTransactionByHash/get-legacy-create",
    "eth_getTransactionByHash/get-legacy-input",
    "eth_getTransactionByHash/get-legacy-tx",
    "eth_getTransactionByHash/get-setcode-tx",
    "eth_getTransactionReceipt/get-access-list",
    "eth_getTransactionReceipt/get-blob-tx",
    "eth_getTransactionReceipt/get-dynamic-fee",
    "eth_getTransactionReceipt/get-legacy-contract",
    "eth_getTransactionReceipt/get-legacy-input",
    "eth_getTransactionReceipt/get-legacy-receipt",
    "eth_getTransactionReceipt/get-setcode-tx",
}
# Exchanges that do not match, with the reason docs/conformance.md gives.
DOCUMENTED = {
    "eth_sendRawTransaction/send-blob-tx": "no blob pool: type-3 transactions are refused",
}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    datadir = tmp_path_factory.mktemp("execution-apis") / "node"
    done = run_cli(
        "import",
        "--datadir",
        str(datadir),
        "--genesis",
        str(FIXTURES / "genesis.json"),
        str(FIXTURES / "chain.rlp"),
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "imported 20 blocks, 20 of them trusted" in done.stdout
    assert HEAD[2:] in done.stdout
    node = NodeProcess(datadir, "run").start()
    try:
        yield node
    finally:
        node.stop()


def test_import_refuses_a_chain_on_a_cairn_genesis_without_commits(tmp_path: Path) -> None:
    """The same blocks on a Cairn genesis (producers named) need --trusted."""
    data = json.loads((FIXTURES / "genesis.json").read_text())
    data["cairn"] = {"producers": ["0x" + "11" * 20]}
    genesis = tmp_path / "genesis.json"
    genesis.write_text(json.dumps(data))
    refused = run_cli(
        "import", "--datadir", str(tmp_path / "d"), "--genesis", str(genesis),
        str(FIXTURES / "chain.rlp"),
    )  # fmt: skip
    assert refused.returncode == 2
    assert "--trusted" in refused.stderr and "commits file" in refused.stderr


def test_every_exchange_matches_or_is_documented(served: NodeProcess) -> None:
    exchanges = load_exchanges(FIXTURES)
    assert len(exchanges) == 95
    exact, modulo, failed = [], [], {}
    for exchange in exchanges:
        verdict = replay(served.url, exchange)
        if verdict.ok:
            exact.append(exchange.name)
            continue
        if exchange.name in BLOCK_TIMESTAMP:
            again = replay(served.url, exchange, ignore=NEWER_FIELDS)
            if again.ok:
                modulo.append(exchange.name)
                continue
            verdict = again
        failed[exchange.name] = verdict.detail
    print(
        f"\n{len(exact)}/{len(exchanges)} exchanges match exactly; "
        f"{len(exact) + len(modulo)}/{len(exchanges)} match once the newer blockTimestamp "
        f"field is left out; {len(failed)} documented differences"
    )
    for name, detail in sorted(failed.items()):
        print(f"  {name}: {detail}")
    assert set(modulo) == BLOCK_TIMESTAMP
    assert set(failed) == set(DOCUMENTED), {n: failed.get(n) for n in set(failed) ^ set(DOCUMENTED)}
    doc = (REPO / "docs" / "conformance.md").read_text()
    assert all(f"`{name}`" in doc for name in DOCUMENTED)
