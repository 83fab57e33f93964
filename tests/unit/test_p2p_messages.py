"""Wire messages: round trips, and every malformed input refused with PeerMessageError."""

from __future__ import annotations

import msgpack
import pytest

from cairn.chain.bundle import BlockBundle
from cairn.errors import InvalidBlock
from cairn.p2p import messages as m

GENESIS = bytes(range(32))


def _status(**changes: object) -> m.Status:
    fields: dict[str, object] = {
        "chain_id": 31337,
        "genesis_hash": GENESIS,
        "head": 5,
        "head_hash": b"\x05" * 32,
        "listen_port": 30333,
        "client": "cairn/test",
    }
    fields.update(changes)
    return m.Status(**fields)  # type: ignore[arg-type]


def test_status_round_trip_and_mismatch_names_both_sides() -> None:
    ours = _status()
    assert m.Status.decode(ours.encode()) == ours
    assert ours.mismatch(_status(head=99)) is None
    other_chain = ours.mismatch(_status(chain_id=5))
    assert other_chain is not None
    assert "ours chain id 31337" in other_chain and "theirs chain id 5" in other_chain
    other_genesis = ours.mismatch(_status(genesis_hash=b"\xaa" * 32))
    assert other_genesis is not None
    assert f"genesis 0x{GENESIS.hex()}" in other_genesis and "0x" + "aa" * 32 in other_genesis


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\xc1",
        msgpack.packb([1, 2, 3]),
        msgpack.packb({"chainId": 1}),
        msgpack.packb(
            {"chainId": 1, "genesis": b"short", "head": 0, "headHash": b"", "port": 1, "client": ""}
        ),
        msgpack.packb(
            {"chainId": 1, "genesis": GENESIS, "head": -4, "headHash": b"", "port": 1, "client": ""}
        ),
    ],
)
def test_bad_status_is_refused(raw: bytes) -> None:
    with pytest.raises(m.PeerMessageError):
        m.Status.decode(raw)


def test_sync_requests() -> None:
    request = m.SyncRequest("range", 10, 5000)
    decoded = m.SyncRequest.decode(request.encode())
    assert (decoded.kind, decoded.start, decoded.count) == ("range", 10, m.MAX_RANGE_BLOCKS)
    for raw in (
        b"\x00",
        msgpack.packb({"t": "drop-tables"}),
        msgpack.packb({"t": "range", "start": -1}),
        msgpack.packb(["range"]),
    ):
        with pytest.raises(m.PeerMessageError):
            m.SyncRequest.decode(raw)


def test_block_ranges_and_peer_lists() -> None:
    assert m.decode_blocks(m.encode_blocks([b"a", b"b"])) == [b"a", b"b"]
    with pytest.raises(m.PeerMessageError):
        m.decode_blocks(msgpack.packb([b"x"] * (m.MAX_RANGE_BLOCKS + 1)))
    with pytest.raises(m.PeerMessageError):
        m.decode_blocks(msgpack.packb(["not bytes"]))
    addrs = [f"/ip4/127.0.0.1/tcp/{p}" for p in range(100)]
    assert m.decode_peers(m.encode_peers(addrs)) == addrs[: m.MAX_PEERS_SHARED]
    with pytest.raises(m.PeerMessageError):
        m.decode_peers(msgpack.packb([1, 2]))


def test_tx_batches() -> None:
    raws = [bytes([i]) * 1000 for i in range(50)]
    batches = m.split_batches(raws, limit=10_000)
    assert [r for b in batches for r in b] == raws
    assert all(sum(len(r) + 8 for r in b) <= 10_000 for b in batches)
    assert m.decode_txs(m.encode_txs(raws)) == raws
    for raw in (msgpack.packb([]), msgpack.packb({"a": 1}), b"\xff" * 10):
        with pytest.raises(m.PeerMessageError):
            m.decode_txs(raw)
    with pytest.raises(m.PeerMessageError):
        m.decode_txs(b"\x00" * (m.MAX_TX_BATCH_BYTES + 2048))


def test_block_bundle_envelope() -> None:
    bundle = BlockBundle(b"header", (b"tx1", b"tx2"), b"commit")
    assert BlockBundle.decode(bundle.encode()) == bundle
    for raw in (b"garbage", msgpack.packb([b"h", [1], b"c"]), msgpack.packb([b"h"])):
        with pytest.raises(InvalidBlock) as info:
            BlockBundle.decode(raw)
        assert info.value.number == -1
        assert str(info.value).startswith("invalid block data: undecodable block message")


def test_topics_are_per_chain() -> None:
    assert m.topic_names(7) == {
        "txs": "/cairn/7/txs/1",
        "blocks": "/cairn/7/blocks/1",
        "consensus": "/cairn/7/consensus/1",
    }
    assert m.sync_protocol(7) == "/cairn/7/sync/1"
