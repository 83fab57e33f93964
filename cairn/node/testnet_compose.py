"""What `cairn testnet init` writes for Docker and Kubernetes: the compose file, its `.env`,
each node's container config, Prometheus' scrape config and alert rules, Grafana's
provisioning and the Kubernetes manifests, from one `DockerPlan`.

Generic over roles: a node that signs blocks (a sequencer today, validators later) has a
keystore and a password file in its folder, which the compose `setup` service copies into the
node's volume owned by the image's user with mode 0600; every node gets its p2p key the same
way. The templates, rules and dashboard come from `deploy/` (package data `cairn/deploy`).
Pure text out: this module writes files and never runs Docker or a node.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cairn
from cairn.errors import ConfigError

CONTAINER_HTTP_PORT = 8545
CONTAINER_WS_PORT = 8546
CONTAINER_P2P_PORT = 30333
IMAGE_REPO = "cairn-node"
IMAGE_UID = 10001  # the image's `cairn` user (Dockerfile); k8s runs the pods as it
# Pinned images of the services beside the nodes (override each through .env).
POSTGRES_IMAGE = "postgres:16.4-bookworm"
PROMETHEUS_IMAGE = "prom/prometheus:v2.53.2"
GRAFANA_IMAGE = "grafana/grafana:11.2.0"
BLOCKSCOUT_IMAGE = "blockscout/blockscout:6.8.1"
BLOCKSCOUT_FRONTEND_IMAGE = "ghcr.io/blockscout/frontend:v1.35.2"
SIGNING_ROLES = ("sequencer", "validator")  # roles with a keystore + password.txt
# RPC access of a node in a container (`cairn run` alone serves eth,net,web3 to Host
# localhost only): services reach it by name (Prometheus, Blockscout), Prometheus reads
# /metrics, the explorer's indexer traces with debug_*, and its front-end, a page on
# localhost:3001, calls the node from the browser. See docs/security.md.
CONTAINER_RPC: dict[str, Any] = {
    "http.vhosts": "*",
    "http.api": "eth,net,web3,txpool,debug,cairn,metrics,status",
    "ws.api": "eth,net,web3,txpool,debug,cairn",
    "http.corsdomain": "http://localhost:3001,http://127.0.0.1:3001",
    "ws.origins": "http://localhost:3001,http://127.0.0.1:3001",
}


def image_tag() -> str:
    return f"{IMAGE_REPO}:{cairn.__version__}"


def deploy_dir() -> Path:
    """`deploy/` of a checkout, or the copy installed with the package (cairn/deploy)."""
    packaged = Path(__file__).resolve().parent.parent / "deploy"
    if (packaged / "prometheus").is_dir():
        return packaged
    checkout = Path(__file__).resolve().parent.parent.parent / "deploy"
    if (checkout / "prometheus").is_dir():
        return checkout
    raise ConfigError(f"the deploy/ templates are missing (looked in {packaged} and {checkout})")


@dataclass(frozen=True)
class DockerNode:
    name: str
    role: str  # "sequencer", "fullnode" (and "validator" when BFT networks come)
    ip: str  # fixed address on the compose network (bootnodes need /ip4/)
    peer_id: str
    keystore: str | None  # file name in <node>/keystore for a signing role

    @property
    def signs(self) -> bool:
        return self.role in SIGNING_ROLES

    @property
    def env_prefix(self) -> str:
        return "CAIRN_" + re.sub(r"[^A-Z0-9]", "_", self.name.upper())


@dataclass(frozen=True)
class DockerPlan:
    project: str  # compose project name
    chain_id: int
    block_time: float
    subnet: str  # e.g. "172.28.0" (a /24)
    nodes: tuple[DockerNode, ...]
    rpc_node: str  # the node users talk to: host 8545 (HTTP + WS) and 8546 (WS)
    mirror_node: str | None  # the node whose mirror writes the compose Postgres

    def node(self, name: str) -> DockerNode:
        return next(n for n in self.nodes if n.name == name)

    @property
    def bootnode(self) -> DockerNode:
        return next(n for n in self.nodes if n.signs)


# ------------------------------------------------------------------ YAML (no dependency)
_PLAIN = re.compile(r"^[A-Za-z_/][A-Za-z0-9_./-]*$")
_RESERVED = {"true", "false", "yes", "no", "on", "off", "null", "y", "n"}


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    text = str(value)
    if _PLAIN.match(text) and text.lower() not in _RESERVED:
        return text
    return json.dumps(text)


def _is_scalar(value: Any) -> bool:
    return not isinstance(value, dict | list)


def to_yaml(value: Any, indent: int = 0) -> str:
    """Block-style YAML for dicts, lists and scalars; short scalar lists in flow style."""
    pad = " " * indent
    lines: list[str] = []
    if isinstance(value, dict):
        if not value:
            return pad + "{}\n"
        for key, item in value.items():
            head = f"{pad}{_scalar(key)}:"
            if _is_scalar(item):
                lines.append(f"{head} {_scalar(item)}")
            elif not item:
                lines.append(f"{head} {'{}' if isinstance(item, dict) else '[]'}")
            elif isinstance(item, list) and all(_is_scalar(i) for i in item):
                flow = "[" + ", ".join(_scalar(i) for i in item) + "]"
                if len(head) + len(flow) < 100:
                    lines.append(f"{head} {flow}")
                else:
                    lines.append(head)
                    lines += [f"{pad}  - {_scalar(i)}" for i in item]
            else:
                lines.append(head)
                lines.append(to_yaml(item, indent + 2).rstrip("\n"))
        return "\n".join(lines) + "\n"
    if isinstance(value, list):
        for item in value:
            if _is_scalar(item):
                lines.append(f"{pad}- {_scalar(item)}")
            else:
                body = to_yaml(item, indent + 2).rstrip("\n")
                lines.append(f"{pad}- {body.lstrip()}")
        return "\n".join(lines) + "\n"
    return pad + _scalar(value) + "\n"


# ------------------------------------------------------------------ node config in a container
def container_config(plan: DockerPlan, node: DockerNode) -> dict[str, Any]:
    """The node's TOML for a container: paths inside it, RPC on every container interface."""
    config: dict[str, Any] = {
        "datadir": "/data",
        "genesis": "/testnet/genesis.json",
        "http.addr": "0.0.0.0",
        "http.port": CONTAINER_HTTP_PORT,
        "ws.port": CONTAINER_WS_PORT if node.name == plan.rpc_node else 0,
        "p2p.addr": "0.0.0.0",
        "p2p.port": CONTAINER_P2P_PORT,
        "p2p.mdns": True,
        **CONTAINER_RPC,
    }
    if node.signs:
        assert node.keystore is not None
        config["producer.keystore"] = f"/data/keystore/{node.keystore}"
        config["producer.password"] = "/data/password.txt"
    # every node knows the signers: a validator the other validators, a full node all
    boots = [
        f"/ip4/{n.ip}/tcp/{CONTAINER_P2P_PORT}/p2p/{n.peer_id}"
        for n in plan.nodes
        if n.signs and n.name != node.name
    ]
    if boots:
        config["bootnodes"] = ",".join(boots)
    return config


