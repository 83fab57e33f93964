"""Four validators and a full node as real processes on loopback (BFT, 1 s block period):
blocks with every node on one chain, transactions through the full node with web3.py, kill -9
of one validator (blocks go on; it comes back and catches up), kill of two (the chain halts,
nothing conflicting is committed; they come back and blocks resume within 10 s), and every
signed vote the nodes kept as evidence or commits scanned for double signing."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator

import pytest
from eth_account import Account
from web3 import HTTPProvider, Web3

from tests.e2e import test_web3_dev as web3_flows
from tests.support.chain import DEAD, KEYS
from tests.support.net import head
from tests.support.validator_net import KEYS as VALIDATOR_KEYS
from tests.support.validator_net import ValidatorNet
from tests.support.wait import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ValidatorNet]:
    with ValidatorNet(tmp_path_factory.mktemp("validators")) as network:
        network.start_all()
        network.start_fullnode()
        network.wait_height(3, timeout=180)
        yield network


def _status(node: object) -> dict[str, object]:
    status = node.call("cairn_consensusStatus")  # type: ignore[attr-defined]
    assert isinstance(status, dict)
    return status


def test_validators_make_blocks_at_the_period_on_one_chain(net: ValidatorNet) -> None:
    start = head(net.validators[0])[0]
    net.wait_height(start + 5, timeout=120)
    top = min(head(n)[0] for n in net.running())
    net.same_chain(top)
    node = net.fullnodes[0]
    stamps = [
        int(node.call("eth_getBlockByNumber", hex(n), False)["timestamp"], 16)  # type: ignore[index]
        for n in range(1, top + 1)
    ]
    assert all(b >= a + 1 for a, b in itertools.pairwise(stamps))  # >= the period
    validators = {k.public_key.to_canonical_address() for k in VALIDATOR_KEYS[:4]}
    status = _status(net.validators[0])
    listed = status["validators"]
    assert isinstance(listed, list)
    assert {bytes.fromhex(str(a)[2:]) for a in listed} == validators


def test_web3_transfers_through_the_full_node_are_final_everywhere(net: ValidatorNet) -> None:
    full = net.fullnodes[0]
    w3 = Web3(HTTPProvider(full.url, request_kwargs={"timeout": 30}))
    sender = Account.from_key(KEYS[5])
    nonce = w3.eth.get_transaction_count(sender.address, "pending")
    hashes = []
    for i in range(5):
        tx = {
            "to": DEAD,
            "value": 1000 + i,
            "gas": 21_000,
            "maxFeePerGas": 3 * 10**9,
            "maxPriorityFeePerGas": 10**9,
            "nonce": nonce + i,
            "chainId": 31337,
            "type": 2,
        }
        signed = sender.sign_transaction(tx)
        hashes.append(w3.eth.send_raw_transaction(signed.raw_transaction))
    receipts = [w3.eth.wait_for_transaction_receipt(h, timeout=120) for h in hashes]
    assert all(r["status"] == 1 for r in receipts)
    last = max(r["blockNumber"] for r in receipts)
    net.wait_height(last, timeout=60)
    for node in net.running():
        receipt = node.call("eth_getTransactionReceipt", "0x" + hashes[-1].hex().removeprefix("0x"))
        assert isinstance(receipt, dict) and receipt["blockHash"] == "0x" + bytes(
            receipts[-1]["blockHash"]
        ).hex().removeprefix("0x")


def test_the_web3_flows_of_the_single_node_tests_pass_unchanged(net: ValidatorNet) -> None:
    """tests/e2e/test_web3_dev.py's transfer and ERC-20 (solc-compiled) flows, as they are,
    against the validator network's full node."""
    web3_flows.test_transfer_with_web3(net.fullnodes[0])
    web3_flows.test_erc20_with_web3_and_solc(net.fullnodes[0])


def test_one_validator_killed_blocks_go_on_and_it_catches_up(net: ValidatorNet) -> None:
    victim = net.validators[3]
    victim.kill9()
    others = [net.validators[i] for i in range(3)] + net.fullnodes
    start = max(head(n)[0] for n in others)
    net.wait_height(start + 3, nodes=others, timeout=120)
    back = net.start_validator(3)
    target = max(head(n)[0] for n in others) + 2
    net.wait_height(target, nodes=[back, *others], timeout=120)
    net.same_chain(target)


def test_two_validators_down_halt_the_chain_and_it_resumes_when_they_return(
    net: ValidatorNet,
) -> None:
    for i in (2, 3):
        net.validators[i].kill9()
    alive = [net.validators[0], net.validators[1]]

    def stalled() -> bool:
        # Both remaining validators keep re-sending their votes of one height and round:
        # they have no quorum, so nothing can be committed.
        return all(int(str(_status(n)["stalled"])) >= 5 for n in alive)

    wait_until(stalled, timeout=120, interval=0.5, message="the two validators to stall")
    halted_at = {head(n) for n in [*alive, *net.fullnodes]}
    assert len({number for number, _ in halted_at}) == 1, halted_at
    number, _ = halted_at.pop()
    net.start_validator(2)
    net.start_validator(3)  # serving RPC: "coming back" starts now
    back = time.monotonic()
    # the chain makes a block again within 10 s (Besu's acceptance test allows 20 s)
    net.wait_height(number + 1, nodes=alive, timeout=10)
    recovered = time.monotonic() - back
    net.wait_height(number + 3, timeout=90)
    net.same_chain(number + 3)
    print(f"blocks resumed {recovered:.1f}s after the second validator was back")


def test_commits_are_more_than_two_thirds_and_nobody_double_signed(net: ValidatorNet) -> None:
    """Every stored commit verifies with at least three of the four validators, and no two
    commits on any node name one validator twice for a height and round."""
    node = net.fullnodes[0]
    top = head(node)[0]
    validators = {"0x" + k.public_key.to_canonical_address().hex() for k in VALIDATOR_KEYS[:4]}
    for number in range(1, top + 1):
        commit = node.call("cairn_getCommit", hex(number))
        assert isinstance(commit, dict)
        block = node.call("eth_getBlockByNumber", hex(number), False)
        assert isinstance(block, dict) and commit["blockHash"] == block["hash"]
        signers = set(commit["signers"])
        assert len(signers) == len(commit["signers"]) >= 3 and signers <= validators
    for validator in net.validators.values():
        # honest validators never equivocate, crashes and restarts included
        assert (
            validator.call("cairn_getEvidence") == []
        )  # honest validators never equivocate, crashes and restarts included
