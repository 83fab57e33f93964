"""`RawJson`: the JSON text of formatted answers about committed blocks, as the caches hold it.

Committed blocks never change, so their JSON can be built once (the caches themselves are
`cairn.memory.SizedLru`s, bounded in bytes); entries are keyed by block hash, so a dev-chain
rewind (another block at the same number) can never hit a stale one.
"""

from __future__ import annotations

from typing import Any

import orjson


class RawJson:
    """JSON text built once (a formatted block, a block's receipts); the server embeds it in
    answers as it is, without decoding or re-encoding it. (A plain class on purpose: orjson
    would serialize a dataclass field by field.)"""

    __slots__ = ("raw",)

    def __init__(self, raw: bytes) -> None:
        self.raw = raw

    @classmethod
    def of(cls, value: Any) -> RawJson:
        return cls(orjson.dumps(value))
