"""`cairn testnet init`, `up --local|--docker` and `down`: a sequencer or N validators, and
full nodes.

`init` writes, under one directory: genesis.json (sequencer or validators mode, the dev
accounts funded, a random salt so the network's genesis hash is its own), each signer's
keystore and password file (mode 0600 from the start), every node's p2p key (so bootnode
addresses are known in advance), per-node config TOML for local processes, testnet.json (the
manifest `up` reads), and through `testnet_compose` the Docker and Kubernetes files (compose
file, .env, container configs, Prometheus rules, Grafana provisioning, k8s manifests). `up
--docker` and `down` are in `testnet_docker`.

`up --local` runs that network as processes on loopback, prints a refreshing view of each
node's real state and where its log is, and stops every process it started on Ctrl-C or
SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_keys.datatypes import PrivateKey
from eth_typing import Address
from eth_utils import to_checksum_address

from cairn.errors import ConfigError
from cairn.genesis.dev import DEV_BALANCE, dev_accounts
from cairn.genesis.model import AllocAccount, ConsensusParams, Genesis
from cairn.genesis.parse import genesis_to_json
from cairn.node import testnet_docker
from cairn.node.keys import save_keystore
from cairn.node.testnet_compose import DockerNode, DockerPlan, write_docker_files
from cairn.p2p.identity import peer_id_of, write_nodekey

MANIFEST = "testnet.json"

# Between two status tables `up --local` looks this often for Ctrl-C.
STOP_POLL_INTERVAL_SECONDS = 0.1


@dataclass(frozen=True)
class NodePlan:
    name: str
    mode: str
    peer_id: str
    p2p_port: int
    http_port: int
    compose_ip: str


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return json.dumps(str(value))


def _write_secret(path: Path, text: str) -> None:
    """Write `text` to a file only its owner can read, from the first byte on (created with
    mode 0600, never chmod-ed after the write)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as fh:
        os.fchmod(fh.fileno(), 0o600)
        fh.write(text)


def _write_toml(path: Path, entries: dict[str, Any]) -> None:
    lines = ["# written by `cairn testnet init`; flags and CAIRN_* env override these"]
    lines += [f'"{key}" = {_toml_value(value)}' for key, value in entries.items()]
    path.write_text("\n".join(lines) + "\n")


GENESIS_SALT_PREFIX = b"cairn testnet "


def _genesis(chain_id: int, mode: str, producers: list[bytes], block_time: float) -> Genesis:
    # A random salt in extraData makes this network's genesis hash its own: the p2p
    # handshake compares genesis hashes, and two testnets (or a testnet and the dev chain)
    # with the same chain id and accounts would otherwise look like one network.
    return Genesis(
        chain_id=chain_id,
        extra_data=GENESIS_SALT_PREFIX + secrets.token_bytes(16),
        alloc={a.address: AllocAccount(balance=DEV_BALANCE) for a in dev_accounts()},
        consensus=ConsensusParams(
            mode="validators" if mode == "validator" else "sequencer",
            producers=tuple(
                Address(PrivateKey(key).public_key.to_canonical_address()) for key in producers
            ),
            block_time=block_time,
            # a network with a block time ticks: blocks come every N seconds, empty or not
            empty_blocks=block_time > 0,
        ),
    )


