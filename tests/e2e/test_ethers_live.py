"""ethers v6 (Node) against `cairn dev` with JsonRpcProvider and WebSocketProvider: deploy,
transfers, events through polled filters and through subscriptions, reverts, a batch of 100,
dev-account signing and impersonation. The script asserts and exits non-zero on failure."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.support.contracts import REPO, compile_contract
from tests.support.proc import NodeProcess

SCRIPT = REPO / "tests" / "clients" / "ethers_live.mjs"


def test_ethers_http_and_websocket(dev_node: NodeProcess, tmp_path: Path) -> None:
    compiled = compile_contract("Emitter.sol", "Emitter")
    artifact = tmp_path / "Emitter.json"
    artifact.write_text(json.dumps({"abi": compiled.abi, "bytecode": compiled.bytecode}))
    done = subprocess.run(
        ["node", str(SCRIPT), dev_node.url, dev_node.ws_url, str(artifact)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    report = f"--- stdout ---\n{done.stdout}\n--- stderr ---\n{done.stderr}\n--- node log ---\n"
    assert done.returncode == 0, report + dev_node.log()
    assert "OK 8 steps" in done.stdout, report
