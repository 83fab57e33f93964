"""docs/rpc.md lists every JSON-RPC method a dev node registers (and no method it lacks)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from eth_keys.datatypes import PrivateKey

from cairn.genesis.dev import DEV_PRODUCER_KEY, dev_accounts, dev_genesis
from cairn.node.service import Node, NodeSettings
from tests.support.proc import REPO, free_port

DOC = REPO / "docs" / "rpc.md"
NAMESPACES = ("web3", "net", "eth", "txpool", "debug", "evm", "anvil", "hardhat", "personal")


async def _registered(datadir: Path) -> set[str]:
    node = Node(
        NodeSettings(
            datadir=datadir,
            genesis=dev_genesis(),
            http_port=free_port(),
            ws_port=None,
            producer_key=PrivateKey(DEV_PRODUCER_KEY),
            block_time=0.0,
            dev=True,
            dev_keys={a.address: a.private_key for a in dev_accounts()},
        )
    )
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