def cmd_testnet_init(args: argparse.Namespace) -> int:
    if bool(args.sequencer) == bool(args.validators):
        raise ConfigError(
            "cairn testnet init needs --sequencer (one producer) or --validators N "
            "(BFT, N >= 4), not both"
        )
    if args.validators and args.validators < 4:
        raise ConfigError(
            f"--validators {args.validators}: BFT needs at least 4 validators (it tolerates "
            "f = (n - 1) // 3 faulty ones)"
        )
    if args.fullnodes < 0:
        raise ConfigError("--fullnodes must be 0 or more")
    root = Path(args.dir).expanduser().resolve()
    if (root / MANIFEST).exists() and not args.force:
        raise ConfigError(
            f"{root} already holds a testnet ({MANIFEST}); nothing was changed. "
            "Pick another --dir or pass --force to overwrite it."
        )
    root.mkdir(parents=True, exist_ok=True)
    role = "validator" if args.validators else "sequencer"
    signers = (
        [f"validator-{i}" for i in range(1, args.validators + 1)]
        if args.validators
        else ["sequencer"]
    )
    keys = {name: secrets.token_bytes(32) for name in signers}
    block_time = (
        args.block_time if args.block_time is not None else (1.0 if args.validators else 0.0)
    )
    genesis = _genesis(args.chain_id, role, list(keys.values()), block_time)
    (root / "genesis.json").write_text(json.dumps(genesis_to_json(genesis), indent=2) + "\n")

    subnet = _subnet_prefix(args.subnet)  # compose network; nodes get .10, .11, ...
    names = signers + [f"fullnode-{i}" for i in range(1, args.fullnodes + 1)]
    plans = []
    for index, name in enumerate(names):
        node_dir = root / name
        seed = secrets.token_bytes(32)
        write_nodekey(node_dir / "p2p" / "nodekey", seed)
        plans.append(
            NodePlan(
                name=name,
                mode=role if name in keys else "fullnode",
                peer_id=peer_id_of(seed),
                p2p_port=args.p2p_port + index,
                http_port=args.http_port + index,
                compose_ip=f"{subnet}.{10 + index}",
            )
        )
    keystores: dict[str, str] = {}
    for name, key in keys.items():
        password = secrets.token_hex(16)
        _write_secret(root / name / "password.txt", password + "\n")
        keystores[name] = save_keystore(root / name / "keystore", PrivateKey(key), password).name

    local_boot = {
        p.name: f"/ip4/127.0.0.1/tcp/{p.p2p_port}/p2p/{p.peer_id}" for p in plans if p.name in keys
    }
    for plan in plans:
        node_dir = root / plan.name
        local: dict[str, Any] = {
            "datadir": str(node_dir),
            "genesis": str(root / "genesis.json"),
            "http.addr": "127.0.0.1",
            "http.port": plan.http_port,
            "ws.port": 0,
            "p2p.addr": "127.0.0.1",
            "p2p.port": plan.p2p_port,
            # processes on this machine only, as `cairn dev`: every namespace (`up` reads
            # /status) and no rate limit (scripts share 127.0.0.1)
            "http.api": "*",
            "rpc.ratelimit": "0",
        }
        if plan.name in keys:
            local["producer.keystore"] = str(node_dir / "keystore" / keystores[plan.name])
            local["producer.password"] = str(node_dir / "password.txt")
        # every node knows the signers: a validator the other validators, a full node all
        others = [addr for name, addr in local_boot.items() if name != plan.name]
        if others:
            local["bootnodes"] = ",".join(others)
        _write_toml(node_dir / "config.toml", local)
    docker_plan = _docker_plan(args, root, plans, keystores, block_time)
    write_docker_files(root, docker_plan, mirror=not args.no_mirror, fullnodes=args.fullnodes)
    producers = [
        to_checksum_address(PrivateKey(k).public_key.to_canonical_address()) for k in keys.values()
    ]
    manifest = {
        "chainId": args.chain_id,
        "mode": genesis.consensus.mode,
        "producer": producers[0],
        "producers": producers,
        "nodes": [
            {
                "name": p.name,
                "mode": p.mode,
                "peerId": p.peer_id,
                "config": str(root / p.name / "config.toml"),
                "log": str(root / p.name / "node.log"),
                "rpc": f"http://127.0.0.1:{p.http_port}",
                "p2pPort": p.p2p_port,
            }
            for p in plans
        ],
    }
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    what = f"{len(signers)} validators" if args.validators else "1 sequencer"
    ticks = f"a block every {block_time:g} s" if block_time > 0 else "blocks on transactions"
    print(
        f"testnet in {root}: chain id {args.chain_id}, {what} + {args.fullnodes} full nodes, "
        f"{ticks}"
    )
    for name, address in zip(keys, producers, strict=True):
        print(f"  {name} signs as {address} (keystore in {root / name / 'keystore'})")
    for p in plans:
        print(f"  {p.name:<12} rpc http://127.0.0.1:{p.http_port}  p2p {p.p2p_port}  {p.peer_id}")
    print(f"run it here:    cairn testnet up --local --dir {root}")
    print(f"or with Docker: cairn testnet up --docker --dir {root}")
    return 0


