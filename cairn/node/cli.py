"""The `cairn` command: dev, run, init, account, db (version, dumpgenesis and account import
in cli_tools)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from eth_keys.datatypes import PrivateKey
from eth_utils import to_checksum_address

import cairn
from cairn.errors import CairnError, ConfigError
from cairn.execution.forks import fork_named
from cairn.execution.genesis import genesis_block
from cairn.genesis.dev import DEV_MNEMONIC, DEV_PRODUCER_KEY, dev_accounts, dev_genesis
from cairn.genesis.model import Genesis
from cairn.genesis.parse import genesis_to_json, load_genesis
from cairn.memory import MemoryBudget
from cairn.mirror.service import has_password, redact
from cairn.node import cli_mirror, cli_testnet, cli_tools
from cairn.node.config import add_options, resolve
from cairn.node.faucet.service import FaucetConfig, parse_amount
from cairn.node.keys import find_keystore, load_keystore, read_password, save_keystore
from cairn.node.logs import setup_logging
from cairn.node.metrics import parse_watch
from cairn.node.p2p_wiring import p2p_config
from cairn.node.service import CLIENT_VERSION, Node, NodeSettings
from cairn.rpc.access import ClientAddress, default_burst, parse_rate, split_list
from cairn.rpc.backend import RpcConfig
from cairn.rpc.debug import parse_duration
from cairn.rpc.errors import RpcError
from cairn.storage.store import ChainIdentity, ChainStore

GENESIS_FILE = "genesis.json"
log = logging.getLogger("cairn.node")


def default_dev_datadir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "cairn" / "dev"


RUN_API = frozenset({"eth", "net", "web3"})  # geth's default --http.api
RUN_RATELIMIT = "1000/s"


def _rpc_config(opts: dict[str, Any], dev: bool) -> RpcConfig:
    rate_text = opts["rpc_ratelimit"]
    if rate_text is None:
        rate_text = "0" if dev else RUN_RATELIMIT  # dev stays open: benchmarks run against it
    try:
        rate = parse_rate(rate_text)
        trusted = split_list(opts["rpc_trusted_proxies"])
        ClientAddress.parse(trusted)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return RpcConfig(
        gas_cap=opts["rpc_gascap"],
        call_workers=opts["rpc_call_workers"],
        logs_block_range=opts["rpc_logs_range"],
        batch_limit=opts["rpc_batch_limit"],
        max_body_bytes=opts["rpc_max_body"],
        max_response_bytes=opts["rpc_max_response"],
        filter_timeout=opts["rpc_filter_timeout"],
        max_filters=opts["rpc_max_filters"],
        filter_backlog=opts["rpc_filter_backlog"],
        rate_limit_per_second=rate,
        rate_limit_burst=opts["rpc_ratelimit_burst"] or default_burst(rate_text),
        trusted_proxies=trusted,
        cors_origins=split_list(opts["http_corsdomain"]),
        vhosts=split_list(opts["http_vhosts"]),
        ws_origins=split_list(opts["ws_origins"]),
        http_api=_namespaces(opts["http_api"], dev),
        ws_api=_namespaces(opts["ws_api"], dev),
        token=_read_token(opts["rpc_token_file"]),
        ws_max_subscriptions=opts["ws_max_subscriptions"],
        ws_max_connections=opts["ws_max_connections"],
        ws_send_buffer=opts["ws_send_buffer"],
        evm_timeout=_seconds(opts["rpc_evmtimeout"], "--rpc.evmtimeout"),
        trace_timeout=_seconds(opts["rpc_trace_timeout"], "--rpc.trace-timeout"),
    )


def _namespaces(text: str | None, dev: bool) -> frozenset[str] | None:
    """--http.api/--ws.api: None serves every namespace (`*`, and the dev default)."""
    if text is None:
        return None if dev else RUN_API
    names = {name.lower() for name in split_list(text)}
    return None if "*" in names else frozenset(names)


def _seconds(value: str, flag: str) -> float:
    """A Go duration ("5s", "500ms", "1m30s") or a number of seconds; 0 is no limit."""
    text = str(value).strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        return parse_duration(text)
    except RpcError as exc:
        raise ConfigError(f"{flag}: {exc.message}") from None


def _read_token(path: str | None) -> bytes | None:
    if path is None:
        return None
    file = Path(path).expanduser()
    try:
        token = file.read_text().strip()
        mode = file.stat().st_mode
    except OSError as exc:
        raise ConfigError(f"--rpc.token-file {file}: {exc.strerror}") from None
    if not token or any(c.isspace() for c in token):
        raise ConfigError(f"--rpc.token-file {file}: expected one token on one line")
    if len(token) < 16:
        log.warning(
            "the token in %s is short (%d characters): use 32 random bytes", file, len(token)
        )
    if mode & 0o077:
        log.warning("%s can be read by other users (mode %o): chmod 600 it", file, mode & 0o777)
    return token.encode()


def _mirror_url(opts: dict[str, Any], args: argparse.Namespace) -> str | None:
    """--mirror.url, CAIRN_MIRROR_URL / DATABASE_URL, or the first line of --mirror.url-file.
    A password on the command line is visible to every user of the machine: say so."""
    url: str | None = opts["mirror_url"]
    path = opts["mirror_url_file"]
    if path is not None:
        if url is not None:
            raise ConfigError("give the Postgres URL once: --mirror.url or --mirror.url-file")
        try:
            url = Path(path).expanduser().read_text().strip()
        except OSError as exc:
            raise ConfigError(f"--mirror.url-file {path}: {exc.strerror}") from None
        if not url:
            raise ConfigError(f"--mirror.url-file {path} is empty")
    if getattr(args, "mirror_url", None) is not None and has_password(args.mirror_url):
        log.warning(
            "--mirror.url %s carries a password, which every user of this machine can read "
            "in `ps`; pass it with --mirror.url-file FILE or DATABASE_URL instead",
            redact(args.mirror_url),
        )
    return url


def _write_genesis(path: Path, genesis: Genesis) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(genesis_to_json(genesis), indent=2) + "\n")
    os.replace(tmp, path)


def _dev_genesis(datadir: Path, opts: dict[str, Any], explicit: set[str]) -> Genesis:
    stored_path = datadir / GENESIS_FILE
    if stored_path.exists():
        genesis = load_genesis(stored_path)
        conflicts = []
        if "chain_id" in explicit and opts["chain_id"] != genesis.chain_id:
            conflicts.append(f"--chain-id {opts['chain_id']} (datadir has {genesis.chain_id})")
        if "gas_limit" in explicit and opts["gas_limit"] != genesis.gas_limit:
            conflicts.append(f"--gas-limit {opts['gas_limit']} (datadir has {genesis.gas_limit})")
        if "base_fee" in explicit and opts["base_fee"] != genesis.base_fee_per_gas:
            conflicts.append(
                f"--base-fee {opts['base_fee']} (datadir has {genesis.base_fee_per_gas})"
            )
        if "accounts" in explicit and opts["accounts"] != len(genesis.alloc):
            conflicts.append(f"--accounts {opts['accounts']} (datadir has {len(genesis.alloc)})")
        if conflicts:
            raise ConfigError(
                f"the dev chain in {datadir} was created with other genesis settings: "
                + "; ".join(conflicts)
                + f". Drop those flags to keep the chain, or start over with "
                f"`cairn db reset --datadir {datadir} --yes` (or another --datadir)."
            )
        return genesis
    genesis = dev_genesis(
        chain_id=opts["chain_id"],
        gas_limit=opts["gas_limit"],
        base_fee_per_gas=opts["base_fee"],
        accounts=opts["accounts"],
    )
    datadir.mkdir(parents=True, exist_ok=True)
    _write_genesis(stored_path, genesis)
    return genesis


def _explicit(args: argparse.Namespace) -> set[str]:
    names = {"chain_id", "gas_limit", "base_fee", "accounts"}
    found = {n for n in names if getattr(args, n, None) is not None}
    found |= {n for n in names if f"CAIRN_{n.upper()}" in os.environ}
    return found


def _banner(genesis: Genesis, datadir: Path, node: Node, accounts: int) -> str:
    lines = [
        "",
        f"  Cairn {cairn.__version__} dev node (persistent)",
        f"  datadir      {datadir}",
        f"  chain id     {genesis.chain_id}",
        f"  genesis      0x{node.chain.genesis_hash.hex()}",
        f"  head         #{node.chain.head.block_number}",
        f"  mnemonic     {DEV_MNEMONIC}",
        "",
        "  Available accounts (10,000 ETH each at genesis; public test keys, never use them on a"
        " real network)",
    ]
    for i, acct in enumerate(dev_accounts(accounts)):
        lines.append(f"  ({i}) {to_checksum_address(acct.address)}  0x{acct.private_key.hex()}")
    lines.append("")
    return "\n".join(lines)


def cmd_dev(args: argparse.Namespace) -> int:
    opts = resolve(args)
    setup_logging(opts["log_level"], opts["log_format"])
    datadir = Path(opts["datadir"]).expanduser() if opts["datadir"] else default_dev_datadir()
    if opts["genesis"]:
        genesis = _genesis_for(opts, datadir)
    else:
        genesis = _dev_genesis(datadir, opts, _explicit(args))
    accounts = len(genesis.alloc)
    settings = _settings(
        opts,
        args,
        datadir,
        genesis,
        dev=True,
        producer_key=PrivateKey(DEV_PRODUCER_KEY),
        block_time=opts["block_time"] if opts["block_time"] is not None else 0.0,
        dev_keys={a.address: a.private_key for a in dev_accounts(min(accounts, 100))},
    )
    return _serve(settings, banner=lambda node: _banner(genesis, datadir, node, min(accounts, 10)))


def _load_producer(opts: dict[str, Any], datadir: Path) -> PrivateKey | None:
    keystore = opts["producer_keystore"]
    password = opts["producer_password"]
    if keystore is None and password is not None:
        found = find_keystore(datadir / "keystore")
        if found is None:
            raise ConfigError(
                f"--producer.password given but {datadir / 'keystore'} holds no keystore; "
                "pass --producer.keystore or run `cairn account new`"
            )
        keystore = str(found)
    if keystore is None:
        return None
    if password is None:
        raise ConfigError(
            "--producer.keystore needs --producer.password (a file with the password)"
        )
    return load_keystore(Path(keystore), Path(password))


def _genesis_for(opts: dict[str, Any], datadir: Path) -> Genesis:
    stored = datadir / GENESIS_FILE
    if opts["genesis"]:
        genesis = load_genesis(Path(opts["genesis"]))
        if not stored.exists():
            datadir.mkdir(parents=True, exist_ok=True)
            _write_genesis(stored, genesis)
        return genesis
    if stored.exists():
        return load_genesis(stored)
    raise ConfigError(
        f"no genesis: pass --genesis genesis.json or run `cairn init --datadir {datadir} "
        "--genesis genesis.json` first"
    )


def cmd_run(args: argparse.Namespace) -> int:
    opts = resolve(args)
    setup_logging(opts["log_level"], opts["log_format"])
    if not opts["datadir"]:
        raise ConfigError("cairn run needs --datadir (or CAIRN_DATADIR)")
    datadir = Path(opts["datadir"]).expanduser()
    genesis = _genesis_for(opts, datadir)
    settings = _settings(
        opts,
        args,
        datadir,
        genesis,
        dev=False,
        producer_key=_load_producer(opts, datadir),
        block_time=opts["block_time"],
    )
    return _serve(settings, banner=None)


def _settings(
    opts: dict[str, Any],
    args: argparse.Namespace,
    datadir: Path,
    genesis: Genesis,
    *,
    dev: bool,
    **extra: Any,
) -> NodeSettings:
    """What `dev` and `run` share: ports, limits, p2p and mirror from the resolved options."""
    try:
        memory = MemoryBudget(cache_mib=opts["cache"], txpool_bytes=opts["txpool_max_bytes"])
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return NodeSettings(
        datadir=datadir,
        genesis=genesis,
        http_addr=opts["http_addr"],
        http_port=opts["http_port"],
        ws_port=opts["ws_port"] or None,
        rpc=_rpc_config(opts, dev=dev),
        p2p=p2p_config(opts, datadir, dev=dev, client=CLIENT_VERSION),
        mirror_url=_mirror_url(opts, args),
        dev=dev,
        empty_blocks=True if opts["empty_blocks"] else None,
        health_max_head_age=opts["health_max_head_age"],
        health_min_peers=opts["health_min_peers"],
        health_max_blocks_behind=opts["health_max_blocks_behind"],
        memory=memory,
        metrics_addr=opts["metrics_addr"],
        metrics_port=opts["metrics_port"],
        watch=parse_watch(opts["metrics_watch"]),
        faucet=_faucet_config(opts),
        **extra,
    )


def _faucet_config(opts: dict[str, Any]) -> FaucetConfig | None:
    """--faucet and its options; the key is unlocked here so a wrong password stops the start."""
    keystore, password = opts["faucet_keystore"], opts["faucet_password"]
    if not opts["faucet"]:
        if keystore is not None:
            raise ConfigError("--faucet.keystore given without --faucet: add --faucet to serve it")
        return None
    if keystore is None or password is None:
        raise ConfigError("--faucet needs --faucet.keystore FILE and --faucet.password FILE")
    cooldown = _seconds(opts["faucet_cooldown"], "--faucet.cooldown")
    return FaucetConfig(
        key=load_keystore(Path(keystore).expanduser(), Path(password).expanduser()),
        amount=parse_amount(opts["faucet_amount"]),
        cooldown=cooldown,
        addr=opts["faucet_addr"],
        port=opts["faucet_port"],
    )


def _serve(settings: NodeSettings, banner: Any) -> int:
    async def main() -> int:
        node = Node(settings)
        if banner is not None:
            print(banner(node), flush=True)
        await node.run()
        return node.exit_code

    # The standard loop, not uvloop: with 64 clients fetching 1 MB blocks, uvloop's p99 was
    # 130-180 ms against 27-29 ms here (its partially written answers wait unevenly), and
    # every other W3 method's p99 was as good or better; uvloop answered small requests
    # 7-15% faster. The mirror's own loop (asyncpg, no large writes) keeps uvloop.
    return asyncio.run(main())


def cmd_init(args: argparse.Namespace) -> int:
    datadir = Path(args.datadir).expanduser()
    genesis = load_genesis(Path(args.genesis))
    result = genesis_block(genesis, fork_named(genesis.consensus.fork))
    store = ChainStore(datadir / "chaindata", ChainIdentity(result.header.hash, genesis.chain_id))
    try:
        store.initialize(result.to_record(b""), genesis.chain_id)
    finally:
        store.close()
    stored = datadir / GENESIS_FILE
    if not stored.exists():
        _write_genesis(stored, genesis)
    print(f"initialised {datadir}: chain {genesis.chain_id}, genesis 0x{result.header.hash.hex()}")
    return 0


def cmd_account_new(args: argparse.Namespace) -> int:
    datadir = Path(args.datadir).expanduser()
    password = read_password(Path(args.password))
    key = PrivateKey(os.urandom(32))
    path = save_keystore(datadir / "keystore", key, password)
    print(f"address {to_checksum_address(key.public_key.to_canonical_address())}")
    print(f"keystore {path}")
    return 0


def cmd_account_list(args: argparse.Namespace) -> int:
    directory = Path(args.datadir).expanduser() / "keystore"
    if not directory.is_dir():
        print(f"no keystore in {directory}")
        return 0
    for path in sorted(directory.iterdir()):
        try:
            address = json.loads(path.read_text()).get("address", "?")
        except (OSError, ValueError):
            continue
        print(f"0x{address}  {path}")
    return 0


def cmd_db_reset(args: argparse.Namespace) -> int:
    datadir = Path(args.datadir).expanduser()
    chaindata = datadir / "chaindata"
    if not chaindata.exists():
        print(f"{chaindata} does not exist; nothing to reset")
        return 0
    if not args.yes:
        answer = input(f"Delete every block in {chaindata}? Keys and genesis.json stay. [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("aborted; nothing was changed")
            return 1
    store = ChainStore(chaindata)  # fails clearly if a node is running on it
    store.close()
    shutil.rmtree(chaindata)
    print(f"removed {chaindata}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cairn", description="Cairn: a persistent, multi-node EVM test network node."
    )
    parser.add_argument("--version", action="version", version=f"cairn {cairn.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    dev = sub.add_parser("dev", help="run a persistent single-node dev chain (Anvil-compatible)")
    add_options(dev, dev=True)
    dev.set_defaults(func=cmd_dev)

    run = sub.add_parser("run", help="run a node from a datadir and genesis.json")
    add_options(run, dev=False)
    run.set_defaults(func=cmd_run)

    init = sub.add_parser("init", help="create a datadir's chain from genesis.json")
    init.add_argument("--datadir", required=True)
    init.add_argument("--genesis", required=True)
    init.set_defaults(func=cmd_init)

    account = sub.add_parser("account", help="manage keystore v3 keys")
    account_sub = account.add_subparsers(dest="account_command", required=True)
    new = account_sub.add_parser("new", help="create a key in <datadir>/keystore")
    new.add_argument("--datadir", required=True)
    new.add_argument("--password", required=True, help="file holding the password")
    new.set_defaults(func=cmd_account_new)
    listing = account_sub.add_parser("list", help="list keys in <datadir>/keystore")
    listing.add_argument("--datadir", required=True)
    listing.set_defaults(func=cmd_account_list)

    db = sub.add_parser("db", help="database maintenance")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    reset = db_sub.add_parser("reset", help="delete the chain data of a datadir, on purpose")
    reset.add_argument("--datadir", required=True)
    reset.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    reset.set_defaults(func=cmd_db_reset)

    cli_tools.add_commands(sub, account_sub)
    cli_testnet.add_commands(sub)
    cli_mirror.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
        return code
    except CairnError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
