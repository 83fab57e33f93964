"""Tools for hostile-client tests and the abuse soak: the attacks' payloads (bodies that
hurt a naive JSON check, EVM code that loops or grabs memory), an honest client that
measures its latency while an attack runs, and a node's memory from /proc."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


# ------------------------------------------------------------------ payloads
# A JSON body deep enough to need the nesting check, then an unterminated string of escaped
# quotes: a regex that rescans from every quote needs time quadratic in its length.
def escaped_quotes_body(quotes: int) -> bytes:
    return b"[" * 600 + b'"' + b'\\"' * quotes


# Many brackets close to the depth limit: the most work a linear depth check can be made to do.
def bracket_body(size: int) -> bytes:
    inner = b"[]," * max(0, (size - 1001) // 3)
    return b"[" * 500 + inner + b"1" + b"]" * 500


def _push(value: int) -> str:
    width = max(1, (value.bit_length() + 7) // 8)
    return f"{0x5F + width:02x}" + value.to_bytes(width, "big").hex()


# Init code run by eth_call / debug_traceCall without a `to` (nothing is deployed).
SPIN = "0x5b600056"  # JUMPDEST; PUSH1 0; JUMP: loops until the gas runs out


def memory_then_spin(memory_bytes: int) -> str:
    """MLOAD at `memory_bytes` (memory grows to it), then loop: every struct-log step with
    enableMemory copies that much memory."""
    prefix = _push(memory_bytes) + "5150"  # PUSH size; MLOAD; POP
    loop_at = len(prefix) // 2
    return "0x" + prefix + "5b" + _push(loop_at) + "56"


def revert_with(size: int) -> str:
    """REVERT with `size` zero bytes: the answer carries them as hex (about 2 x size)."""
    return "0x" + _push(size) + "6000fd"  # PUSH size; PUSH1 0; REVERT


def request(method: str, *params: Any, id_: int = 1) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": id_, "method": method, "params": list(params)}


def post_raw(
    url: str, body: bytes, headers: dict[str, str] | None = None, timeout: float = 60.0
) -> tuple[int, dict[str, str], Any]:
    """POST `body` as is; (status, headers, parsed JSON or text)."""
    sent = {"Content-Type": "application/json", **(headers or {})}
    req = urllib.request.Request(url, data=body, method="POST", headers=sent)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            status, got, text = response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        status, got, text = exc.code, dict(exc.headers), exc.read()
    try:
        parsed = json.loads(text) if text else None
    except ValueError:
        parsed = text.decode(errors="replace")
    return status, got, parsed


def get_raw(
    url: str, headers: dict[str, str] | None = None, timeout: float = 30.0
) -> tuple[int, str]:
    req = urllib.request.Request(url, method="GET", headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


# ------------------------------------------------------------------ memory
def _status_kib(pid: int, field_name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise KeyError(field_name)


def rss_mib(pid: int) -> float:
    return _status_kib(pid, "VmRSS") / 1024


def peak_rss_mib(pid: int) -> float:
    """The most RSS since `reset_peak` (VmHWM)."""
    return _status_kib(pid, "VmHWM") / 1024


def reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")


# ------------------------------------------------------------------ the honest client
@dataclass
class HonestClient:
    """Calls eth_blockNumber over and over on its own thread (one at a time, as a wallet
    polling would) and keeps each call's latency and the block numbers it saw."""

    url: str
    pause: float = 0.05
    timeout: float = 30.0
    min_seconds: float = 2.0  # it measures at least this long, however short the attack
    latencies: list[float] = field(default_factory=list)
    blocks: list[int] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _started: float = 0.0

    def __enter__(self) -> HonestClient:
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="honest-client", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.wait(max(0.0, self._started + self.min_seconds - time.monotonic()))
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.timeout + 5)

    def _run(self) -> None:
        body = json.dumps(request("eth_blockNumber")).encode()
        while not self._stop.is_set():
            started = time.perf_counter()
            try:
                status, _, answer = post_raw(self.url, body, timeout=self.timeout)
            except OSError as exc:
                self.failures.append(repr(exc))
            else:
                self.latencies.append(time.perf_counter() - started)
                if status == 200 and isinstance(answer, dict) and "result" in answer:
                    self.blocks.append(int(answer["result"], 16))
                else:
                    self.failures.append(f"{status}: {answer}")
            self._stop.wait(self.pause)

    @property
    def worst(self) -> float:
        return max(self.latencies, default=float("inf"))

    def p99(self) -> float:
        ordered = sorted(self.latencies)
        if not ordered:
            return float("inf")
        return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]

    def blocks_seen(self) -> int:
        return (max(self.blocks) - min(self.blocks)) if self.blocks else 0


# ------------------------------------------------------------------ attackers
# Attackers run in processes of their own (multiprocessing, spawn): in the test's process
# they would take its interpreter lock, and the honest client would measure them, not the node.
def post_until(url: str, body: bytes, seconds: float, counter: Any) -> None:
    """POST `body` again and again for `seconds`; count the answers in `counter`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        post_raw(url, body, timeout=120)
        with counter.get_lock():
            counter.value += 1


def ws_send_until(url: str, text: str, seconds: float, counter: Any) -> None:
    """Send `text` over one WebSocket again and again for `seconds`, reading each answer."""
    from websockets.sync.client import connect

    deadline = time.monotonic() + seconds
    with connect(url, max_size=None) as ws:
        while time.monotonic() < deadline:
            ws.send(text)
            ws.recv(timeout=120)
            with counter.get_lock():
                counter.value += 1
