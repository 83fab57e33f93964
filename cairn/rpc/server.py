"""The aiohttp server: JSON-RPC over HTTP POST and WebSocket on the HTTP port (as Anvil) and
on the separate WS port (as geth).

Owns every limit a client meets before and after dispatch: Host check (--http.vhosts),
CORS, WebSocket origins, JSON-only POST bodies, body size, bearer token, per-client rate,
namespace access (--http.api/--ws.api, also for /metrics and /status), batch responses
measured as they are built, WebSocket connection count and each connection's send buffer
in bytes; and, after a large answer or a refusal at a limit, handing freed memory back.
A client that hits a limit gets a JSON-RPC error or an HTTP status, or (a WebSocket
client that does not read) is disconnected and everything queued for it freed; the node
keeps serving the others. Must never run chain work itself: namespaces do.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from cairn.rpc.access import (
    ClientAddress,
    TokenBuckets,
    cors_headers,
    host_allowed,
    token_matches,
    ws_origin_allowed,
)
from cairn.rpc.backend import RpcConfig
from cairn.rpc.cache import RawJson
from cairn.rpc.dispatch import (
    OPEN,
    Access,
    Dispatcher,
    ResponseTooLarge,
    client_request_id,
    new_request_id,
)
from cairn.rpc.errors import INVALID_REQUEST, LIMIT_EXCEEDED, PARSE_ERROR, UNAUTHORIZED
from cairn.rpc.jsonbody import decode_json
from cairn.rpc.memory import MemoryReleaser

log = logging.getLogger("cairn.rpc")
STREAMED_RESULT_BYTES = 256 * 1024
# What geth accepts as a JSON-RPC POST body; anything else (text/plain, forms) is what a web
# page can send cross-origin without a CORS preflight, so it is refused before it runs.
JSON_CONTENT_TYPES = frozenset(
    {"application/json", "application/json-rpc", "application/jsonrequest"}
)
# HTTP paths that show what the RPC namespaces would (peers and their addresses): each is
# served only where its name is in --http.api, or to a request carrying the bearer token.
RESTRICTED_PATHS = {"/metrics": "metrics", "/status": "status"}
# After an answer this large, or a request refused at a limit, freed memory is handed back.
LARGE_ANSWER_BYTES = 8 * 1024 * 1024

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


class EncodedAnswers:
    """An `AnswerSink`: a batch's answers encoded as each is ready, refused past `limit`."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 2  # the brackets
        self._parts: dict[int, bytes] = {}

    def add(self, answer: dict[str, Any]) -> None:
        raw = encode(answer)
        self.size += len(raw) + 1
        if self.size > self.limit:
            answers = len(self._parts) + 1
            self._parts.clear()
            raise ResponseTooLarge(
                f"response too large: {self.size} bytes after {answers} answers, "
                f"limit {self.limit} (--rpc.max-response)"
            )
        self._parts[id(answer)] = raw

    def join(self, answers: list[dict[str, Any]]) -> bytes:
        return b"[" + b",".join(self._parts[id(a)] for a in answers) + b"]"


