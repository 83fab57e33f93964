"""A validator network as real `cairn run` processes on loopback: n validators (keystore v3
keys, each knowing every other validator as a bootnode) and full nodes, all on one genesis
with `"mode": "validators"`.

Use as a context manager: every process started through it is stopped on exit.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import TracebackType

from eth_keys.datatypes import PrivateKey
from eth_typing import Address

from cairn.genesis.dev import DEV_BALANCE, dev_accounts
from cairn.genesis.model import AllocAccount, ConsensusParams, Genesis
from cairn.genesis.parse import genesis_to_json
from cairn.node.keys import save_keystore
from cairn.p2p.identity import peer_id_of, write_nodekey
from tests.support.net import head
from tests.support.netns import Lan, NetnsNode
from tests.support.proc import NodeProcess, free_port
from tests.support.wait import wait_until

KEYS = [PrivateKey(bytes([0x50 + i]) * 32) for i in range(10)]
PASSWORD = "validator-test"
# Starting means importing py-evm and py-libp2p and decrypting a scrypt keystore: seconds
# each, many more when several start at once on a busy 2-core machine.
STARTUP_SECONDS = 180.0


def validator_genesis(n: int, *, block_time: float, chain_id: int = 31337) -> Genesis:
    return Genesis(
        chain_id=chain_id,
        alloc={a.address: AllocAccount(balance=DEV_BALANCE) for a in dev_accounts()},
        consensus=ConsensusParams(
            mode="validators",
            producers=tuple(Address(k.public_key.to_canonical_address()) for k in KEYS[:n]),
            block_time=block_time,
            empty_blocks=True,
            timeout_propose=2.0,
            timeout_vote=1.0,
        ),
        extra_data=b"cairn validator test",
    )


class ValidatorNet:
    """`n` validators on loopback, or each on its own host of `lan` (validator i on host i,
    full nodes on the hosts after them)."""

    def __init__(
        self, root: Path, n: int = 4, *, block_time: float = 1.0, lan: Lan | None = None
    ) -> None:
        self.root = root
        self.n = n
        self.lan = lan
        root.mkdir(parents=True, exist_ok=True)
        self.genesis_path = root / "genesis.json"
        genesis = validator_genesis(n, block_time=block_time)
        self.genesis_path.write_text(json.dumps(genesis_to_json(genesis)))
        self.p2p_ports = [free_port() for _ in range(n)]
        self.peer_ids: list[str] = []
        self.validators: dict[int, NodeProcess] = {}
        self.fullnodes: list[NodeProcess] = []
        for i in range(n):
            datadir = root / f"validator-{i}"
            seed = bytes([0x60 + i]) * 32
            write_nodekey(datadir / "p2p" / "nodekey", seed)
            self.peer_ids.append(peer_id_of(seed))
            save_keystore(datadir / "keystore", KEYS[i], PASSWORD)
            (datadir / "password.txt").write_text(PASSWORD + "\n")

    def __enter__(self) -> ValidatorNet:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for node in [*self.fullnodes, *self.validators.values()]:
            node.stop()

    def address(self, host: int) -> str:
        return self.lan.addresses[host] if self.lan is not None else "127.0.0.1"

    def enode(self, i: int) -> str:
        return f"/ip4/{self.address(i)}/tcp/{self.p2p_ports[i]}/p2p/{self.peer_ids[i]}"

    def _process(self, host: int, datadir: Path, *args: str) -> NodeProcess:
        if self.lan is None:
            return NodeProcess(datadir, "run", *args)
        return NetnsNode(self.lan.namespaces[host], self.address(host), datadir, "run", *args)

    def start_validator(self, i: int, *, wait: bool = True) -> NodeProcess:
        datadir = self.root / f"validator-{i}"
        others = ",".join(self.enode(j) for j in range(self.n) if j != i)
        node = self._process(
            i,
            datadir,
            "--genesis",
            str(self.genesis_path),
            "--producer.password",
            str(datadir / "password.txt"),
            "--p2p.port",
            str(self.p2p_ports[i]),
            "--p2p.addr",
            self.address(i),
            "--bootnodes",
            others,
        )
        old = self.validators.get(i)
        if old is not None:  # a restart keeps the RPC port, as an operator's would
            node.http_port, node.url = old.http_port, old.url
        self.validators[i] = node
        node.start(wait=False)
        if wait:
            node.wait_ready(STARTUP_SECONDS)
        return node

    def start_all(self) -> None:
        for i in range(self.n):
            self.start_validator(i, wait=False)
        for node in self.validators.values():
            node.wait_ready(STARTUP_SECONDS)

    def start_fullnode(self, name: str = "fullnode") -> NodeProcess:
        node = self._process(
            self.n + len(self.fullnodes),
            self.root / name,
            "--genesis",
            str(self.genesis_path),
            "--bootnodes",
            ",".join(self.enode(j) for j in range(self.n)),
        )
        self.fullnodes.append(node)
        node.start(wait=False)
        node.wait_ready(STARTUP_SECONDS)
        return node

    def running(self) -> list[NodeProcess]:
        alive = [v for v in self.validators.values() if v.proc and v.proc.poll() is None]
        return alive + [f for f in self.fullnodes if f.proc and f.proc.poll() is None]

    def wait_height(
        self, height: int, nodes: list[NodeProcess] | None = None, timeout: float = 90
    ) -> None:
        targets = nodes if nodes is not None else self.running()
        wait_until(
            lambda: all(head(n)[0] >= height for n in targets),
            timeout=timeout,
            interval=0.2,
            message=f"{len(targets)} nodes at #{height}",
        )

    def same_chain(self, upto: int, nodes: list[NodeProcess] | None = None) -> None:
        targets = nodes if nodes is not None else self.running()
        for number in range(1, upto + 1):
            hashes = {
                str(n.call("eth_getBlockByNumber", hex(number), False)["hash"])  # type: ignore[index]
                for n in targets
            }
            assert len(hashes) == 1, f"#{number}: {len(hashes)} different blocks"
