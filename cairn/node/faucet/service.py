"""The faucet's rules and its HTTP side: `Faucet.drip` decides and sends, `FaucetServer` serves
`GET /` (the page), `GET /info`, `GET /health` and `POST /faucet {"address": "0x..."}`."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

from aiohttp import web
from eth_account import Account
from eth_keys.datatypes import PrivateKey
from eth_typing import Address
from eth_utils import (
    is_checksum_address,
    is_hex_address,
    to_canonical_address,
    to_checksum_address,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from cairn.errors import ConfigError
from cairn.node.faucet.page import PAGE
from cairn.rpc.access import ClientAddress
from cairn.txpool.intake import Intake
from cairn.txpool.pool import TxPool

log = logging.getLogger("cairn.faucet")

WEI_PER_ETH = 10**18
GAS = 21_000
TIP = 10**9  # 1 gwei, as eth_maxPriorityFeePerGas suggests
MAX_BODY = 4096
REFUSAL_REASONS = (
    "invalid_address",
    "bad_request",
    "no_client_ip",
    "cooldown_address",
    "cooldown_ip",
    "empty",
    "rejected",
)


def parse_amount(text: str) -> int:
    """`--faucet.amount` in ETH ("1", "0.5", "100") as wei."""
    try:
        value = Decimal(str(text).strip())
    except InvalidOperation:
        raise ConfigError(f"--faucet.amount: {text!r} is not a number of ETH") from None
    wei = value * WEI_PER_ETH
    if value <= 0 or wei != wei.to_integral_value():
        raise ConfigError(f"--faucet.amount: {text!r} must be a positive amount of ETH")
    return int(wei)


def format_eth(wei: int) -> str:
    text = f"{Decimal(wei) / WEI_PER_ETH:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def format_wait(seconds: float) -> str:
    seconds = max(1, int(seconds + 0.999))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    if minutes:
        return f"{minutes} min {secs} s"
    return f"{secs} s"


@dataclass(frozen=True)
class FaucetConfig:
    key: PrivateKey
    amount: int  # wei per drip
    cooldown: float  # seconds between drips to one address, and to one client IP
    addr: str = "127.0.0.1"
    port: int = 8081

    @property
    def address(self) -> Address:
        return Address(self.key.public_key.to_canonical_address())


class Refused(Exception):
    """A drip the faucet will not make: HTTP status, metric reason, message for the user."""

    def __init__(self, status: int, reason: str, message: str, retry_after: int = 0) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.retry_after = retry_after


class HeadState(Protocol):
    def nonce(self, address: Address) -> int: ...

    def balance(self, address: Address) -> int: ...

    @property
    def next_base_fee(self) -> int: ...


class DripStore(Protocol):
    def save_faucet_drip(self, address: bytes, packed_ip: bytes, at: int) -> None: ...

    def load_faucet_drips(
        self, address: bytes, packed_ip: bytes
    ) -> tuple[int | None, int | None]: ...

    def prune_faucet_drips(self, before: int) -> int: ...


def is_valid_address(text: str) -> bool:
    """0x and 40 hex digits; in mixed case, an EIP-55 checksum that matches (eth_utils'
    `is_address` accepts any mixed case)."""
    if not is_hex_address(text):
        return False
    digits = text[2:] if text[:2].lower() == "0x" else text
    if digits == digits.lower() or digits == digits.upper():
        return True
    return is_checksum_address(text)


def packed_ip(client: str) -> bytes:
    """16 bytes for the cooldown key: an IPv6 address, or an IPv4 one mapped (::ffff:a.b.c.d)."""
    ip = ipaddress.ip_address(client)
    if isinstance(ip, ipaddress.IPv4Address):
        return ipaddress.IPv6Address(f"::ffff:{ip}").packed
    return ip.packed


class Faucet:
    def __init__(
        self,
        config: FaucetConfig,
        chain_id: int,
        head: Callable[[], HeadState],
        pool: TxPool,
        intake: Intake,
        store: DripStore,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self._chain_id = chain_id
        self._head = head
        self._pool = pool
        self._intake = intake
        self._store = store
        self._clock = clock
        self._lock = asyncio.Lock()
        self.drips = 0
        self.refusals: Counter[str] = Counter()

    def forget_expired(self) -> int:
        return self._store.prune_faucet_drips(int(self._clock() - self.config.cooldown))

    def _fee_cap(self, view: HeadState) -> int:
        return 2 * view.next_base_fee + TIP

    def available(self) -> tuple[int, int]:
        """(balance not yet promised to pooled drips, cost of one drip) at the head."""
        view = self._head()
        me = self.config.address
        cost = self.config.amount + GAS * self._fee_cap(view)
        state_nonce = view.nonce(me)
        pooled = self._pool.pending_nonce(me, state_nonce) - state_nonce
        return view.balance(me) - pooled * cost, cost

    async def drip(self, address_text: Any, client: str) -> dict[str, Any]:
        try:
            return await self._drip(address_text, client)
        except Refused as refusal:
            self.refusals[refusal.reason] += 1
            raise

    async def _drip(self, address_text: Any, client: str) -> dict[str, Any]:
        if not isinstance(address_text, str) or not is_valid_address(address_text.strip()):
            raise Refused(
                400,
                "invalid_address",
                f"invalid address {str(address_text)[:64]!r}: expected 0x and 40 hex digits "
                "(a mixed-case address must carry a valid checksum)",
            )
        address = to_canonical_address(address_text.strip())
        try:
            ip = packed_ip(client)
        except ValueError:
            raise Refused(
                400, "no_client_ip", f"cannot tell the client's IP ({client!r})"
            ) from None
        async with self._lock:  # one drip at a time: nonces in order, cooldowns checked once
            now = self._clock()
            last_address, last_ip = await asyncio.to_thread(
                self._store.load_faucet_drips, address, ip
            )
            self._check_cooldown(last_address, now, "cooldown_address", "this address")
            self._check_cooldown(last_ip, now, "cooldown_ip", "your IP address")
            available, cost = self.available()
            if available < cost:
                raise Refused(
                    503,
                    "empty",
                    f"the faucet is empty: it holds {format_eth(max(0, available))} ETH and a "
                    f"drip needs {format_eth(cost)} ETH (amount and gas); ask its operator to "
                    f"refill {to_checksum_address(self.config.address)}",
                )
            raw = self._sign(address)
            result = await self._intake.submit(raw)
            if result.error is not None:
                reason = result.error.reason
                raise Refused(
                    503, "rejected", f"the node refused the faucet's transaction: {reason}"
                )
            await asyncio.to_thread(self._store.save_faucet_drip, address, ip, int(now))
        self.drips += 1
        assert result.tx_hash is not None
        tx_hash = "0x" + result.tx_hash.hex()
        log.info(
            "faucet: %s ETH to %s for %s (tx %s)",
            format_eth(self.config.amount),
            to_checksum_address(address),
            client,
            tx_hash,
        )
        return {
            "txHash": tx_hash,
            "address": to_checksum_address(address),
            "amount": str(self.config.amount),
            "amountEth": format_eth(self.config.amount),
        }

    def _check_cooldown(self, last: int | None, now: float, reason: str, whom: str) -> None:
        if last is None:
            return
        left = last + self.config.cooldown - now
        if left > 0:
            raise Refused(
                429,
                reason,
                f"{whom} got a drip less than {format_wait(self.config.cooldown)} ago: "
                f"try again in {format_wait(left)}",
                retry_after=int(left + 0.999),
            )

    def _sign(self, to: Address) -> bytes:
        view = self._head()
        me = self.config.address
        fields = {
            "type": 2,
            "chainId": self._chain_id,
            "nonce": self._pool.pending_nonce(me, view.nonce(me)),
            "to": to_checksum_address(to),
            "value": self.config.amount,
            "gas": GAS,
            "maxFeePerGas": self._fee_cap(view),
            "maxPriorityFeePerGas": TIP,
        }
        signed = Account.sign_transaction(fields, self.config.key.to_bytes())
        return bytes(signed.raw_transaction)


class FaucetCollector(Collector):
    def __init__(self, faucet: Faucet) -> None:
        self._faucet = faucet

    def collect(self) -> Iterator[Metric]:
        available, _ = self._faucet.available()
        yield GaugeMetricFamily(
            "cairn_faucet_balance_wei",
            "faucet balance at the head, less the drips waiting in the pool",
            max(0, available),
        )
        yield CounterMetricFamily(
            "cairn_faucet_drips", "drips sent since start", self._faucet.drips
        )
        refused = CounterMetricFamily(
            "cairn_faucet_refusals", "requests the faucet refused, by reason", labels=["reason"]
        )
        for reason in REFUSAL_REASONS:
            refused.add_metric([reason], self._faucet.refusals[reason])
        yield refused


class FaucetServer:
    """The faucet's HTTP listener (`--faucet.addr`/`--faucet.port`)."""

    def __init__(self, faucet: Faucet, clients: ClientAddress) -> None:
        self.faucet = faucet
        self._clients = clients
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_get("/", self._page)
        app.router.add_get("/info", self._info)
        app.router.add_get("/health", self._health)
        app.router.add_post("/faucet", self._drip)
        self._runner = web.AppRunner(app, access_log=None)
        self._set_up = False
        self._pruner: asyncio.Task[None] | None = None
        self.bound_port = 0

    async def _forget_expired(self) -> None:
        expired = await asyncio.to_thread(self.faucet.forget_expired)
        if expired:
            log.info("faucet: forgot %d drips whose cooldown is over", expired)

    async def _prune(self) -> None:
        """Forget drips past their cooldown once per cooldown (at most hourly, at least
        every second), so the datadir keeps only the cooldowns still running."""
        every = min(max(self.faucet.config.cooldown, 1.0), 3600.0)
        while True:
            await asyncio.sleep(every)  # a periodic job: nothing to wait for but time
            await self._forget_expired()

    async def start(self) -> None:
        await self._forget_expired()
        config = self.faucet.config
        await self._runner.setup()
        self._set_up = True
        site = web.TCPSite(self._runner, config.addr, config.port)
        try:
            await site.start()
        except OSError as exc:
            raise ConfigError(
                f"the faucet could not listen on {config.addr}:{config.port}: "
                f"{exc.strerror or exc}; pick another --faucet.port"
            ) from exc
        addresses = self._runner.addresses
        self.bound_port = int(addresses[0][1]) if addresses else config.port
        available, cost = self.faucet.available()
        log.info(
            "faucet on http://%s:%d: %s ETH per drip from %s (holds %s ETH), cooldown %s",
            config.addr,
            self.bound_port,
            format_eth(config.amount),
            to_checksum_address(config.address),
            format_eth(max(0, available)),
            format_wait(config.cooldown),
        )
        if available < cost:
            log.warning("faucet %s is empty", to_checksum_address(config.address))
        self._pruner = asyncio.create_task(self._prune(), name="faucet-prune")

    async def stop(self) -> None:
        if self._pruner is not None:
            self._pruner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pruner
            self._pruner = None
        if self._set_up:
            self._set_up = False
            await self._runner.cleanup()

    async def _page(self, request: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html", charset="utf-8")

    def _info_body(self) -> dict[str, Any]:
        config = self.faucet.config
        available, cost = self.faucet.available()
        return {
            "address": to_checksum_address(config.address),
            "amount": str(config.amount),
            "amountEth": format_eth(config.amount),
            "cooldownSeconds": config.cooldown,
            "cooldown": format_wait(config.cooldown),
            "balance": str(max(0, available)),
            "balanceEth": format_eth(max(0, available)),
            "empty": available < cost,
        }

    async def _info(self, request: web.Request) -> web.Response:
        return web.json_response(self._info_body())

    async def _health(self, request: web.Request) -> web.Response:
        body = self._info_body()
        return web.json_response(
            {"ok": not body["empty"], **body}, status=503 if body["empty"] else 200
        )

    async def _drip(self, request: web.Request) -> web.Response:
        client = self._clients.of(request.remote, request.headers.get("X-Forwarded-For"))
        try:
            address = await self._address_of(request)
            answer = await self.faucet.drip(address, client)
        except Refused as refusal:
            headers = {"Retry-After": str(refusal.retry_after)} if refusal.retry_after else {}
            body: dict[str, Any] = {"error": refusal.message, "reason": refusal.reason}
            if refusal.retry_after:
                body["retryAfter"] = refusal.retry_after
            return web.json_response(body, status=refusal.status, headers=headers)
        return web.json_response(answer)

    async def _address_of(self, request: web.Request) -> Any:
        try:
            if request.content_type == "application/json":
                data = json.loads(await request.read())
                if isinstance(data, dict):
                    return data.get("address")
            elif request.content_type in (
                "application/x-www-form-urlencoded",
                "multipart/form-data",
            ):
                return (await request.post()).get("address")
        except ValueError:  # not JSON, not UTF-8: answered below (too large: aiohttp's 413)
            pass
        self.faucet.refusals["bad_request"] += 1
        raise Refused(
            400, "bad_request", 'send JSON {"address": "0x..."} (Content-Type: application/json)'
        )
