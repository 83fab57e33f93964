"""Wire messages of Cairn's own protocols, msgpack-encoded: the status handshake, sync
requests and answers, and transaction batches. Pure encode/decode; no I/O here.

Every decoder raises `PeerMessageError` for anything malformed, so one bad peer can never
crash a handler; blocks inside stay RLP (see `cairn.chain.bundle`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack

from cairn.errors import CairnError

STATUS_PROTOCOL = "/cairn/status/1"  # chain-agnostic, so a foreign network is named, not ignored
MAX_STATUS_BYTES = 4096
MAX_REQUEST_BYTES = 4096
MAX_RANGE_RESPONSE_BYTES = 12 * 1024 * 1024
MAX_RANGE_BLOCKS = 128
MAX_PEERS_SHARED = 32
MAX_TX_BATCH_BYTES = 512 * 1024


class PeerMessageError(CairnError):
    """A peer sent bytes that are not a valid message of our protocols."""


def topic_names(chain_id: int) -> dict[str, str]:
    return {kind: f"/cairn/{chain_id}/{kind}/1" for kind in ("txs", "blocks", "consensus")}


def sync_protocol(chain_id: int) -> str:
    return f"/cairn/{chain_id}/sync/1"


def _int(value: Any, what: str) -> int:
    # Only msgpack integers: int() of a float infinity raises OverflowError, and of a
    # bool or a string is not what an honest peer sends.
    if isinstance(value, bool) or not isinstance(value, int):
        raise PeerMessageError(f"malformed {what}: expected an integer, got {type(value).__name__}")
    return value


def _bytes(value: Any, what: str) -> bytes:
    # Never bytes(value): bytes(2**33) of a 4 KiB frame would allocate 8 GiB.
    if not isinstance(value, bytes):
        raise PeerMessageError(f"malformed {what}: expected bytes, got {type(value).__name__}")
    return value


def _unpack(raw: bytes, what: str) -> Any:
    try:
        return msgpack.unpackb(raw, strict_map_key=True)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise PeerMessageError(f"undecodable {what}: {exc}") from exc


@dataclass(frozen=True)
class Status:
    chain_id: int
    genesis_hash: bytes
    head: int
    head_hash: bytes
    listen_port: int
    client: str
    full: bool = False  # the sender is at --p2p.maxpeers and will not keep this connection

    def encode(self) -> bytes:
        packed: bytes = msgpack.packb(
            {
                "v": 1,
                "chainId": self.chain_id,
                "genesis": self.genesis_hash,
                "head": self.head,
                "headHash": self.head_hash,
                "port": self.listen_port,
                "client": self.client,
                "full": self.full,
            }
        )
        return packed

    @classmethod
    def decode(cls, raw: bytes) -> Status:
        data = _unpack(raw, "status")
        if not isinstance(data, dict):
            raise PeerMessageError("malformed status: not a map")
        try:
            client = data["client"]
            status = cls(
                _int(data["chainId"], "status"),
                _bytes(data["genesis"], "status"),
                _int(data["head"], "status"),
                _bytes(data["headHash"], "status"),
                _int(data["port"], "status"),
                client[:128] if isinstance(client, str) else "?",
                data.get("full", False) is True,
            )
        except KeyError as exc:
            raise PeerMessageError(f"malformed status: no {exc}") from exc
        if len(status.genesis_hash) != 32 or status.head < 0:
            raise PeerMessageError("malformed status: bad genesis hash or head")
        return status

    def mismatch(self, theirs: Status) -> str | None:
        """A sentence naming both sides' values when the peer is on another network."""
        if self.chain_id == theirs.chain_id and self.genesis_hash == theirs.genesis_hash:
            return None
        return (
            f"network mismatch: ours chain id {self.chain_id} genesis "
            f"0x{self.genesis_hash.hex()}, theirs chain id {theirs.chain_id} genesis "
            f"0x{theirs.genesis_hash.hex()}"
        )


# ---------------------------------------------------------------- sync protocol
@dataclass(frozen=True)
class SyncRequest:
    """`status`, `peers`, or `range` (blocks start .. start + count - 1)."""

    kind: str
    start: int = 0
    count: int = 0

    def encode(self) -> bytes:
        packed: bytes = msgpack.packb({"t": self.kind, "start": self.start, "count": self.count})
        return packed

    @classmethod
    def decode(cls, raw: bytes) -> SyncRequest:
        data = _unpack(raw, "sync request")
        if not isinstance(data, dict) or not isinstance(data.get("t"), str):
            raise PeerMessageError("malformed sync request: not a map with a kind")
        kind = data["t"]
        start = _int(data.get("start", 0), "sync request")
        count = _int(data.get("count", 0), "sync request")
        if kind not in ("status", "peers", "range") or start < 0 or count < 0:
            raise PeerMessageError(f"malformed sync request: {kind} {start} {count}")
        return cls(kind, start, min(count, MAX_RANGE_BLOCKS))


def encode_blocks(bundles: list[bytes]) -> bytes:
    packed: bytes = msgpack.packb(bundles)
    return packed


def decode_blocks(raw: bytes) -> list[bytes]:
    data = _unpack(raw, "block range")
    if not isinstance(data, list) or not all(isinstance(b, bytes) for b in data):
        raise PeerMessageError("malformed block range: expected a list of block bundles")
    if len(data) > MAX_RANGE_BLOCKS:
        raise PeerMessageError(f"block range of {len(data)} blocks exceeds {MAX_RANGE_BLOCKS}")
    return data


def encode_peers(addrs: list[str]) -> bytes:
    packed: bytes = msgpack.packb(addrs[:MAX_PEERS_SHARED])
    return packed


def decode_peers(raw: bytes) -> list[str]:
    data = _unpack(raw, "peer list")
    if not isinstance(data, list) or not all(isinstance(a, str) for a in data):
        raise PeerMessageError("malformed peer list")
    return data[:MAX_PEERS_SHARED]


# ---------------------------------------------------------------- transactions
def encode_txs(raws: list[bytes]) -> bytes:
    packed: bytes = msgpack.packb(raws)
    return packed


def decode_txs(raw: bytes) -> list[bytes]:
    if len(raw) > MAX_TX_BATCH_BYTES + 1024:
        raise PeerMessageError(f"transaction batch of {len(raw)} bytes is too large")
    data = _unpack(raw, "transaction batch")
    if not isinstance(data, list) or not data or not all(isinstance(t, bytes) for t in data):
        raise PeerMessageError("malformed transaction batch: expected a list of raw transactions")
    return data


def split_batches(raws: list[bytes], limit: int = MAX_TX_BATCH_BYTES) -> list[list[bytes]]:
    """Group raw transactions into batches whose encoding stays under `limit` bytes."""
    batches: list[list[bytes]] = []
    current: list[bytes] = []
    size = 0
    for raw in raws:
        if current and size + len(raw) + 8 > limit:
            batches.append(current)
            current, size = [], 0
        current.append(raw)
        size += len(raw) + 8
    if current:
        batches.append(current)
    return batches
