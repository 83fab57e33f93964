"""Decoding request bodies without letting a hostile one crash the process.

py-evm's dependencies raise Python's recursion limit to 100,000, so the C JSON parser would
follow `[[[[…` far past the end of the thread's C stack and kill the node with SIGSEGV on a
200 KB body. Bodies are therefore checked for nesting depth before `json.loads` sees them.
"""

from __future__ import annotations

import json
import re
from typing import Any

MAX_DEPTH = 512  # JSON-RPC requests nest a handful of levels; geth's decoder stops at 10,000
_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)
_BRACKETS = re.compile(rb"[\[\]{}]")


class TooDeep(ValueError):
    """The body nests deeper than MAX_DEPTH (a ValueError, so callers treat it as unparsable)."""


def decode_json(body: bytes | str, max_depth: int = MAX_DEPTH) -> Any:
    """`json.loads`, refusing bodies nested deeper than `max_depth` with `TooDeep`."""
    if _openers(body) > max_depth:
        raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
        _check_depth(raw, max_depth)
    return json.loads(body)


def _openers(body: bytes | str) -> int:
    # An upper bound on the depth, at C speed: nearly every request stops here.
    if isinstance(body, str):
        return body.count("[") + body.count("{")
    return body.count(b"[") + body.count(b"{")


def _check_depth(raw: bytes, max_depth: int) -> None:
    depth = 0
    for match in _BRACKETS.finditer(_STRINGS.sub(b"", raw)):
        if match.group() in (b"[", b"{"):
            depth += 1
            if depth > max_depth:
                raise TooDeep(f"JSON nested deeper than {max_depth} levels")
        else:
            depth -= 1