# ------------------------------------------------------------------ compose
def host_ports(plan: DockerPlan) -> dict[str, tuple[str, int]]:
    """(env variable, default) of each published port, by service."""
    ports: dict[str, tuple[str, int]] = {
        "rpc-http": ("CAIRN_RPC_HTTP_PORT", 8545),
        "rpc-ws": ("CAIRN_RPC_WS_PORT", 8546),
    }
    next_port = 8547
    for node in plan.nodes:
        if node.name != plan.rpc_node:
            ports[node.name] = (f"{node.env_prefix}_HTTP_PORT", next_port)
            next_port += 1
    ports["postgres"] = ("CAIRN_POSTGRES_PORT", 5433)
    ports["prometheus"] = ("CAIRN_PROMETHEUS_PORT", 9090)
    ports["grafana"] = ("CAIRN_GRAFANA_PORT", 3000)
    ports["blockscout"] = ("CAIRN_BLOCKSCOUT_PORT", 4000)
    ports["blockscout-frontend"] = ("CAIRN_BLOCKSCOUT_FRONTEND_PORT", 3001)
    return ports


def _publish(ports: dict[str, tuple[str, int]], key: str, container: int) -> str:
    env, default = ports[key]
    return f"${{CAIRN_BIND:-127.0.0.1}}:${{{env}:-{default}}}:{container}"


def _node_healthcheck() -> dict[str, Any]:
    return {
        "test": ["CMD", "cairn-healthcheck"],
        "interval": "3s",
        "timeout": "5s",
        "retries": 5,
        "start_period": "60s",
    }


