"""Small `cairn` commands beside the node: `version`, `dumpgenesis` (geth's: the genesis JSON
of a datadir, or of a new dev chain), `account import` (a private-key file or another
keystore, written as a keystore v3 file under `<datadir>/keystore`) and `backup` (asks the
running node, or copies a stopped node's datadir: cairn/node/backup.py).

Writes only the keystore file or backup directory it creates; opens LevelDB (read-only use)
only to back up a datadir no node runs on.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import eth_keyfile
from eth_keys.datatypes import PrivateKey
from eth_keys.exceptions import ValidationError as KeyValidationError

import cairn
from cairn.errors import ConfigError, KeystoreError
from cairn.execution.forks import fork_named
from cairn.execution.genesis import genesis_block
from cairn.genesis.dev import dev_genesis
from cairn.genesis.parse import genesis_to_json, load_genesis
from cairn.node.backup import ask_node, validate_target, write_backup
from cairn.node.keys import checksum, read_password, save_keystore
from cairn.storage.store import ChainStore

GENESIS_FILE = "genesis.json"
_LIBRARIES = ("py-evm", "plyvel", "aiohttp", "libp2p", "asyncpg", "eth-account")


def cmd_version(args: argparse.Namespace) -> int:
    """What geth's `version` prints, for Cairn: its version, the runtime and key libraries."""
    print("Cairn")
    print(f"Version: {cairn.__version__}")
    print(f"Python: {platform.python_implementation()} {platform.python_version()}")
    print(f"OS/Arch: {sys.platform}-{platform.machine()}")
    for name in _LIBRARIES:
        try:
            print(f"{name}: {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            print(f"{name}: not installed")
    return 0


def cmd_dumpgenesis(args: argparse.Namespace) -> int:
    """The genesis JSON of `--datadir` (its genesis.json), or of a new `cairn dev` chain."""
    if args.datadir is None:
        genesis = dev_genesis()
    else:
        datadir = Path(args.datadir).expanduser()
        path = datadir / GENESIS_FILE
        if not path.exists():
            raise ConfigError(
                f"{datadir} holds no {GENESIS_FILE}: is it a Cairn datadir? (`cairn init` and "
                "`cairn dev` write one)"
            )
        genesis = load_genesis(path)
    data: dict[str, Any] = genesis_to_json(genesis)
    json.dump(data, sys.stdout, indent=2)
    print()
    block = genesis_block(genesis, fork_named(genesis.consensus.fork))
    print(f"genesis hash 0x{block.header.hash.hex()}", file=sys.stderr)
    return 0


def _read_key(path: Path, source_password: str | None) -> PrivateKey:
    """A private key from a file: 64 hex digits (0x optional, geth's `account import`), or a
    keystore v3 JSON file opened with `--source-password`."""
    try:
        text = path.read_text().strip()
    except OSError as exc:
        raise KeystoreError(f"cannot read key file {path}: {exc.strerror}") from None
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise KeystoreError(f"{path} looks like a keystore but is not JSON: {exc}") from None
        if source_password is None:
            raise KeystoreError(f"{path} is a keystore: give --source-password FILE to decrypt it")
        try:
            secret = eth_keyfile.decode_keyfile_json(data, source_password.encode())
        except (ValueError, KeyError, TypeError) as exc:
            raise KeystoreError(
                f"cannot decrypt keystore {path}: {exc} (wrong --source-password?)"
            ) from None
        return PrivateKey(secret)
    hex_text = text[2:] if text[:2].lower() == "0x" else text
    try:
        raw = bytes.fromhex(hex_text)
        if len(raw) != 32:
            raise ValueError
        return PrivateKey(raw)
    except (ValueError, KeyValidationError):
        raise KeystoreError(
            f"{path} holds no private key: expected 64 hex digits on one line, or a keystore "
            "v3 JSON file"
        ) from None


def _addresses_in(directory: Path) -> set[str]:
    found: set[str] = set()
    if not directory.is_dir():
        return found
    for path in directory.iterdir():
        try:
            address = json.loads(path.read_text()).get("address")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(address, str):
            found.add(address.lower().removeprefix("0x"))
    return found


def cmd_account_import(args: argparse.Namespace) -> int:
    datadir = Path(args.datadir).expanduser()
    password = read_password(Path(args.password))
    source = read_password(Path(args.source_password)) if args.source_password else None
    key = _read_key(Path(args.keyfile), source)
    directory = datadir / "keystore"
    address = key.public_key.to_canonical_address().hex()
    if address in _addresses_in(directory):
        raise KeystoreError(f"account {checksum(key)} already exists in {directory}")
    path = save_keystore(directory, key, password)
    print(f"address {checksum(key)}")
    print(f"keystore {path}")
    return 0


def cmd_backup(args: argparse.Namespace) -> int:
    """A consistent copy of a datadir: through its running node, else directly."""
    datadir = Path(args.datadir).expanduser().absolute()
    out = validate_target(datadir, Path(args.out))
    answer = ask_node(datadir, {"command": "backup", "out": str(out)}, timeout=args.timeout)
    if answer is None:
        chaindata = datadir / "chaindata"
        if not chaindata.is_dir():
            raise ConfigError(f"{datadir} holds no chain (no chaindata/)")
        store = ChainStore(chaindata)  # fails clearly if a node without control socket runs
        try:
            summary = write_backup(store, datadir, out)
        finally:
            store.close()
        how = "copied (no node running)"
    elif not answer.get("ok"):
        raise ConfigError(f"the node refused the backup: {answer.get('error')}")
    else:
        summary = answer
        how = "taken by the running node"
    print(
        f"backup of block #{summary['blockNumber']} {summary['blockHash']} {how} "
        f"in {summary['seconds']} s: {out}"
    )
    print(f"restore: stop the node, move {out} into place as its --datadir, start it")
    return 0


def add_commands(sub: Any, account_sub: Any) -> None:
    """Register `version`, `dumpgenesis`, `backup` and `account import` on cli.py's parsers."""
    version = sub.add_parser("version", help="print version numbers")
    version.set_defaults(func=cmd_version)

    dump = sub.add_parser(
        "dumpgenesis", help="print the genesis JSON of a datadir (default: of a new dev chain)"
    )
    dump.add_argument("--datadir", default=None)
    dump.set_defaults(func=cmd_dumpgenesis)

    backup = sub.add_parser(
        "backup", help="copy a datadir consistently, from its running node or while stopped"
    )
    backup.add_argument("--datadir", required=True)
    backup.add_argument("--out", required=True, help="new (or empty) directory to write")
    backup.add_argument(
        "--timeout", type=float, default=3600.0, help="seconds to wait for the node's answer"
    )
    backup.set_defaults(func=cmd_backup)

    imported = account_sub.add_parser(
        "import", help="import a private key (hex file) or a keystore into <datadir>/keystore"
    )
    imported.add_argument("keyfile", help="file with the private key in hex, or a keystore v3")
    imported.add_argument("--datadir", required=True)
    imported.add_argument(
        "--password", required=True, help="file holding the password of the new keystore"
    )
    imported.add_argument(
        "--source-password",
        default=None,
        help="file holding the password of the keystore being imported",
    )
    imported.set_defaults(func=cmd_account_import)