def _docker_plan(
    args: argparse.Namespace,
    root: Path,
    plans: list[NodePlan],
    keystores: dict[str, str],
    block_time: float,
) -> DockerPlan:
    nodes = tuple(
        DockerNode(
            name=p.name,
            role=p.mode,
            ip=p.compose_ip,
            peer_id=p.peer_id,
            keystore=keystores.get(p.name),
        )
        for p in plans
    )
    # users talk to the first full node (the producer stays off the public path); it also
    # carries the mirror and is the explorer's RPC
    rpc = next((n.name for n in nodes if n.role == "fullnode"), nodes[0].name)
    project = "cairn-" + (re.sub(r"[^a-z0-9_-]+", "-", root.name.lower()).strip("-") or "net")
    return DockerPlan(
        project=project,
        chain_id=args.chain_id,
        block_time=block_time,
        subnet=_subnet_prefix(args.subnet),
        nodes=nodes,
        rpc_node=rpc,
        mirror_node=None if args.no_mirror else rpc,
    )


def _subnet_prefix(subnet: str) -> str:
    match = re.fullmatch(r"(\d{1,3}\.\d{1,3}\.\d{1,3})\.0/24", subnet)
    if match is None:
        raise ConfigError(f"--subnet {subnet!r}: give a /24 such as 172.28.0.0/24")
    return match.group(1)


# ---------------------------------------------------------------- up --local
def _rpc(url: str, method: str, *params: Any) -> Any:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})
    request = urllib.request.Request(
        url, data=body.encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=2) as response:
        return json.loads(response.read())["result"]


def _status(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url + "/status", timeout=2) as response:
        status: dict[str, Any] = json.loads(response.read())
        return status


def describe(status: dict[str, Any]) -> str:
    """A node's real state from its /status: p2p down, behind a peer by N, syncing, stalled,
    or in sync — never "in sync" while a peer it knows announces a higher head."""
    head = int(status["blockNumber"])
    p2p = status.get("p2p") or {}
    state = (p2p.get("state") or {}).get("status", "running") if p2p else "running"
    best = max((int(peer["head"]) for peer in p2p.get("peers", [])), default=head)
    consensus = status.get("consensus")
    if p2p and state != "running":
        text = f"p2p {state}"
    elif best > head:
        text = f"behind by {best - head}"
    elif status.get("syncing"):
        text = "syncing"
    elif consensus and int(consensus.get("stalled", 0)) >= 3:
        text = f"stalled at round {consensus['round']}"
    else:
        text = "in sync"
    if not status.get("healthy", True) and text == "in sync":
        reasons = status.get("reasons") or ["unhealthy"]
        text = f"unhealthy: {reasons[0]}"
    return text


def _row(node: dict[str, Any], proc: subprocess.Popen[bytes]) -> str:
    name = node["name"]
    if proc.poll() is not None:
        return (
            f"{name:<12} {node['mode']:<9} exited with code {proc.returncode} (log {node['log']})"
        )
    try:
        status = _status(node["rpc"])
    except (OSError, ValueError):
        return f"{name:<12} {node['mode']:<9} starting... (log {node['log']})"
    peers = len((status.get("p2p") or {}).get("peers", []))
    return (
        f"{name:<12} {node['mode']:<9} head #{int(status['blockNumber']):<7} "
        f"{str(status['blockHash'])[:18]}  peers {peers:<3} {describe(status):<22} {node['rpc']}"
    )


