"""Docker for the tests: is an engine there, the node image built once per run (BuildKit
cache makes a rebuild after a source change take seconds), the local Postgres stand-in
image, and a testnet folder whose published ports are free on this machine.

Images are built from this checkout with the same builder `cairn testnet up --docker` uses.
Nothing here changes the engine's settings; every container a test starts is removed by it.
"""

from __future__ import annotations

import functools
import os
import re
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from cairn.errors import ConfigError
from cairn.node import testnet_docker
from cairn.node.testnet_compose import image_tag
from tests.support.proc import REPO

POSTGRES_STANDIN = "cairn-postgres:15-bookworm"
PROMETHEUS_STANDIN = "cairn-prometheus:2-bookworm"
BASE_IMAGE = "debian:bookworm-slim"


def docker_unavailable() -> str | None:
    """Why Docker cannot be used here, or None when it can."""
    try:
        docker = testnet_docker.docker_cli()
    except ConfigError as exc:
        return str(exc)
    info = subprocess.run([docker, "info"], capture_output=True, text=True, timeout=60)
    if info.returncode != 0:
        return f"no Docker engine answers ({info.stderr.strip()[:200]}); run scripts/system-deps.sh"
    if subprocess.run([docker, "image", "inspect", BASE_IMAGE], capture_output=True).returncode:
        return f"no {BASE_IMAGE} image; deploy/docker/make-base-image.sh makes it"
    return None


def require_docker() -> None:
    """Skip without Docker on a developer's machine; fail in CI, where system-deps sets it up."""
    why = docker_unavailable()
    if why is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"Docker is needed in CI: {why}")
    pytest.skip(f"Docker: {why}")


def _build(argv: list[str], env: dict[str, str], what: str) -> float:
    started = time.monotonic()
    done = subprocess.run(
        argv, env={**os.environ, **env}, capture_output=True, text=True, timeout=1200
    )
    seconds = time.monotonic() - started
    assert done.returncode == 0, f"{what} failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    print(f"[docker] {what}: {seconds:.1f}s")
    return seconds


@functools.cache
def node_image() -> str:
    """The node image of this checkout, tagged as `cairn testnet init` expects it."""
    builder = testnet_docker.buildkit_builder()
    argv = [*builder.argv, "-t", image_tag(), *testnet_docker.pip_cert_secret(), str(REPO)]
    _build(argv, builder.env, f"build {image_tag()}")
    return image_tag()


def _standin(dockerfile: str, tag: str) -> str:
    """An image from Debian's packages with the official one's interface (deploy/docker)."""
    builder = testnet_docker.buildkit_builder()
    folder = REPO / "deploy" / "docker"
    argv = [*builder.argv, "-f", str(folder / dockerfile), "-t", tag, str(folder)]
    _build(argv, builder.env, f"build {tag}")
    return tag


@functools.cache
def images() -> dict[str, str]:
    """The node image and the Postgres and Prometheus stand-ins, built side by side (their
    downloads overlap), as the .env settings that select them."""
    with ThreadPoolExecutor(3) as pool:
        node = pool.submit(node_image)
        postgres = pool.submit(_standin, "postgres-debian.Dockerfile", POSTGRES_STANDIN)
        prometheus = pool.submit(_standin, "prometheus-debian.Dockerfile", PROMETHEUS_STANDIN)
        return {
            "CAIRN_IMAGE": node.result(),
            "CAIRN_POSTGRES_IMAGE": postgres.result(),
            "CAIRN_PROMETHEUS_IMAGE": prometheus.result(),
        }


def free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def localize_env(root: Path, **extra: str) -> dict[str, str]:
    """Every published port of the testnet's .env moved to a free one (other nodes run on
    this machine); `extra` added. Returns the resulting settings."""
    env = root / ".env"
    lines = env.read_text().splitlines()
    port_lines = [i for i, line in enumerate(lines) if re.match(r"CAIRN_\w+_PORT=", line)]
    for i, port in zip(port_lines, free_ports(len(port_lines)), strict=True):
        lines[i] = f"{lines[i].split('=', 1)[0]}={port}"
    lines += [f"{k}={v}" for k, v in extra.items()]
    env.write_text("\n".join(lines) + "\n")
    return testnet_docker.read_env(root)


def docker(*args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [testnet_docker.docker_cli(), *args], capture_output=True, text=True, timeout=timeout
    )


def compose(root: Path, *args: str, timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
    argv = [*testnet_docker.compose_cli(), "-f", str(root / "docker-compose.yml"), *args]
    return subprocess.run(argv, cwd=root, capture_output=True, text=True, timeout=timeout)