def compose(plan: DockerPlan, *, postgres: bool) -> dict[str, Any]:
    ports = host_ports(plan)
    image = f"${{CAIRN_IMAGE:-{image_tag()}}}"
    services: dict[str, Any] = {
        # One-shot, as root, no network: copies every node's p2p key (and a signing node's
        # keystore and password) from this folder into the node's volume, owned by the
        # image's user with mode 0600. Host files keep the host user's ownership, which the
        # node's user could not read; the volumes keep the chain across `down` and `up`.
        "setup": {
            "image": image,
            "user": "0:0",
            "entrypoint": ["/bin/sh", "/testnet/docker/setup-volumes.sh"],
            "network_mode": "none",
            "restart": "no",
            "healthcheck": {"disable": True},  # the image's check is for a running node
            "tmpfs": ["/data"],  # else the image's VOLUME /data leaves an anonymous volume
            "volumes": [
                "./:/testnet:ro",
                *[f"{n.name}-data:/volumes/{n.name}" for n in plan.nodes],
            ],
        }
    }
    for node in plan.nodes:
        depends: dict[str, Any] = {"setup": {"condition": "service_completed_successfully"}}
        if not node.signs:
            depends[plan.bootnode.name] = {"condition": "service_healthy"}
        if node.name == plan.mirror_node and postgres:
            # started, not healthy: the mirror retries on its own, the node never waits on it
            depends["postgres"] = {"condition": "service_started"}
        if node.name == plan.rpc_node:
            published = [
                _publish(ports, "rpc-http", CONTAINER_HTTP_PORT),
                _publish(ports, "rpc-ws", CONTAINER_WS_PORT),
            ]
        else:
            published = [_publish(ports, node.name, CONTAINER_HTTP_PORT)]
        service: dict[str, Any] = {
            "image": image,
            "command": ["run", "--config", f"/testnet/{node.name}/config.docker.toml"],
            "volumes": [
                f"{node.name}-data:/data",
                "./genesis.json:/testnet/genesis.json:ro",
                f"./{node.name}/config.docker.toml:/testnet/{node.name}/config.docker.toml:ro",
            ],
            "depends_on": depends,
            "ports": published,
            "networks": {"cairn": {"ipv4_address": node.ip}},
            "healthcheck": _node_healthcheck(),
            "restart": "unless-stopped",
            "stop_grace_period": "30s",
            "labels": {"io.cairn.role": node.role},
        }
        if node.name == plan.mirror_node and postgres:
            service["environment"] = {
                "DATABASE_URL": "postgresql://cairn:${CAIRN_POSTGRES_PASSWORD}@postgres:5432/cairn"
            }
        services[node.name] = service
    if postgres:
        services["postgres"] = {
            "image": f"${{CAIRN_POSTGRES_IMAGE:-{POSTGRES_IMAGE}}}",
            "environment": {
                "POSTGRES_USER": "cairn",
                "POSTGRES_DB": "cairn",
                "POSTGRES_PASSWORD": "${CAIRN_POSTGRES_PASSWORD}",
            },
            "volumes": ["postgres-data:/var/lib/postgresql/data"],
            "ports": [_publish(ports, "postgres", 5432)],
            "networks": ["cairn"],
            "healthcheck": {
                "test": ["CMD", "pg_isready", "-U", "cairn", "-d", "cairn"],
                "interval": "3s",
                "timeout": "3s",
                "retries": 10,
            },
            "restart": "unless-stopped",
        }
    services.update(_observability(plan, ports))
    services.update(_explorer(plan, ports))
    volumes: dict[str, Any] = {f"{n.name}-data": {} for n in plan.nodes}
    if postgres:
        volumes["postgres-data"] = {}
    volumes |= {"prometheus-data": {}, "grafana-data": {}, "blockscout-db-data": {}}
    return {
        "services": services,
        "networks": {
            "cairn": {
                "ipam": {
                    # nodes have fixed addresses below .128; other containers get .128 and up
                    "config": [
                        {"subnet": f"{plan.subnet}.0/24", "ip_range": f"{plan.subnet}.128/25"}
                    ]
                }
            }
        },
        "volumes": volumes,
    }