def cmd_testnet_up(args: argparse.Namespace) -> int:
    if args.local == args.docker:
        raise ConfigError("say where the network runs: --local (processes) or --docker")
    if args.docker:
        return testnet_docker.up(args.dir, args.profile, args.timeout, args.build)
    root = Path(args.dir).expanduser().resolve()
    try:
        manifest = json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"{root / MANIFEST} is missing or unreadable ({exc}); run `cairn testnet init "
            f"--sequencer --fullnodes N --dir {root}` first"
        ) from exc
    stopping = False

    def request_stop(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    procs: list[tuple[dict[str, Any], subprocess.Popen[bytes]]] = []
    logs = []
    try:
        for node in manifest["nodes"]:
            node.setdefault("log", str(root / node["name"] / "node.log"))
            log = Path(node["log"]).open("ab")  # noqa: SIM115 (closed in the finally below)
            logs.append(log)
            argv = [sys.executable, "-m", "cairn", "run", "--config", node["config"]]
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
            procs.append((node, proc))
        print(f"started {len(procs)} nodes from {root}; Ctrl-C stops them all", flush=True)
        for node, _ in procs:
            print(f"  {node['name']:<12} log {node['log']}", flush=True)
        tty = sys.stdout.isatty()
        deadline = time.monotonic() + args.duration if args.duration else None
        while not stopping and (deadline is None or time.monotonic() < deadline):
            rows = [_row(node, proc) for node, proc in procs]
            stamp = time.strftime("%H:%M:%S")
            if tty:
                sys.stdout.write("\x1b[2J\x1b[H")
            print(f"cairn testnet {root.name}  chain {manifest['chainId']}  {stamp}")
            print("\n".join(rows), flush=True)
            if not tty:
                print(flush=True)
            end = time.monotonic() + args.interval
            while not stopping and time.monotonic() < end:
                time.sleep(STOP_POLL_INTERVAL_SECONDS)
    finally:
        print("stopping every node...", flush=True)
        for _, proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for node, proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            print(f"  {node['name']} stopped (exit {proc.returncode})", flush=True)
        for log in logs:
            log.close()
    return 0


def add_commands(subparsers: Any) -> None:
    testnet = subparsers.add_parser("testnet", help="create or run a multi-node test network")
    sub = testnet.add_subparsers(dest="testnet_command", required=True)
    init = sub.add_parser("init", help="write genesis, keys, configs and docker-compose.yml")
    init.add_argument("--sequencer", action="store_true", help="one sequencer makes blocks")
    init.add_argument(
        "--validators",
        type=int,
        default=0,
        metavar="N",
        help="N validators (at least 4) make blocks with BFT finality",
    )
    init.add_argument("--fullnodes", type=int, default=3, help="full nodes (default 3)")
    init.add_argument("--dir", default="testnet", help="output directory (default ./testnet)")
    init.add_argument("--chain-id", type=int, default=31337)
    init.add_argument(
        "--block-time",
        type=float,
        default=None,
        help="seconds between blocks, empty or not (default: sequencer 0 = on every "
        "transaction; validators 1)",
    )
    init.add_argument("--p2p-port", type=int, default=30333, help="first local p2p port")
    init.add_argument("--http-port", type=int, default=8545, help="first local RPC port")
    init.add_argument("--force", action="store_true", help="overwrite an existing testnet")
    init.add_argument(
        "--subnet", default="172.28.0.0/24", help="compose network, a /24 (default 172.28.0.0/24)"
    )
    init.add_argument(
        "--no-mirror", action="store_true", help="no Postgres mirror in the compose file"
    )
    init.set_defaults(func=cmd_testnet_init)
    up = sub.add_parser("up", help="run the testnet of --dir")
    up.add_argument("--local", action="store_true", help="as processes on this machine")
    up.add_argument("--dir", default="testnet")
    up.add_argument("--interval", type=float, default=2.0, help="status refresh (seconds)")
    up.add_argument("--duration", type=float, default=0.0, help="stop after N seconds (0: never)")
    up.add_argument("--docker", action="store_true", help="with docker compose")
    up.add_argument(
        "--profile",
        action="append",
        default=[],
        choices=testnet_docker.PROFILES,
        help="--docker: also start Prometheus + Grafana or Blockscout (repeatable)",
    )
    up.add_argument(
        "--timeout", type=float, default=300.0, help="--docker: seconds to wait for health"
    )
    up.add_argument(
        "--build", action="store_true", help="--docker: rebuild the image even if it exists"
    )
    up.set_defaults(func=cmd_testnet_up)
    down = sub.add_parser("down", help="stop and remove the Docker containers of --dir")
    down.add_argument("--dir", default="testnet")
    down.add_argument(
        "--volumes", action="store_true", help="also delete the volumes (every node's chain)"
    )
    down.set_defaults(func=lambda args: testnet_docker.down(args.dir, args.volumes))
