"""A network written by `cairn testnet init` (1 sequencer, 2 full nodes, Postgres) run by
`cairn testnet up --docker` from its compose file as written (only the published ports moved
to free ones, and Postgres from the Debian stand-in image since no registry is reachable):

- every container reaches healthy; 500 transfers sent to the published 8545 port are in the
  chain of every node and in the Postgres mirror; a web3.py WebSocket `newHeads`
  subscription on 8546 receives the blocks that carry them;
- `docker kill` of a full node, more transfers, `compose up` again: it catches up;
- `cairn testnet down` then `up --docker`: the volumes kept the chain and it continues;
- the compose Prometheus (profile `observability`, from a Debian stand-in image) scrapes
  every node by its service name and loads the alert rules.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from eth_account import Account
from web3 import AsyncWeb3, WebSocketProvider

from tests.support import rpc
from tests.support.chain import KEYS, transfer
from tests.support.docker import (
    compose,
    docker,
    images,
    localize_env,
    require_docker,
)
from tests.support.proc import run_cli
from tests.support.wait import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
SENDERS = range(10)
PER_SENDER = 50  # 500 transfers


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    require_docker()
    built = images()
    root = tmp_path_factory.mktemp("docker") / "net"
    done = run_cli("testnet", "init", "--sequencer", "--fullnodes", "2", "--dir", str(root))
    assert done.returncode == 0, done.stderr
    env = localize_env(root, **built)
    try:
        yield root, env
    finally:
        down = run_cli("testnet", "down", "--volumes", "--dir", str(root), timeout=180)
        assert down.returncode == 0, down.stdout + down.stderr


def _up(root: Path) -> str:
    done = run_cli("testnet", "up", "--docker", "--dir", str(root), "--timeout", "240", timeout=400)
    logs = "" if done.returncode == 0 else compose(root, "logs", "--tail", "40").stdout
    assert done.returncode == 0, done.stdout + done.stderr + logs
    return done.stdout


def _urls(env: dict[str, str]) -> dict[str, str]:
    return {
        "fullnode-1": f"http://127.0.0.1:{env['CAIRN_RPC_HTTP_PORT']}",
        "sequencer": f"http://127.0.0.1:{env['CAIRN_SEQUENCER_HTTP_PORT']}",
        "fullnode-2": f"http://127.0.0.1:{env['CAIRN_FULLNODE_2_HTTP_PORT']}",
    }


def _send(url: str, rounds: int, first_nonce: dict[int, int]) -> list[str]:
    """`rounds` transfers from each sender, in JSON-RPC batches of one per sender."""
    hashes: list[str] = []
    for r in range(rounds):
        raws = ["0x" + transfer(i, first_nonce[i] + r).hex() for i in SENDERS]
        answers = rpc.post(
            url,
            [
                {"jsonrpc": "2.0", "id": k, "method": "eth_sendRawTransaction", "params": [raw]}
                for k, raw in enumerate(raws)
            ],
        )
        assert all("result" in a for a in answers), answers
        hashes += [a["result"] for a in answers]
    return hashes


def _nonces(url: str) -> dict[int, int]:
    return {
        i: int(rpc.call(url, "eth_getTransactionCount", Account.from_key(KEYS[i]).address), 16)
        for i in SENDERS
    }


def _missing(url: str, hashes: list[str]) -> int:
    """How many of `hashes` have no successful receipt on the node at `url`."""
    answers = rpc.post(
        url,
        [
            {"jsonrpc": "2.0", "id": k, "method": "eth_getTransactionReceipt", "params": [h]}
            for k, h in enumerate(hashes)
        ],
        timeout=60,
    )
    return sum(1 for a in answers if not a.get("result") or a["result"]["status"] != "0x1")


def _wait_everywhere(urls: dict[str, str], hashes: list[str], timeout: float = 180) -> None:
    for name, url in urls.items():
        wait_until(
            lambda url=url: _missing(url, hashes) == 0,  # type: ignore[misc]
            timeout=timeout,
            interval=1,
            message=f"{len(hashes)} transfers on {name}",
        )


def _heads(urls: dict[str, str]) -> dict[str, int]:
    return {n: int(rpc.call(u, "eth_blockNumber"), 16) for n, u in urls.items()}


async def _mirrored(env: dict[str, str], hashes: list[str]) -> int:
    conn = await asyncpg.connect(
        host="127.0.0.1",
        port=int(env["CAIRN_POSTGRES_PORT"]),
        user="cairn",
        password=env["CAIRN_POSTGRES_PASSWORD"],
        database="cairn",
    )
    try:
        wanted = [bytes.fromhex(h[2:]) for h in hashes]
        count = await conn.fetchval(
            "SELECT count(*) FROM transactions WHERE hash = ANY($1::bytea[])", wanted
        )
        return int(count)
    finally:
        await conn.close()


def _subscribe_heads(ws_url: str, subscribed: threading.Event, stop: threading.Event) -> list[int]:
    """newHeads over WebSocket (web3.py) until `stop` is set; the block numbers seen."""
    numbers: list[int] = []

    async def run() -> None:
        async with AsyncWeb3(WebSocketProvider(ws_url)) as w3:
            sub = await w3.eth.subscribe("newHeads")
            subscribed.set()

            async def consume() -> None:
                async for message in w3.socket.process_subscriptions():
                    if message["subscription"] == sub:
                        numbers.append(int(message["result"]["number"]))

            consumer = asyncio.create_task(consume())
            await asyncio.get_running_loop().run_in_executor(None, stop.wait)
            consumer.cancel()
            assert await w3.eth.unsubscribe(sub) is True

    asyncio.run(run())
    return numbers


def _container(root: Path, service: str) -> str:
    found = compose(root, "ps", "-q", service)
    assert found.returncode == 0 and found.stdout.strip(), found.stderr
    return found.stdout.split()[0]


def test_compose_network_end_to_end(network: tuple[Path, dict[str, str]]) -> None:
    root, env = network
    shown = _up(root)
    healthy_in = re.search(r"up and healthy in ([\d.]+)s", shown)
    assert healthy_in is not None, shown
    print(f"[docker] compose up -> all healthy: {healthy_in.group(1)}s")
    for service in ("setup", "sequencer", "fullnode-1", "fullnode-2", "postgres"):
        assert re.search(rf"^\s+{service}\s", shown, re.M), shown
    urls = _urls(env)
    rpc_url = urls["fullnode-1"]
    ws_url = f"ws://127.0.0.1:{env['CAIRN_RPC_WS_PORT']}"
    assert int(rpc.call(rpc_url, "eth_chainId"), 16) == 31337

    # 500 transfers through the published 8545, watched by a newHeads subscription on 8546
    subscribed, stop = threading.Event(), threading.Event()
    with ThreadPoolExecutor(1) as pool:
        heads_seen = pool.submit(_subscribe_heads, ws_url, subscribed, stop)
        assert subscribed.wait(30), "newHeads subscription on the WebSocket port"
        start = int(rpc.call(rpc_url, "eth_blockNumber"), 16)
        hashes = _send(rpc_url, PER_SENDER, _nonces(rpc_url))
        assert len(hashes) == 500
        _wait_everywhere(urls, hashes)
        head = int(rpc.call(rpc_url, "eth_blockNumber"), 16)
        assert not heads_seen.done(), heads_seen.exception()
        stop.set()
        numbers = heads_seen.result(timeout=60)
    assert numbers and numbers == list(range(start + 1, start + 1 + len(numbers)))
    assert numbers[-1] >= head - 1, (numbers[-1], head)
    mirrored = wait_until(
        lambda: asyncio.run(_mirrored(env, hashes)) == 500,
        timeout=120,
        interval=1,
        message="500 transfers in the Postgres mirror",
    )
    assert mirrored

    # docker kill of a full node; the network goes on; compose up brings it back to the head
    fullnode2 = _container(root, "fullnode-2")
    assert docker("kill", fullnode2).returncode == 0
    more = _send(rpc_url, 5, _nonces(rpc_url))
    _wait_everywhere({k: v for k, v in urls.items() if k != "fullnode-2"}, more)
    _up(root)
    _wait_everywhere(urls, more)
    wait_until(
        lambda: len(set(_heads(urls).values())) == 1,
        timeout=60,
        interval=0.5,
        message="fullnode-2 at the same head as the others",
    )

    # down, then up: the volumes kept every node's chain, and it continues from there
    before = _heads(urls)
    down = run_cli("testnet", "down", "--dir", str(root), timeout=180)
    assert down.returncode == 0, down.stdout + down.stderr
    assert compose(root, "ps", "-q").stdout.strip() == ""
    project = env["COMPOSE_PROJECT_NAME"]
    kept = docker("volume", "ls", "-q", "--filter", f"label=com.docker.compose.project={project}")
    assert {f"{project}_{n}-data" for n in urls} <= set(kept.stdout.split())
    _up(root)
    after = _heads(urls)
    assert after == before, (before, after)
    assert _missing(urls["fullnode-2"], hashes + more) == 0
    last = _send(rpc_url, 1, _nonces(rpc_url))
    _wait_everywhere(urls, last)
    assert min(_heads(urls).values()) > max(before.values())
    everything = hashes + more + last
    wait_until(
        lambda: asyncio.run(_mirrored(env, everything)) == len(everything),
        timeout=60,
        interval=1,
        message="the mirror to follow after the restart",
    )

    # the observability profile's Prometheus, as written: every node scraped, every rule loaded
    started = compose(root, "--profile", "observability", "up", "-d", "prometheus")
    assert started.returncode == 0, started.stderr
    prometheus = f"http://127.0.0.1:{env['CAIRN_PROMETHEUS_PORT']}/api/v1"

    def scraped() -> dict[str, str]:
        targets = _api(prometheus + "/targets")["activeTargets"]
        health = {t["labels"]["node"]: t["health"] for t in targets}
        return health if set(health.values()) == {"up"} else {}

    health = wait_until(scraped, timeout=90, interval=1, message="Prometheus scraping nodes")
    assert set(health) == set(urls)

    def evaluated() -> dict[str, str]:
        groups = _api(prometheus + "/rules")["groups"]
        rules = {r["name"]: r["health"] for g in groups for r in g["rules"]}
        return rules if set(rules.values()) == {"ok"} else {}

    rules = wait_until(evaluated, timeout=60, interval=1, message="every rule evaluated")
    assert len(rules) == 9, rules
    lag = _api(prometheus + '/query?query=cairn_mirror_lag_blocks{node="fullnode-1"}')
    assert lag["result"], "fullnode-1's mirror metrics in Prometheus"


def _api(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return json.loads(answer.read())["data"]