def _observability(plan: DockerPlan, ports: dict[str, tuple[str, int]]) -> dict[str, Any]:
    return {
        "prometheus": {
            "image": f"${{CAIRN_PROMETHEUS_IMAGE:-{PROMETHEUS_IMAGE}}}",
            "profiles": ["observability"],
            "command": [
                "--config.file=/etc/prometheus/prometheus.yml",
                "--storage.tsdb.path=/prometheus",
                "--storage.tsdb.retention.time=15d",
                "--web.enable-lifecycle",
            ],
            "volumes": [
                "./observability/prometheus.yml:/etc/prometheus/prometheus.yml:ro",
                "./observability/rules:/etc/prometheus/rules:ro",
                "prometheus-data:/prometheus",
            ],
            "ports": [_publish(ports, "prometheus", 9090)],
            "networks": ["cairn"],
            "healthcheck": {
                "test": ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:9090/-/ready"],
                "interval": "5s",
                "timeout": "3s",
                "retries": 10,
            },
            "restart": "unless-stopped",
        },
        "grafana": {
            "image": f"${{CAIRN_GRAFANA_IMAGE:-{GRAFANA_IMAGE}}}",
            "profiles": ["observability"],
            "environment": {
                "GF_SECURITY_ADMIN_USER": "admin",
                "GF_SECURITY_ADMIN_PASSWORD": "${CAIRN_GRAFANA_PASSWORD}",
                "GF_USERS_ALLOW_SIGN_UP": "false",
                "GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH": "/etc/grafana/dashboards/cairn.json",
            },
            "volumes": [
                "./observability/grafana/provisioning:/etc/grafana/provisioning:ro",
                "./observability/grafana/dashboards:/etc/grafana/dashboards:ro",
                "grafana-data:/var/lib/grafana",
            ],
            "ports": [_publish(ports, "grafana", 3000)],
            "depends_on": {"prometheus": {"condition": "service_healthy"}},
            "networks": ["cairn"],
            "healthcheck": {
                "test": [
                    "CMD",
                    "wget",
                    "-q",
                    "-O",
                    "/dev/null",
                    "http://127.0.0.1:3000/api/health",
                ],
                "interval": "5s",
                "timeout": "3s",
                "retries": 10,
            },
            "restart": "unless-stopped",
        },
    }


