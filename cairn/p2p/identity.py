"""The node's libp2p identity: an Ed25519 seed kept in `<datadir>/p2p/nodekey` (hex, like
geth's nodekey), created once with mode 0600 so the peer id survives restarts."""

from __future__ import annotations

import os
from pathlib import Path

from cairn.errors import ConfigError

NODEKEY_FILE = "nodekey"


def load_or_create_nodekey(p2p_dir: Path) -> bytes:
    path = p2p_dir / NODEKEY_FILE
    if path.exists():
        try:
            seed = bytes.fromhex(path.read_text().strip())
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"{path} is not a hex node key: {exc}. Delete it to get a new peer id."
            ) from exc
        if len(seed) != 32:
            raise ConfigError(f"{path} holds {len(seed)} bytes, a node key has 32")
        return seed
    p2p_dir.mkdir(parents=True, exist_ok=True)
    seed = os.urandom(32)
    write_nodekey(path, seed)
    return seed


def write_nodekey(path: Path, seed: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(seed.hex() + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def peer_id_of(seed: bytes) -> str:
    """The base58 peer id a node key gives (used by `cairn testnet init` for bootnodes)."""
    from libp2p.crypto.ed25519 import create_new_key_pair
    from libp2p.peer.id import ID

    return str(ID.from_pubkey(create_new_key_pair(seed).public_key).to_base58())
