"""Liveness follows the p2p thread: a whole node in-process (real LevelDB, real libp2p on
loopback, the real HTTP server) answers /health 503 while its crashed p2p thread is being
restarted and 200 once it runs again; when restarts are exhausted the node stops itself with
a non-zero exit code instead of serving as if it were still on the network."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from pathlib import Path

from cairn.node.service import Node
from tests.support.harness import InProcessNet
from tests.support.wait import wait_until_async


class Injected(Exception):
    pass


def crash_p2p(node: Node) -> None:
    """End the p2p thread the way an escaped error ends trio."""
    assert node.p2p is not None

    def boom() -> None:
        raise Injected("injected failure on the p2p thread")

    node.p2p.service.thread.submit(boom)


async def health(node: Node) -> tuple[int, dict[str, object]]:
    url = f"http://127.0.0.1:{node.rpc.bound_ports[0]}/health"

    def get() -> tuple[int, dict[str, object]]:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    return await asyncio.get_running_loop().run_in_executor(None, get)


def test_liveness_fails_while_p2p_is_down_and_the_node_gives_up_with_exit_code_3(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        async with InProcessNet(tmp_path) as net:
            node = await net.start_sequencer()
            assert (await health(node))[0] == 200
            seen: list[tuple[int, dict[str, object]]] = []

            async def unhealthy() -> bool:
                seen.append(await health(node))
                return seen[-1][0] == 503

            crash_p2p(node)
            await wait_until_async(unhealthy, within=30, interval=0.02, message="503")
            body = seen[-1][1]
            assert "p2p" in str(body["reasons"]) and body["status"] == "unhealthy"

            async def healthy() -> bool:
                return (await health(node))[0] == 200

            await wait_until_async(healthy, within=60, message="200 after the restart")
            assert node.exit_code == 0
            # Crash it until the supervisor gives up: the node asks to stop, exit code 3.
            assert node.p2p is not None
            service = node.p2p.service
            for _ in range(10):
                if service.state().status == "failed":
                    break

                async def running() -> bool:
                    return service.state().status in ("running", "failed")

                await wait_until_async(running, within=60, message="p2p running or failed")
                if service.state().status == "running":
                    crash_p2p(node)

                    async def not_running() -> bool:
                        return service.state().status != "running"

                    await wait_until_async(not_running, within=30, message="p2p down")

            async def gave_up() -> bool:
                return node.exit_code == 3

            await wait_until_async(gave_up, within=60, message="the node to give up")

    asyncio.run(scenario())
