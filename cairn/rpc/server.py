"""The aiohttp server: JSON-RPC over HTTP POST and WebSocket on the HTTP port (as Anvil) and
on the separate WS port (as geth), with body, batch, response and rate limits and CORS.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from cairn.rpc.backend import RpcConfig
from cairn.rpc.cache import RawJson
from cairn.rpc.dispatch import Dispatcher
from cairn.rpc.errors import INVALID_REQUEST, LIMIT_EXCEEDED, PARSE_ERROR
from cairn.rpc.jsonbody import decode_json

log = logging.getLogger("cairn.rpc")
STREAMED_RESULT_BYTES = 256 * 1024

Route = tuple[str, str, Callable[[web.Request], Awaitable[web.StreamResponse]]]


def encode(value: Any) -> bytes:
    """JSON bytes of an answer. orjson is ~10x faster than json on large blocks and embeds
    `RawJson` (JSON cached by the namespaces) without re-encoding it."""
    try:
        return orjson.dumps(value, default=_embed)
    except TypeError:  # an integer beyond 64 bits: orjson refuses it, json does not
        return json.dumps(_thaw(value), separators=(",", ":")).encode()


def _embed(value: Any) -> orjson.Fragment:
    if isinstance(value, RawJson):
        return orjson.Fragment(value.raw)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def encode_parts(answer: Any) -> list[bytes]:
    """The answer's JSON as chunks to send in order. A large cached result (a full block,
    a block's receipts) is sent as it is held, between the envelope's two ends, instead of
    being copied into one new buffer per request."""
    result = answer.get("result") if isinstance(answer, dict) else None
    if isinstance(result, RawJson) and len(result.raw) >= STREAMED_RESULT_BYTES:
        envelope = orjson.dumps({"jsonrpc": "2.0", "id": answer.get("id")})
        return [envelope[:-1] + b',"result":', result.raw, b"}"]
    return [encode(answer)]


def _thaw(value: Any) -> Any:
    if isinstance(value, RawJson):
        return orjson.loads(value.raw)
    if isinstance(value, dict):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_thaw(v) for v in value]
    return value


def _dumps(value: Any) -> str:
    return encode(value).decode()


def error_body(code: int, message: str) -> str:
    return _dumps({"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": message}})


class TokenBuckets:
    """Per-client-IP token buckets; `rate == 0` turns limiting off."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: dict[str, tuple[float, float]] = {}

    def allow(self, key: str, cost: int = 1) -> bool:
        if self.rate <= 0:
            return True
        now = time.monotonic()
        tokens, stamp = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - stamp) * self.rate)
        if tokens < cost:
            self._buckets[key] = (tokens, now)
            return False
        self._buckets[key] = (tokens - cost, now)
        if len(self._buckets) > 100_000:
            self._buckets.clear()
        return True


class WsSession:
    """One WebSocket connection; subscriptions push notifications through `notify`."""

    def __init__(self, ws: web.WebSocketResponse, remote: str) -> None:
        self.ws = ws
        self.remote = remote
        self.closed = False
        self.on_close: list[Callable[[], None]] = []
        # geth closes a subscriber that falls 20,000 notifications behind; so do we
        self._queue: asyncio.Queue[str] = asyncio.Queue(maxsize=20_000)
        self._closing: asyncio.Future[None] | None = None

    def notify(self, subscription: str, result: Any) -> None:
        message = {
            "jsonrpc": "2.0",
            "method": "eth_subscription",
            "params": {"subscription": subscription, "result": result},
        }
        try:
            self._queue.put_nowait(_dumps(message))
        except asyncio.QueueFull:
            log.warning("ws client %s is not reading; closing its connection", self.remote)
            self._close(b"subscription backlog overflow")

    def send_text(self, text: str) -> None:
        try:
            self._queue.put_nowait(text)
        except asyncio.QueueFull:
            self._close(b"send backlog overflow")

    def _close(self, reason: bytes) -> None:
        self.closed = True
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._close_ws(reason))

    async def _close_ws(self, reason: bytes) -> None:
        await self.ws.close(message=reason)

    async def writer(self) -> None:
        while True:
            text = await self._queue.get()
            if self.ws.closed:
                return
            await self.ws.send_str(text)


