"""Several `cairn` processes forming one network on loopback: a sequencer (`cairn dev`
with p2p on) and full nodes (`cairn run` with its genesis and no producer key).

Use as a context manager: every process started through it is stopped on exit, whatever
happened inside.
"""

from __future__ import annotations

import os
import re
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from tests.support import rpc
from tests.support.proc import NodeProcess
from tests.support.wait import wait_until


class LocalNet:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.nodes: list[NodeProcess] = []
        self.sequencer: NodeProcess | None = None

    def __enter__(self) -> LocalNet:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_all()

    def stop_all(self) -> None:
        for node in reversed(self.nodes):
            node.stop()

    def start_sequencer(self, *extra: str, wait: bool = True) -> NodeProcess:
        node = NodeProcess(self.root / "sequencer", "dev", *sequencer_args(), *extra)
        self.nodes.append(node)
        self.sequencer = node
        node.start(wait=wait)
        return node

    @property
    def genesis(self) -> Path:
        return self.root / "sequencer" / "genesis.json"

    def start_fullnode(
        self,
        name: str,
        *extra: str,
        bootnode: bool = True,
        env: dict[str, str] | None = None,
    ) -> NodeProcess:
        args = ["--genesis", str(self.genesis)]
        if bootnode:
            assert self.sequencer is not None
            args += ["--bootnodes", enode(self.sequencer)]
        node: NodeProcess = (
            EnvNodeProcess(self.root / name, env, "run", *args, *extra)
            if env
            else NodeProcess(self.root / name, "run", *args, *extra)
        )
        self.nodes.append(node)
        node.start()
        return node


class EnvNodeProcess(NodeProcess):
    """A node process with extra environment variables (test-only switches)."""

    def __init__(self, datadir: Path, env: dict[str, str] | None, *args: str) -> None:
        super().__init__(datadir, *args)
        self.extra_env = dict(env or {})

    def start(self, wait: bool = True, timeout: float = 60.0) -> NodeProcess:
        saved = {k: os.environ.get(k) for k in self.extra_env}
        os.environ.update(self.extra_env)
        try:
            super().start(wait=False)  # the child inherits os.environ as it is now
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        if wait:
            self.wait_ready(timeout)
        return self


def sequencer_args() -> list[str]:
    from tests.support.proc import free_port

    return ["--p2p.port", str(free_port()), "--p2p.addr", "127.0.0.1"]


def enode(node: NodeProcess) -> str:
    """The node's listen multiaddr with /p2p/<peer id>, from admin_nodeInfo."""
    info = node.call("admin_nodeInfo")
    assert isinstance(info, dict)
    return str(info["enode"])


def peer_id(node: NodeProcess) -> str:
    info = node.call("admin_nodeInfo")
    assert isinstance(info, dict)
    return str(info["id"])


def peer_count(node: NodeProcess) -> int:
    return int(str(node.call("net_peerCount")), 16)


def head(node: NodeProcess) -> tuple[int, str]:
    block = node.call("eth_getBlockByNumber", "latest", False)
    assert isinstance(block, dict)
    return int(block["number"], 16), str(block["hash"])


def wait_same_head(nodes: Sequence[NodeProcess], at_least: int = 0, timeout: float = 60.0) -> str:
    """Wait until every node's head is the same block (number >= at_least); its hash."""

    def agreed() -> str | None:
        heads = {head(n) for n in nodes}
        if len(heads) == 1:
            number, block_hash = heads.pop()
            if number >= at_least:
                return block_hash
        return None

    return wait_until(agreed, timeout=timeout, interval=0.2, message="all heads to agree")


def wait_receipt(node: NodeProcess, tx_hash: str, timeout: float = 60.0) -> dict[str, object]:
    receipt = wait_until(
        lambda: node.call("eth_getTransactionReceipt", tx_hash),
        timeout=timeout,
        interval=0.1,
        message=f"receipt of {tx_hash} on {node.url}",
    )
    assert isinstance(receipt, dict)
    return receipt


def metric(node: NodeProcess, name: str, **labels: str) -> float:
    """One sample of the node's /metrics (0 when absent)."""
    with urllib.request.urlopen(node.url + "/metrics", timeout=5) as response:
        text = response.read().decode()
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))  # as exposed
    pattern = re.escape(name) + (r"\{" + re.escape(want) + r"\}" if want else "") + r" (\S+)"
    total = 0.0
    for match in re.finditer(r"^" + pattern + r"$", text, re.MULTILINE):
        total += float(match.group(1))
    return total


def log_has(node: NodeProcess, needle: str) -> bool:
    return needle in node.log_path.read_text(errors="replace")


def log_count(node: NodeProcess, needle: str) -> int:
    """How many times `needle` occurs in the node's log."""
    return node.log_path.read_text(errors="replace").count(needle)


__all__ = [
    "LocalNet",
    "enode",
    "head",
    "log_count",
    "log_has",
    "metric",
    "peer_count",
    "peer_id",
    "rpc",
]
