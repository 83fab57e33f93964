"""Who may talk to the RPC server, and how much: Host (DNS rebinding), browser origins (CORS
and WebSocket upgrades), the client's address behind trusted proxies, the bearer token and
per-client rate buckets — as geth decides them where geth has a rule.

Pure decisions on header values and addresses; the server (`cairn.rpc.server`) applies them.
Must never read a request body or call into a namespace.
"""

from __future__ import annotations

import hmac
import ipaddress
import re
import socket
import time
from collections import OrderedDict
from dataclasses import dataclass
from urllib.parse import urlsplit

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_RATE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(?:/\s*(s|sec|second|m|min|minute)\s*)?$", re.I)
MAX_BUCKETS = 100_000  # client addresses remembered by the rate limiter (least recent dropped)


def split_list(text: str | None) -> tuple[str, ...]:
    """A comma-separated flag value as its trimmed, non-empty items."""
    return tuple(item.strip() for item in (text or "").split(",") if item.strip())


# ------------------------------------------------------------ Host (geth's --http.vhosts)
def host_allowed(host_header: str | None, vhosts: tuple[str, ...]) -> bool:
    """geth's virtualHostHandler: no Host, an IP address, `*` or a listed name passes."""
    if not host_header:
        return True  # a browser always sends Host; only raw clients leave it out
    host = _strip_port(host_header.strip())
    if _is_ip(host):
        return True
    allowed = {v.lower() for v in vhosts}
    return "*" in allowed or host.lower() in allowed


def _strip_port(host: str) -> str:
    if host.startswith("["):  # [::1]:8545
        return host[1 : host.index("]")] if "]" in host else host
    if host.count(":") == 1:
        return host.split(":", 1)[0]
    return host


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


# ------------------------------------------------------------ browser origins
def cors_headers(origin: str | None, allowed: tuple[str, ...]) -> dict[str, str]:
    """CORS response headers for `origin` (none when CORS is off or the origin is not listed:
    the browser then refuses the answer, and its preflight, to the page)."""
    if origin is None or not allowed:
        return {}
    if "*" in allowed:
        return {"Access-Control-Allow-Origin": "*"}
    if origin.lower() in (a.lower() for a in allowed):
        return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
    return {}


def default_ws_origins() -> tuple[str, ...]:
    """geth's default when --ws.origins is empty: pages served from this machine."""
    return (
        "http://localhost",
        "http://127.0.0.1",
        "http://[::1]",
        f"http://{socket.gethostname()}",
    )


def ws_origin_allowed(origin: str | None, allowed: tuple[str, ...]) -> bool:
    """geth's wsHandshakeValidator: no Origin (not a browser) passes; `*` allows any; a rule
    matches on each part it names (scheme, host, port), so `http://localhost` allows every
    port of localhost over http."""
    if origin is None:
        return True
    rules = allowed or default_ws_origins()
    if "*" in rules:
        return True
    seen = _origin_parts(origin.lower())
    if seen is None:
        return False
    for rule in rules:
        want = _origin_parts(rule.lower())
        if want is None:
            continue
        if all(w == "" or w == s for w, s in zip(want, seen, strict=True)):
            return True
    return False


def _origin_parts(origin: str) -> tuple[str, str, str] | None:
    text = origin if "://" in origin else "//" + origin  # geth accepts "localhost:3000" too
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        return None
    return parts.scheme, parts.hostname or "", "" if port is None else str(port)


# ------------------------------------------------------------ client address
@dataclass(frozen=True)
class ClientAddress:
    """The address a request is counted under: the peer's, or, when the peer is a trusted
    proxy, the nearest address in X-Forwarded-For that is not itself a trusted proxy."""

    trusted: tuple[IpNetwork, ...] = ()

    @classmethod
    def parse(cls, proxies: tuple[str, ...]) -> ClientAddress:
        networks = []
        for item in proxies:
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise ValueError(f"--rpc.trusted-proxies: {item!r} is not an IP or CIDR") from None
        return cls(tuple(networks))

    def is_trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.trusted)

    def of(self, peer: str | None, forwarded_for: str | None) -> str:
        client = peer or "unknown"
        if not self.trusted or not forwarded_for or not self.is_trusted(client):
            return client
        # Each proxy appends the address it received from; walk back from the nearest one.
        for hop in reversed(split_list(forwarded_for)):
            client = hop
            if not self.is_trusted(hop):
                break
        return client


# ------------------------------------------------------------ bearer token
def token_matches(authorization: str | None, token: bytes | None) -> bool | None:
    """None: the request carries no token; True/False: it carries the right or a wrong one."""
    if authorization is None:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or token is None:
        return False
    return hmac.compare_digest(value.strip().encode(), token)


# ------------------------------------------------------------ rate limits
def parse_rate(text: str) -> float:
    """'100/min', '10/s' or '10' (per second) as requests per second; 0 turns limiting off."""
    match = _RATE.match(str(text))
    if match is None:
        raise ValueError(
            f"--rpc.ratelimit {text!r}: expected N (per second), N/s or N/min, e.g. 100/min"
        )
    count = float(match.group(1))
    unit = (match.group(2) or "s").lower()
    return count / 60.0 if unit.startswith("m") else count


def default_burst(text: str) -> int:
    """One window's worth of requests: N for 'N/min', N for 'N/s' or 'N' (at least 1)."""
    match = _RATE.match(str(text))
    count = float(match.group(1)) if match else 1.0
    return max(1, int(count))


class TokenBuckets:
    """Per-client token buckets; `rate == 0` turns limiting off. At most MAX_BUCKETS clients
    are remembered: the least recently seen is forgotten (it comes back with a full bucket)."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def _refilled(self, key: str, now: float) -> float:
        tokens, stamp = self._buckets.get(key, (float(self.burst), now))
        return min(float(self.burst), tokens + (now - stamp) * self.rate)

    def is_empty(self, key: str) -> bool:
        """Not even one request's worth left (nothing is charged)."""
        return self.rate > 0 and self._refilled(key, time.monotonic()) < 1

    def allow(self, key: str, cost: int = 1) -> bool:
        if self.rate <= 0:
            return True
        now = time.monotonic()
        tokens = self._refilled(key, now)
        self._buckets.pop(key, None)
        allowed = tokens >= cost
        self._buckets[key] = (tokens - cost if allowed else tokens, now)
        if len(self._buckets) > MAX_BUCKETS:
            self._buckets.popitem(last=False)
        return allowed
