"""A real Anvil process (npm @foundry-rs/anvil-linux-amd64) configured like `cairn dev`."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import IO

from tests.support import rpc
from tests.support.contracts import npm_bin
from tests.support.proc import free_port
from tests.support.wait import wait_until


class AnvilProcess:
    """Anvil with Cairn's dev settings: chain 31337, the test mnemonic's accounts, 30M gas
    limit, 1 gwei initial base fee, Prague, automine, and step tracing for struct logs."""

    def __init__(self, log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self, timeout: float = 60.0) -> AnvilProcess:
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                npm_bin("anvil"),
                "--port", str(self.port),
                "--chain-id", "31337",
                "--gas-limit", "30000000",
                "--base-fee", "1000000000",
                "--hardfork", "prague",
                "--steps-tracing",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"anvil exited with {self.proc.returncode}")
            return rpc.call(self.url, "eth_chainId", timeout=2) is not None

        wait_until(ready, timeout=timeout, interval=0.1, message=f"anvil on {self.url}")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
