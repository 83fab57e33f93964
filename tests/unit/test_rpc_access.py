"""Who may talk to the RPC server and how much (geth's rules where geth has one), and the
dispatcher's namespace allow-list and batch response budget."""

from __future__ import annotations

import asyncio
import gc
import time
import weakref
from typing import Any

import pytest

from cairn.rpc import access, memory
from cairn.rpc.access import (
    ClientAddress,
    TokenBuckets,
    cors_headers,
    default_burst,
    host_allowed,
    parse_rate,
    token_matches,
    ws_origin_allowed,
)
from cairn.rpc.dispatch import Access, Dispatcher, ResponseTooLarge, namespace_of
from tests.support.wait import wait_until_async


@pytest.mark.parametrize(
    ("host", "vhosts", "allowed"),
    [
        ("localhost:8545", ("localhost",), True),
        ("LOCALHOST", ("localhost",), True),
        ("127.0.0.1:8545", ("localhost",), True),  # an IP is never a rebound name
        ("[::1]:8545", ("localhost",), True),
        ("10.1.2.3", (), True),
        ("evil.example:8545", ("localhost",), False),
        ("localhost.evil.example", ("localhost",), False),
        ("node:8545", ("localhost", "node"), True),
        ("anything.example", ("*",), True),
        (None, ("localhost",), True),  # no Host header: not a browser
    ],
)
def test_hosts_as_geths_vhosts(host: str | None, vhosts: tuple[str, ...], allowed: bool) -> None:
    assert host_allowed(host, vhosts) is allowed


def test_cors_headers_only_for_listed_origins() -> None:
    assert cors_headers("http://evil.example", ()) == {}
    assert cors_headers(None, ("*",)) == {}
    assert cors_headers("http://any.example", ("*",)) == {"Access-Control-Allow-Origin": "*"}
    assert cors_headers("http://app.example", ("http://app.example",)) == {
        "Access-Control-Allow-Origin": "http://app.example",
        "Vary": "Origin",
    }
    assert cors_headers("http://evil.example", ("http://app.example",)) == {}


@pytest.mark.parametrize(
    ("origin", "rules", "allowed"),
    [
        (None, (), True),  # not a browser
        ("http://localhost:5173", (), True),
        ("http://127.0.0.1:3000", (), True),
        ("https://localhost:5173", (), False),  # the default rules name http
        ("http://evil.example", (), False),
        ("http://localhost.evil.example", (), False),
        ("http://evil.example", ("*",), True),
        ("http://app.example:3000", ("http://app.example",), True),  # any port
        ("http://app.example:3000", ("http://app.example:4000",), False),
        ("https://app.example", ("app.example",), True),  # no scheme named: any
        ("http://localhost:5173", ("http://app.example",), False),  # a list replaces localhost
        ("null", ("http://app.example",), False),
    ],
)
def test_websocket_origins_as_geth(
    origin: str | None, rules: tuple[str, ...], allowed: bool
) -> None:
    assert ws_origin_allowed(origin, rules) is allowed


def test_client_address_behind_trusted_proxies() -> None:
    none = ClientAddress.parse(())
    assert none.of("127.0.0.1", "10.0.0.1") == "127.0.0.1"  # nobody trusted: XFF ignored
    proxies = ClientAddress.parse(("127.0.0.1", "10.10.0.0/16"))
    assert proxies.of("127.0.0.1", "203.0.113.7") == "203.0.113.7"
    # the client may write anything on the left; the nearest untrusted hop is who it is
    assert proxies.of("127.0.0.1", "1.1.1.1, 203.0.113.7") == "203.0.113.7"
    assert proxies.of("127.0.0.1", "203.0.113.7, 10.10.4.4") == "203.0.113.7"
    assert proxies.of("192.0.2.1", "203.0.113.7") == "192.0.2.1"  # not from a proxy
    assert proxies.of("127.0.0.1", None) == "127.0.0.1"
    assert proxies.of("127.0.0.1", "10.10.1.1") == "10.10.1.1"  # only proxies: the farthest
    with pytest.raises(ValueError, match="not an IP or CIDR"):
        ClientAddress.parse(("proxy.local",))


def test_bearer_tokens() -> None:
    token = b"s3cret-token-0123456789"
    assert token_matches(None, token) is None
    assert token_matches("Bearer s3cret-token-0123456789", token) is True
    assert token_matches("bearer  s3cret-token-0123456789 ", token) is True
    assert token_matches("Bearer wrong", token) is False
    assert token_matches("Basic czNjcmV0", token) is False
    assert token_matches("Bearer anything", None) is False


@pytest.mark.parametrize(
    ("text", "per_second", "burst"),
    [("0", 0.0, 1), ("10", 10.0, 10), ("10/s", 10.0, 10), ("100/min", 100 / 60, 100)],
)
def test_rates_per_second_or_minute(text: str, per_second: float, burst: int) -> None:
    assert parse_rate(text) == pytest.approx(per_second)
    assert default_burst(text) == burst


@pytest.mark.parametrize("text", ["fast", "10/hour", "-1", "1/2s"])
def test_bad_rates_are_refused_by_name(text: str) -> None:
    with pytest.raises(ValueError, match=r"--rpc\.ratelimit"):
        parse_rate(text)


