"""The JSON-RPC dispatcher, transport-free: requests and batches as JSON-RPC 2.0 says,
argument checking from each method's signature, and registration that refuses a method
name twice (which one answered used to depend on dict merge order)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from cairn.rpc.dispatch import Dispatcher, collect, collect_all, rpc_method


class Math:
    @rpc_method("test_add")
    async def add(self, a: Any, b: Any = 0) -> Any:
        return a + b

    @rpc_method("test_fail")
    async def fail(self) -> None:
        raise ValueError("boom")


class Holder:
    """Holds another namespace's bound method: that is not a registration."""

    def __init__(self, math: Math) -> None:
        self._add = math.add

    @rpc_method("test_held")
    async def held(self) -> int:
        return 1


class Clash:
    @rpc_method("test_add")
    async def other_add(self) -> int:
        return 0


def run(payload: Any) -> Any:
    dispatcher = Dispatcher(collect_all(Math(), Holder(Math())), batch_limit=3)
    return asyncio.run(dispatcher.handle(payload))


def test_requests_notifications_and_batches() -> None:
    assert run({"jsonrpc": "2.0", "id": 1, "method": "test_add", "params": [2, 3]}) == {
        "jsonrpc": "2.0",
        "id": 1,
        "result": 5,
    }
    assert run({"jsonrpc": "2.0", "method": "test_add", "params": [2, 3]}) is None
    batch = run(
        [
            {"jsonrpc": "2.0", "id": "a", "method": "test_add", "params": [1]},
            {"jsonrpc": "2.0", "method": "test_add", "params": [1]},
            {"jsonrpc": "2.0", "id": "b", "method": "nope"},
        ]
    )
    assert [r["id"] for r in batch] == ["a", "b"]
    assert batch[0]["result"] == 1 and batch[1]["error"]["code"] == -32601


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ([], -32600),
        ("x", -32600),
        ({"jsonrpc": "1.0", "id": 1, "method": "test_add"}, -32600),
        ({"jsonrpc": "2.0", "id": [1], "method": "test_add"}, -32600),
        ({"jsonrpc": "2.0", "id": 1, "method": 7}, -32600),
        ({"jsonrpc": "2.0", "id": 1, "method": "test_add", "params": {"a": 1}}, -32602),
        ({"jsonrpc": "2.0", "id": 1, "method": "test_add", "params": [1, 2, 3]}, -32602),
        ({"jsonrpc": "2.0", "id": 1, "method": "test_add", "params": []}, -32602),
        ({"jsonrpc": "2.0", "id": 1, "method": "test_fail"}, -32603),
        ([{"jsonrpc": "2.0", "id": i, "method": "test_held"} for i in range(4)], -32005),
    ],
)
def test_bad_requests_get_the_spec_codes(payload: Any, code: int) -> None:
    answer = run(payload)
    assert answer["error"]["code"] == code


def test_each_method_is_registered_once() -> None:
    assert sorted(collect(Holder(Math()))) == ["test_held"]
    with pytest.raises(ValueError, match="test_add is registered by both Math and Clash"):
        collect_all(Math(), Clash())
