"""docs/rpc.md lists every JSON-RPC method a dev node registers (and no method it lacks)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from cairn.node.service import Node
from tests.support.chain import dev_node_settings
from tests.support.proc import REPO

DOC = REPO / "docs" / "rpc.md"
NAMESPACES = (
    "web3",
    "net",
    "eth",
    "txpool",
    "debug",
    "evm",
    "anvil",
    "hardhat",
    "personal",
    "cairn",
    "trace",
    "rpc",
)


async def _registered(datadir: Path) -> set[str]:
    node = Node(dev_node_settings(datadir))
    await node.start()
    try:
        assert node.rpc is not None
        return set(node.rpc.dispatcher.methods)
    finally:
        await node.stop()


def _documented() -> set[str]:
    pattern = r"`((?:" + "|".join(NAMESPACES) + r")_[A-Za-z0-9_]+)`"
    return set(re.findall(pattern, DOC.read_text()))


def test_every_registered_method_is_documented(tmp_path: Path) -> None:
    registered = asyncio.run(_registered(tmp_path / "dev"))
    documented = _documented()
    assert sorted(registered - documented) == [], "methods missing from docs/rpc.md"
    assert sorted(documented - registered) == [], "docs/rpc.md names methods nobody answers"
