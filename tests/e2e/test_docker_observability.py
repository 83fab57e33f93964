"""The Prometheus side of a testnet: the rules and scrape config `cairn testnet init` writes
pass promtool (Debian's prometheus package), and the head-stalled alert, evaluated by a real
Prometheus scraping live nodes on loopback, fires for a node whose head cannot move while a
transaction waits, and stays silent for a producing node that got a transaction too."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.chain import transfer
from tests.support.proc import NodeProcess, free_port, run_cli
from tests.support.wait import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed (Debian: apt-get install prometheus)")
    return path


@pytest.fixture(scope="module")
def testnet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("obs") / "net"
    args = ["--sequencer", "--fullnodes", "2", "--block-time", "1", "--dir", str(root)]
    done = run_cli("testnet", "init", *args)
    assert done.returncode == 0, done.stderr
    return root


def test_rules_and_config_pass_promtool(testnet: Path) -> None:
    promtool = _need("promtool")
    rules = testnet / "observability" / "rules" / "cairn.yml"
    checked = subprocess.run(
        [promtool, "check", "rules", str(rules)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 9 rules found" in checked.stdout
    text = rules.read_text()
    assert "@" not in text.replace("{{", "").split("groups:", 1)[1], "a placeholder was left"
    assert "[10s]" in text  # 5 block times of 1 s, at least 10 s
    config = subprocess.run(
        [promtool, "check", "config", str(testnet / "observability" / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert config.returncode == 0, config.stdout + config.stderr


class Prometheus:
    """Debian's prometheus binary on loopback, its data in a temp folder."""

    def __init__(self, folder: Path, targets: dict[str, int], rules: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        folder.mkdir(parents=True)
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(rules)],
            "scrape_configs": [
                {
                    "job_name": "cairn",
                    "static_configs": [
                        {"targets": [f"127.0.0.1:{port}"], "labels": {"node": name}}
                        for name, port in targets.items()
                    ],
                }
            ],
        }
        (folder / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
        self.log = (folder / "prometheus.log").open("wb")
        self.proc = subprocess.Popen(
            [
                _need("prometheus"),
                f"--config.file={folder / 'prometheus.yml'}",
                f"--storage.tsdb.path={folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=5) as answer:
            return json.loads(answer.read())["data"]

    def firing(self, alert: str) -> set[str]:
        return {
            a["labels"]["node"]
            for a in self.get("/api/v1/alerts")["alerts"]
            if a["labels"]["alertname"] == alert and a["state"] == "firing"
        }

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@pytest.fixture
def nodes(testnet: Path, tmp_path: Path) -> Iterator[tuple[NodeProcess, NodeProcess]]:
    """A producing dev chain, and a full node of the testnet that has no way to its producer."""
    producing = NodeProcess(tmp_path / "producing", "dev")
    stuck = NodeProcess(
        tmp_path / "stuck", "run", "--genesis", str(testnet / "genesis.json"), "--nodiscover"
    )
    try:
        producing.start()
        stuck.start()
        yield producing, stuck
    finally:
        producing.stop()
        stuck.stop()


def test_head_stalled_alert_on_live_nodes(
    testnet: Path, nodes: tuple[NodeProcess, NodeProcess], tmp_path: Path
) -> None:
    producing, stuck = nodes
    rules = testnet / "observability" / "rules" / "cairn.yml"
    prometheus = Prometheus(
        tmp_path / "prometheus",
        {"producing": producing.http_port, "stuck": stuck.http_port},
        rules,
    )
    try:

        def scraped() -> bool:
            result = prometheus.get('/api/v1/query?query=up{job="cairn"}')["result"]
            return len(result) == 2 and all(r["value"][1] == "1" for r in result)

        wait_until(scraped, timeout=60, interval=0.5, message="Prometheus scraping both nodes")
        # both get a transaction: the producer mines it, the stuck node can only hold it
        producing.call("eth_sendRawTransaction", "0x" + transfer(0, 0).hex())
        stuck.call("eth_sendRawTransaction", "0x" + transfer(1, 0).hex())
        pending = 'cairn_txpool_transactions{kind="pending",node="stuck"}'
        wait_until(
            lambda: (
                prometheus.get(f"/api/v1/query?query={pending}")["result"][0]["value"][1] == "1"
            ),
            timeout=30,
            interval=0.5,
            message="the stuck node's pending transaction in Prometheus",
        )
        fired = wait_until(
            lambda: prometheus.firing("CairnHeadStalled"),
            timeout=60,
            interval=1,
            message="CairnHeadStalled to fire",
        )
        assert fired == {"stuck"}
        assert int(str(producing.call("eth_blockNumber")), 16) == 1
        rule_groups = prometheus.get("/api/v1/rules")["groups"]
        health = {r["name"]: r["health"] for g in rule_groups for r in g["rules"]}
        assert health["CairnHeadStalled"] == "ok" and len(health) == 9, health
    finally:
        prometheus.stop()