def _explorer(plan: DockerPlan, ports: dict[str, tuple[str, int]]) -> dict[str, Any]:
    rpc = plan.rpc_node
    backend_port = f"${{{ports['blockscout'][0]}:-{ports['blockscout'][1]}}}"
    return {
        "blockscout-db": {
            "image": f"${{CAIRN_POSTGRES_IMAGE:-{POSTGRES_IMAGE}}}",
            "profiles": ["explorer"],
            "environment": {
                "POSTGRES_USER": "blockscout",
                "POSTGRES_DB": "blockscout",
                "POSTGRES_PASSWORD": "${CAIRN_BLOCKSCOUT_DB_PASSWORD}",
            },
            "volumes": ["blockscout-db-data:/var/lib/postgresql/data"],
            "networks": ["cairn"],
            "healthcheck": {
                "test": ["CMD", "pg_isready", "-U", "blockscout", "-d", "blockscout"],
                "interval": "3s",
                "timeout": "3s",
                "retries": 10,
            },
            "restart": "unless-stopped",
        },
        "blockscout": {
            "image": f"${{CAIRN_BLOCKSCOUT_IMAGE:-{BLOCKSCOUT_IMAGE}}}",
            "profiles": ["explorer"],
            "command": [
                "sh",
                "-c",
                'bin/blockscout eval "Elixir.Explorer.ReleaseTasks.create_and_migrate()" '
                "&& bin/blockscout start",
            ],
            "environment": {
                "DATABASE_URL": "postgresql://blockscout:${CAIRN_BLOCKSCOUT_DB_PASSWORD}"
                "@blockscout-db:5432/blockscout",
                "ECTO_USE_SSL": "false",
                "SECRET_KEY_BASE": "${CAIRN_BLOCKSCOUT_SECRET_KEY_BASE}",
                "CHAIN_ID": str(plan.chain_id),
                "NETWORK": "Cairn",
                "SUBNETWORK": plan.project,
                "COIN": "ETH",
                "ETHEREUM_JSONRPC_VARIANT": "geth",
                "ETHEREUM_JSONRPC_HTTP_URL": f"http://{rpc}:{CONTAINER_HTTP_PORT}/",
                "ETHEREUM_JSONRPC_TRACE_URL": f"http://{rpc}:{CONTAINER_HTTP_PORT}/",
                "ETHEREUM_JSONRPC_WS_URL": f"ws://{rpc}:{CONTAINER_WS_PORT}/",
                # internal transactions from debug_traceTransaction with the callTracer
                "INDEXER_INTERNAL_TRANSACTIONS_TRACER_TYPE": "call_tracer",
                "ETHEREUM_JSONRPC_DEBUG_TRACE_TRANSACTION_TIMEOUT": "20s",
                "INDEXER_DISABLE_PENDING_TRANSACTIONS_FETCHER": "true",
                "DISABLE_EXCHANGE_RATES": "true",
                "MICROSERVICE_SC_VERIFIER_ENABLED": "false",
                "API_V2_ENABLED": "true",
                "PORT": "4000",
            },
            "depends_on": {
                "blockscout-db": {"condition": "service_healthy"},
                rpc: {"condition": "service_healthy"},
            },
            "ports": [_publish(ports, "blockscout", 4000)],
            "networks": ["cairn"],
            "restart": "unless-stopped",
        },
        "blockscout-frontend": {
            "image": f"${{CAIRN_BLOCKSCOUT_FRONTEND_IMAGE:-{BLOCKSCOUT_FRONTEND_IMAGE}}}",
            "profiles": ["explorer"],
            "environment": {
                "NEXT_PUBLIC_API_HOST": "localhost",
                "NEXT_PUBLIC_API_PORT": backend_port,
                "NEXT_PUBLIC_API_PROTOCOL": "http",
                "NEXT_PUBLIC_API_WEBSOCKET_PROTOCOL": "ws",
                "NEXT_PUBLIC_NETWORK_NAME": "Cairn",
                "NEXT_PUBLIC_NETWORK_ID": str(plan.chain_id),
                "NEXT_PUBLIC_NETWORK_CURRENCY_NAME": "Ether",
                "NEXT_PUBLIC_NETWORK_CURRENCY_SYMBOL": "ETH",
                "NEXT_PUBLIC_NETWORK_CURRENCY_DECIMALS": "18",
                "NEXT_PUBLIC_IS_TESTNET": "true",
                "NEXT_PUBLIC_APP_HOST": "localhost",
                "NEXT_PUBLIC_APP_PORT": f"${{{ports['blockscout-frontend'][0]}:-"
                f"{ports['blockscout-frontend'][1]}}}",
                "NEXT_PUBLIC_APP_PROTOCOL": "http",
                "NEXT_PUBLIC_NETWORK_RPC_URL": "http://localhost:${CAIRN_RPC_HTTP_PORT:-8545}",
            },
            "depends_on": {"blockscout": {"condition": "service_started"}},
            "ports": [_publish(ports, "blockscout-frontend", 3000)],
            "networks": ["cairn"],
            "restart": "unless-stopped",
        },
    }


def env_file(plan: DockerPlan, secrets_: dict[str, str]) -> str:
    """`.env` beside the compose file: project name, image, bind address, every published
    port (change one here when it is taken on this machine) and generated passwords."""
    lines = [
        "# Written by `cairn testnet init`. Compose reads it from this folder; mode 0600, as it",
        "# holds the Postgres and Grafana passwords of this network.",
        f"COMPOSE_PROJECT_NAME={plan.project}",
        f"CAIRN_IMAGE={image_tag()}",
        "# 127.0.0.1 publishes every port on this machine only; 0.0.0.0 to every interface",
        "CAIRN_BIND=127.0.0.1",
    ]
    for env, default in host_ports(plan).values():
        lines.append(f"{env}={default}")
    lines += [f"{key}={value}" for key, value in secrets_.items()]
    return "\n".join(lines) + "\n"


def compose_text(plan: DockerPlan, *, postgres: bool) -> str:
    header = [
        "# Written by `cairn testnet init` (cairn/node/testnet_compose.py); see docs/docker.md.",
        f"# {len(plan.nodes)} nodes: {', '.join(f'{n.name} ({n.role})' for n in plan.nodes)}.",
        f"# RPC: {plan.rpc_node} on 127.0.0.1:8545 (HTTP + WebSocket) and :8546 (WebSocket);",
        "# ports, bind address, image and passwords are in .env beside this file.",
        "#   cairn testnet up --docker --dir .     (builds the image if missing, waits for health)",
        "#   docker compose up -d                  (the same, by hand, once the image exists)",
        "#   docker compose --profile observability up -d    Prometheus + Grafana",
        "#   docker compose --profile explorer up -d         Blockscout",
    ]
    return "\n".join(header) + "\n" + to_yaml(compose(plan, postgres=postgres))


