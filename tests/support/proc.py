"""Real `cairn` processes on loopback: start, wait until serving, SIGTERM or kill -9."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import IO

from tests.support import rpc
from tests.support.wait import wait_until

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class NodeProcess:
    """One `cairn <command>` process with its own ports and log file."""

    def __init__(
        self, datadir: Path, command: str = "dev", *args: str, open_rpc: bool = True
    ) -> None:
        self.datadir = datadir
        self.command = command
        self.args = list(args)
        self.open_rpc = open_rpc
        self.http_port = free_port()
        # `run` joins a network on 30333 by default; tests never share a fixed port.
        self.p2p_port = free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.ws_url = f"ws://127.0.0.1:{self.http_port}"
        self.log_path = datadir.parent / f"{datadir.name}-{command}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def argv(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "cairn",
            self.command,
            "--datadir",
            str(self.datadir),
            "--http.port",
            str(self.http_port),
            "--ws.port",
            "0",
            *self._p2p_args(),
            *self._open_rpc_args(),
            *self.args,
        ]

    def _p2p_args(self) -> list[str]:
        if self.command != "run" or "--p2p.port" in self.args:
            return []
        return ["--p2p.port", str(self.p2p_port), "--p2p.addr", "127.0.0.1"]

    def _open_rpc_args(self) -> list[str]:
        """`run` serves eth,net,web3 and rate-limits by default; tests of other things read
        admin_*, txpool_*, debug_* and /metrics from full nodes and poll freely. A test of
        those defaults passes its own --http.api / --rpc.ratelimit."""
        if self.command != "run" or not self.open_rpc:
            return []
        extra = [] if "--http.api" in self.args else ["--http.api", "*"]
        return extra + ([] if "--rpc.ratelimit" in self.args else ["--rpc.ratelimit", "0"])

    def start(self, wait: bool = True, timeout: float = 60.0) -> NodeProcess:
        self._log = self.log_path.open("ab")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            self.argv(), stdout=self._log, stderr=subprocess.STDOUT, cwd=REPO, env=env
        )
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 60.0) -> None:
        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"cairn exited with {self.proc.returncode}:\n{self.log()}")
            return rpc.call(self.url, "eth_chainId", timeout=2) is not None

        try:
            wait_until(ready, timeout=timeout, interval=0.1, message=f"{self.url} to serve RPC")
        except RuntimeError:
            raise
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\n--- log ---\n{self.log()}") from exc

    def call(self, method: str, *params: object) -> object:
        return rpc.call(self.url, method, *params)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-6000:]
        except OSError:
            return ""

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self._close_log()

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc is None or self.proc.poll() is not None:
            self._close_log()
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self._close_log()
        return code

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


def run_cli(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cairn", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=timeout,
    )
