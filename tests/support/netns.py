"""A private LAN of network namespaces joined by a Linux bridge (iproute2), for tests of
what crosses a real network segment: mDNS multicast, per-host addresses.

The bridge lives in the test's namespace with the .1 address, so the test reaches every
host's RPC directly; nothing is connected to any physical interface. `Lan` is a context
manager and removes every namespace, veth and the bridge it made, whatever happened.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from pathlib import Path
from types import TracebackType

from tests.support.proc import NodeProcess


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)


def netns_unavailable() -> str | None:
    """Why namespaces cannot be used here, or None when they can."""
    if shutil.which("ip") is None:
        return "iproute2 (`ip`) is not installed"
    if os.geteuid() != 0:
        return "creating network namespaces needs root"
    probe = f"cairnprobe{os.getpid() % 100000}"
    try:
        _ip("netns", "add", probe)
    except subprocess.CalledProcessError as exc:
        return f"`ip netns add` failed: {exc.stderr.strip()}"
    _ip("netns", "del", probe)
    return None


class Lan:
    def __init__(self, hosts: int) -> None:
        tag = f"c{os.getpid() % 10000}{random.randrange(100)}"
        self.bridge = f"{tag}br"
        self.namespaces = [f"{tag}n{i}" for i in range(hosts)]
        self._veths = [f"{tag}v{i}" for i in range(hosts)]
        self.prefix = f"10.{random.randrange(100, 250)}.{random.randrange(1, 250)}"
        self.addresses = [f"{self.prefix}.{10 + i}" for i in range(hosts)]

    def __enter__(self) -> Lan:
        try:
            _ip("link", "add", self.bridge, "type", "bridge")
            _ip("addr", "add", f"{self.prefix}.1/24", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
            for ns, veth, addr in zip(self.namespaces, self._veths, self.addresses, strict=True):
                inner = veth + "i"
                _ip("netns", "add", ns)
                _ip("link", "add", veth, "type", "veth", "peer", "name", inner)
                _ip("link", "set", inner, "netns", ns)
                _ip("link", "set", veth, "master", self.bridge, "up")
                _ip("-n", ns, "addr", "add", f"{addr}/24", "dev", inner)
                _ip("-n", ns, "link", "set", inner, "up")
                _ip("-n", ns, "link", "set", "lo", "up")
                _ip("-n", ns, "route", "add", "224.0.0.0/4", "dev", inner)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for ns in self.namespaces:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
        for veth in self._veths:
            subprocess.run(["ip", "link", "del", veth], capture_output=True, timeout=30)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, timeout=30)


class NetnsNode(NodeProcess):
    """A `cairn` process inside one namespace, serving RPC on that host's LAN address."""

    def __init__(self, ns: str, address: str, datadir: Path, command: str, *args: str) -> None:
        super().__init__(datadir, command, *args)
        self.ns = ns
        self.address = address
        self.url = f"http://{address}:{self.http_port}"
        self.ws_url = f"ws://{address}:{self.http_port}"

    def argv(self) -> list[str]:
        return ["ip", "netns", "exec", self.ns, *super().argv(), "--http.addr", self.address]
