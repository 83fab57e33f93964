"""The faucet of a running node: refuses clearly while empty, funds an address, refuses the
same address and the same client IP (behind a trusted proxy) inside the cooldown, keeps the
cooldowns across a restart, says when it runs dry; its page, driven by headless Chromium,
makes a drip that lands in a block; its metrics."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from eth_keys.datatypes import PrivateKey
from eth_utils import to_checksum_address
from prometheus_client.parser import text_string_to_metric_families

from cairn.node.keys import save_keystore
from tests.support.chain import transfer
from tests.support.net import LocalNet, wait_receipt
from tests.support.proc import NodeProcess, free_port
from tests.support.wait import wait_until

pytestmark = pytest.mark.e2e

ETH = 10**18
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def ask(base: str, address: object, forwarded_for: str | None = None) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/json"}
    if forwarded_for is not None:
        headers["X-Forwarded-For"] = forwarded_for
    request = urllib.request.Request(
        base + "/faucet", data=json.dumps({"address": address}).encode(), headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        body = json.loads(exc.read())
        if exc.code == 429:
            assert int(exc.headers["Retry-After"]) == body["retryAfter"]
        return exc.code, body


def ask_from(port: int, source: str, address: str, forwarded_for: str) -> tuple[int, str]:
    """POST from the loopback address `source` (not a trusted proxy of the node)."""
    connection = http.client.HTTPConnection(
        "127.0.0.1", port, timeout=30, source_address=(source, 0)
    )
    try:
        connection.request(
            "POST",
            "/faucet",
            body=json.dumps({"address": address}),
            headers={"Content-Type": "application/json", "X-Forwarded-For": forwarded_for},
        )
        answer = connection.getresponse()
        return answer.status, json.loads(answer.read())[
            "reason" if answer.status != 200 else "txHash"
        ]
    finally:
        connection.close()


def get_json(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def mined(node: NodeProcess, tx_hash: str) -> dict[str, Any]:
    receipt = wait_until(
        lambda: node.call("eth_getTransactionReceipt", tx_hash), timeout=30, message=tx_hash
    )
    assert isinstance(receipt, dict) and receipt["status"] == "0x1", receipt
    return receipt


def balance(node: NodeProcess, address: str) -> int:
    return int(str(node.call("eth_getBalance", address, "latest")), 16)


def faucet_metrics(node: NodeProcess) -> dict[tuple[str, str], float]:
    with urllib.request.urlopen(node.url + "/metrics", timeout=10) as answer:
        text = answer.read().decode()
    found: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith("cairn_faucet") or sample.name.startswith("cairn_watched"):
                found[
                    (sample.name, sample.labels.get("reason", sample.labels.get("label", "")))
                ] = sample.value
    return found


def drip_from_page(url: str, address: str, profile: Path) -> str:
    """Open the faucet page in headless Chromium, submit `address`, return the tx hash shown."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage", f"--user-data-dir={profile}",
    ):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.get(url)
        wait = WebDriverWait(driver, 30)
        wait.until(lambda d: "ETH per request" in d.find_element(By.ID, "terms").text)
        driver.find_element(By.ID, "address").send_keys(address)
        driver.find_element(By.ID, "send").click()
        wait.until(lambda d: d.find_element(By.ID, "result").text.startswith("Sent "))
        assert address in driver.find_element(By.ID, "result").text
        tx_hash = driver.find_element(By.ID, "result").get_attribute("data-tx-hash")
        assert tx_hash is not None
        return tx_hash
    finally:
        driver.quit()


@pytest.mark.skipif(
    not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
    reason="chromium and chromium-driver are installed by scripts/system-deps.sh",
)
def faucet_node(tmp_path: Path, cooldown: str) -> tuple[NodeProcess, str, str, int]:
    """A dev node with a faucet of 1 ETH drips behind a trusted proxy (127.0.0.1): the node,
    the faucet's address, its base URL and port."""
    key = PrivateKey(os.urandom(32))
    faucet = to_checksum_address(key.public_key.to_canonical_address())
    (tmp_path / "pw").write_text("faucet password\n")
    keystore = save_keystore(tmp_path / "keys", key, "faucet password")
    port = free_port()
    node = NodeProcess(
        tmp_path / "dev",
        "dev",
        "--faucet", "--faucet.port", str(port), "--faucet.amount", "1",
        "--faucet.cooldown", cooldown, "--faucet.keystore", str(keystore),
        "--faucet.password", str(tmp_path / "pw"), "--rpc.trusted-proxies", "127.0.0.1",
    )  # fmt: skip
    return node, faucet, f"http://127.0.0.1:{port}", port


