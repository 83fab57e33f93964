"""Benchmark machinery: Cairn and Anvil processes with the same settings, a small async
JSON-RPC client, and pre-signed transactions both nodes accept (same chain id and accounts)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from eth_account import Account

from cairn.genesis.dev import dev_accounts

REPO = Path(__file__).resolve().parents[1]
ANVIL = REPO / "node_modules" / ".bin" / "anvil"
CHAIN_ID = 31337
DEAD = "0x000000000000000000000000000000000000dEaD"


def _rss_mib(pid: int) -> float:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _descendants(pid: int) -> list[int]:
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    found = [int(c) for c in children]
    return found + [d for c in found for d in _descendants(c)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Target:
    """A node under test: `cairn dev` or `anvil`, started with the same chain settings."""

    name: str
    block_time: float
    gas_limit: int = 30_000_000
    accounts: int = 100
    datadir: Path | None = None
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    argv_extra: list[str] = field(default_factory=list)
    _tmp: str | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def argv(self) -> list[str]:
        if self.name == "anvil":
            args = [
                str(ANVIL),
                "--port",
                str(self.port),
                "--chain-id",
                str(CHAIN_ID),
                "--accounts",
                str(self.accounts),
                "--gas-limit",
                str(self.gas_limit),
                "--base-fee",
                "1000000000",
                "--silent",
            ]
            if self.block_time:
                args += ["--block-time", str(self.block_time)]
            return args + self.argv_extra
        if self.datadir is None:
            self._tmp = tempfile.mkdtemp(prefix="cairn-bench-")
            self.datadir = Path(self._tmp) / "dev"
        return [
            sys.executable, "-m", "cairn", "dev",
            "--datadir", str(self.datadir),
            "--http.port", str(self.port),
            "--ws.port", "0",
            "--accounts", str(self.accounts),
            "--gas-limit", str(self.gas_limit),
            "--block-time", str(self.block_time),
            "--log.level", "warning",
            *self.argv_extra,
        ]  # fmt: skip

    def start(self, timeout: float = 120.0) -> float:
        """Start and return seconds until the node answered eth_blockNumber."""
        started = time.monotonic()
        self.proc = subprocess.Popen(
            self.argv(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO
        )
        deadline = started + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}")
            try:
                rpc_sync(self.url, "eth_blockNumber")
                return time.monotonic() - started
            except OSError:
                time.sleep(0.02)
        raise TimeoutError(f"{self.name} did not start in {timeout}s")

    def rss_mib(self) -> float:
        assert self.proc is not None
        return _rss_mib(self.proc.pid)

    def workers_rss_mib(self) -> float:
        """RSS of the target's child processes (Cairn's sender-recovery and call workers)."""
        assert self.proc is not None
        return sum(_rss_mib(pid) for pid in _descendants(self.proc.pid))

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def cleanup(self) -> None:
        self.stop()
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)


def rpc_sync(url: str, method: str, *params: Any) -> Any:
    import urllib.request

    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})
    request = urllib.request.Request(
        url, data=body.encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        answer = json.loads(response.read())
    if "error" in answer:
        raise RuntimeError(f"{method}: {answer['error']}")
    return answer["result"]


class Client:
    """An aiohttp JSON-RPC client (one connection pool per benchmark)."""

    def __init__(self, url: str, connections: int = 100) -> None:
        self.url = url
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=connections),
            timeout=aiohttp.ClientTimeout(total=600),
        )

    async def close(self) -> None:
        await self._session.close()

    async def call(self, method: str, *params: Any) -> Any:
        payload = {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}
        async with self._session.post(self.url, json=payload) as response:
            answer = await response.json(content_type=None)
        if "error" in answer:
            raise RuntimeError(f"{method}: {answer['error']}")
        return answer["result"]

    async def batch(self, calls: Sequence[tuple[str, list[Any]]]) -> list[Any]:
        payload = [
            {"jsonrpc": "2.0", "id": i, "method": m, "params": p} for i, (m, p) in enumerate(calls)
        ]
        async with self._session.post(self.url, json=payload) as response:
            answers = await response.json(content_type=None)
        if isinstance(answers, dict):
            raise RuntimeError(f"batch refused: {answers}")
        by_id = {a["id"]: a for a in answers}
        return [by_id[i].get("result", by_id[i].get("error")) for i in range(len(calls))]


def keys(count: int) -> list[bytes]:
    return [a.private_key for a in dev_accounts(count)]


def addresses(count: int) -> list[str]:
    return ["0x" + a.address.hex() for a in dev_accounts(count)]


def sign_transfers(
    senders: int, per_sender: int, *, first_nonce: int = 0, to: str = DEAD
) -> list[list[str]]:
    """Raw EIP-1559 transfers by round: round r holds nonce first_nonce + r of every sender."""
    signing_keys = keys(senders)
    rounds: list[list[str]] = []
    for r in range(per_sender):
        row = []
        for key in signing_keys:
            tx = {
                "type": 2,
                "chainId": CHAIN_ID,
                "nonce": first_nonce + r,
                "to": to,
                "value": 1,
                "gas": 21_000,
                "maxFeePerGas": 100 * 10**9,
                "maxPriorityFeePerGas": 10**9,
            }
            row.append("0x" + bytes(Account.sign_transaction(tx, key).raw_transaction).hex())
        rounds.append(row)
    return rounds


async def wait_for_receipts(client: Client, tx_hashes: Sequence[str], limit: float) -> float:
    """Poll until every transaction has a receipt; return the monotonic time it was seen."""
    remaining = list(tx_hashes)
    deadline = time.monotonic() + limit
    while remaining:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(remaining)} transactions still without receipt")
        answers = await client.batch([("eth_getTransactionReceipt", [h]) for h in remaining[:500]])
        done = {
            h
            for h, a in zip(remaining[:500], answers, strict=True)
            if isinstance(a, dict) and "blockHash" in a
        }
        if done:
            remaining = [h for h in remaining if h not in done]
            continue
        await asyncio.sleep(0.02)
    return time.monotonic()


def environment() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "anvil": subprocess.run(
            [str(ANVIL), "--version"], capture_output=True, text=True
        ).stdout.splitlines()[0]
        if ANVIL.exists()
        else None,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
