"""A private LAN of network namespaces joined by a Linux bridge (iproute2), for tests of
what crosses a real network segment: mDNS multicast, per-host addresses.

The bridge lives in a namespace of its own (the LAN's "switch"), so frames between hosts are
forwarded there and never pass the test machine's own firewall: Docker sets the host's
iptables FORWARD policy to DROP and loads br_netfilter, which drops bridged traffic of a
bridge in the host's namespace. A fresh namespace has no rules, and bridge-nf-call is also
switched off in it where the kernel has that setting per namespace. The test reaches every
host's RPC through one more veth pair whose host-side end holds the .1 address (local
traffic, not forwarded). Nothing is connected to any physical interface, and the host's
firewall settings are never touched. `Lan` is a context manager and removes every namespace
and veth it made, whatever happened.
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


def _switch_off_bridge_netfilter(ns: str) -> None:
    """bridge-nf-call-* off inside the switch namespace (per namespace since Linux 5.3)."""
    for family in ("iptables", "ip6tables", "arptables"):
        setting = Path(f"/proc/sys/net/bridge/bridge-nf-call-{family}")
        if setting.exists():
            subprocess.run(
                [
                    "ip",
                    "netns",
                    "exec",
                    ns,
                    "sysctl",
                    "-q",
                    "-w",
                    f"net.bridge.bridge-nf-call-{family}=0",
                ],
                capture_output=True,
                timeout=30,
            )


class Lan:
    def __init__(self, hosts: int) -> None:
        tag = f"c{os.getpid() % 10000}{random.randrange(100)}"
        self.switch = f"{tag}sw"
        self.bridge = f"{tag}br"
        self.namespaces = [f"{tag}n{i}" for i in range(hosts)]
        self._veths = [f"{tag}v{i}" for i in range(hosts)]
        self._uplink = f"{tag}up"
        self.prefix = f"10.{random.randrange(100, 250)}.{random.randrange(1, 250)}"
        self.addresses = [f"{self.prefix}.{10 + i}" for i in range(hosts)]

    def __enter__(self) -> Lan:
        sw = self.switch
        try:
            _ip("netns", "add", sw)
            _switch_off_bridge_netfilter(sw)
            _ip("-n", sw, "link", "add", self.bridge, "type", "bridge")
            _ip("-n", sw, "link", "set", self.bridge, "up")
            _ip("-n", sw, "link", "set", "lo", "up")
            # the test's own port on the LAN: .1 on the host side, the other end on the bridge
            _ip("link", "add", self._uplink, "type", "veth", "peer", "name", self._uplink + "s")
            _ip("link", "set", self._uplink + "s", "netns", sw)
            _ip("-n", sw, "link", "set", self._uplink + "s", "master", self.bridge, "up")
            _ip("addr", "add", f"{self.prefix}.1/24", "dev", self._uplink)
            _ip("link", "set", self._uplink, "up")
            for ns, veth, addr in zip(self.namespaces, self._veths, self.addresses, strict=True):
                inner = veth + "i"
                _ip("netns", "add", ns)
                _ip("-n", sw, "link", "add", veth, "type", "veth", "peer", "name", inner)
                _ip("-n", sw, "link", "set", inner, "netns", ns)
                _ip("-n", sw, "link", "set", veth, "master", self.bridge, "up")
                _ip("-n", ns, "addr", "add", f"{addr}/24", "dev", inner)
                _ip("-n", ns, "link", "set", inner, "up")
                _ip("-n", ns, "link", "set", "lo", "up")
                _ip("-n", ns, "route", "add", "224.0.0.0/4", "dev", inner)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def partition(self, *groups: tuple[int, ...]) -> None:
        """Cut the LAN into `groups` of host indexes: a host's packets to any host of another
        group vanish (a blackhole route in the sender's namespace), as on a failed link:
        nothing is refused or reset, established connections just stop carrying data."""
        for group in groups:
            for i in group:
                for other in groups:
                    if other is group:
                        continue
                    for j in other:
                        _ip(
                            "-n",
                            self.namespaces[i],
                            "route",
                            "add",
                            "blackhole",
                            f"{self.addresses[j]}/32",
                        )

    def heal(self) -> None:
        """Undo `partition`: every host reaches every other again."""
        for ns in self.namespaces:
            found = subprocess.run(
                ["ip", "-n", ns, "route", "show", "type", "blackhole"],
                check=True,
                capture_output=True,
                text=True,
                timeout=30,
            )
            for line in found.stdout.splitlines():
                _ip("-n", ns, "route", "del", *line.split())

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # deleting a namespace deletes the veths and the bridge inside it
        for ns in [*self.namespaces, self.switch]:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
        subprocess.run(["ip", "link", "del", self._uplink], capture_output=True, timeout=30)


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