def test_faucet_drips_refuses_and_remembers(tmp_path: Path) -> None:
    node, faucet, base, port = faucet_node(tmp_path, "1h")
    alice, bob, carol, dave, erin = (to_checksum_address(os.urandom(20)) for _ in range(5))
    node.start()
    try:
        # empty: the faucet's health says so and a request is refused with the reason
        status, health = get_json(base + "/health")
        assert status == 503 and health["empty"] and health["address"] == faucet
        status, body = ask(base, alice, "10.0.0.1")
        assert status == 503 and body["reason"] == "empty"
        assert "the faucet is empty" in body["error"] and faucet in body["error"]

        # funded with 3.5 ETH: room for three drips of 1 ETH and their gas
        node.call(
            "eth_sendRawTransaction", "0x" + transfer(0, 0, to=faucet, value=35 * ETH // 10).hex()
        )
        wait_until(lambda: balance(node, faucet) > 0, timeout=30, message="faucet funded")
        assert get_json(base + "/health")[0] == 200

        status, body = ask(base, alice.lower(), "10.0.0.1")
        assert status == 200 and body["address"] == alice, body
        receipt = mined(node, body["txHash"])
        assert receipt["from"].lower() == faucet.lower()
        assert balance(node, alice) == ETH

        # inside the cooldown: the same address from another IP, another address from that IP
        status, body = ask(base, alice, "10.0.0.2")
        assert status == 429 and body["reason"] == "cooldown_address", body
        assert 3500 <= body["retryAfter"] <= 3600, body
        assert body["error"].startswith("this address got a drip less than 1 h ago: try again in")
        status, body = ask(base, bob, "10.0.0.1")
        assert status == 429 and body["reason"] == "cooldown_ip", body
        # a client that is not a trusted proxy (127.0.0.2) cannot pick its IP by header
        status, tx_hash = ask_from(port, "127.0.0.2", erin, "10.0.0.50")
        assert status == 200
        mined(node, tx_hash)
        assert ask_from(port, "127.0.0.2", carol, "10.0.0.51") == (429, "cooldown_ip")
        status, body = ask(base, "0x1234", "10.0.0.9")
        assert status == 400 and body["reason"] == "invalid_address"
        letter = next(i for i, c in enumerate(alice) if i > 1 and c.isalpha())
        bad_checksum = alice[:letter] + alice[letter].swapcase() + alice[letter + 1 :]
        status, body = ask(base, bad_checksum, "10.0.0.9")
        assert status == 400 and body["reason"] == "invalid_address"
        assert "checksum" in body["error"]
        assert balance(node, bob) == 0
    finally:
        node.stop()

    node.start()  # the cooldowns are in LevelDB
    try:
        status, body = ask(base, alice, "10.0.0.3")
        assert status == 429 and body["reason"] == "cooldown_address", body
        status, body = ask(base, carol, "10.0.0.1")
        assert status == 429 and body["reason"] == "cooldown_ip", body

        # the page, in a real browser (from 127.0.0.1, no proxy header): a drip that is mined
        tx_hash = drip_from_page(base + "/", bob, tmp_path / "chromium-profile")
        receipt = mined(node, tx_hash)
        assert int(receipt["blockNumber"], 16) >= 1 and balance(node, bob) == ETH

        # dry: 0.5 ETH less gas left, a drip needs 1 ETH and gas
        status, body = ask(base, dave, "10.0.0.4")
        assert status == 503 and body["reason"] == "empty", body
        assert "holds 0.49" in body["error"] and "needs 1.00" in body["error"]

        figures = faucet_metrics(node)
        assert figures[("cairn_faucet_drips_total", "")] == 1  # since this start
        assert figures[("cairn_faucet_refusals_total", "cooldown_address")] == 1
        assert figures[("cairn_faucet_refusals_total", "cooldown_ip")] == 1
        assert figures[("cairn_faucet_refusals_total", "empty")] == 1
        left = balance(node, faucet)
        # Prometheus values are floats: equal to the wei balance to float precision
        assert figures[("cairn_faucet_balance_wei", "")] == pytest.approx(left, rel=1e-15)
        assert figures[("cairn_watched_balance_wei", "faucet")] == pytest.approx(left, rel=1e-15)
    finally:
        node.stop()
        shutil.rmtree(tmp_path / "chromium-profile", ignore_errors=True)


def test_faucet_on_full_node_and_metrics_listener(tmp_path: Path) -> None:
    """A full node's faucet hands its drip to the pool, which passes it to the sequencer over
    p2p; the full node serves run's default namespaces, so /metrics on its RPC port is closed
    while the --metrics.addr listener serves it without a token."""
    key = PrivateKey(os.urandom(32))
    faucet = to_checksum_address(key.public_key.to_canonical_address())
    (tmp_path / "pw").write_text("faucet password\n")
    keystore = save_keystore(tmp_path / "keys", key, "faucet password")
    faucet_port, metrics_port = free_port(), free_port()
    user = to_checksum_address(os.urandom(20))
    with LocalNet(tmp_path) as net:
        sequencer = net.start_sequencer()
        sequencer.call(
            "eth_sendRawTransaction", "0x" + transfer(0, 0, to=faucet, value=2 * ETH).hex()
        )
        wait_until(lambda: balance(sequencer, faucet) > 0, timeout=30, message="faucet funded")
        full = net.start_fullnode(
            "full",
            "--http.api", "eth,net,web3",
            "--faucet", "--faucet.port", str(faucet_port), "--faucet.keystore", str(keystore),
            "--faucet.password", str(tmp_path / "pw"),
            "--metrics.addr", "127.0.0.1", "--metrics.port", str(metrics_port),
        )  # fmt: skip
        wait_until(lambda: balance(full, faucet) > 0, timeout=60, message="full node synced")
        status, body = ask(f"http://127.0.0.1:{faucet_port}", user)
        assert status == 200, body
        receipt = wait_receipt(sequencer, body["txHash"])
        assert receipt["status"] == "0x1"
        wait_until(lambda: balance(full, user) == ETH, timeout=60, message="drip on the full node")

        with pytest.raises(urllib.error.HTTPError) as closed:
            urllib.request.urlopen(full.url + "/metrics", timeout=10)
        assert closed.value.code == 403
        with urllib.request.urlopen(
            f"http://127.0.0.1:{metrics_port}/metrics", timeout=10
        ) as answer:
            families = {f.name: f for f in text_string_to_metric_families(answer.read().decode())}
        drips = families["cairn_faucet_drips"].samples
        assert [s.value for s in drips if s.name == "cairn_faucet_drips_total"] == [1]
        watched = {s.labels["label"] for s in families["cairn_watched_balance_wei"].samples}
        assert watched == {"faucet"}  # a full node has no producer key


def test_faucet_forgets_cooldowns_that_are_over_while_running(tmp_path: Path) -> None:
    """Drips are remembered in LevelDB for their cooldown only: a running faucet forgets
    them once per cooldown, not only at start."""
    node, faucet, base, _ = faucet_node(tmp_path, "2s")
    node.start()
    try:
        node.call("eth_sendRawTransaction", "0x" + transfer(0, 0, to=faucet, value=3 * ETH).hex())
        wait_until(lambda: balance(node, faucet) > 0, timeout=30, message="faucet funded")
        alice = to_checksum_address(os.urandom(20))
        status, body = ask(base, alice, "10.0.0.1")
        assert status == 200, body
        mined(node, body["txHash"])
        assert ask(base, alice, "10.0.0.2")[1]["reason"] == "cooldown_address"
        wait_until(
            lambda: "faucet: forgot 2 drips whose cooldown is over" in node.log_path.read_text(),
            timeout=30,
            message="the drip to alice (its address and its IP) forgotten",
        )
        status, body = ask(base, alice, "10.0.0.1")  # its cooldown is over: served again
        assert status == 200, body
    finally:
        node.stop()