# ------------------------------------------------------------------ Prometheus and Grafana
def stall_seconds(block_time: float) -> int:
    """A head that has not moved for this long while transactions wait is stalled: 5 block
    times, at least 10 s (an automine network mines a pending transaction at once)."""
    return max(10, round(5 * block_time))


def render_rules(block_time: float, nodes: int) -> str:
    """deploy/prometheus/cairn-rules.yml with this network's figures filled in."""
    template = (deploy_dir() / "prometheus" / "cairn-rules.yml").read_text()
    stall = stall_seconds(block_time)
    values = {
        "@STALL_SECONDS@": str(stall),
        "@STALL_FOR@": f"{stall}s",
        "@BLOCK_TIME@": f"{block_time:g}",
        "@BEHIND_BLOCKS@": "10",
        "@MIN_PEERS@": str(max(1, min(2, nodes - 1))),
    }
    for key, value in values.items():
        template = template.replace(key, value)
    return template


def prometheus_config(plan: DockerPlan) -> dict[str, Any]:
    return {
        "global": {"scrape_interval": "5s", "evaluation_interval": "5s"},
        "rule_files": ["/etc/prometheus/rules/*.yml"],
        "scrape_configs": [
            {
                "job_name": "cairn",
                "static_configs": [
                    {
                        "targets": [f"{n.name}:{CONTAINER_HTTP_PORT}"],
                        "labels": {"node": n.name, "role": n.role},
                    }
                    for n in plan.nodes
                ],
            }
        ],
    }


def write_observability(root: Path, plan: DockerPlan) -> None:
    out = root / "observability"
    (out / "rules").mkdir(parents=True, exist_ok=True)
    (out / "prometheus.yml").write_text(
        "# Written by `cairn testnet init`: scrapes every node's /metrics.\n"
        + to_yaml(prometheus_config(plan))
    )
    (out / "rules" / "cairn.yml").write_text(render_rules(plan.block_time, len(plan.nodes)))
    grafana = deploy_dir() / "grafana"
    for sub in ("provisioning", "dashboards"):
        target = out / "grafana" / sub
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(grafana / sub, target)


# ------------------------------------------------------------------ Kubernetes
def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _k8s_config(role: str) -> dict[str, Any]:
    config: dict[str, Any] = {
        "datadir": "/data",
        "genesis": "/config/genesis.json",
        "http.addr": "0.0.0.0",
        "http.port": CONTAINER_HTTP_PORT,
        "ws.port": CONTAINER_WS_PORT,
        "p2p.addr": "0.0.0.0",
        "p2p.port": CONTAINER_P2P_PORT,
        **CONTAINER_RPC,
    }
    if role == "sequencer":  # its key straight from the Secret
        config["producer.keystore"] = "/keys/keystore.json"
        config["producer.password"] = "/keys/password.txt"
    elif role == "validator":  # each pod's own key, copied by its init container
        config["producer.keystore"] = "/data/keystore/validator.json"
        config["producer.password"] = "/data/password.txt"
    return config


def _k8s_pod(node: DockerNode) -> str:
    """The DNS name of the pod that runs `node` (validator-1 is cairn-validator-0)."""
    if node.role == "validator":
        ordinal = int(node.name.rsplit("-", 1)[1]) - 1
        return f"cairn-validator-{ordinal}.cairn-validator"
    return "cairn-sequencer-0.cairn-sequencer"


def _k8s_keys(root: Path, plan: DockerPlan) -> dict[str, str]:
    """The Secret's files: the sequencer's keystore.json, password.txt and nodekey, or
    validator-<n>.keystore.json, .password and .nodekey for each validator."""
    signers = [n for n in plan.nodes if n.signs]
    data: dict[str, str] = {}
    for node in signers:
        assert node.keystore is not None
        prefix = f"{node.name}." if node.role == "validator" else ""
        password = "password" if node.role == "validator" else "password.txt"
        data[f"{prefix}keystore.json"] = _b64(
            (root / node.name / "keystore" / node.keystore).read_bytes()
        )
        data[f"{prefix}{password}"] = _b64((root / node.name / "password.txt").read_bytes())
        data[f"{prefix}nodekey"] = _b64((root / node.name / "p2p" / "nodekey").read_bytes())
    return data


