"""geth's own eth_simulateV1 answers (ethereum/execution-apis `tests/eth_simulateV1`, vendored
under tests/fixtures/execution-apis-simulate) replayed against a `cairn dev` node.

The fixtures were recorded on the execution-apis test chain (Osaka, head #54, 200M gas), which
Cairn cannot import; most requests bring their own accounts and code in state overrides, so
what the calls do does not depend on the chain. For each exchange the comparison is: the
same error (code and message), or per call the same status, return data, gas used, error and
logs (address, topics, data, logIndex, transactionIndex). Block headers are not compared:
they name another chain. Exchanges whose answers depend on that chain are listed in
`CHAIN_DEPENDENT`; the list must stay exact (one that starts to agree fails the test too).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support import rpc
from tests.support.proc import REPO, NodeProcess
from tests.support.rpc_compat import load_exchanges

pytestmark = pytest.mark.e2e

FIXTURES = REPO / "tests" / "fixtures" / "execution-apis-simulate"
NUMBERS = "the answer holds block numbers of the fixture chain (head #54): here the head is #0"
TIMES = "the answer holds the fixture chain's timestamps (its head at 540 s)"
HASHES = "BLOCKHASH of the fixture chain's blocks"
BASE_FEE = "the error names the fixture chain's base fee (23985819 wei)"
CHAIN_DEPENDENT = {
    "ethSimulate-add-more-non-defined-BlockStateCalls-than-fit-but-now-with-fit": NUMBERS,
    "ethSimulate-block-override-reflected-in-contract-simple": TIMES,
    "ethSimulate-block-override-reflected-in-contract": TIMES,
    "ethSimulate-blockhash-complex": HASHES,
    "ethSimulate-blockhash-simple": HASHES,
    "ethSimulate-blockhash-start-before-head": NUMBERS,
    "ethSimulate-blocknumber-increment": NUMBERS,
    "ethSimulate-contract-calls-itself": "returns the block's number, time and base fee",
    "ethSimulate-empty-with-block-num-set-current": NUMBERS,
    "ethSimulate-empty-with-block-num-set-firstblock": NUMBERS,
    "ethSimulate-empty-with-block-num-set-minusone": NUMBERS,
    "ethSimulate-fee-recipient-receiving-funds": NUMBERS,
    "ethSimulate-gas-fees-and-value-error-38014-with-validation": BASE_FEE,
    "ethSimulate-get-block-properties": "returns the block's number, time and base fee",
    "ethSimulate-override-all-in-BlockStateCalls": TIMES,
    "ethSimulate-override-block-num": NUMBERS,
    "ethSimulate-overwrite-existing-contract": "returns the block's number, time and base fee",
    "ethSimulate-self-destructive-contract-produces-logs": (
        "SELFDESTRUCT to address 0, which holds ETH on the fixture chain and is empty here "
        "(+25,000 gas for a new account); the same once address 0 has a balance"
    ),
    "ethSimulate-simple-no-funds-with-validation-without-nonces": BASE_FEE,
    "ethSimulate-simple-no-funds-with-validation": BASE_FEE,
    "ethSimulate-simple-send-from-contract-with-validation": BASE_FEE,
    "ethSimulate-use-as-many-features-as-possible": NUMBERS,
}
# Not supported (docs/rpc.md, intended differences from geth)
UNSUPPORTED = {
    "ethSimulate-blobs": "blob calls and the blobBaseFee override are refused (-32602)",
    "ethSimulate-overflow-nonce": (
        "a sender nonce of 2^64-1 without validation: geth lets it wrap, py-evm refuses"
    ),
}


def outcome(answer: dict[str, Any]) -> Any:
    if "error" in answer:
        return {"code": answer["error"]["code"], "message": answer["error"]["message"]}
    return [
        [
            {
                "status": c["status"],
                "returnData": c["returnData"],
                "gasUsed": c["gasUsed"],
                "maxUsedGas": c.get("maxUsedGas"),
                "error": c.get("error"),
                "logs": [
                    (g["address"], g["topics"], g["data"], g["logIndex"], g["transactionIndex"])
                    for g in c["logs"]
                ],
            }
            for c in block["calls"]
        ]
        for block in answer["result"]
    ]


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    # the fixture chain's gas limit: calls without `gas` get min(200M, --rpc.gascap 50M)
    dev = NodeProcess(tmp_path_factory.mktemp("simfx") / "dev", "dev", "--gas-limit", "200000000")
    dev.start()
    try:
        yield dev
    finally:
        dev.stop()


def test_geth_fixtures_agree_or_are_listed(node: NodeProcess) -> None:
    exchanges = load_exchanges(FIXTURES)
    assert len(exchanges) == 91
    differ: dict[str, str] = {}
    for exchange in exchanges:
        ((request, expected),) = exchange.rounds
        got = rpc.post(node.url, json.loads(request))
        want = json.loads(expected)
        if outcome(got) != outcome(want):
            differ[exchange.name.split("/")[1]] = f"want {str(want)[:200]} got {str(got)[:200]}"
    agreed = len(exchanges) - len(differ)
    print(f"\n{agreed}/{len(exchanges)} eth_simulateV1 fixtures agree with geth")
    listed = CHAIN_DEPENDENT | UNSUPPORTED
    assert set(differ) == set(listed), {n: differ.get(n) for n in set(differ) ^ set(listed)}
