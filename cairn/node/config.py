"""Configuration: flags > environment (CAIRN_*) > TOML file > defaults.

Option names follow geth (`--datadir`, `--http.addr`, `--http.port`, `--ws.port`, ...). The
TOML file takes the same names, either dotted at top level or as tables (`[http] port = 8545`).
"""

from __future__ import annotations

import argparse
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cairn.errors import ConfigError


@dataclass(frozen=True)
class Option:
    name: str
    kind: type
    default: Any
    help: str
    dev_only: bool = False
    metavar: str | None = None
    env_aliases: tuple[str, ...] = ()  # read after CAIRN_<NAME>, e.g. DATABASE_URL

    @property
    def dest(self) -> str:
        return self.name.replace(".", "_").replace("-", "_")

    @property
    def env(self) -> str:
        return "CAIRN_" + self.dest.upper()


OPTIONS: tuple[Option, ...] = (
    Option("datadir", str, None, "data directory (chaindata, keystore, journal)", metavar="DIR"),
    Option("genesis", str, None, "genesis.json (default: the copy in the datadir)", metavar="FILE"),
    Option("http.addr", str, "127.0.0.1", "HTTP-RPC listening interface"),
    Option("http.port", int, 8545, "HTTP-RPC port (WebSocket is accepted here too)"),
    Option("ws.port", int, 8546, "WebSocket-RPC port (0 disables the separate port)"),
    Option(
        "http.corsdomain",
        str,
        "",
        "comma-separated origins browsers may call the RPC from ('*' for any; empty: none)",
    ),
    Option(
        "http.vhosts",
        str,
        "localhost",
        "comma-separated host names accepted in the Host header ('*' for any; IPs always)",
    ),
    Option(
        "ws.origins",
        str,
        "",
        "comma-separated origins allowed to open a WebSocket ('*' for any; empty: localhost)",
    ),
    Option(
        "http.api",
        str,
        None,
        "namespaces served over HTTP, e.g. eth,net,web3,debug ('*' for all; dev: all, "
        "run: eth,net,web3)",
    ),
    Option(
        "ws.api",
        str,
        None,
        "namespaces served over WebSocket ('*' for all; dev: all, run: eth,net,web3)",
    ),
    Option(
        "rpc.token-file",
        str,
        None,
        "file holding a bearer token; requests carrying it reach every namespace, /metrics "
        "and /status, and skip the rate limit",
        metavar="FILE",
    ),
    Option("rpc.gascap", int, 50_000_000, "gas cap for eth_call and eth_estimateGas"),
    Option(
        "rpc.call-workers",
        int,
        min(4, os.cpu_count() or 1),
        "processes running eth_call/eth_estimateGas (default: cores, at most 4; 0 = in the "
        "node process)",
    ),
    Option("rpc.logs-range", int, 10_000, "largest block range one eth_getLogs may scan"),
    Option("rpc.batch-limit", int, 1_000, "most requests in one JSON-RPC batch"),
    Option("rpc.max-body", int, 5 * 1024 * 1024, "largest request body in bytes (geth: 5 MiB)"),
    Option(
        "rpc.ratelimit",
        str,
        None,
        "requests per client IP: N per second, or N/s, N/min (0 = off; dev: off, run: 1000/s)",
        metavar="RATE",
    ),
    Option(
        "rpc.ratelimit-burst",
        int,
        0,
        "requests a client may make at once before the rate applies (0: one second's or one "
        "minute's worth, as the rate is given); a batch costs its length",
    ),
    Option(
        "rpc.trusted-proxies",
        str,
        "",
        "comma-separated proxy IPs or CIDRs whose X-Forwarded-For names the client",
    ),
    Option("rpc.max-response", int, 32 * 1024 * 1024, "largest response in bytes"),
    Option("rpc.filter-timeout", float, 300.0, "seconds an unpolled filter lives (geth: 300)"),
    Option("rpc.max-filters", int, 2_000, "most installed polling filters (all clients)"),
    Option(
        "rpc.filter-backlog",
        int,
        1_000_000,
        "unread entries all filters may hold together; past it the fullest filter is dropped",
    ),
    Option(
        "rpc.evmtimeout",
        str,
        "5s",
        "wall-clock limit of one eth_call / eth_estimateGas / eth_createAccessList (geth: 5s; "
        "0 = none)",
        metavar="DURATION",
    ),
    Option(
        "rpc.trace-timeout",
        str,
        "30s",
        "longest a debug_trace* call may run, whatever timeout it asks for",
        metavar="DURATION",
    ),
    Option("ws.max-connections", int, 500, "most open WebSocket connections"),
    Option(
        "ws.max-subscriptions", int, 10_000, "most eth_subscribe subscriptions (all connections)"
    ),
    Option(
        "ws.send-buffer",
        int,
        8 * 1024 * 1024,
        "bytes queued for a WebSocket client that does not read before it is disconnected",
    ),
    Option(
        "cache",
        int,
        256,
        "MiB of memory for the node's caches: LevelDB blocks 1/4, decoded blocks 1/4, "
        "block and receipt JSON 1/4, log index 1/8, headers 1/8 (docs/operations.md)",
    ),
    Option(
        "txpool.max-bytes",
        int,
        128 * 1024 * 1024,
        "estimated bytes the transaction pool may hold; past it new transactions are refused",
    ),
    Option("producer.keystore", str, None, "keystore v3 file of the producer key", metavar="FILE"),
    Option("producer.password", str, None, "file holding the keystore password", metavar="FILE"),
    Option("p2p.port", int, None, "libp2p TCP port (run: default 30333, 0 picks one; dev: off)"),
    Option("p2p.addr", str, "0.0.0.0", "libp2p listening interface"),
    Option("bootnodes", str, None, "comma-separated multiaddrs /ip4/../tcp/../p2p/<peer id>"),
    Option("p2p.maxpeers", int, 25, "most connected peers"),
    Option("nodiscover", bool, False, "no peer exchange or mDNS: dial only --bootnodes"),
    Option("p2p.mdns", bool, False, "find peers on the LAN / compose network by mDNS"),
    Option(
        "mirror.url",
        str,
        None,
        "Postgres URL to mirror the chain into (postgresql://user:pass@host:5432/db"
        "?sslmode=require); also read from DATABASE_URL",
        metavar="URL",
        env_aliases=("DATABASE_URL",),
    ),
    Option(
        "mirror.url-file",
        str,
        None,
        "file holding the Postgres URL (keeps its password out of `ps` and shell history)",
        metavar="FILE",
    ),
    Option(
        "health.max-head-age",
        float,
        None,
        "seconds after which an old head makes the node unhealthy (default: 3 block times"
        " + 10 s when the chain ticks on its own, else off)",
    ),
    Option(
        "health.min-peers",
        int,
        None,
        "peers below which the node is not ready (default: 1 for full nodes and validators,"
        " 0 for a sequencer)",
    ),
    Option(
        "health.max-blocks-behind",
        int,
        2,
        "blocks behind the best peer a node may be and still be ready",
    ),
    Option(
        "metrics.addr",
        str,
        None,
        "serve /metrics on this interface too, without the RPC token (geth's --metrics.addr;"
        " default: only on the RPC port)",
    ),
    Option("metrics.port", int, 6060, "port of the --metrics.addr listener (0 picks one)"),
    Option(
        "metrics.watch",
        str,
        None,
        "comma-separated ADDRESS[=LABEL] whose head balance /metrics exports as "
        "cairn_watched_balance_wei (the producer and the faucet are watched always)",
        metavar="LIST",
    ),
    Option(
        "faucet",
        bool,
        False,
        "serve a faucet (page, POST /faucet) on its own port, paying from --faucet.keystore",
    ),
    Option("faucet.addr", str, "127.0.0.1", "faucet listening interface"),
    Option("faucet.port", int, 8081, "faucet port (0 picks one)"),
    Option("faucet.amount", str, "1", "ETH sent per request", metavar="ETH"),
    Option(
        "faucet.cooldown",
        str,
        "24h",
        "time before the same address, or the same client IP, may ask again",
        metavar="DURATION",
    ),
    Option("faucet.keystore", str, None, "keystore v3 file of the faucet's key", metavar="FILE"),
    Option("faucet.password", str, None, "file holding that keystore's password", metavar="FILE"),
    Option("log.level", str, "info", "debug, info, warning or error"),
    Option("log.format", str, "text", "text or json"),
    Option(
        "block-time",
        float,
        None,
        "seconds between blocks (dev: 0 mines on every transaction; run: genesis blockTime)",
    ),
    Option(
        "empty-blocks",
        bool,
        False,
        "make blocks on every tick even with no transactions (default: genesis emptyBlocks;"
        " a dev chain with --block-time always does)",
    ),
    Option("gas-limit", int, 30_000_000, "block gas limit of a new dev chain", dev_only=True),
    Option("chain-id", int, 31337, "chain id of a new dev chain", dev_only=True),
    Option("accounts", int, 10, "funded dev accounts of a new dev chain", dev_only=True),
    Option(
        "base-fee", int, 1_000_000_000, "initial base fee (wei) of a new dev chain", dev_only=True
    ),
)
_BY_DEST = {o.dest: o for o in OPTIONS}


