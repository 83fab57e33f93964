"""Contracts compiled with solc-js (npm `solc`), cached per test session."""

from __future__ import annotations

import functools
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
CONTRACTS = REPO / "tests" / "contracts"
NODE_BIN = REPO / "node_modules" / ".bin"


@dataclass(frozen=True)
class Compiled:
    abi: list[dict[str, Any]]
    bytecode: str
    deployed: str


@functools.cache
def compile_contract(source_file: str, name: str) -> Compiled:
    """Compile tests/contracts/<source_file> with solc-js and return contract `name`."""
    out = subprocess.run(
        ["node", str(REPO / "tests" / "clients" / "compile.js"), str(CONTRACTS / source_file)],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
        timeout=180,
    )
    contracts = json.loads(out.stdout)
    entry = contracts[name]
    return Compiled(entry["abi"], "0x" + entry["bytecode"], "0x" + entry["deployed"])


def npm_bin(name: str) -> str:
    path = NODE_BIN / name
    if not path.exists():
        raise FileNotFoundError(f"{path} missing: run `make clients` (npm ci)")
    return str(path)
