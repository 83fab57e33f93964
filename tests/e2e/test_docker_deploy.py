"""What `cairn testnet init` writes beside the compose network, checked without a cluster or
a registry: the Grafana dashboard and alert rules only name metrics a live node exports, the
Kubernetes manifests hang together (ports, probes, claims, the Secret and ConfigMap they
reference, a keystore the password opens), and `compose config` accepts the explorer profile
with Blockscout pointed at the RPC node."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import tomllib
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import eth_keyfile
import pytest
import yaml
from eth_keys import keys

from cairn.errors import ConfigError
from cairn.node.config import load_toml
from cairn.node.testnet_compose import IMAGE_UID, image_tag
from cairn.node.testnet_docker import compose_cli
from tests.support.docker import compose
from tests.support.proc import REPO, NodeProcess, run_cli

pytestmark = pytest.mark.e2e

DASHBOARD = REPO / "deploy" / "grafana" / "dashboards" / "cairn.json"
METRIC = re.compile(r"\b((?:cairn|process)_[a-z0-9_]+|up)\b(?!\s*\()")


@pytest.fixture(scope="module")
def testnet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("deploy") / "net"
    done = run_cli("testnet", "init", "--sequencer", "--fullnodes", "3", "--dir", str(root))
    assert done.returncode == 0, done.stderr
    return root


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[set[str]]:
    """Metric families of a live dev node with p2p on and a mirror (to nowhere) configured."""
    node = NodeProcess(
        tmp_path_factory.mktemp("metrics") / "node",
        "dev",
        "--p2p.port", "0", "--p2p.addr", "127.0.0.1",
        "--mirror.url", "postgresql://cairn:none@127.0.0.1:1/cairn",
    )  # fmt: skip
    node.start()
    try:
        with urllib.request.urlopen(node.url + "/metrics", timeout=10) as answer:
            text = answer.read().decode()
    finally:
        node.stop()
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            name, kind = line.split()[2:4]
            names.add(name)
            if kind == "counter":
                names.add(name + "_total")
    yield names


def _metric_names(expr: str) -> set[str]:
    names = set()
    for name in METRIC.findall(expr):
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        names.add(base)
    return names


def _known(name: str, exported: set[str]) -> bool:
    return name == "up" or name in exported


def test_dashboard_panels_query_real_metrics(exported: set[str]) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    datasource = yaml.safe_load(
        (REPO / "deploy/grafana/provisioning/datasources/cairn.yml").read_text()
    )["datasources"][0]
    provider = yaml.safe_load(
        (REPO / "deploy/grafana/provisioning/dashboards/cairn.yml").read_text()
    )["providers"][0]
    assert provider["options"]["path"] == "/etc/grafana/dashboards"
    assert datasource["url"] == "http://prometheus:9090" and datasource["type"] == "prometheus"
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    used: set[str] = set()
    for panel in panels:
        assert panel["datasource"]["uid"] == datasource["uid"], panel["title"]
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == datasource["uid"]
            names = _metric_names(target["expr"])
            unknown = {n for n in names if not _known(n, exported)}
            assert not unknown, f"{panel['title']}: {unknown} is no metric of the node"
            used |= names
    titles = " ".join(p["title"].lower() for p in panels)
    for topic in ("head", "block interval", "per block", "rpc", "latency", "error", "peers"):
        assert topic in titles, topic
    for name in (
        "cairn_head_block_number",
        "cairn_block_interval_seconds",
        "cairn_transactions_committed_total",
        "cairn_rpc_requests_total",
        "cairn_rpc_errors_total",
        "cairn_rpc_request_duration_seconds",
        "cairn_p2p_peers",
        "cairn_mirror_lag_blocks",
        "process_resident_memory_bytes",
    ):
        assert name in used, name


def test_alert_rules_query_real_metrics(testnet: Path, exported: set[str]) -> None:
    rules = yaml.safe_load((testnet / "observability/rules/cairn.yml").read_text())
    alerts = {r["alert"]: r for g in rules["groups"] for r in g["rules"]}
    for wanted in (
        "CairnNodeDown",
        "CairnHeadStalled",
        "CairnFewPeers",
        "CairnMirrorLagging",
        "CairnTxpoolGrowing",
        "CairnLowBalance",
    ):
        assert wanted in alerts, wanted
    for name, rule in alerts.items():
        unknown = {n for n in _metric_names(rule["expr"]) if not _known(n, exported)}
        assert not unknown, f"{name}: {unknown}"
    assert "cairn_watched_balance_wei" in alerts["CairnLowBalance"]["expr"]
    scrape = yaml.safe_load((testnet / "observability/prometheus.yml").read_text())
    targets = [t for c in scrape["scrape_configs"][0]["static_configs"] for t in c["targets"]]
    assert targets == [f"{n}:8545" for n in ("sequencer", "fullnode-1", "fullnode-2", "fullnode-3")]


def _documents(folder: Path) -> Iterator[dict[str, Any]]:
    for path in sorted(folder.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") != "Kustomization":
                yield doc


@pytest.fixture(scope="module")
def validator_testnet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("deploy-bft") / "net"
    # four scrypt keystores: slow on a loaded machine
    done = run_cli(
        "testnet", "init", "--validators", "4", "--fullnodes", "2", "--dir", str(root), timeout=300
    )
    assert done.returncode == 0, done.stderr
    return root


def test_kubernetes_manifests_hang_together(testnet: Path) -> None:
    sets, config_map, secret = _check_manifests(testnet, "sequencer", fullnodes=3)
    assert sets["cairn-sequencer"]["spec"]["replicas"] == 1
    sequencer_config = tomllib.loads(config_map["sequencer.toml"])
    assert sequencer_config["producer.keystore"] == "/keys/keystore.json"
    assert sequencer_config["producer.password"] == "/keys/password.txt"
    _opens(secret["keystore.json"], secret["password.txt"], config_map["genesis.json"])


def test_kubernetes_manifests_of_a_validator_network(validator_testnet: Path) -> None:
    sets, config_map, secret = _check_manifests(validator_testnet, "validator", fullnodes=2)
    assert sets["cairn-validator"]["spec"]["replicas"] == 4
    config = tomllib.loads(config_map["validator.toml"])
    assert config["producer.keystore"] == "/data/keystore/validator.json"
    assert config["producer.password"] == "/data/password.txt"
    # pod k takes validator-(k+1)'s files, which the Secret holds and which open to the
    # genesis validator of that name
    init = sets["cairn-validator"]["spec"]["template"]["spec"]["initContainers"][0]
    script = " ".join(init["args"])
    assert "n=$(( ${HOSTNAME##*-} + 1 ))" in script
    taken = set(re.findall(r"/keys/(validator-\$n\.[\w.]+)", script))
    assert taken == {"validator-$n.nodekey", "validator-$n.keystore.json", "validator-$n.password"}
    manifest = json.loads((validator_testnet / "testnet.json").read_text())
    for k in range(4):
        name = f"validator-{k + 1}"
        for file in taken:
            assert file.replace("$n", str(k + 1)) in secret, file
        _opens(
            secret[f"{name}.keystore.json"], secret[f"{name}.password"], config_map["genesis.json"]
        )
        node = next(n for n in manifest["nodes"] if n["name"] == name)
        assert (
            f"cairn-validator-{k}.cairn-validator {node['peerId']}" in config_map["bootnodes.txt"]
        )


def test_the_bootnode_script_resolves_every_other_pod(tmp_path: Path) -> None:
    listing = tmp_path / "bootnodes.txt"
    listing.write_text("localhost PEER-A\nme.cairn-validator PEER-ME\n")
    done = subprocess.run(
        ["sh", str(REPO / "deploy" / "k8s" / "bootnodes.sh"), str(listing)],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/usr/bin:/bin", "HOSTNAME": "me"},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "/ip4/127.0.0.1/tcp/30333/p2p/PEER-A"


def _opens(keystore: bytes, password: bytes, genesis_json: str) -> None:
    """The password decrypts the keystore to a signer the genesis names."""
    key = eth_keyfile.decode_keyfile_json(
        json.loads(keystore), password.decode().splitlines()[0].encode()
    )
    signer = keys.PrivateKey(key).public_key.to_checksum_address().lower()
    assert signer in json.dumps(json.loads(genesis_json)).lower()


def _check_manifests(
    testnet: Path, signer_role: str, *, fullnodes: int
) -> tuple[dict[str, dict[str, Any]], dict[str, str], dict[str, bytes]]:
    """What every generated k8s/ folder must hold; its StatefulSets, ConfigMap data and
    decoded Secret data."""
    folder = testnet / "k8s"
    text = "".join(p.read_text() for p in folder.glob("*.yaml"))
    assert not re.search(r"@[A-Z_]+@", text), "a template placeholder was left"
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    assert all((folder / r).is_file() for r in kustomization["resources"])
    assert f"{signer_role}.yaml" in kustomization["resources"]
    assert (folder / "network.yaml").stat().st_mode & 0o077 == 0  # it holds the signers' keys
    docs = list(_documents(folder))
    by_kind: dict[str, dict[str, dict[str, Any]]] = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], {})[doc["metadata"]["name"]] = doc
    config_map = by_kind["ConfigMap"]["cairn-network"]["data"]
    secret = {k: base64.b64decode(v) for k, v in by_kind["Secret"]["cairn-keys"]["data"].items()}
    for role in (signer_role, "fullnode"):
        config = tomllib.loads(config_map[f"{role}.toml"])
        path = testnet / f"{role}.check.toml"
        path.write_text(config_map[f"{role}.toml"])
        try:
            load_toml(path)  # only options the node knows
        except ConfigError as exc:
            pytest.fail(f"{role}.toml: {exc}")
        assert config["genesis"] == "/config/genesis.json" and config["datadir"] == "/data"
    assert config_map["bootnodes.sh"] == (REPO / "deploy" / "k8s" / "bootnodes.sh").read_text()

    services = by_kind["Service"]
    sets = by_kind["StatefulSet"]
    assert set(sets) == {f"cairn-{signer_role}", "cairn-fullnode"}
    assert sets["cairn-fullnode"]["spec"]["replicas"] == fullnodes
    for name, sts in sets.items():
        spec = sts["spec"]
        pod = spec["template"]["spec"]
        labels = spec["template"]["metadata"]["labels"]
        assert spec["selector"]["matchLabels"].items() <= labels.items(), name
        headless = services[spec["serviceName"]]
        assert headless["spec"]["clusterIP"] == "None"
        assert headless["spec"]["selector"].items() <= labels.items()
        assert pod["securityContext"]["runAsUser"] == IMAGE_UID
        assert pod["securityContext"]["runAsNonRoot"] is True
        claims = {c["metadata"]["name"]: c for c in spec["volumeClaimTemplates"]}
        assert claims["data"]["spec"]["resources"]["requests"]["storage"]
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for volume in volumes.values():
            if "secret" in volume:
                assert volume["secret"]["secretName"] in by_kind["Secret"]
            if "configMap" in volume:
                assert volume["configMap"]["name"] in by_kind["ConfigMap"]
        for container in pod.get("initContainers", []) + pod["containers"]:
            assert container["image"] == image_tag()
            for mount in container["volumeMounts"]:
                assert mount["name"] in volumes or mount["name"] in claims, mount
        node = next(c for c in pod["containers"] if c["name"] == "node")
        ports = {p["name"]: p["containerPort"] for p in node["ports"]}
        assert ports["rpc"] == 8545 and ports["p2p"] == 30333
        assert node["livenessProbe"]["httpGet"] == {"path": "/health", "port": "rpc"}
        assert node["readinessProbe"]["httpGet"] == {"path": "/health/ready", "port": "rpc"}
        assert node["startupProbe"]["httpGet"]["port"] == "rpc"
        mounted = {m["mountPath"]: m["name"] for m in node["volumeMounts"]}
        assert mounted["/data"] == "data" and volumes[mounted["/config"]]["configMap"]
        config_file = " ".join(node.get("args", []) + node.get("command", []))
        role_toml = re.search(r"/config/(\w+\.toml)", config_file)
        assert role_toml is not None and role_toml.group(1) in config_map, config_file
        if name == "cairn-sequencer":
            assert volumes[mounted["/keys"]]["secret"]["secretName"] == "cairn-keys"
        if name != "cairn-sequencer":  # dials the signers by the listing in the ConfigMap
            assert '--bootnodes "$(sh /config/bootnodes.sh)"' in config_file
        # every Service port of these pods names a port the container has
        for service in services.values():
            if service["spec"]["selector"].items() <= labels.items():
                for port in service["spec"]["ports"]:
                    assert port["targetPort"] in ports, (service["metadata"]["name"], port)
    assert services["cairn-rpc"]["spec"]["ports"][1]["port"] == 8546
    return sets, config_map, secret


def test_compose_file_as_written(testnet: Path) -> None:
    services = yaml.safe_load((testnet / "docker-compose.yml").read_text())["services"]
    nodes = {"sequencer", "fullnode-1", "fullnode-2", "fullnode-3"}
    for name in nodes:
        service = services[name]
        assert service["healthcheck"]["test"] == ["CMD", "cairn-healthcheck"]
        assert service["restart"] == "unless-stopped"
        assert service["depends_on"]["setup"]["condition"] == "service_completed_successfully"
        if name != "sequencer":
            assert service["depends_on"]["sequencer"]["condition"] == "service_healthy"
        assert f"{name}-data:/data" in service["volumes"]
    assert services["fullnode-1"]["ports"][0].endswith("${CAIRN_RPC_HTTP_PORT:-8545}:8545")
    assert services["fullnode-1"]["ports"][1].endswith("${CAIRN_RPC_WS_PORT:-8546}:8546")
    assert "postgres:5432" in services["fullnode-1"]["environment"]["DATABASE_URL"]
    for name, service in services.items():
        image = service["image"]
        assert ":latest" not in image and re.search(r":-[^}]+:[\w.-]+}$", image), (name, image)
        for dependency in service.get("depends_on", {}):
            assert dependency in services, (name, dependency)
        for port in service.get("ports", []):
            assert port.startswith("${CAIRN_BIND:-127.0.0.1}:"), (name, port)
    assert services["setup"]["user"] == "0:0" and services["setup"]["network_mode"] == "none"
    env = (testnet / ".env").read_text()
    assert (testnet / ".env").stat().st_mode & 0o077 == 0
    assert re.search(r"^CAIRN_POSTGRES_PASSWORD=\w{16,}$", env, re.M)


def test_explorer_profile_in_compose_config(testnet: Path) -> None:
    try:
        compose_cli()
    except ConfigError as exc:
        pytest.skip(str(exc))
    done = compose(testnet, "--profile", "explorer", "--profile", "observability", "config")
    assert done.returncode == 0, done.stderr
    services = yaml.safe_load(done.stdout)["services"]
    backend = services["blockscout"]["environment"]
    assert backend["ETHEREUM_JSONRPC_VARIANT"] == "geth"
    assert backend["INDEXER_INTERNAL_TRANSACTIONS_TRACER_TYPE"] == "call_tracer"
    assert backend["ETHEREUM_JSONRPC_HTTP_URL"] == "http://fullnode-1:8545/"
    assert backend["ETHEREUM_JSONRPC_WS_URL"] == "ws://fullnode-1:8546/"
    assert backend["CHAIN_ID"] == "31337"
    assert "@blockscout-db:5432/blockscout" in backend["DATABASE_URL"]
    assert "${" not in backend["DATABASE_URL"]  # the password came from .env
    assert services["blockscout"]["depends_on"]["fullnode-1"]["condition"] == "service_healthy"
    frontend = services["blockscout-frontend"]["environment"]
    assert frontend["NEXT_PUBLIC_NETWORK_ID"] == "31337"
    assert {"prometheus", "grafana", "blockscout-db"} <= set(services)
    grafana_volumes = " ".join(str(v) for v in services["grafana"]["volumes"])
    assert "provisioning" in grafana_volumes and "dashboards" in grafana_volumes