def add_options(parser: argparse.ArgumentParser, *, dev: bool) -> None:
    parser.add_argument("--config", metavar="FILE", default=None, help="TOML config file")
    for option in OPTIONS:
        if option.dev_only and not dev:
            continue
        if option.kind is bool:  # a switch, as geth's --nodiscover
            parser.add_argument(
                f"--{option.name}",
                dest=option.dest,
                action="store_const",
                const=True,
                default=None,
                help=f"{option.help} (env {option.env})",
            )
            continue
        parser.add_argument(
            f"--{option.name}",
            dest=option.dest,
            type=option.kind,
            default=None,
            metavar=option.metavar,
            help=f"{option.help} (env {option.env}"
            + (f", default {option.default})" if option.default is not None else ")"),
        )


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name.replace(".", "_").replace("-", "_")] = value
    return flat


def load_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    flat = _flatten(data)
    # A switch whose name is also a table of options (`faucet` and `[faucet] port = ...`)
    # is written `enabled = true` in that table; TOML cannot hold both.
    for key in [k for k in flat if k.endswith("_enabled")]:
        switch = key.removesuffix("_enabled")
        if switch in _BY_DEST and _BY_DEST[switch].kind is bool and key not in _BY_DEST:
            flat[switch] = flat.pop(key)
    unknown = sorted(set(flat) - set(_BY_DEST))
    if unknown:
        raise ConfigError(f"config file {path}: unknown keys {', '.join(unknown)}")
    return flat


def _coerce(option: Option, value: Any, source: str) -> Any:
    if value is None:
        return None
    try:
        if option.kind is bool:
            return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")
        return option.kind(value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"{source}: {option.name} expects {option.kind.__name__}, got {value!r}"
        ) from None


def resolve(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Merge flags, environment and TOML into one dict keyed by option dest."""
    environ = os.environ if environ is None else environ
    config_path = getattr(args, "config", None) or environ.get("CAIRN_CONFIG")
    from_toml = load_toml(Path(config_path)) if config_path else {}
    merged: dict[str, Any] = {}
    for option in OPTIONS:
        flag = getattr(args, option.dest, None)
        if flag is not None:
            merged[option.dest] = flag
        elif option.env in environ:
            merged[option.dest] = _coerce(option, environ[option.env], f"env {option.env}")
        elif any(alias in environ for alias in option.env_aliases):
            alias = next(a for a in option.env_aliases if a in environ)
            merged[option.dest] = _coerce(option, environ[alias], f"env {alias}")
        elif option.dest in from_toml:
            merged[option.dest] = _coerce(option, from_toml[option.dest], f"{config_path}")
        else:
            merged[option.dest] = option.default
    return merged
