"""Request ids: each request served by the dispatcher has its own id; an internal error's
answer names it and the JSON log line of that error carries it; latency is observed per
method."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any, cast

from cairn.node.logs import JsonFormatter, RequestIdFilter, TextFormatter
from cairn.rpc.backend import Backend
from cairn.rpc.dispatch import REQUEST_ID, Dispatcher, client_request_id, collect, rpc_method


class Broken:
    @rpc_method("test_broken")
    async def broken(self) -> None:
        raise RuntimeError("a bug")

    @rpc_method("test_id")
    async def current(self) -> str:
        logging.getLogger("cairn.test").warning("inside a call")
        return REQUEST_ID.get()


def _dispatcher(observed: list[tuple[str, float]]) -> Dispatcher:
    return Dispatcher(collect(Broken()), 10, observe=lambda method, s: observed.append((method, s)))


def _capture(formatter: logging.Formatter) -> tuple[io.StringIO, logging.Handler]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(formatter)
    logging.getLogger("cairn").addHandler(handler)
    return stream, handler


def test_internal_error_names_its_request_in_answer_and_json_log() -> None:
    observed: list[tuple[str, float]] = []
    dispatcher = _dispatcher(observed)
    stream, handler = _capture(JsonFormatter())
    try:
        answer: Any = asyncio.run(
            dispatcher.handle({"jsonrpc": "2.0", "id": 1, "method": "test_broken"})
        )
    finally:
        logging.getLogger("cairn").removeHandler(handler)
    assert answer["error"]["code"] == -32603
    message = answer["error"]["message"]
    assert message.endswith(")") and "(request " in message
    request = message.rsplit("(request ", 1)[1].rstrip(")")
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    errors = [r for r in records if r["msg"].startswith("internal error in test_broken")]
    assert len(errors) == 1
    assert errors[0]["request"] == request and "RuntimeError: a bug" in errors[0]["exc"]
    assert [m for m, _ in observed] == ["test_broken"] and observed[0][1] >= 0
    assert REQUEST_ID.get() == ""  # reset once the request is answered


def test_each_request_has_its_own_id_and_a_batch_shares_one() -> None:
    observed: list[tuple[str, float]] = []
    dispatcher = _dispatcher(observed)
    stream, handler = _capture(TextFormatter("%(message)s"))
    call = {"jsonrpc": "2.0", "id": 1, "method": "test_id"}

    async def serve() -> tuple[Any, Any, Any]:
        return (
            await dispatcher.handle(call),
            await dispatcher.handle(call),
            await dispatcher.handle([call, dict(call, id=2)]),
        )

    try:
        one, two, batch = asyncio.run(serve())
    finally:
        logging.getLogger("cairn").removeHandler(handler)
    assert one["result"] and two["result"] and one["result"] != two["result"]
    assert batch[0]["result"] == batch[1]["result"] not in (one["result"], two["result"])
    lines = stream.getvalue().splitlines()
    assert lines[0] == f"inside a call [req {one['result']}]"
    assert len(observed) == 4


def test_work_on_the_backends_threads_keeps_the_request_id() -> None:
    """Heavy reads and calls run on threads; what they log still names the request."""
    holder = SimpleNamespace(reads=ThreadPoolExecutor(1), call_thread=ThreadPoolExecutor(1))
    backend = cast(Backend, holder)

    async def served() -> tuple[str, str]:
        token = REQUEST_ID.set("req-42")
        try:
            read = await Backend.run_read(backend, REQUEST_ID.get)
            called = await Backend.run_call(backend, REQUEST_ID.get)
        finally:
            REQUEST_ID.reset(token)
        return read, called

    try:
        assert asyncio.run(served()) == ("req-42", "req-42")
    finally:
        holder.reads.shutdown()
        holder.call_thread.shutdown()


def test_only_safe_client_ids_are_taken() -> None:
    assert client_request_id("abc-1.2:x_y") == "abc-1.2:x_y"
    for unsafe in (None, "", "a b", "line\nbreak", "x" * 65, "é"):
        assert client_request_id(unsafe) is None