class RpcServer:
    def __init__(
        self,
        dispatcher: Dispatcher,
        config: RpcConfig,
        host: str,
        port: int,
        ws_port: int | None,
        extra_routes: list[Route] | None = None,
    ) -> None:
        self.dispatcher = dispatcher
        self.config = config
        self.host = host
        self.port = port
        self.ws_port = ws_port
        self.limiter = TokenBuckets(config.rate_limit_per_second, config.rate_limit_burst)
        self.app = web.Application(client_max_size=config.max_body_bytes)
        self.app.router.add_route("POST", "/", self._http)
        self.app.router.add_route("GET", "/", self._get_root)
        self.app.router.add_route("OPTIONS", "/", self._preflight)
        for method, path, handler in extra_routes or []:
            self.app.router.add_route(method, path, handler)
        self._runner: web.AppRunner | None = None
        self.sessions: set[WsSession] = set()
        self.bound_ports: list[int] = []

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        ports = [self.port] + ([self.ws_port] if self.ws_port and self.ws_port != self.port else [])
        for port in ports:
            site = web.TCPSite(self._runner, self.host, port, reuse_address=True)
            await site.start()
            server = site._server
            sockets = getattr(server, "sockets", None) or []
            self.bound_ports.append(sockets[0].getsockname()[1] if sockets else port)

    async def stop(self) -> None:
        for session in list(self.sessions):
            await session.ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ------------------------------------------------------------ CORS
    def _cors_headers(self, request: web.Request) -> dict[str, str]:
        origin = request.headers.get("Origin")
        if origin is None:
            return {}
        allowed = self.config.cors_origins
        if "*" in allowed:
            return {"Access-Control-Allow-Origin": "*"}
        if origin in allowed:
            return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
        return {}

    async def _preflight(self, request: web.Request) -> web.Response:
        headers = self._cors_headers(request)
        if request.headers.get("Origin") is not None and not headers:
            return web.Response(status=403, text="origin not allowed")
        headers.update(
            {
                "Access-Control-Allow-Methods": "POST, GET, OPTIONS",
                "Access-Control-Allow-Headers": "Content-Type, Authorization",
                "Access-Control-Max-Age": "600",
            }
        )
        return web.Response(status=204, headers=headers)

    # ------------------------------------------------------------ HTTP
    def _remote(self, request: web.Request) -> str:
        return request.remote or "unknown"

    async def _http(self, request: web.Request) -> web.StreamResponse:
        headers = self._cors_headers(request)
        if request.headers.get("Origin") is not None and not headers:
            return web.Response(
                status=403,
                text=error_body(INVALID_REQUEST, "origin not allowed by --http.corsdomain"),
                content_type="application/json",
            )
        length = request.content_length
        if length is not None and length > self.config.max_body_bytes:
            return self._json(
                error_body(
                    INVALID_REQUEST,
                    f"request body too large: {length} bytes, limit {self.config.max_body_bytes}",
                ),
                headers,
                status=413,
            )
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return self._json(
                error_body(
                    INVALID_REQUEST,
                    f"request body too large: limit {self.config.max_body_bytes} bytes",
                ),
                headers,
                status=413,
            )
        try:
            payload = decode_json(body)
        except (ValueError, UnicodeDecodeError) as exc:
            return self._json(error_body(PARSE_ERROR, f"parse error: {exc}"), headers)
        cost = len(payload) if isinstance(payload, list) else 1
        if not self.limiter.allow(self._remote(request), max(1, cost)):
            return self._json(
                error_body(
                    LIMIT_EXCEEDED, "rate limit exceeded: slow down or raise --rpc.ratelimit"
                ),
                headers,
                status=429,
            )
        answer = await self.dispatcher.handle(payload)
        if answer is None:
            return web.Response(status=200, headers=headers)
        parts = encode_parts(answer)
        size = sum(len(part) for part in parts)
        if size > self.config.max_response_bytes:
            parts = [
                error_body(
                    LIMIT_EXCEEDED,
                    f"response too large: {size} bytes, limit {self.config.max_response_bytes}",
                ).encode()
            ]
        if len(parts) == 1:
            return self._json(parts[0], headers)
        response = web.StreamResponse(headers=headers)
        response.content_type = "application/json"
        response.content_length = size
        try:
            await response.prepare(request)
            for part in parts:
                await response.write(part)
            await response.write_eof()
        except ConnectionResetError:  # the client left mid-answer: nothing to tell it
            log.debug("client %s left before its answer was sent", self._remote(request))
        return response

    @staticmethod
    def _json(body: str | bytes, headers: dict[str, str], status: int = 200) -> web.Response:
        raw = body.encode() if isinstance(body, str) else body
        return web.Response(
            status=status, body=raw, content_type="application/json", headers=headers
        )

    async def _get_root(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._websocket(request)
        return web.Response(
            status=200,
            text="Cairn JSON-RPC endpoint: POST JSON-RPC 2.0 requests here, or open a WebSocket.\n",
        )

    # ------------------------------------------------------------ WebSocket
    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        # Up to twice the body limit a message gets a JSON-RPC error (the connection stays);
        # beyond that aiohttp closes the connection with 1009 before reading it all.
        ws = web.WebSocketResponse(
            max_msg_size=2 * self.config.max_body_bytes, heartbeat=30.0, compress=False
        )
        await ws.prepare(request)
        session = WsSession(ws, self._remote(request))
        self.sessions.add(session)
        writer = asyncio.create_task(session.writer())
        try:
            async for message in ws:
                if message.type == WSMsgType.TEXT:
                    await self._ws_message(session, message.data)
                elif message.type == WSMsgType.BINARY:
                    await self._ws_message(session, message.data.decode("utf-8", "replace"))
                elif message.type == WSMsgType.ERROR:
                    break
        finally:
            session.closed = True
            self.sessions.discard(session)
            for callback in session.on_close:
                callback()
            writer.cancel()
        return ws

    async def _ws_message(self, session: WsSession, text: str) -> None:
        if len(text) > self.config.max_body_bytes:
            session.send_text(
                error_body(
                    INVALID_REQUEST,
                    f"request too large: {len(text)} bytes, limit "
                    f"{self.config.max_body_bytes} (--rpc.max-body)",
                )
            )
            return
        try:
            payload = decode_json(text)
        except ValueError as exc:
            session.send_text(error_body(PARSE_ERROR, f"parse error: {exc}"))
            return
        cost = len(payload) if isinstance(payload, list) else 1
        if not self.limiter.allow(session.remote, max(1, cost)):
            session.send_text(error_body(LIMIT_EXCEEDED, "rate limit exceeded"))
            return
        answer = await self.dispatcher.handle(payload, context=session)
        if answer is not None:
            text = _dumps(answer)
            if len(text) > self.config.max_response_bytes:
                text = error_body(
                    LIMIT_EXCEEDED,
                    f"response too large: {len(text)} bytes, limit "
                    f"{self.config.max_response_bytes}",
                )
            session.send_text(text)
