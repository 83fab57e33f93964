"""The node image, built from this checkout on debian:bookworm-slim: `docker run` of a dev
chain serves JSON-RPC to web3.py through a port published on loopback, the container turns
healthy by the image's own HEALTHCHECK, runs as uid 10001 with its chain in the /data volume,
and the default command refuses to start without a genesis instead of opening a dev chain."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
from web3 import Web3

from tests.support.chain import KEYS
from tests.support.docker import docker, free_ports, images, require_docker
from tests.support.wait import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
RECIPIENT = Web3.to_checksum_address("0x70997970C51812dc3A010C7d01b50e0d17dc79C8")


@pytest.fixture(scope="module")
def image() -> str:
    require_docker()
    return images()["CAIRN_IMAGE"]


@pytest.fixture
def dev_container(image: str) -> Iterator[tuple[str, str]]:
    name = f"cairn-test-{uuid.uuid4().hex[:8]}"
    volume = f"{name}-data"
    (port,) = free_ports(1)
    started = docker(
        "run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:8545", "-v", f"{volume}:/data",
        image, "dev", "--datadir", "/data", "--http.addr", "0.0.0.0", "--rpc.call-workers", "1",
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    try:
        yield name, f"http://127.0.0.1:{port}"
    finally:
        docker("rm", "-f", "-v", name)
        docker("volume", "rm", volume)


def _health(name: str) -> str:
    inspected = docker("inspect", "--format", "{{json .State.Health}}", name)
    return str(json.loads(inspected.stdout)["Status"])


def test_docker_run_serves_web3(dev_container: tuple[str, str]) -> None:
    name, url = dev_container
    w3 = Web3(Web3.HTTPProvider(url))
    wait_until(w3.is_connected, timeout=120, interval=0.5, message=f"{name} to answer RPC")
    assert w3.eth.chain_id == 31337
    sender = w3.eth.account.from_key(KEYS[0])
    tx = {
        "to": RECIPIENT,
        "value": Web3.to_wei(1, "ether"),
        "nonce": w3.eth.get_transaction_count(sender.address, "pending"),
        "chainId": 31337,
        "gas": 21_000,
        "maxFeePerGas": w3.eth.gas_price * 2,
        "maxPriorityFeePerGas": w3.eth.max_priority_fee,
    }
    before = w3.eth.get_balance(RECIPIENT)
    tx_hash = w3.eth.send_raw_transaction(sender.sign_transaction(tx).raw_transaction)
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=60)
    assert receipt["status"] == 1
    assert w3.eth.get_balance(RECIPIENT) == before + Web3.to_wei(1, "ether")
    wait_until(
        lambda: _health(name) == "healthy", timeout=90, interval=1, message=f"{name} healthy"
    )
    # the node runs as the image's user, and its chain lives in the /data volume
    owner = docker("exec", name, "sh", "-c", "id -u; stat -c %u /data/chaindata")
    assert owner.stdout.split() == ["10001", "10001"], owner.stdout + owner.stderr


def test_default_command_needs_a_genesis(image: str) -> None:
    """`docker run IMAGE` runs `cairn run` on /data, not a dev chain with public keys."""
    done = docker("run", "--rm", image, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "no genesis" in done.stderr
    config = json.loads(docker("image", "inspect", image).stdout)[0]["Config"]
    assert config["User"] == "10001:10001"
    assert config["Cmd"][:2] == ["run", "--datadir"]
    assert "/data" in config["Volumes"]
    assert config["Healthcheck"]["Test"] == ["CMD", "cairn-healthcheck"]
