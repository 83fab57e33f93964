"""One scripted scenario sent to Anvil and to `cairn dev`; the answers must match.

Transfers, a contract with events, reverts, panics, CREATE/CREATE2, SELFDESTRUCT, traces
(callTracer and the struct logger), logs queries, proofs, access lists, raw data and error
cases — the same signed transactions on both nodes, so transaction hashes, contract
addresses, gas, logs and traces are comparable. Block hashes are named by number on each
side; every difference left must match a rule, and every rule is in docs/anvil-differences.md.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_utils import keccak, to_checksum_address
from web3 import Web3

from tests.support import rpc
from tests.support.anvil import AnvilProcess
from tests.support.chain import ADDRESSES, KEYS
from tests.support.contracts import REPO, compile_contract
from tests.support.differential import Rule, Session, Side, explain
from tests.support.proc import NodeProcess
from tests.support.wait import wait_until
from tests.support.wallet import Wallet

pytestmark = pytest.mark.e2e

DOC = REPO / "docs" / "anvil-differences.md"
A0, A1, A2 = (to_checksum_address(a) for a in ADDRESSES[:3])
CALL_TRACER = {"tracer": "callTracer"}

ABSENT = "<absent>"
ZERO32 = "0x" + "00" * 32


def _absent_here(value: Any) -> Callable[[Any, Any], bool]:
    """Cairn leaves the field out (as geth does) where Anvil sends `value`."""
    return lambda ours, theirs: ours == ABSENT and theirs == value


def _base_fee_scaled(ours: Any, theirs: Any) -> bool:
    """Cairn's base fee is Anvil's times 7/8 (one more EIP-1559 step from the same gas
    used), and a price is that base fee plus the 1 gwei tip both sides pay."""
    try:
        mine, other = int(ours, 16), int(theirs, 16)
    except (TypeError, ValueError):
        return False
    return any(
        other > tip and abs((mine - tip) / (other - tip) - 7 / 8) < 1e-6 for tip in (0, 10**9)
    )


def _anvil_lacks_method(ours: Any, theirs: Any) -> bool:
    return theirs == ABSENT or (isinstance(theirs, dict) and theirs.get("code") == -32601)


# Every intended difference. Paths are regexes over "<label>:<json path>"; the ids are the
# sections of docs/anvil-differences.md.
RULES = [
    Rule("block-time", r".*\.(timestamp|blockTimestamp)", "blocks are made at different times"),
    Rule(
        "prestate-fees",
        r"prestate .*:result(\.(pre|post))?\.0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266\.balance",
        "the sender paid Cairn's lower base fee (base-fee)",
    ),
    Rule(
        "prestate-created",
        r"prestate CREATE2:result\.0x[0-9a-f]{40}",
        "geth drops accounts a transaction created from its prestate",
        lambda ours, theirs: ours == ABSENT and theirs == {"balance": "0x0"},
    ),
    Rule(
        "total-difficulty",
        r".*:result\.totalDifficulty",
        "geth dropped totalDifficulty",
        _absent_here("0x0"),
    ),
    Rule("state-root", r".*:result(\[\d+\])?\.stateRoot", "different genesis state"),
    Rule("state-root", r"proof .*:result\.accountProof.*", "proof nodes hang off the state root"),
    Rule("extra-data", r".*:result\.(extraData|size)", "Cairn writes extraData"),
    Rule("prev-randao", r".*:result\.mixHash", "Anvil draws prevRandao at random"),
    Rule(
        "base-fee",
        r"(eth_gasPrice:result|.*\.(baseFeePerGas(\[\d+\])?|gasPrice|effectiveGasPrice))",
        "Anvil's --base-fee is block 1's base fee, Cairn's is genesis's",
        _base_fee_scaled,
    ),
    Rule("blob-gas-price", r".*\.blobGasPrice", "geth: blob txs only", _absent_here("0x1")),
    Rule(
        "calltracer-top-gas",
        r"trace .*:result(\[\d+\]\.result)?\.gas",
        "geth: the transaction's gas limit; Anvil: what is left after intrinsic gas",
        lambda ours, theirs: int(ours, 16) > int(theirs, 16),
    ),
    Rule("structlog-refund", r"struct log .*\.refund", "geth omits 0", _absent_here(0)),
    Rule("structlog-empty-memory", r"struct log .*\.memory", "geth omits []", _absent_here([])),
    Rule(
        "anvil-missing-method",
        r"(raw (receipts|header latest|block latest)|replay nested):(error|result)",
        "Anvil does not implement it",
        _anvil_lacks_method,
    ),
    Rule(
        "missing-account-proof",
        r"proof of a missing account:result\.(codeHash|storageHash)",
        "geth answers zero hashes for an account that does not exist",
        lambda ours, theirs: ours == ZERO32,
    ),
    Rule("revert-message", r"call (custom error|panic):error\.message", "geth's wording"),
    Rule("error-messages", r"(unknown method|bad address):error\.message", "geth's wording"),
    Rule("txpool-errors", r"replayed transaction:error\.(code|message)", "geth's code and text"),
    Rule("trace-unknown-tx", r"trace unknown tx:(error|result)", "geth: transaction not found"),
    Rule("safe-finalized", r"balance at (safe|finalized):result", "instant finality"),
    Rule("logs-reversed-range", r"logs in a reversed range:(error|result)", "geth's error"),
    Rule("unknown-block-hash", r"call at an unknown hash:error\.(code|message)", "geth's error"),
]


def _sorted_access_list(result: Any) -> Any:
    """geth sorts the list by address and keys; Anvil keeps first-touch order."""
    if not isinstance(result, dict) or not isinstance(result.get("accessList"), list):
        return result
    entries = [{**e, "storageKeys": sorted(e.get("storageKeys", []))} for e in result["accessList"]]
    return {**result, "accessList": sorted(entries, key=lambda e: str(e["address"]).lower())}


def _doc_ids() -> set[str]:
    text = DOC.read_text()
    return set(re.findall(r"^### `([a-z0-9-]+)`", text, flags=re.M))


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[tuple[Side, Side]]:
    anvil = AnvilProcess(tmp_path / "anvil.log").start()
    cairn = NodeProcess(tmp_path / "dev", "dev")
    try:
        cairn.start()
        yield Side("cairn", cairn.url), Side("anvil", anvil.url)
    finally:
        cairn.stop()
        anvil.stop()


def send(session: Session, label: str, raw: str) -> str:
    """eth_sendRawTransaction on both nodes, then wait for both receipts."""
    hashes = session.call(label, "eth_sendRawTransaction", [raw])
    for side in session.sides:
        tx_hash = hashes[side.name]
        assert tx_hash is not None, f"{side.name} refused {label}"
        wait_until(
            functools.partial(rpc.call, side.url, "eth_getTransactionReceipt", tx_hash),
            timeout=30,
            message=f"{side.name} to mine {label}",
        )
    tx_hash = hashes["cairn"]
    assert tx_hash == hashes["anvil"]
    assert isinstance(tx_hash, str)
    return tx_hash


def head(side: Side) -> str:
    return str(rpc.call(side.url, "eth_blockNumber"))


def latest_hash(side: Side) -> str:
    return block_hash(side, head(side))


def block_hash(side: Side, number: str) -> str:
    return str(rpc.call(side.url, "eth_getBlockByNumber", number, False)["hash"])


def test_same_answers_as_anvil(nodes: tuple[Side, Side]) -> None:
    cairn, anvil = nodes
    s = Session(cairn, anvil)
    probe_abi = compile_contract("Probe.sol", "Probe")
    w3 = Web3()
    probe_code = w3.eth.contract(abi=probe_abi.abi, bytecode=probe_abi.bytecode)
    wallet = Wallet(KEYS[0])

    # -------------------------------------------------------------- chain information
    s.call("eth_chainId", "eth_chainId")
    s.call("net_version", "net_version")
    s.call("eth_blockNumber", "eth_blockNumber")
    s.call("balance latest", "eth_getBalance", [A0, "latest"])
    s.call("balance earliest", "eth_getBalance", [A0, "earliest"])
    s.call("nonce latest", "eth_getTransactionCount", [A0, "latest"])
    s.call("code of an account", "eth_getCode", [A0, "latest"])
    s.call("eth_gasPrice", "eth_gasPrice")
    s.call("eth_maxPriorityFeePerGas", "eth_maxPriorityFeePerGas")
    s.call("genesis block", "eth_getBlockByNumber", ["0x0", False])

    # -------------------------------------------------------------- a transfer
    transfer = send(s, "send transfer", wallet.sign(A1, value=10**18))
    s.call("transfer receipt", "eth_getTransactionReceipt", [transfer])
    s.call("transfer by hash", "eth_getTransactionByHash", [transfer])
    s.call("balance after", "eth_getBalance", [A1, "latest"])
    s.call("balance at genesis", "eth_getBalance", [A1, "0x0"])
    s.call("nonce pending", "eth_getTransactionCount", [A0, "pending"])
    s.call("block 1 full", "eth_getBlockByNumber", ["0x1", True])

    # -------------------------------------------------------------- a contract
    deploy_data = probe_code.constructor().data_in_transaction
    deploy_tx = wallet.sign(None, value=10**18, data=deploy_data, gas=2_000_000)
    deployed = send(s, "send deploy", deploy_tx)
    receipt = s.call("deploy receipt", "eth_getTransactionReceipt", [deployed])["cairn"]
    probe_address = to_checksum_address(receipt["contractAddress"])
    probe = w3.eth.contract(address=probe_address, abi=probe_abi.abi)

    def data(fn: str, *args: Any) -> str:
        return str(probe.encode_abi(fn, list(args)))

    def invoke(label: str, gas: int, fn: str, *args: Any) -> str:
        """Send a transaction calling `fn(*args)` on the contract; its hash."""
        return send(s, label, wallet.sign(probe_address, data=data(fn, *args), gas=gas))

    s.call("trace deploy", "debug_traceTransaction", [deployed, CALL_TRACER])
    s.call("code of the contract", "eth_getCode", [probe_address, "latest"])
    s.call("code before the deploy", "eth_getCode", [probe_address, "0x1"])
    child_slot = s.call("child slot", "eth_getStorageAt", [probe_address, "0x2", "latest"])["cairn"]
    child_address = to_checksum_address("0x" + child_slot[-40:])
    counter = {"to": probe_address, "data": data("counter")}
    s.call("eth_call counter", "eth_call", [counter, "latest"])
    s.call(
        "estimate ping",
        "eth_estimateGas",
        [{"from": A0, "to": probe_address, "data": data("ping", b"\xde\xad")}],
    )

    # -------------------------------------------------------------- events and logs
    ping = invoke("send ping", 200_000, "ping", b"\xde\xad")
    s.call("ping receipt", "eth_getTransactionReceipt", [ping])
    s.call(
        "trace ping withLog",
        "debug_traceTransaction",
        [ping, {"tracer": "callTracer", "tracerConfig": {"withLog": True}}],
    )
    ping_topic = "0x" + keccak(text="Ping(address,uint256,bytes)").hex()
    stored_topic = "0x" + keccak(text="Stored(uint256,address)").hex()
    sender_topic = "0x" + "00" * 12 + A0[2:].lower()
    everything = {"fromBlock": "0x0", "toBlock": "latest"}
    s.call("logs by address", "eth_getLogs", [{**everything, "address": probe_address}])
    s.call("logs by topic", "eth_getLogs", [{**everything, "topics": [ping_topic]}])
    s.call("logs by block hash", "eth_getLogs", lambda side: [{"blockHash": latest_hash(side)}])
    s.call("logs by second topic", "eth_getLogs", [{**everything, "topics": [None, sender_topic]}])

    # -------------------------------------------------------------- nested calls
    nested = invoke("send nested", 500_000, "nested", 7)
    s.call("nested receipt", "eth_getTransactionReceipt", [nested])
    either = [[ping_topic, stored_topic]]
    s.call("logs with OR topics", "eth_getLogs", [{**everything, "topics": either}])
    s.call("logs matching nothing", "eth_getLogs", [{**everything, "topics": ["0x" + "ab" * 32]}])
    s.call("trace nested calls", "debug_traceTransaction", [nested, CALL_TRACER])
    s.call(
        "trace nested withLog",
        "debug_traceTransaction",
        [nested, {"tracer": "callTracer", "tracerConfig": {"withLog": True}}],
    )
    s.call(
        "trace nested onlyTopCall",
        "debug_traceTransaction",
        [nested, {"tracer": "callTracer", "tracerConfig": {"onlyTopCall": True}}],
    )
    s.call("prestate nested", "debug_traceTransaction", [nested, {"tracer": "prestateTracer"}])
    s.call(
        "prestate diff nested",
        "debug_traceTransaction",
        [nested, {"tracer": "prestateTracer", "tracerConfig": {"diffMode": True}}],
    )
    s.call("parity trace nested", "trace_transaction", [nested])
    s.call("parity trace block", "trace_block", lambda side: [head(side)])
    s.call(
        "parity trace filter",
        "trace_filter",
        lambda side: [{"fromBlock": "0x1", "toBlock": head(side)}],
    )
    s.call(
        "parity trace filter by sender",
        "trace_filter",
        lambda side: [{"fromBlock": "0x1", "toBlock": head(side), "fromAddress": [probe_address]}],
    )
    s.call(
        "replay nested",
        "trace_replayTransaction",
        [nested, ["trace"]],
    )
    s.call(
        "call with state overrides",
        "eth_call",
        [
            {"to": probe_address, "data": data("counter")},
            "latest",
            {
                probe_address: {"stateDiff": {ZERO32: "0x" + "00" * 31 + "2a"}},
                A2: {"balance": "0x1"},
            },
        ],
    )
    s.call(
        "call with replaced code",
        "eth_call",
        [{"to": A2, "data": "0x"}, "latest", {A2: {"code": "0x602a60005260206000f3"}}],
    )
    s.call(
        "trace call with overrides",
        "debug_traceCall",
        [
            {"to": probe_address, "data": data("counter")},
            "latest",
            {"tracer": "callTracer", "stateOverrides": {probe_address: {"state": {}}}},
        ],
    )
    s.call("struct log nested", "debug_traceTransaction", [nested, {}])
    s.call(
        "struct log nested with memory",
        "debug_traceTransaction",
        [nested, {"enableMemory": True, "disableStack": True}],
    )
    s.call(
        "trace block by number", "debug_traceBlockByNumber", lambda side: [head(side), CALL_TRACER]
    )
    s.call(
        "trace block by hash",
        "debug_traceBlockByHash",
        lambda side: [latest_hash(side), CALL_TRACER],
    )
    s.call("raw transaction", "debug_getRawTransaction", [nested])
    s.call("raw receipts", "debug_getRawReceipts", lambda side: [head(side)])
    s.call("raw header latest", "debug_getRawHeader", ["latest"])
    s.call("raw block latest", "debug_getRawBlock", ["latest"])

    # -------------------------------------------------------------- CREATE and CREATE2
    salt = "0x" + "11" * 32
    created = invoke("send deploy children", 1_000_000, "deploy", salt)
    s.call("trace CREATE and CREATE2", "debug_traceTransaction", [created, CALL_TRACER])
    s.call(
        "prestate diff CREATE2",
        "debug_traceTransaction",
        [created, {"tracer": "prestateTracer", "tracerConfig": {"diffMode": True}}],
    )
    s.call("prestate CREATE2", "debug_traceTransaction", [created, {"tracer": "prestateTracer"}])

    # -------------------------------------------------------------- reverts
    failed = invoke("send failing", 100_000, "fail", "nope")
    s.call("failed receipt", "eth_getTransactionReceipt", [failed])
    s.call("trace revert", "debug_traceTransaction", [failed, CALL_TRACER])
    s.call("struct log revert", "debug_traceTransaction", [failed, {"disableStack": True}])
    s.call("call revert", "eth_call", [{"to": probe_address, "data": data("fail", "why")}])
    s.call("call custom error", "eth_call", [{"to": probe_address, "data": data("failCustom", 7)}])
    s.call("call panic", "eth_call", [{"to": probe_address, "data": data("divide", 1, 0)}])
    failing = {"from": A0, "to": probe_address, "data": data("fail", "x")}
    s.call("estimate revert", "eth_estimateGas", [failing])

    # -------------------------------------------------------------- SELFDESTRUCT
    destroyed = invoke("send selfdestruct", 200_000, "destroyChild")
    s.call("trace selfdestruct", "debug_traceTransaction", [destroyed, CALL_TRACER])
    s.call("child balance after", "eth_getBalance", [child_address, "latest"])

    # -------------------------------------------------------------- storage, proofs, access lists
    before_set = s.call("block before setSlot", "eth_blockNumber")
    invoke("send setSlot", 100_000, "setSlot", 5, 0x1234)
    slot = "0x" + keccak((5).to_bytes(32, "big") + (1).to_bytes(32, "big")).hex()
    cleared = invoke("send clearing setSlot", 100_000, "setSlot", 5, 0)
    s.call("struct log with a refund", "debug_traceTransaction", [cleared, {"disableStack": True}])
    invoke("send setSlot again", 100_000, "setSlot", 5, 0x1234)
    s.call("storage now", "eth_getStorageAt", [probe_address, slot, "latest"])
    s.call(
        "storage before",
        "eth_getStorageAt",
        lambda side: [probe_address, slot, before_set[side.name]],
    )
    slots = [slot, ZERO32, "0x" + "00" * 31 + "02"]
    s.call("proof of the contract", "eth_getProof", [probe_address, slots, "latest"])
    nobody = to_checksum_address("0x" + "42" * 20)
    s.call("proof of a missing account", "eth_getProof", [nobody, [], "latest"])
    s.call(
        "access list for setSlot",
        "eth_createAccessList",
        [{"from": A0, "to": probe_address, "data": data("setSlot", 6, 1)}, "latest"],
        canonical=_sorted_access_list,
    )
    s.call(
        "access list for nested",
        "eth_createAccessList",
        [{"from": A0, "to": probe_address, "data": data("nested", 3)}, "latest"],
        canonical=_sorted_access_list,
    )
    s.call(
        "trace a call",
        "debug_traceCall",
        [{"from": A0, "to": probe_address, "data": data("ping", b"\x01")}, "latest", CALL_TRACER],
    )
    s.call(
        "struct log of a call",
        "debug_traceCall",
        [{**counter, "from": A0, "gas": "0x1e8480"}, "latest", {}],
    )
    s.call(
        "access list for a creation",
        "eth_createAccessList",
        [{"from": A0, "data": deploy_data, "gas": "0x1e8480"}, "latest"],
        canonical=_sorted_access_list,
    )
    s.call("block receipts", "eth_getBlockReceipts", ["latest"])
    s.call("tx count in block", "eth_getBlockTransactionCountByNumber", ["latest"])
    s.call("tx by block and index", "eth_getTransactionByBlockNumberAndIndex", ["latest", "0x0"])
    s.call("block by hash", "eth_getBlockByHash", lambda side: [block_hash(side, "0x2"), False])

    # -------------------------------------------------------------- block parameters
    s.call("balance at {blockNumber}", "eth_getBalance", [A1, {"blockNumber": "0x1"}])
    s.call(
        "balance at {blockHash}",
        "eth_getBalance",
        lambda side: [A1, {"blockHash": block_hash(side, "0x1"), "requireCanonical": True}],
    )
    s.call("call at an old block", "eth_call", [counter, "0x2"])
    s.call("fee history", "eth_feeHistory", ["0x4", "latest", [25, 75]])
    s.call("nonce at block 1", "eth_getTransactionCount", [A0, "0x1"])
    s.call("earliest block", "eth_getBlockByNumber", ["earliest", False])
    s.call("balance at safe", "eth_getBalance", [A1, "safe"])
    s.call("balance at finalized", "eth_getBalance", [A1, "finalized"])
    s.call("logs in a reversed range", "eth_getLogs", [{"fromBlock": "0x3", "toBlock": "0x2"}])
    s.call(
        "call at an unknown hash",
        "eth_call",
        [{"to": probe_address, "data": data("counter")}, {"blockHash": "0x" + "ee" * 32}],
    )

    # -------------------------------------------------------------- errors
    s.call("replayed transaction", "eth_sendRawTransaction", [wallet_replay(wallet)])
    s.call("unknown method", "eth_doesNotExist", [])
    s.call("bad address", "eth_getBalance", ["0x1234", "latest"])
    s.call("future block", "eth_getBlockByNumber", ["0x999", False])
    s.call("unknown receipt", "eth_getTransactionReceipt", ["0x" + "00" * 32])
    s.call("trace unknown tx", "debug_traceTransaction", ["0x" + "00" * 32, CALL_TRACER])

    for side in s.sides:
        side.learn_blocks()
    assert len(s.calls) >= 60
    used, unexplained = explain(s.differences(), RULES)
    report = "\n".join(str(d) for d in unexplained)
    assert not unexplained, f"{len(unexplained)} unexplained differences:\n{report}"
    print(f"{len(s.calls)} calls compared; intended differences seen: {used}")
    documented = _doc_ids()
    assert set(used) <= documented, f"rules missing from {DOC}: {set(used) - documented}"


def wallet_replay(wallet: Wallet) -> str:
    """A transaction with an already-used nonce (0)."""
    replay = Wallet(wallet.key)
    return replay.sign(A2, value=1)
