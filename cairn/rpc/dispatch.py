"""JSON-RPC 2.0 request handling, independent of transport: validation, batches, namespace
access, dispatch.

A method's namespace is the part of its name before the first underscore (`debug` for
`debug_traceTransaction`); an endpoint serves only the namespaces its `Access` allows. A
batch's answers are handed to the transport's `AnswerSink` as each one is ready, so that a
batch whose response would be too large is stopped while it is built, not after.

Each request (a single call, a batch, one WebSocket message) gets a request id in the
`REQUEST_ID` context variable while it is served: log records made meanwhile carry it (the
JSON log format prints it; work handed to threads keeps it), internal errors name it to the
client, and HTTP answers carry it as `X-Request-Id` (a client's own, if it sent a safe one).
Every known method's time to answer goes to the `observe` hook (/metrics).
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import itertools
import logging
import os
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from cairn.errors import CairnError
from cairn.rpc.errors import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    LIMIT_EXCEEDED,
    METHOD_NOT_FOUND,
    RpcError,
    from_exception,
)

log = logging.getLogger("cairn.rpc")

Handler = Callable[..., Awaitable[Any]]
Observe = Callable[[str, float], None]  # (method, seconds)

# The id of the request being served in this task ("" outside a request).
REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("cairn_request_id", default="")
_PROCESS_TAG = os.urandom(3).hex()
_REQUESTS = itertools.count(1)


def new_request_id() -> str:
    """Unique within this process's life and unlikely to repeat across restarts."""
    return f"{_PROCESS_TAG}-{next(_REQUESTS):x}"


_CLIENT_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def client_request_id(value: str | None) -> str | None:
    """A client's `X-Request-Id` if it is safe to log as it is (1-64 of `A-Za-z0-9._:-`,
    as proxies make them), else None (a new id is made)."""
    if value is not None and _CLIENT_ID.fullmatch(value):
        return value
    return None


def _ignore(method: str, seconds: float) -> None:
    return None


def rpc_method(name: str) -> Callable[[Handler], Handler]:
    """Mark a namespace coroutine as the JSON-RPC method `name`."""

    def mark(fn: Handler) -> Handler:
        fn.__dict__["rpc_name"] = name
        return fn

    return mark


def collect(namespace: object) -> dict[str, Handler]:
    """The methods `namespace`'s class marks with `rpc_method` (not callables it merely holds,
    such as another namespace's bound method)."""
    methods: dict[str, Handler] = {}
    for attr in dir(type(namespace)):
        name = getattr(getattr(type(namespace), attr), "rpc_name", None)
        if name is not None:
            methods[name] = getattr(namespace, attr)
    return methods


def collect_all(*namespaces: object) -> dict[str, Handler]:
    """Every method of `namespaces`; a name registered twice is a wiring bug, refused here."""
    methods: dict[str, Handler] = {}
    owners: dict[str, str] = {}
    for namespace in namespaces:
        owner = type(namespace).__name__
        for name, fn in collect(namespace).items():
            if name in methods:
                raise ValueError(f"{name} is registered by both {owners[name]} and {owner}")
            methods[name] = fn
            owners[name] = owner
    return methods


def _error(request_id: Any, error: RpcError) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "error": error.to_json()}


def namespace_of(method: str) -> str:
    """`debug` for `debug_traceTransaction`: the name up to its first underscore."""
    return method.split("_", 1)[0]


# geth serves rpc_modules on every endpoint, whatever --http.api says.
ALWAYS_OPEN = frozenset({"rpc"})


@dataclass(frozen=True)
class Access:
    """The namespaces one request may reach: None is every namespace. `flag` names the option
    that lists them, for the refusal message; `token` says a bearer token would open more."""

    namespaces: frozenset[str] | None = None
    flag: str = "--http.api"
    token: bool = False

    def allows(self, namespace: str) -> bool:
        return self.namespaces is None or namespace in self.namespaces or namespace in ALWAYS_OPEN

    def refusal(self, method: str) -> RpcError:
        namespace = namespace_of(method)
        opener = " or send the --rpc.token-file bearer token" if self.token else ""
        return RpcError(
            METHOD_NOT_FOUND,
            f"the method {method} does not exist/is not available: the {namespace} namespace "
            f"is not enabled on this endpoint (add it to {self.flag}{opener})",
        )


OPEN = Access()


class ResponseTooLarge(Exception):
    """Raised by an `AnswerSink` when the answers so far exceed the response limit."""


class AnswerSink(Protocol):
    """The transport's view of a batch being answered: it encodes and measures each answer
    as it is ready, and raises `ResponseTooLarge` to stop the batch."""

    def add(self, answer: dict[str, Any]) -> None: ...


