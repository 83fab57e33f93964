"""Every LevelDB key Cairn writes is built here.

Layout (one-byte prefix, then a fixed-width body, so prefixes never collide):

    m<name>                 metadata: schema version, genesis hash, head, chain id
    H<number:8>             header RLP of the canonical block at number
    B<number:8>             body: msgpack [tx encodings, senders, withdrawals]
    R<number:8>             receipts: msgpack [receipt encodings]
    C<number:8>             the block's commit (producer signatures), consensus-encoded
    A<number:8>             accounts the block touched: concatenated 20-byte addresses
    N<hash:32>              block hash -> number
    T<hash:32>              transaction hash -> msgpack [number, index]
    S<hash:32>              state trie node or contract code, keyed by its keccak
    P<hash:32>              txpool journal: a raw transaction accepted and not yet mined
    O<number:8>             dev chains only: state overrides / impersonated senders of the block
    D<id:8>                 dev chains only: an evm_snapshot (the head it names, clock settings)
    F a<address:20>         faucet: time of the last drip to an address (seconds, 8 bytes)
    F i<ip:16>              faucet: time of the last drip to a client IP (IPv4 as ::ffff:a.b.c.d)
    mdev-settings           dev chains only: clock offset, impersonated accounts (msgpack)
    mdev-snapshot-seq       dev chains only: the next evm_snapshot id
"""

from __future__ import annotations

SCHEMA_VERSION = 1

_META = b"m"
_HEADER = b"H"
_BODY = b"B"
_RECEIPTS = b"R"
_COMMIT = b"C"
_TOUCHED = b"A"
_HASH_TO_NUMBER = b"N"
_TX_LOOKUP = b"T"
STATE_PREFIX = b"S"
JOURNAL_PREFIX = b"P"
_DEV_EXTRAS = b"O"
DEV_SNAPSHOT_PREFIX = b"D"
EVIDENCE_PREFIX = b"E"
FAUCET_PREFIX = b"F"

SCHEMA_VERSION_KEY = _META + b"schema-version"
GENESIS_HASH_KEY = _META + b"genesis-hash"
CHAIN_ID_KEY = _META + b"chain-id"
HEAD_KEY = _META + b"head"
DEV_SETTINGS_KEY = _META + b"dev-settings"
DEV_SNAPSHOT_SEQ_KEY = _META + b"dev-snapshot-seq"


def _number(n: int) -> bytes:
    if n < 0:
        raise ValueError(f"block number must not be negative: {n}")
    return n.to_bytes(8, "big")


def _hash(h: bytes) -> bytes:
    if len(h) != 32:
        raise ValueError(f"expected a 32-byte hash, got {len(h)} bytes")
    return h


def header_key(number: int) -> bytes:
    return _HEADER + _number(number)


def body_key(number: int) -> bytes:
    return _BODY + _number(number)


def receipts_key(number: int) -> bytes:
    return _RECEIPTS + _number(number)


def commit_key(number: int) -> bytes:
    return _COMMIT + _number(number)


def touched_key(number: int) -> bytes:
    return _TOUCHED + _number(number)


def hash_to_number_key(block_hash: bytes) -> bytes:
    return _HASH_TO_NUMBER + _hash(block_hash)


def tx_lookup_key(tx_hash: bytes) -> bytes:
    return _TX_LOOKUP + _hash(tx_hash)


def state_key(node_hash: bytes) -> bytes:
    return STATE_PREFIX + node_hash


def journal_key(tx_hash: bytes) -> bytes:
    return JOURNAL_PREFIX + _hash(tx_hash)


def dev_extras_key(number: int) -> bytes:
    return _DEV_EXTRAS + _number(number)


def dev_snapshot_key(snapshot_id: int) -> bytes:
    return DEV_SNAPSHOT_PREFIX + _number(snapshot_id)


def evidence_key(height: int, round_: int, kind: int, validator: bytes) -> bytes:
    """Equivocation evidence, one record per (height, round, vote kind, validator)."""
    return EVIDENCE_PREFIX + _number(height) + _number(round_) + bytes([kind]) + validator


def faucet_address_key(address: bytes) -> bytes:
    if len(address) != 20:
        raise ValueError(f"expected a 20-byte address, got {len(address)} bytes")
    return FAUCET_PREFIX + b"a" + address


def faucet_ip_key(packed_ip: bytes) -> bytes:
    if len(packed_ip) != 16:
        raise ValueError(f"expected a 16-byte (IPv6 or mapped IPv4) address, got {len(packed_ip)}")
    return FAUCET_PREFIX + b"i" + packed_ip


def encode_number(n: int) -> bytes:
    return _number(n)


def decode_number(raw: bytes) -> int:
    return int.from_bytes(raw, "big")


def encode_addresses(addresses: tuple[bytes, ...]) -> bytes:
    if any(len(a) != 20 for a in addresses):
        raise ValueError("expected 20-byte addresses")
    return b"".join(addresses)


def decode_addresses(raw: bytes) -> tuple[bytes, ...]:
    return tuple(raw[i : i + 20] for i in range(0, len(raw), 20))


def encode_head(number: int, block_hash: bytes) -> bytes:
    return _number(number) + _hash(block_hash)


def decode_head(raw: bytes) -> tuple[int, bytes]:
    return int.from_bytes(raw[:8], "big"), raw[8:40]