class WsSession:
    """One WebSocket connection; answers and notifications leave through one queue bounded
    in bytes. A client that lets more than `send_buffer` bytes pile up behind the message
    being written is disconnected and its queue dropped (geth closes a subscriber that falls
    behind too). So one connection holds at most `send_buffer` bytes (or one larger
    message) besides the message being written."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        remote: str,
        transport: asyncio.Transport | None,
        *,
        send_buffer: int,
        access: Access,
        privileged: bool,
        memory: MemoryReleaser,
    ) -> None:
        self.ws = ws
        self._memory = memory
        self.remote = remote
        self.access = access
        self.privileged = privileged
        self.closed = False
        self.on_close: list[Callable[[], None]] = []
        self._transport = transport
        self._send_buffer = send_buffer
        self._queue: deque[str] = deque()
        self._queued_bytes = 0
        self._ready = asyncio.Event()
        self._closing: asyncio.Task[None] | None = None

    def notify(self, subscription: str, result: Any) -> None:
        message = {
            "jsonrpc": "2.0",
            "method": "eth_subscription",
            "params": {"subscription": subscription, "result": result},
        }
        self.send_text(_dumps(message))

    def send_text(self, text: str) -> None:
        if self.closed:
            return
        size = len(text)
        # One message is always taken when nothing waits (an answer up to --rpc.max-response).
        if self._queue and self._queued_bytes + size > self._send_buffer:
            log.warning(
                "ws client %s is not reading: %d bytes queued, limit %d (--ws.send-buffer); "
                "disconnecting it",
                self.remote,
                self._queued_bytes + size,
                self._send_buffer,
            )
            self.drop(1008, b"send buffer overflow: read your messages (--ws.send-buffer)")
            return
        self._queue.append(text)
        self._queued_bytes += size
        self._ready.set()

    def drop(self, code: int, reason: bytes) -> asyncio.Task[None]:
        """Stop sending, free the queue, and close the connection (aborted if the client
        does not take the close frame within a second); the task doing so."""
        self.closed = True
        self._queue.clear()
        self._queued_bytes = 0
        self._memory.release_soon()
        self._ready.set()
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._close_ws(code, reason))
        return self._closing

    async def _close_ws(self, code: int, reason: bytes) -> None:
        try:
            await asyncio.wait_for(self.ws.close(code=code, message=reason), timeout=1.0)
        except (TimeoutError, ConnectionError):
            log.debug("ws client %s did not take its close frame; aborting", self.remote)
        if self._transport is not None:
            self._transport.abort()  # drops what is still buffered for the client

    async def writer(self) -> None:
        try:
            while not self.closed:
                if not self._queue:
                    self._ready.clear()
                    await self._ready.wait()
                    continue
                text = self._queue.popleft()
                self._queued_bytes -= len(text)
                # A client that does not read blocks here, and the queue behind grows.
                await self.ws.send_str(text)
        except (ConnectionError, RuntimeError):  # the peer left, or the socket was aborted
            self.closed = True
            self._queue.clear()
            self._queued_bytes = 0


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
        self.clients = ClientAddress.parse(config.trusted_proxies)
        has_token = config.token is not None
        self.http_access = Access(config.http_api, "--http.api", has_token)
        self.ws_access = Access(config.ws_api, "--ws.api", has_token)
        self.app = web.Application(
            client_max_size=config.max_body_bytes, middlewares=[self._check_host]
        )
        self.app.router.add_route("POST", "/", self._http)
        self.app.router.add_route("GET", "/", self._get_root)
        self.app.router.add_route("OPTIONS", "/", self._preflight)
        for method, path, handler in extra_routes or []:
            if path in RESTRICTED_PATHS:
                handler = self._restricted(RESTRICTED_PATHS[path], handler)
            self.app.router.add_route(method, path, handler)
        self._runner: web.AppRunner | None = None
        self.memory = MemoryReleaser()
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
        closing = [session.drop(1001, b"node shutting down") for session in list(self.sessions)]
        if closing:
            await asyncio.gather(*closing)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ------------------------------------------------------------ who is asking
    @web.middleware
    async def _check_host(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """--http.vhosts, as geth: a page on another name that resolves here (DNS rebinding)
        is refused before anything runs. WebSocket upgrades are checked by origin instead."""
        if not _is_upgrade(request) and not host_allowed(request.host, self.config.vhosts):
            return self._json(
                error_body(
                    INVALID_REQUEST,
                    f"invalid host specified: {request.host!r} is not in --http.vhosts",
                ),
                {},
                status=403,
            )
        return await handler(request)

    def _client(self, request: web.Request) -> str:
        return self.clients.of(request.remote, request.headers.get("X-Forwarded-For"))

    def _token(self, request: web.Request) -> bool | None:
        return token_matches(request.headers.get("Authorization"), self.config.token)

    @staticmethod
    def _bad_token() -> web.Response:
        return web.Response(
            status=401,
            text=error_body(UNAUTHORIZED, "invalid bearer token (--rpc.token-file)"),
            content_type="application/json",
            headers={"WWW-Authenticate": "Bearer"},
        )

    def _restricted(
        self, name: str, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def guarded(request: web.Request) -> web.StreamResponse:
            token = self._token(request)
            if token is False:
                return self._bad_token()
            if token or self.http_access.allows(name):
                return await handler(request)
            opener = " or send the --rpc.token-file bearer token" if self.config.token else ""
            return web.Response(
                status=403,
                text=f"{request.path} is not enabled: add {name} to --http.api{opener}\n",
            )

        return guarded

    def _rate_limited(self, client: str, cost: int) -> str | None:
        """None when the client may go on, else why not (the bucket is charged `cost`)."""
        if self.limiter.allow(client, cost):
            return None
        if cost > self.limiter.burst:
            return (
                f"rate limit exceeded: a batch of {cost} requests is more than the "
                f"{self.limiter.burst} a client may send at once (--rpc.ratelimit-burst)"
            )
        return "rate limit exceeded: slow down or raise --rpc.ratelimit"

    # ------------------------------------------------------------ CORS
    def _cors_headers(self, request: web.Request) -> dict[str, str]:
        return cors_headers(request.headers.get("Origin"), self.config.cors_origins)

    async def _preflight(self, request: web.Request) -> web.Response:
        headers = self._cors_headers(request)
        if request.headers.get("Origin") is not None and not headers:
            return web.Response(status=403, text="origin not allowed by --http.corsdomain")
        headers.update(
            {
                "Access-Control-Allow-Methods": "POST, GET, OPTIONS",
                "Access-Control-Allow-Headers": "Content-Type, Authorization",
                "Access-Control-Max-Age": "600",
            }
        )
        return web.Response(status=204, headers=headers)

    # ------------------------------------------------------------ HTTP
    async def _http(self, request: web.Request) -> web.StreamResponse:
        # Without an allowed origin the browser gets no CORS header and withholds the answer
        # from the page; JSON-only bodies make it ask first (a preflight), which fails.
        headers = self._cors_headers(request)
        request_id = client_request_id(request.headers.get("X-Request-Id")) or new_request_id()
        headers["X-Request-Id"] = request_id
        if request.content_type not in JSON_CONTENT_TYPES:
            return self._json(
                error_body(
                    INVALID_REQUEST,
                    f"invalid content type {request.content_type!r}, only application/json is "
                    "supported",
                ),
                headers,
                status=415,
            )
        token = self._token(request)
        if token is False:
            return self._bad_token()
        client = self._client(request)
        if not token and self.limiter.is_empty(client):  # refused before its body is read
            return self._too_many(
                "rate limit exceeded: slow down or raise --rpc.ratelimit", headers
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
        if not token:
            refused = self._rate_limited(client, max(1, cost))
            if refused is not None:
                return self._too_many(refused, headers)
        if isinstance(payload, list):
            sink = EncodedAnswers(self.config.max_response_bytes)
            answer = await self.dispatcher.handle(
                payload,
                access=OPEN if token else self.http_access,
                sink=sink,
                request_id=request_id,
            )
            self._after(answer, sink.size)
            if answer is None:
                return web.Response(status=200, headers=headers)
            return self._json(
                sink.join(answer) if isinstance(answer, list) else encode(answer), headers
            )
        answer = await self.dispatcher.handle(
            payload, access=OPEN if token else self.http_access, request_id=request_id
        )
        if answer is None:
            return web.Response(status=200, headers=headers)
        parts = encode_parts(answer)
        size = sum(len(part) for part in parts)
        self._after(answer, size)
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
            log.debug("client %s left before its answer was sent", request.remote)
        return response

    def _after(self, answer: Any, size: int) -> None:
        """Hand freed memory back after a large answer, or a request refused at a limit
        (a batch or a trace stopped there has just let go of what it built)."""
        error = answer.get("error") if isinstance(answer, dict) else None
        refused = isinstance(error, dict) and error.get("code") == LIMIT_EXCEEDED
        if refused or size >= LARGE_ANSWER_BYTES:
            self.memory.release_soon()

    def _too_many(self, message: str, headers: dict[str, str]) -> web.Response:
        return self._json(error_body(LIMIT_EXCEEDED, message), headers, status=429)

    @staticmethod
    def _json(body: str | bytes, headers: dict[str, str], status: int = 200) -> web.Response:
        raw = body.encode() if isinstance(body, str) else body
        return web.Response(
            status=status, body=raw, content_type="application/json", headers=headers
        )

    async def _get_root(self, request: web.Request) -> web.StreamResponse:
        if _is_upgrade(request):
            return await self._websocket(request)
        return web.Response(
            status=200,
            text="Cairn JSON-RPC endpoint: POST JSON-RPC 2.0 requests here, or open a WebSocket.\n",
        )

    # ------------------------------------------------------------ WebSocket
    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if not ws_origin_allowed(origin, self.config.ws_origins):
            log.warning("refused a WebSocket from origin %s (--ws.origins)", origin)
            return web.Response(status=403, text=f"origin {origin} not allowed by --ws.origins\n")
        token = self._token(request)
        if token is False:
            return self._bad_token()
        if len(self.sessions) >= self.config.ws_max_connections:
            return web.Response(
                status=503,
                text=f"too many WebSocket connections (limit {self.config.ws_max_connections}, "
                "--ws.max-connections); try again later\n",
            )
        # Up to twice the body limit a message gets a JSON-RPC error (the connection stays);
        # beyond that aiohttp closes the connection with 1009 before reading it all.
        ws = web.WebSocketResponse(
            max_msg_size=2 * self.config.max_body_bytes, heartbeat=30.0, compress=False
        )
        await ws.prepare(request)
        session = WsSession(
            ws,
            self._client(request),
            request.transport,
            send_buffer=self.config.ws_send_buffer,
            access=OPEN if token else self.ws_access,
            privileged=bool(token),
            memory=self.memory,
        )
        self.sessions.add(session)
        writer = asyncio.create_task(session.writer())
        try:
            async for message in ws:
                if session.closed:
                    break
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
            session.on_close.clear()
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
        if not session.privileged:
            refused = self._rate_limited(session.remote, max(1, cost))
            if refused is not None:
                session.send_text(error_body(LIMIT_EXCEEDED, refused))
                return
        if isinstance(payload, list):
            sink = EncodedAnswers(self.config.max_response_bytes)
            answer = await self.dispatcher.handle(
                payload, context=session, access=session.access, sink=sink
            )
            self._after(answer, sink.size)
            if isinstance(answer, list):
                session.send_text(sink.join(answer).decode())
            elif answer is not None:
                session.send_text(_dumps(answer))
            return
        answer = await self.dispatcher.handle(payload, context=session, access=session.access)
        if answer is not None:
            text = _dumps(answer)
            self._after(answer, len(text))
            if len(text) > self.config.max_response_bytes:
                text = error_body(
                    LIMIT_EXCEEDED,
                    f"response too large: {len(text)} bytes, limit "
                    f"{self.config.max_response_bytes}",
                )
            session.send_text(text)


def _is_upgrade(request: web.Request) -> bool:
    return request.method == "GET" and request.headers.get("Upgrade", "").lower() == "websocket"
