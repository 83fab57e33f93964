"""Several whole nodes in one event loop: real LevelDB in temp dirs, real libp2p on loopback
(each node's p2p runs on its own trio thread, as in a process), no subprocesses.

`InProcessNet` starts a sequencer and full nodes that bootstrap from it, gives tests the
`Node` objects themselves (their applier, events, pool), and stops everything on exit.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from types import TracebackType

from cairn.chain.events import BlockCommitted
from cairn.genesis.dev import dev_genesis
from cairn.node.service import Node, NodeSettings
from cairn.p2p.api import P2PConfig
from tests.support.chain import dev_node_settings
from tests.support.proc import free_port
from tests.support.wait import wait_until_async


def p2p_config(datadir: Path, bootnodes: tuple[str, ...] = ()) -> P2PConfig:
    return P2PConfig(
        datadir=datadir / "p2p",
        listen_addr="127.0.0.1",
        port=0,
        bootnodes=bootnodes,
        max_peers=25,
        discovery=True,
        mdns=False,
        client="cairn-test",
    )


def enode(node: Node) -> str:
    assert node.p2p is not None
    info = node.p2p.service.node_info()
    return f"{info.listen_addrs[0]}/p2p/{info.peer_id}"


class Recorded:
    """Every `BlockCommitted` a node published, in order."""

    def __init__(self, node: Node) -> None:
        self.numbers: list[int] = []
        self.last_at = time.monotonic()  # when the last one was published
        node.events.subscribe(self._on)

    def _on(self, event: BlockCommitted) -> None:
        self.numbers.append(event.number)
        self.last_at = time.monotonic()


class InProcessNet:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.nodes: dict[str, Node] = {}
        self.recorded: dict[str, Recorded] = {}

    async def __aenter__(self) -> InProcessNet:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for node in reversed(list(self.nodes.values())):
            await node.stop()

    async def _start(self, name: str, settings: NodeSettings) -> Node:
        node = Node(settings)
        self.nodes[name] = node
        self.recorded[name] = Recorded(node)
        await node.start()
        return node

    async def start_sequencer(self, name: str = "sequencer", *, dev: bool = True) -> Node:
        """A dev-chain sequencer (automine) with p2p on loopback."""
        datadir = self.root / name
        settings = replace(dev_node_settings(datadir), p2p=p2p_config(datadir), dev=dev)
        return await self._start(name, settings)

    async def start_fullnode(self, name: str, bootnode: str = "sequencer") -> Node:
        datadir = self.root / name
        settings = NodeSettings(
            datadir=datadir,
            genesis=dev_genesis(),
            http_port=free_port(),
            ws_port=None,
            p2p=p2p_config(datadir, (enode(self.nodes[bootnode]),)),
        )
        return await self._start(name, settings)

    async def wait_for(
        self, condition: Callable[[], bool], *, within: float = 60.0, message: str
    ) -> None:
        async def check() -> bool:
            return condition()

        await wait_until_async(check, within=within, message=message)

    async def wait_same_head(self, *, within: float = 60.0) -> int:
        """Wait until every node has the same head; return its number."""
        started = time.monotonic()

        def same() -> bool:
            hashes = {node.chain.head.hash for node in self.nodes.values()}
            return len(hashes) == 1

        await self.wait_for(same, within=within, message="every node on the same head")
        assert time.monotonic() - started <= within + 1
        return next(iter(self.nodes.values())).chain.head.block_number
