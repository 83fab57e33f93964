"""`cairn testnet up --docker` and `cairn testnet down`: the compose file of `testnet init`
run through the machine's Docker engine.

`up` builds the node image when it is missing (BuildKit: `docker buildx`, or the classic CLI
of Docker < 23 with DOCKER_BUILDKIT=1), runs `compose up -d`, waits until every container
with a health check is healthy (and the one-shot setup has exited 0), and prints the
endpoints. `down` stops and removes the containers; volumes stay unless asked. Works with
Compose v2 (`docker compose`) and v1 (`docker-compose`). Only runs the docker CLI: never
touches a node's files or the engine's settings.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import cairn
from cairn.errors import ConfigError
from cairn.node.testnet_compose import image_tag

COMPOSE_FILE = "docker-compose.yml"
PROFILES = ("observability", "explorer")

# How often `up --docker` asks compose for the containers' health while it waits.
HEALTH_POLL_INTERVAL_SECONDS = 1.0


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)
    except OSError as exc:
        raise ConfigError(f"cannot run {argv[0]}: {exc.strerror}") from exc
    except subprocess.TimeoutExpired as exc:
        raise ConfigError(f"`{' '.join(argv)}` did not finish within 120 s") from exc


def _docker_candidates() -> list[str]:
    """Every distinct `docker` executable on PATH, first one first."""
    seen: list[str] = []
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        path = Path(folder) / "docker"
        if path.is_file() and os.access(path, os.X_OK):
            real = str(path.resolve())
            if real not in [str(Path(s).resolve()) for s in seen]:
                seen.append(str(path))
    return seen


def docker_cli() -> str:
    found = _docker_candidates()
    if not found:
        raise ConfigError("the docker CLI is not installed (Debian: apt-get install docker.io)")
    return found[0]


def compose_cli() -> list[str]:
    """`docker compose` (v2) when the plugin is there, else `docker-compose` (v1)."""
    docker = docker_cli()
    if _run([docker, "compose", "version"]).returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    if legacy is not None:
        return [legacy]
    raise ConfigError(
        "Docker Compose is not installed: install the compose plugin (`docker compose`) or "
        "docker-compose (Debian: apt-get install docker-compose)"
    )


@dataclass(frozen=True)
class Builder:
    argv: list[str]  # the command up to `build`
    env: dict[str, str]


def buildkit_builder() -> Builder:
    """A docker CLI that builds with BuildKit (the Dockerfile mounts a secret and a cache)."""
    for docker in _docker_candidates():
        if _run([docker, "buildx", "version"]).returncode == 0:
            return Builder([docker, "build"], {})
        version = _run([docker, "version", "--format", "{{.Client.Version}}"]).stdout.strip()
        major = version.split(".", 1)[0]
        if major.isdigit() and int(major) < 23:  # the classic CLI still carries BuildKit
            return Builder([docker, "build"], {"DOCKER_BUILDKIT": "1"})
    raise ConfigError(
        "building the Cairn image needs BuildKit: install docker-buildx (Docker 23 and later "
        "build with it only), or use a docker CLI older than 23 with DOCKER_BUILDKIT=1"
    )


def image_exists(tag: str) -> bool:
    return _run([docker_cli(), "image", "inspect", tag]).returncode == 0


def pip_cert_secret() -> list[str]:
    """`--secret` handing pip this machine's CA bundle ($PIP_CERT, else $SSL_CERT_FILE), for
    networks where HTTPS to PyPI passes a proxy with its own CA; nothing when neither is set."""
    for variable in ("PIP_CERT", "SSL_CERT_FILE"):
        cert = os.environ.get(variable)
        if cert and Path(cert).is_file():
            return ["--secret", f"id=pip_cert,src={cert}"]
    return []


def build_image(tag: str, context: Path) -> None:
    """docker build of `context` (a Cairn checkout), with `pip_cert_secret()`."""
    if not (context / "Dockerfile").is_file():
        raise ConfigError(
            f"image {tag} is missing and {context} holds no Dockerfile: build it from a Cairn "
            f"checkout (docker build -t {tag} .) or set CAIRN_IMAGE in the testnet's .env"
        )
    builder = buildkit_builder()
    argv = [*builder.argv, "-t", tag, *pip_cert_secret(), str(context)]
    print(f"building {tag} from {context} ...", flush=True)
    done = subprocess.run(argv, env={**os.environ, **builder.env}, check=False)
    if done.returncode != 0:
        raise ConfigError(f"docker build of {tag} failed (exit {done.returncode})")


def read_env(root: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    env = root / ".env"
    if env.is_file():
        for line in env.read_text().splitlines():
            if "=" in line and not line.lstrip().startswith("#"):
                key, _, value = line.partition("=")
                values[key.strip()] = value.strip()
    return values


@dataclass(frozen=True)
class ContainerState:
    service: str
    name: str
    status: str  # created, running, exited, ...
    health: str | None  # starting, healthy, unhealthy; None without a health check
    exit_code: int

    @property
    def done(self) -> bool:
        """Up as it should be: healthy, or running without a check, or a setup that ended 0."""
        if self.status == "exited":
            return self.exit_code == 0 and self.service == "setup"
        if self.health is not None:
            return self.health == "healthy"
        return self.status == "running"

    @property
    def failed(self) -> bool:
        if self.status == "exited":
            return not self.done
        return self.health == "unhealthy" or self.status == "dead"


def project_states(project: str) -> list[ContainerState]:
    docker = docker_cli()
    ids = _run(
        [docker, "ps", "-aq", "--filter", f"label=com.docker.compose.project={project}"]
    ).stdout.split()
    if not ids:
        return []
    inspected = _run([docker, "inspect", *ids])
    if inspected.returncode != 0:  # a container went away between ps and inspect
        return []
    states = []
    for item in json.loads(inspected.stdout):
        state = item["State"]
        health = state.get("Health")
        states.append(
            ContainerState(
                service=item["Config"]["Labels"].get("com.docker.compose.service", "?"),
                name=item["Name"].lstrip("/"),
                status=state["Status"],
                health=health["Status"] if health else None,
                exit_code=int(state.get("ExitCode", 0)),
            )
        )
    return sorted(states, key=lambda s: s.service)


def wait_healthy(project: str, timeout: float) -> list[ContainerState]:
    deadline = time.monotonic() + timeout
    states: list[ContainerState] = []
    while time.monotonic() < deadline:
        states = project_states(project)
        failed = [s for s in states if s.failed]
        if failed:
            names = ", ".join(
                f"{s.service} ({s.status}, {s.health or 'exit ' + str(s.exit_code)})"
                for s in failed
            )
            raise ConfigError(f"{names} failed; see `docker logs <container>`")
        if states and all(s.done for s in states):
            return states
        time.sleep(HEALTH_POLL_INTERVAL_SECONDS)
    waiting = ", ".join(f"{s.service}: {s.health or s.status}" for s in states if not s.done)
    raise ConfigError(f"not healthy after {timeout:.0f}s: {waiting or 'no containers'}")


def endpoints(root: Path, profiles: list[str]) -> list[str]:
    env = read_env(root)
    manifest = json.loads((root / "testnet.json").read_text())
    bind = env.get("CAIRN_BIND", "127.0.0.1")
    host = "127.0.0.1" if bind == "0.0.0.0" else bind
    lines = [
        f"JSON-RPC  http://{host}:{env.get('CAIRN_RPC_HTTP_PORT', '8545')}  "
        f"(WebSocket also ws://{host}:{env.get('CAIRN_RPC_WS_PORT', '8546')})",
    ]
    for node in manifest["nodes"]:
        key = "CAIRN_" + "".join(c if c.isalnum() else "_" for c in node["name"].upper())
        port = env.get(f"{key}_HTTP_PORT")
        if port:
            lines.append(f"{node['name']:<10} http://{host}:{port}")
    if "CAIRN_POSTGRES_PORT" in env and (root / COMPOSE_FILE).read_text().count("\n  postgres:"):
        lines.append(
            f"Postgres  postgresql://cairn:<CAIRN_POSTGRES_PASSWORD in .env>@{host}:"
            f"{env['CAIRN_POSTGRES_PORT']}/cairn"
        )
    if "observability" in profiles:
        lines.append(f"Prometheus http://{host}:{env.get('CAIRN_PROMETHEUS_PORT', '9090')}")
        lines.append(
            f"Grafana   http://{host}:{env.get('CAIRN_GRAFANA_PORT', '3000')}  "
            "(admin / CAIRN_GRAFANA_PASSWORD in .env)"
        )
    if "explorer" in profiles:
        lines.append(
            f"Blockscout http://{host}:{env.get('CAIRN_BLOCKSCOUT_FRONTEND_PORT', '3001')} "
            f"(API http://{host}:{env.get('CAIRN_BLOCKSCOUT_PORT', '4000')})"
        )
    return lines


def _compose(root: Path, *args: str, profiles: list[str] | tuple[str, ...] = ()) -> int:
    argv = [*compose_cli(), "-f", str(root / COMPOSE_FILE)]
    for profile in profiles:
        argv += ["--profile", profile]
    argv += list(args)
    return subprocess.run(argv, cwd=root, check=False).returncode


def testnet_root(directory: str) -> Path:
    root = Path(directory).expanduser().resolve()
    if not (root / COMPOSE_FILE).is_file():
        raise ConfigError(
            f"{root / COMPOSE_FILE} is missing; run `cairn testnet init --sequencer "
            f"--fullnodes N --dir {root}` first"
        )
    return root


def up(directory: str, profiles: list[str], timeout: float, build: bool) -> int:
    root = testnet_root(directory)
    env = read_env(root)
    tag = os.environ.get("CAIRN_IMAGE") or env.get("CAIRN_IMAGE") or image_tag()
    if build or not image_exists(tag):
        checkout = Path(cairn.__file__).resolve().parent.parent
        build_image(tag, checkout)
    project = env.get("COMPOSE_PROJECT_NAME", root.name)
    started = time.monotonic()
    code = _compose(root, "up", "-d", "--remove-orphans", profiles=profiles)
    if code != 0:
        raise ConfigError(f"compose up failed (exit {code}); `docker compose logs` tells why")
    states = wait_healthy(project, timeout)
    print(f"{len(states)} containers up and healthy in {time.monotonic() - started:.1f}s:")
    for state in states:
        shown = f"exited {state.exit_code}" if state.status == "exited" else state.health
        print(f"  {state.service:<20} {shown or state.status}")
    print("\n".join(endpoints(root, profiles)))
    print(f"stop: cairn testnet down --dir {root}   (add --volumes to delete the chain)")
    return 0


def down(directory: str, volumes: bool) -> int:
    root = testnet_root(directory)
    args = ["down", "--remove-orphans"] + (["--volumes"] if volumes else [])
    code = _compose(root, *args, profiles=PROFILES)
    if code != 0:
        raise ConfigError(f"compose down failed (exit {code})")
    return 0
