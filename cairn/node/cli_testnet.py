"""`cairn testnet init`, `up --local|--docker` and `down`: a sequencer and N full nodes.

`init` writes, under one directory: genesis.json (sequencer mode, the dev accounts funded),
the sequencer's keystore and password file, every node's p2p key (so bootnode addresses are
known in advance), per-node config TOML for local processes, testnet.json (the manifest `up`
reads), and through `testnet_compose` the Docker and Kubernetes files (compose file, .env,
container configs, Prometheus rules, Grafana provisioning, k8s manifests). `up --docker` and
`down` are in `testnet_docker`.

`up --local` runs that network as processes on loopback, prints a refreshing view of heads
and peers, and stops every process it started on Ctrl-C or SIGTERM.
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


def _write_toml(path: Path, entries: dict[str, Any]) -> None:
    lines = ["# written by `cairn testnet init`; flags and CAIRN_* env override these"]
    lines += [f'"{key}" = {_toml_value(value)}' for key, value in entries.items()]
    path.write_text("\n".join(lines) + "\n")


def _genesis(chain_id: int, producer: bytes, block_time: float) -> Genesis:
    return Genesis(
        chain_id=chain_id,
        alloc={a.address: AllocAccount(balance=DEV_BALANCE) for a in dev_accounts()},
        consensus=ConsensusParams(
            mode="sequencer",
            producers=(Address(PrivateKey(producer).public_key.to_canonical_address()),),
            block_time=block_time,
        ),
    )


def cmd_testnet_init(args: argparse.Namespace) -> int:
    if not args.sequencer:
        raise ConfigError("cairn testnet init needs --sequencer (validator networks come later)")
    if args.fullnodes < 0:
        raise ConfigError("--fullnodes must be 0 or more")
    root = Path(args.dir).expanduser().resolve()
    if (root / MANIFEST).exists() and not args.force:
        raise ConfigError(
            f"{root} already holds a testnet ({MANIFEST}); nothing was changed. "
            "Pick another --dir or pass --force to overwrite it."
        )
    root.mkdir(parents=True, exist_ok=True)
    producer = secrets.token_bytes(32)
    genesis = _genesis(args.chain_id, producer, args.block_time)
    (root / "genesis.json").write_text(json.dumps(genesis_to_json(genesis), indent=2) + "\n")

    subnet = _subnet_prefix(args.subnet)  # compose network; nodes get .10, .11, ...
    names = ["sequencer"] + [f"fullnode-{i}" for i in range(1, args.fullnodes + 1)]
    plans = []
    for index, name in enumerate(names):
        node_dir = root / name
        seed = secrets.token_bytes(32)
        write_nodekey(node_dir / "p2p" / "nodekey", seed)
        plans.append(
            NodePlan(
                name=name,
                mode="sequencer" if index == 0 else "fullnode",
                peer_id=peer_id_of(seed),
                p2p_port=args.p2p_port + index,
                http_port=args.http_port + index,
                compose_ip=f"{subnet}.{10 + index}",
            )
        )
    seq = plans[0]
    password = secrets.token_hex(16)
    seq_dir = root / seq.name
    (seq_dir / "password.txt").write_text(password + "\n")
    os.chmod(seq_dir / "password.txt", 0o600)
    keystore = save_keystore(seq_dir / "keystore", PrivateKey(producer), password)

    local_boot = f"/ip4/127.0.0.1/tcp/{seq.p2p_port}/p2p/{seq.peer_id}"
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
        }
        if plan.mode == "sequencer":
            local["producer.keystore"] = str(keystore)
            local["producer.password"] = str(node_dir / "password.txt")
        else:
            local["bootnodes"] = local_boot
        _write_toml(node_dir / "config.toml", local)
    docker_plan = _docker_plan(args, root, plans, keystore.name)
    write_docker_files(root, docker_plan, mirror=not args.no_mirror, fullnodes=args.fullnodes)
    manifest = {
        "chainId": args.chain_id,
        "producer": to_checksum_address(PrivateKey(producer).public_key.to_canonical_address()),
        "nodes": [
            {
                "name": p.name,
                "mode": p.mode,
                "peerId": p.peer_id,
                "config": str(root / p.name / "config.toml"),
                "rpc": f"http://127.0.0.1:{p.http_port}",
                "p2pPort": p.p2p_port,
            }
            for p in plans
        ],
    }
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"testnet in {root}: chain id {args.chain_id}, 1 sequencer + {args.fullnodes} full nodes")
    print(f"  sequencer producer {manifest['producer']} (keystore {keystore})")
    for p in plans:
        print(f"  {p.name:<12} rpc http://127.0.0.1:{p.http_port}  p2p {p.p2p_port}  {p.peer_id}")
    print(f"run it here:    cairn testnet up --local --dir {root}")
    print(f"or with Docker: cairn testnet up --docker --dir {root}")
    return 0


def _docker_plan(
    args: argparse.Namespace, root: Path, plans: list[NodePlan], keystore: str
) -> DockerPlan:
    nodes = tuple(
        DockerNode(
            name=p.name,
            role=p.mode,
            ip=p.compose_ip,
            peer_id=p.peer_id,
            keystore=keystore if p.mode == "sequencer" else None,
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
        block_time=args.block_time,
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


def _row(node: dict[str, Any], proc: subprocess.Popen[bytes]) -> str:
    name = node["name"]
    if proc.poll() is not None:
        return f"{name:<12} {node['mode']:<9} exited with code {proc.returncode} (see its node.log)"
    try:
        block = _rpc(node["rpc"], "eth_getBlockByNumber", "latest", False)
        peers = int(_rpc(node["rpc"], "net_peerCount"), 16)
        syncing = _rpc(node["rpc"], "eth_syncing")
    except Exception:
        return f"{name:<12} {node['mode']:<9} starting..."
    state = "syncing" if syncing else "in sync"
    return (
        f"{name:<12} {node['mode']:<9} head #{int(block['number'], 16):<7} "
        f"{block['hash'][:18]}  peers {peers:<3} {state:<8} {node['rpc']}"
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
            log = (root / node["name"] / "node.log").open("ab")
            logs.append(log)
            argv = [sys.executable, "-m", "cairn", "run", "--config", node["config"]]
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
            procs.append((node, proc))
        print(f"started {len(procs)} nodes from {root}; Ctrl-C stops them all", flush=True)
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
                time.sleep(0.1)
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
    init.add_argument("--fullnodes", type=int, default=3, help="full nodes (default 3)")
    init.add_argument("--dir", default="testnet", help="output directory (default ./testnet)")
    init.add_argument("--chain-id", type=int, default=31337)
    init.add_argument("--block-time", type=float, default=0.0, help="0 mines on every tx")
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