def write_kubernetes(root: Path, plan: DockerPlan, *, fullnodes: int) -> None:
    """k8s/: a ConfigMap (genesis, role configs, the bootnode list and the script that
    resolves it), a Secret (the signers' keys and passwords) and the manifests of deploy/k8s
    for this network's roles with its values filled in. `kubectl apply -k k8s/`."""
    out = root / "k8s"
    out.mkdir(exist_ok=True)
    signers = [n for n in plan.nodes if n.signs]
    signer_role = signers[0].role
    templates = deploy_dir() / "k8s"
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "cairn-network", "labels": {"app.kubernetes.io/part-of": "cairn"}},
        "data": {
            "genesis.json": (root / "genesis.json").read_text(),
            **{f"{role}.toml": _toml(_k8s_config(role)) for role in (signer_role, "fullnode")},
            "bootnodes.txt": "".join(f"{_k8s_pod(n)} {n.peer_id}\n" for n in signers),
            "bootnodes.sh": (templates / "bootnodes.sh").read_text(),
        },
    }
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "cairn-keys", "labels": {"app.kubernetes.io/part-of": "cairn"}},
        "type": "Opaque",
        "data": _k8s_keys(root, plan),
    }
    header = "# Written by `cairn testnet init`: this network's values. Holds the signers' keys.\n"
    _write_private(out / "network.yaml", header + to_yaml(config_map) + "---\n" + to_yaml(secret))
    values = {
        "@IMAGE@": image_tag(),
        "@FULLNODES@": str(fullnodes),
        "@VALIDATORS@": str(len(signers)),
        "@SIGNERS_MANIFEST@": f"{signer_role}.yaml",
        "@CHAIN_ID@": str(plan.chain_id),
    }
    other = "sequencer" if signer_role == "validator" else "validator"
    for template in sorted(templates.glob("*.yaml")):
        if template.stem == other:
            continue
        text = template.read_text()
        for key, value in values.items():
            text = text.replace(key, value)
        (out / template.name).write_text(text)


# ------------------------------------------------------------------ everything, for init
def _write_private(path: Path, text: str) -> None:
    """A file only its owner can read from its first byte on: created 0600, and an existing
    one (--force) narrowed before anything is written to it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as fh:
        os.fchmod(fh.fileno(), 0o600)
        fh.write(text)


def _toml(entries: dict[str, Any]) -> str:
    lines = ["# written by `cairn testnet init` for the node's container; CAIRN_* env overrides"]
    for key, value in entries.items():
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, int):
            text = str(value)
        else:
            text = json.dumps(str(value))
        lines.append(f'"{key}" = {text}')
    return "\n".join(lines) + "\n"


def write_docker_files(root: Path, plan: DockerPlan, *, mirror: bool, fullnodes: int) -> None:
    """Every file Docker and Kubernetes need, under the testnet folder `root`."""
    for node in plan.nodes:
        (root / node.name / "config.docker.toml").write_text(_toml(container_config(plan, node)))
    docker_dir = root / "docker"
    docker_dir.mkdir(exist_ok=True)
    shutil.copy(deploy_dir() / "docker" / "setup-volumes.sh", docker_dir / "setup-volumes.sh")
    (root / "docker-compose.yml").write_text(compose_text(plan, postgres=mirror))
    passwords = {
        "CAIRN_POSTGRES_PASSWORD": secrets.token_hex(16),
        "CAIRN_GRAFANA_PASSWORD": secrets.token_hex(12),
        "CAIRN_BLOCKSCOUT_DB_PASSWORD": secrets.token_hex(16),
        "CAIRN_BLOCKSCOUT_SECRET_KEY_BASE": secrets.token_hex(32),
    }
    _write_private(root / ".env", env_file(plan, passwords))
    write_observability(root, plan)
    write_kubernetes(root, plan, fullnodes=fullnodes)
    # Containers read these through bind mounts as their own users (the node as uid 10001,
    # Prometheus as nobody, Grafana as 472): readable by all, whatever the umask was.
    shared = [root / "genesis.json", root / "docker-compose.yml"]
    shared += [root / n.name / "config.docker.toml" for n in plan.nodes]
    shared += list((root / "observability").rglob("*"))
    for path in shared:
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
