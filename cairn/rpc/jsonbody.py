"""Decoding request bodies without letting a hostile one crash the process or hold the loop.

py-evm's dependencies raise Python's recursion limit to 100,000, so the C JSON parser would
follow `[[[[…` far past the end of the thread's C stack and kill the node with SIGSEGV on a
200 KB body. Bodies are therefore checked for nesting depth before `json.loads` sees them.

The check runs on the event loop, so it must stay linear in the body's size whatever the body
holds (a regex over strings that rescanned from every quote took 10 s on a 40 KB body), and
run at C speed for the bytes that do not matter: escapes are dropped, everything but quotes
and brackets is deleted, strings are cut out, and only the brackets left are counted.
"""

from __future__ import annotations

import json
from itertools import accumulate
from typing import Any

MAX_DEPTH = 512  # JSON-RPC requests nest a handful of levels; geth's decoder stops at 10,000
# Quotes and brackets only, objects and arrays alike: "[" opens, "]" closes.
_STRUCTURE = bytes.maketrans(b"{}", b"[]")
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'"[]{}')
_STEP = [0] * 256
_STEP[ord("[")] = 1
_STEP[ord("]")] = -1
_CHUNK = 4096


class TooDeep(ValueError):
    """The body nests deeper than MAX_DEPTH (a ValueError, so callers treat it as unparsable)."""


def decode_json(body: bytes | str, max_depth: int = MAX_DEPTH) -> Any:
    """`json.loads`, refusing bodies nested deeper than `max_depth` with `TooDeep`."""
    if _openers(body) > max_depth:
        raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
        validate_depth(raw, max_depth)
    return json.loads(body)


def _openers(body: bytes | str) -> int:
    # An upper bound on the depth, at C speed: nearly every request stops here.
    if isinstance(body, str):
        return body.count("[") + body.count("{")
    return body.count(b"[") + body.count(b"{")


def validate_depth(raw: bytes, max_depth: int) -> None:
    """Raise `TooDeep` if brackets outside strings nest deeper than `max_depth`.

    Linear, and C speed but for the last step: escaped backslashes, then escaped quotes are
    dropped (what is left of a backslash run cannot hide a quote); every byte but quotes and
    brackets is deleted; two adjacent quotes are an empty string or the gap between two
    strings with no bracket in it, so they go too; the pieces between the remaining quotes
    alternate outside/inside a string. Past a stray backslash or an unterminated string
    json.loads stops anyway, having nested no deeper than the brackets before it. Depth is
    then counted per chunk, and a chunk is scanned only if it holds enough openers to cross
    the limit."""
    structure = (
        raw.replace(b"\\\\", b"")
        .replace(b'\\"', b"")
        .translate(_STRUCTURE, _NOT_STRUCTURE)
        .replace(b'""', b"")
    )
    if b'"' in structure:
        structure = b"".join(structure.split(b'"')[::2])
    depth = 0
    for start in range(0, len(structure), _CHUNK):
        chunk = structure[start : start + _CHUNK]
        opens = chunk.count(b"[")
        if depth + opens > max_depth:
            deepest = max(accumulate(map(_STEP.__getitem__, chunk), initial=depth))
            if deepest > max_depth:
                raise TooDeep(f"JSON nested deeper than {max_depth} levels")
        depth += 2 * opens - len(chunk)
