"""Answers are encoded in parts only when a large cached result can be sent as it is held;
the parts always join to exactly the bytes of the one-buffer encoding. Cached JSON is
embedded as is, also when an integer beyond 64 bits makes the server fall back to `json`."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from cairn.rpc.cache import RawJson
from cairn.rpc.server import STREAMED_RESULT_BYTES, encode, encode_parts

BIG = RawJson.of({"transactions": ["0x" + "ab" * 100] * 2_000})
SMALL = RawJson.of({"number": "0x1"})


@pytest.mark.parametrize(
    "answer",
    [
        {"jsonrpc": "2.0", "id": 1, "result": BIG},
        {"jsonrpc": "2.0", "id": "req-é", "result": BIG},
        {"jsonrpc": "2.0", "id": None, "result": BIG},
        {"jsonrpc": "2.0", "id": 2, "result": SMALL},
        {"jsonrpc": "2.0", "id": 3, "error": {"code": -32000, "message": "nonce too low"}},
        [{"jsonrpc": "2.0", "id": 4, "result": BIG}],
    ],
)
def test_parts_join_to_the_single_encoding(answer: Any) -> None:
    parts = encode_parts(answer)
    assert b"".join(parts) == encode(answer)
    assert orjson.loads(b"".join(parts)) == orjson.loads(encode(answer))


def test_cached_json_keeps_the_fast_encoder() -> None:
    """orjson itself embeds cached JSON (the `json` fallback is ~10x slower on blocks)."""
    answer = {"jsonrpc": "2.0", "id": "req-é", "result": BIG}
    assert encode(answer).startswith('{"jsonrpc":"2.0","id":"req-é"'.encode())


def test_only_a_large_single_result_is_sent_in_parts() -> None:
    assert len(BIG.raw) >= STREAMED_RESULT_BYTES
    big = encode_parts({"jsonrpc": "2.0", "id": 1, "result": BIG})
    assert len(big) == 3 and big[1] is BIG.raw  # the cached bytes themselves, not a copy
    assert len(encode_parts({"jsonrpc": "2.0", "id": 1, "result": SMALL})) == 1
    assert len(encode_parts([{"jsonrpc": "2.0", "id": 1, "result": BIG}])) == 1


def test_cached_json_survives_the_fallback_for_big_integers() -> None:
    """A batch whose ids go beyond 64 bits: orjson refuses them, `json` takes over, and
    the cached block inside is still embedded as the same JSON."""
    big_id = 2**70
    answer = [
        {"jsonrpc": "2.0", "id": big_id, "result": SMALL},
        {"jsonrpc": "2.0", "id": 1, "result": BIG},
    ]
    decoded = orjson.loads(b"".join(encode_parts(answer)).replace(b"%d" % big_id, b"0"))
    assert decoded[0]["result"] == {"number": "0x1"}
    assert decoded[1]["result"] == orjson.loads(BIG.raw)
    assert b"%d" % big_id in encode(answer)