class Dispatcher:
    def __init__(
        self, methods: dict[str, Handler], batch_limit: int, observe: Observe = _ignore
    ) -> None:
        self.methods = methods
        self.batch_limit = batch_limit
        self.observe = observe
        self._signatures = {name: inspect.signature(fn) for name, fn in methods.items()}
        # Served calls and error answers by method ("other" for unknown names), for /metrics.
        self.calls: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()

    async def handle(
        self,
        payload: Any,
        *,
        context: Any = None,
        access: Access = OPEN,
        sink: AnswerSink | None = None,
        request_id: str | None = None,
    ) -> Any:
        """Answer a decoded request or batch; None means nothing to send (notifications).
        A batch stopped by `sink` is answered with one `-32005 response too large` error.
        `request_id`: the id its logs carry (the transport's; else a new one)."""
        token = REQUEST_ID.set(request_id or new_request_id())
        try:
            return await self._handle(payload, context, access, sink)
        finally:
            REQUEST_ID.reset(token)

    async def _handle(
        self, payload: Any, context: Any, access: Access, sink: AnswerSink | None
    ) -> Any:
        if isinstance(payload, list):
            if not payload:
                return _error(None, RpcError(INVALID_REQUEST, "empty batch"))
            if len(payload) > self.batch_limit:
                return _error(
                    None,
                    RpcError(
                        LIMIT_EXCEEDED,
                        f"batch too large: {len(payload)} requests, limit {self.batch_limit}",
                    ),
                )
            return await self._batch(payload, context, access, sink)
        return await self.handle_one(payload, context=context, access=access)

    async def _batch(
        self, payload: list[Any], context: Any, access: Access, sink: AnswerSink | None
    ) -> Any:
        answers: list[dict[str, Any] | None] = [None] * len(payload)

        async def answer(index: int, item: Any) -> None:
            reply = await self.handle_one(item, context=context, access=access)
            if reply is not None and sink is not None:
                sink.add(reply)
            answers[index] = reply

        # Items run concurrently (as Anvil does), so that the transactions of one batch
        # share one journal fsync; each item starts in order.
        tasks = [asyncio.ensure_future(answer(i, item)) for i, item in enumerate(payload)]
        try:
            await asyncio.gather(*tasks)
        except ResponseTooLarge as exc:
            message = str(exc)
            # What is left is cancelled (a cancelled submission's transaction is still
            # admitted or refused as a whole by the pool; only its answer is lost).
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            # The exception's traceback holds this frame, which holds the tasks, one of
            # which holds the exception: drop the answers now rather than at the next full
            # garbage collection (rare on a node: see cairn.node.heap).
            tasks.clear()
            answers.clear()
            return _error(None, RpcError(LIMIT_EXCEEDED, message))
        except BaseException:
            for task in tasks:
                task.cancel()
            tasks.clear()
            answers.clear()
            raise
        replies = [a for a in answers if a is not None]
        return replies or None

    async def handle_one(
        self, request: Any, *, context: Any = None, access: Access = OPEN
    ) -> dict[str, Any] | None:
        if not isinstance(request, dict):
            return _error(None, RpcError(INVALID_REQUEST, "invalid request: expected an object"))
        request_id = request.get("id")
        is_notification = "id" not in request
        if request_id is not None and not isinstance(request_id, str | int | float):
            return _error(None, RpcError(INVALID_REQUEST, "invalid request: bad id type"))
        if request.get("jsonrpc") != "2.0":
            return _error(
                request_id, RpcError(INVALID_REQUEST, 'invalid request: jsonrpc must be "2.0"')
            )
        method = request.get("method")
        if not isinstance(method, str):
            return _error(
                request_id, RpcError(INVALID_REQUEST, "invalid request: method must be a string")
            )
        params = request.get("params", [])
        if params is None:
            params = []
        if not isinstance(params, list):
            error = RpcError(INVALID_PARAMS, "invalid params: expected an array (by-position)")
            return None if is_notification else _error(request_id, error)
        try:
            result = await self.call(method, params, context, access)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # every failure becomes an error object, the node keeps serving
            error = from_exception(exc)
            # A Cairn error answered -32603 is a verdict geth gives that code (an aborted
            # eth_simulateV1), not a bug: no traceback, no request id to look it up by.
            if error.code == INTERNAL_ERROR and not isinstance(exc, CairnError):
                request = REQUEST_ID.get()
                log.exception("internal error in %s (request %s)", method, request)
                error = RpcError(error.code, f"{error.message} (request {request})", error.data)
            else:
                log.debug("%s answered error %d: %s", method, error.code, error.message)
            return None if is_notification else _error(request_id, error)
        if is_notification:
            return None
        return {"jsonrpc": "2.0", "id": request_id, "result": result}

    async def call(
        self, method: str, params: list[Any], context: Any = None, access: Access = OPEN
    ) -> Any:
        fn = self.methods.get(method)
        if fn is None:
            self.calls["other"] += 1
            self.errors["other"] += 1
            raise RpcError(METHOD_NOT_FOUND, f"the method {method} does not exist/is not available")
        self.calls[method] += 1
        if not access.allows(namespace_of(method)):
            self.errors[method] += 1
            raise access.refusal(method)
        started = time.perf_counter()
        try:
            return await self._call(fn, method, params, context)
        except Exception:
            self.errors[method] += 1
            raise
        finally:
            self.observe(method, time.perf_counter() - started)

    async def _call(self, fn: Handler, method: str, params: list[Any], context: Any) -> Any:
        signature = self._signatures[method]
        args = list(params)
        if "context" in signature.parameters:
            try:
                bound = signature.bind(*args, context=context)
            except TypeError as exc:
                raise RpcError(INVALID_PARAMS, _arity_message(signature, len(args), exc)) from None
        else:
            try:
                bound = signature.bind(*args)
            except TypeError as exc:
                raise RpcError(INVALID_PARAMS, _arity_message(signature, len(args), exc)) from None
        return await fn(*bound.args, **bound.kwargs)


def _arity_message(signature: inspect.Signature, given: int, exc: TypeError) -> str:
    positional = [
        p
        for p in signature.parameters.values()
        if p.name != "context" and p.kind == p.POSITIONAL_OR_KEYWORD
    ]
    required = sum(1 for p in positional if p.default is p.empty)
    if given < required:
        return f"missing value for required argument {given}"
    return f"too many arguments, want at most {len(positional)}"
