"""Foundry's `cast` (npm @foundry-rs/cast-linux-amd64), unmodified, against `cairn dev`:
block, send (transfer and contract creation), call, receipt, logs, balance, nonce, storage,
proof, and `cast rpc` of debug_traceTransaction — each answer checked against the chain."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest
import rlp
from eth_utils import keccak, to_checksum_address
from rlp.sedes import big_endian_int
from trie.hexary import HexaryTrie

from tests.support import rpc
from tests.support.chain import ADDRESSES, KEYS
from tests.support.contracts import compile_contract, npm_bin
from tests.support.proc import NodeProcess

pytestmark = pytest.mark.e2e

KEY = "0x" + KEYS[0].hex()
SENDER = to_checksum_address(ADDRESSES[0])
RECIPIENT = to_checksum_address(ADDRESSES[1])
PING = "Ping(address indexed,uint256 indexed,bytes)"


def cast(node: NodeProcess, command: str, *args: str, json_out: bool = False) -> str:
    """`cast <command> --rpc-url <node> [--json] <args>` (options first: `--create` and
    `cast rpc` take everything after them as positional values)."""
    options = ["--rpc-url", node.url] + (["--json"] if json_out else [])
    done = subprocess.run(
        [npm_bin("cast"), command, *options, *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    shown = " ".join(a if len(a) < 80 else a[:77] + "..." for a in args)
    assert done.returncode == 0, f"cast {command} {shown} failed:\n{done.stderr}"
    return done.stdout.strip()


def cast_json(node: NodeProcess, command: str, *args: str) -> Any:
    return json.loads(cast(node, command, *args, json_out=True))


def _from_proof(root: str, key: bytes, proof: list[str]) -> bytes:
    nodes = [rlp.decode(bytes.fromhex(n[2:])) for n in proof]
    found: bytes = HexaryTrie.get_from_proof(  # type: ignore[no-untyped-call]
        bytes.fromhex(root[2:]), key, nodes
    )
    return found


def test_cast_end_to_end(dev_node: NodeProcess) -> None:
    assert cast(dev_node, "chain-id") == "31337"
    before = int(cast(dev_node, "balance", RECIPIENT))

    # ---------------------------------------------------------------- send + receipt
    sent = cast_json(dev_node, "send", "--private-key", KEY, RECIPIENT, "--value", "1ether")
    assert sent["status"] == "0x1"
    assert int(cast(dev_node, "balance", RECIPIENT)) == before + 10**18
    assert cast(dev_node, "nonce", SENDER) == "1"
    receipt = cast_json(dev_node, "receipt", sent["transactionHash"])
    assert receipt == rpc.call(dev_node.url, "eth_getTransactionReceipt", sent["transactionHash"])
    assert cast(dev_node, "receipt", sent["transactionHash"], "gasUsed") == "21000"

    # ---------------------------------------------------------------- block
    block = cast_json(dev_node, "block", "latest")
    assert block["hash"] == sent["blockHash"]
    assert block["transactions"] == [sent["transactionHash"]]
    assert cast(dev_node, "block", block["number"], "--field", "hash") == block["hash"]
    assert cast(dev_node, "block-number") == str(int(block["number"], 16))

    # ---------------------------------------------------------------- a contract
    compiled = compile_contract("Probe.sol", "Probe")
    created = cast_json(
        dev_node, "send", "--private-key", KEY, "--value", "1ether", "--create", compiled.bytecode
    )
    probe = to_checksum_address(created["contractAddress"])
    assert cast(dev_node, "code", probe) == compiled.deployed
    assert cast(dev_node, "call", probe, "counter()(uint256)") == "0"
    pinged = cast_json(dev_node, "send", "--private-key", KEY, probe, "ping(bytes)", "0xbeef")
    assert cast(dev_node, "call", probe, "counter()(uint256)") == "1"
    nested = cast_json(dev_node, "send", "--private-key", KEY, probe, "nested(uint256)", "7")
    assert nested["status"] == "0x1"

    # ---------------------------------------------------------------- logs
    logs = cast_json(dev_node, "logs", "--from-block", "0", "--address", probe, PING)
    assert [log["transactionHash"] for log in logs] == [
        pinged["transactionHash"],
        nested["transactionHash"],
    ]
    assert logs == rpc.call(
        dev_node.url,
        "eth_getLogs",
        {
            "fromBlock": "0x0",
            "address": probe,
            "topics": ["0x" + keccak(text="Ping(address,uint256,bytes)").hex()],
        },
    )
    assert int(logs[0]["topics"][2], 16) == 1 and int(logs[1]["topics"][2], 16) == 7

    # ---------------------------------------------------------------- storage + proof
    child = cast(dev_node, "storage", probe, "2")
    assert child == rpc.call(dev_node.url, "eth_getStorageAt", probe, "0x2", "latest")
    assert cast(dev_node, "storage", probe, "0") == "0x" + (1).to_bytes(32, "big").hex()
    proof = json.loads(cast(dev_node, "proof", probe, "0", "2"))
    state_root = rpc.call(dev_node.url, "eth_getBlockByNumber", "latest", False)["stateRoot"]
    account = rlp.decode(
        _from_proof(state_root, keccak(bytes.fromhex(probe[2:])), proof["accountProof"])
    )
    assert "0x" + account[2].hex() == proof["storageHash"]
    for item, expected in zip(proof["storageProof"], (1, int(child, 16)), strict=True):
        slot = int(item["key"], 16).to_bytes(32, "big")
        raw = _from_proof(proof["storageHash"], keccak(slot), item["proof"])
        assert rlp.decode(raw, sedes=big_endian_int) == int(item["value"], 16) == expected

    # ---------------------------------------------------------------- cast rpc: traces
    frame = json.loads(
        cast(
            dev_node,
            "rpc",
            "debug_traceTransaction",
            nested["transactionHash"],
            '{"tracer":"callTracer"}',
        )
    )
    assert frame["from"] == SENDER.lower() and frame["to"] == probe.lower()
    assert int(frame["gasUsed"], 16) == int(nested["gasUsed"], 16)
    assert [c["type"] for c in frame["calls"]] == [
        "CALL",
        "STATICCALL",
        "STATICCALL",
        "DELEGATECALL",
        "STATICCALL",
    ]
    assert frame["calls"][2]["revertReason"] == "inner"
    struct = json.loads(
        cast(
            dev_node,
            "rpc",
            "debug_traceTransaction",
            nested["transactionHash"],
            '{"disableStack":true}',
        )
    )
    assert struct["gas"] == int(nested["gasUsed"], 16) and not struct["failed"]
    assert {step["depth"] for step in struct["structLogs"]} == {1, 2}
    raw_params = json.dumps(
        [pinged["transactionHash"], {"tracer": "callTracer", "tracerConfig": {"withLog": True}}]
    )
    with_log = json.loads(cast(dev_node, "rpc", "--raw", "debug_traceTransaction", raw_params))
    assert [log["data"] for log in with_log["logs"]] == [logs[0]["data"]]
