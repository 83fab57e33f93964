"""Producer keys in keystore v3 files (geth/MetaMask compatible); never plaintext on disk."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import eth_keyfile
from eth_keys.datatypes import PrivateKey
from eth_utils import to_checksum_address

from cairn.errors import KeystoreError


def read_password(path: Path) -> str:
    try:
        text = path.read_text()
    except OSError as exc:
        raise KeystoreError(f"cannot read password file {path}: {exc.strerror}") from exc
    password = text.splitlines()[0] if text else ""
    if not password:
        raise KeystoreError(f"password file {path} is empty")
    return password


def load_keystore(keystore: Path, password_file: Path) -> PrivateKey:
    password = read_password(password_file)
    try:
        data = json.loads(keystore.read_text())
    except OSError as exc:
        raise KeystoreError(f"cannot read keystore {keystore}: {exc.strerror}") from exc
    except ValueError as exc:
        raise KeystoreError(f"keystore {keystore} is not JSON: {exc}") from exc
    try:
        secret = eth_keyfile.decode_keyfile_json(data, password.encode())
    except ValueError as exc:
        raise KeystoreError(
            f"cannot decrypt keystore {keystore}: {exc} (wrong password in {password_file}?)"
        ) from exc
    return PrivateKey(secret)


def save_keystore(directory: Path, key: PrivateKey, password: str) -> Path:
    """Write `key` as a keystore v3 file named like geth's (UTC--<time>--<address>)."""
    directory.mkdir(parents=True, exist_ok=True)
    data = eth_keyfile.create_keyfile_json(key.to_bytes(), password.encode(), kdf="scrypt")
    stamp = time.strftime("%Y-%m-%dT%H-%M-%S", time.gmtime())
    address = key.public_key.to_canonical_address().hex()
    path = directory / f"UTC--{stamp}.000000000Z--{address}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh)
    return path


def find_keystore(directory: Path) -> Path | None:
    if not directory.is_dir():
        return None
    files = sorted(p for p in directory.iterdir() if p.is_file() and p.name.startswith("UTC--"))
    return files[0] if files else None


def checksum(key: PrivateKey) -> str:
    return to_checksum_address(key.public_key.to_canonical_address())