def test_token_buckets_refill_and_forget_the_least_recent(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    monkeypatch.setattr(access, "MAX_BUCKETS", 3)
    buckets = TokenBuckets(rate=1.0, burst=2)
    assert [buckets.allow("a") for _ in range(3)] == [True, True, False]
    assert buckets.is_empty("a")
    now[0] += 1.0
    assert not buckets.is_empty("a") and buckets.allow("a")
    assert not buckets.allow("b", cost=3)  # more than the bucket ever holds
    for key in ("c", "d", "e"):
        buckets.allow(key)
    assert "a" not in buckets._buckets  # forgotten: it comes back with a full bucket
    assert TokenBuckets(rate=0, burst=0).allow("x", cost=10**6)


# ------------------------------------------------------------------ dispatcher
class _Methods:
    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.started = 0
        self.cancelled = 0

    async def chain_id(self) -> str:
        return "0x7a69"

    async def trace(self) -> str:
        return "traced"

    async def slow(self, size: int) -> str:
        self.started += 1
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return "x" * size

    async def quick(self, size: int) -> str:
        return "x" * size


def _dispatcher(methods: _Methods) -> Dispatcher:
    return Dispatcher(
        {
            "eth_chainId": methods.chain_id,
            "debug_traceTransaction": methods.trace,
            "eth_slow": methods.slow,
            "eth_quick": methods.quick,
        },
        batch_limit=100,
    )


def _request(method: str, *params: Any, id_: int = 1) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": id_, "method": method, "params": list(params)}


def test_namespaces_come_from_the_method_name() -> None:
    assert namespace_of("debug_traceTransaction") == "debug"
    assert namespace_of("eth_getBlockByNumber") == "eth"
    assert namespace_of("web3") == "web3"


def test_an_endpoint_serves_only_its_namespaces() -> None:
    dispatcher = _dispatcher(_Methods())
    only_eth = Access(frozenset({"eth"}), "--http.api", token=True)

    async def scenario() -> tuple[Any, Any, Any, Any]:
        return (
            await dispatcher.handle(_request("eth_chainId"), access=only_eth),
            await dispatcher.handle(_request("debug_traceTransaction"), access=only_eth),
            await dispatcher.handle(_request("debug_traceTransaction")),
            await dispatcher.handle(_request("nope_method"), access=only_eth),
        )

    allowed, refused, open_, unknown = asyncio.run(scenario())
    assert allowed["result"] == "0x7a69"
    assert refused["error"] == {
        "code": -32601,
        "message": "the method debug_traceTransaction does not exist/is not available: the "
        "debug namespace is not enabled on this endpoint (add it to --http.api or send the "
        "--rpc.token-file bearer token)",
    }
    assert open_["result"] == "traced"
    assert unknown["error"]["message"] == "the method nope_method does not exist/is not available"
    assert dispatcher.errors["debug_traceTransaction"] == 1


class _Budget:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self.seen = 0

    def add(self, answer: dict[str, Any]) -> None:
        self.seen += 1
        self.size += len(str(answer.get("result", "")))
        if self.size > self.limit:
            raise ResponseTooLarge(f"response too large: {self.size} bytes, limit {self.limit}")


def test_a_batch_stops_as_soon_as_its_answers_pass_the_budget() -> None:
    methods = _Methods()
    dispatcher = _dispatcher(methods)
    budget = _Budget(limit=2500)

    async def scenario() -> Any:
        batch = [_request("eth_quick", 1000, id_=i) for i in range(3)]
        batch += [_request("eth_slow", 1000, id_=10 + i) for i in range(50)]
        answer = await dispatcher.handle(batch, sink=budget)
        methods.release.set()
        return answer

    answer = asyncio.run(scenario())
    assert answer == {
        "jsonrpc": "2.0",
        "id": None,
        "error": {"code": -32005, "message": "response too large: 3000 bytes, limit 2500"},
    }
    assert budget.seen == 3  # the third answer crossed the limit; nothing after was built
    assert methods.started == 50 and methods.cancelled == 50


def test_a_batch_within_its_budget_is_answered_in_order() -> None:
    dispatcher = _dispatcher(_Methods())
    budget = _Budget(limit=10_000)
    batch = [_request("eth_quick", n, id_=n) for n in (3, 1, 2)] + [
        {"jsonrpc": "2.0", "method": "eth_chainId"}  # a notification: no answer
    ]
    answer = asyncio.run(dispatcher.handle(batch, sink=budget))
    assert [a["id"] for a in answer] == [3, 1, 2]
    assert budget.seen == 3


class _Held:
    """A result that can be watched with a weak reference."""

    def __init__(self, size: int) -> None:
        self.text = "x" * size

    def __str__(self) -> str:
        return self.text


def test_a_stopped_batch_lets_go_of_its_answers_at_once() -> None:
    """Without the garbage collector: a refused batch's answers must not wait for it (a
    node runs full collections rarely, and each such batch held megabytes)."""
    held: list[weakref.ref[_Held]] = []

    async def big(size: int) -> _Held:
        result = _Held(size)
        held.append(weakref.ref(result))
        return result

    dispatcher = Dispatcher({"eth_big": big}, batch_limit=100)
    batch = [_request("eth_big", 1000, id_=i) for i in range(10)]
    gc.disable()
    try:
        answer = asyncio.run(dispatcher.handle(batch, sink=_Budget(limit=2500)))
        assert answer["error"]["code"] == -32005
        assert held and all(ref() is None for ref in held)
    finally:
        gc.enable()


def test_memory_is_handed_back_at_most_once_per_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    trims: list[int] = []

    def trim(pad: int) -> int:
        trims.append(pad)
        return 1

    monkeypatch.setattr(memory, "_TRIM", trim)

    async def scenario() -> None:
        releaser = memory.MemoryReleaser(min_interval=0.2)
        releaser.release_soon()
        releaser.release_soon()  # already pending: one trim
        await wait_until_async(lambda: _done(trims, 1), within=5, interval=0.01)
        releaser.release_soon()  # within the interval: waits for its end
        assert trims == [0]
        await wait_until_async(lambda: _done(trims, 2), within=5, interval=0.01)

    asyncio.run(scenario())
    assert trims == [0, 0]


async def _done(trims: list[int], count: int) -> bool:
    return len(trims) >= count
