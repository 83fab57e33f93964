"""JSON-RPC 2.0 request handling, independent of transport: validation, batches, dispatch."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from cairn.rpc.errors import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    LIMIT_EXCEEDED,
    METHOD_NOT_FOUND,
    RpcError,
    from_exception,
)

log = logging.getLogger("cairn.rpc")

Handler = Callable[..., Awaitable[Any]]


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


class Dispatcher:
    def __init__(self, methods: dict[str, Handler], batch_limit: int) -> None:
        self.methods = methods
        self.batch_limit = batch_limit
        self._signatures = {name: inspect.signature(fn) for name, fn in methods.items()}
        # Served calls and error answers by method ("other" for unknown names), for /metrics.
        self.calls: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()

    async def handle(self, payload: Any, *, context: Any = None) -> Any:
        """Answer a decoded request or batch; None means nothing to send (notifications)."""
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
            # Items run concurrently (as Anvil does), so that the transactions of one batch
            # share one journal fsync; each item starts in order.
            answers = await asyncio.gather(
                *(self.handle_one(item, context=context) for item in payload)
            )
            replies = [a for a in answers if a is not None]
            return replies or None
        return await self.handle_one(payload, context=context)

    async def handle_one(self, request: Any, *, context: Any = None) -> dict[str, Any] | None:
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
            result = await self.call(method, params, context)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # every failure becomes an error object, the node keeps serving
            error = from_exception(exc)
            if error.code == -32603:
                log.exception("internal error in %s", method)
            return None if is_notification else _error(request_id, error)
        if is_notification:
            return None
        return {"jsonrpc": "2.0", "id": request_id, "result": result}

    async def call(self, method: str, params: list[Any], context: Any = None) -> Any:
        fn = self.methods.get(method)
        if fn is None:
            self.calls["other"] += 1
            self.errors["other"] += 1
            raise RpcError(METHOD_NOT_FOUND, f"the method {method} does not exist/is not available")
        self.calls[method] += 1
        try:
            return await self._call(fn, method, params, context)
        except Exception:
            self.errors[method] += 1
            raise

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
