"""eth_call and eth_estimateGas run in a worker process (--rpc.call-workers, default 1):
answers match the in-process runner, state written after the worker started is seen, and a
worker killed with -9 is replaced without losing the call or the node."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path
from typing import Any, cast

from eth_abi.abi import encode as abi_encode
from eth_typing import ChecksumAddress
from eth_utils import function_signature_to_4byte_selector
from web3 import Web3
from web3.types import TxParams

from tests.support.chain import KEYS
from tests.support.contracts import compile_contract
from tests.support.proc import NodeProcess
from tests.support.wait import wait_until

RECIPIENT = "0x000000000000000000000000000000000000bEEF"
WORKER_STARTED = re.compile(r"eth_call worker started \(pid (\d+)\)")


def _worker_pids(node: NodeProcess) -> list[int]:
    return [int(pid) for pid in WORKER_STARTED.findall(node.log())]


def _exited(pid: int) -> bool:
    try:
        return "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
    except FileNotFoundError:
        return True


def _deploy_token(w3: Web3) -> tuple[str, Any]:
    compiled = compile_contract("Token.sol", "Token")
    owner = w3.eth.account.from_key(KEYS[0])
    factory = w3.eth.contract(abi=compiled.abi, bytecode=compiled.bytecode)
    deploy = factory.constructor("Worker", "WRK", 10**24).build_transaction(
        {"from": owner.address, "nonce": w3.eth.get_transaction_count(owner.address)}
    )
    tx = {k: v for k, v in deploy.items() if k != "from"}
    tx["gas"] = 2_000_000
    tx_hash = w3.eth.send_raw_transaction(owner.sign_transaction(tx).raw_transaction)
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30)
    address = cast(ChecksumAddress, receipt["contractAddress"])
    return address, w3.eth.contract(address=address, abi=compiled.abi)


def _transfer(w3: Web3, token: Any, amount: int) -> None:
    owner = w3.eth.account.from_key(KEYS[0])
    tx = token.functions.transfer(RECIPIENT, amount).build_transaction(
        {"from": owner.address, "nonce": w3.eth.get_transaction_count(owner.address)}
    )
    tx = {k: v for k, v in tx.items() if k != "from"}
    tx_hash = w3.eth.send_raw_transaction(owner.sign_transaction(tx).raw_transaction)
    assert w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30)["status"] == 1


def _answers(w3: Web3, token: Any, address: str) -> dict[str, Any]:
    """The same questions, asked of whichever runner the node has."""
    owner = w3.eth.account.from_key(KEYS[0]).address
    too_much = function_signature_to_4byte_selector("transfer(address,uint256)") + abi_encode(
        ["address", "uint256"], [RECIPIENT, 10**30]
    )
    try:
        w3.eth.call(cast(TxParams, {"from": RECIPIENT, "to": address, "data": too_much}))
        reverted: str = "no revert"
    except Exception as exc:  # web3 raises ContractCustomError / ContractLogicError
        reverted = f"{type(exc).__name__}: {exc}"
    return {
        "balance": token.functions.balanceOf(RECIPIENT).call(),
        "symbol": token.functions.symbol().call(),
        "estimate": token.functions.transfer(RECIPIENT, 7).estimate_gas({"from": owner}),
        "reverted": reverted,
        "at_block_1": token.functions.balanceOf(RECIPIENT).call(block_identifier=1),
    }


def test_worker_answers_like_the_node_process(tmp_path: Path) -> None:
    answers = []
    for workers in ("1", "0"):
        node = NodeProcess(tmp_path / f"dev{workers}", "dev", "--rpc.call-workers", workers)
        node.start()
        try:
            assert len(_worker_pids(node)) == int(workers)
            w3 = Web3(Web3.HTTPProvider(node.url))
            address, token = _deploy_token(w3)
            _transfer(w3, token, 1234)
            answers.append(_answers(w3, token, address))
        finally:
            node.stop()
    assert answers[0]["balance"] == 1234
    assert answers[0]["symbol"] == "WRK"
    assert answers[0]["reverted"].startswith("ContractCustomError")  # the revert data came back
    assert answers[0] == answers[1]


def test_killed_worker_is_replaced_and_the_call_answered(dev_node: NodeProcess) -> None:
    w3 = Web3(Web3.HTTPProvider(dev_node.url))
    _, token = _deploy_token(w3)
    _transfer(w3, token, 55)
    assert token.functions.balanceOf(RECIPIENT).call() == 55
    started = _worker_pids(dev_node)
    assert started  # the default is one per core, at most 4
    first = started[0]
    os.kill(first, signal.SIGKILL)
    wait_until(
        lambda: _exited(first),
        timeout=10,
        message="the killed worker to exit",
    )
    # the next call finds the worker gone, starts another and runs the call there
    assert token.functions.balanceOf(RECIPIENT).call() == 55
    pids = _worker_pids(dev_node)
    assert len(pids) == len(started) + 1 and first not in pids[len(started) :]
    assert f"worker {first} stopped" in dev_node.log()
    # state written after the new worker started is what it reads
    _transfer(w3, token, 45)
    assert token.functions.balanceOf(RECIPIENT).call() == 100
    assert dev_node.proc is not None and dev_node.proc.poll() is None
