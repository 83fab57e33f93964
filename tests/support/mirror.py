"""Helpers for the Postgres mirror tests: signed contract transactions, a paced load
generator, the node's /health/database and /metrics, and Postgres-side checks."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from typing import Any

from eth_abi.abi import encode
from eth_account import Account
from eth_utils import keccak, to_checksum_address

from tests.support import rpc
from tests.support.chain import ADDRESSES, CHAIN_ID, KEYS, transfer
from tests.support.postgres import PostgresServer
from tests.support.proc import NodeProcess
from tests.support.wait import wait_until


def selector(signature: str) -> bytes:
    return keccak(text=signature)[:4]


def deploy(
    key_index: int, nonce: int, code: bytes, *, gas: int = 1_500_000, max_fee: int = 3 * 10**9
) -> bytes:
    fields: dict[str, Any] = {
        "type": 2,
        "chainId": CHAIN_ID,
        "nonce": nonce,
        "value": 0,
        "gas": gas,
        "maxFeePerGas": max_fee,
        "maxPriorityFeePerGas": 10**9,
        "data": code,
    }
    return bytes(Account.sign_transaction(fields, KEYS[key_index]).raw_transaction)


def call(
    key_index: int,
    nonce: int,
    to: str,
    signature: str,
    types: list[str] | None = None,
    args: list[Any] | None = None,
    *,
    value: int = 0,
    gas: int = 200_000,
) -> bytes:
    data = selector(signature) + (encode(types, args or []) if types else b"")
    return transfer(key_index, nonce, to=to_checksum_address(to), value=value, gas=gas, data=data)


def constructor_args(types: list[str], args: list[Any]) -> bytes:
    return encode(types, args)


def send_batch(url: str, raws: list[bytes]) -> list[str]:
    """eth_sendRawTransaction for each, in one JSON-RPC batch; raises on any error."""
    payload = [
        {"jsonrpc": "2.0", "id": i, "method": "eth_sendRawTransaction", "params": ["0x" + r.hex()]}
        for i, r in enumerate(raws)
    ]
    answers = sorted(rpc.post(url, payload, timeout=60), key=lambda a: a["id"])
    errors = [a["error"] for a in answers if "error" in a]
    if errors:
        raise rpc.RpcFailure(errors[0])
    return [a["result"] for a in answers]


def batch_call(url: str, calls: list[tuple[str, list[Any]]]) -> list[Any]:
    """Many JSON-RPC calls in batches of 500; results in order."""
    results: list[Any] = []
    for start in range(0, len(calls), 500):
        chunk = calls[start : start + 500]
        payload = [
            {"jsonrpc": "2.0", "id": i, "method": m, "params": p} for i, (m, p) in enumerate(chunk)
        ]
        answers = sorted(rpc.post(url, payload, timeout=120), key=lambda a: a["id"])
        for answer in answers:
            if "error" in answer:
                raise rpc.RpcFailure(answer["error"])
            results.append(answer["result"])
    return results


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def health(node: NodeProcess) -> tuple[int, dict[str, Any]]:
    status, text = http_get(node.url + "/health/database")
    return status, json.loads(text)


def metric(node: NodeProcess, name: str) -> float | None:
    """The value of an unlabelled metric (or the sum over its labels) on /metrics."""
    _, text = http_get(node.url + "/metrics")
    total: float | None = None
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        metric_name = line.split("{", 1)[0].split(" ", 1)[0]
        if metric_name == name:
            total = (total or 0.0) + float(line.rsplit(" ", 1)[1])
    return total


def head(node: NodeProcess) -> int:
    return int(str(node.call("eth_blockNumber")), 16)


def wait_mirrored(node: NodeProcess, timeout: float = 120.0) -> dict[str, Any]:
    """Until the mirror is connected and has written the node's head."""

    def caught_up() -> dict[str, Any] | None:
        status, body = health(node)
        if status == 200 and body["lag"] == 0 and body["cursor"] == head(node):
            return body
        return None

    return wait_until(caught_up, timeout=timeout, interval=0.2, message="the mirror to catch up")


def pg_int(pg: PostgresServer, db: str, sql: str) -> int:
    return int(pg.psql(sql, db) or 0)


def assert_no_gap_no_duplicate(pg: PostgresServer, db: str) -> int:
    """Blocks 0..cursor each exactly once, nothing past the cursor, and transactions and
    logs exactly as many as the block rows announce. Returns the cursor."""
    cursor = pg_int(pg, db, "SELECT block_number FROM mirror_cursor")
    assert pg_int(pg, db, "SELECT count(*) FROM blocks") == cursor + 1
    assert pg_int(pg, db, "SELECT count(DISTINCT number) FROM blocks") == cursor + 1
    assert pg_int(pg, db, "SELECT max(number) FROM blocks") == cursor
    announced_txs = pg_int(pg, db, "SELECT sum(transaction_count) FROM blocks")
    assert pg_int(pg, db, "SELECT count(*) FROM transactions") == announced_txs
    assert pg_int(pg, db, "SELECT count(DISTINCT hash) FROM transactions") == announced_txs
    announced_logs = pg_int(pg, db, "SELECT sum(log_count) FROM blocks")
    assert pg_int(pg, db, "SELECT count(*) FROM logs") == announced_logs
    return cursor


class Load(threading.Thread):
    """Transfers from `senders` at about `rate` tx/s in small JSON-RPC batches, until stopped
    or the node goes away. Records every hash the node accepted, and the hashes of the batch
    in flight when the node went away (it may have been committed before the answer was
    lost: a kill -9 between the commit and the answer)."""

    def __init__(self, url: str, senders: range, rate: float, batch: int = 10) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.senders = list(senders)
        self.rate = rate
        self.batch = batch
        self.accepted: list[str] = []
        self.unanswered: list[str] = []
        self.errors: list[str] = []
        self.halt = threading.Event()
        self.nonces = {
            s: int(str(rpc.call(url, "eth_getTransactionCount", _hex(s), "pending")), 16)
            for s in self.senders
        }

    def run(self) -> None:
        started = time.monotonic()
        sent = 0
        turn = 0
        while not self.halt.is_set():
            raws = []
            for _ in range(self.batch):
                sender = self.senders[turn % len(self.senders)]
                turn += 1
                raws.append(transfer(sender, self.nonces[sender], value=1 + turn))
                self.nonces[sender] += 1
            try:
                self.accepted.extend(send_batch(self.url, raws))
            except Exception as exc:  # the node was stopped or killed under us
                self.errors.append(repr(exc))
                self.unanswered.extend("0x" + keccak(raw).hex() for raw in raws)
                return
            sent += len(raws)
            # Pace by waiting on the halt event: wakes at once when the test stops the load.
            ahead = sent / self.rate - (time.monotonic() - started)
            if ahead > 0:
                self.halt.wait(ahead)

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=30)


def _hex(sender: int) -> str:
    return "0x" + ADDRESSES[sender].hex()
