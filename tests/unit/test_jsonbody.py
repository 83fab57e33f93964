"""Request bodies: nesting depth is checked before json.loads, brackets in strings ignored,
in time linear in the body (checked against a plain lexer on generated bodies)."""

from __future__ import annotations

import contextlib
import json
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cairn.rpc.jsonbody import TooDeep, decode_json, validate_depth


@pytest.mark.parametrize("kind", [bytes, str])
def test_depth_limit_is_exact(kind: type) -> None:
    def body(depth: int) -> bytes | str:
        text = "[" * depth + "]" * depth
        return text.encode() if kind is bytes else text

    assert decode_json(body(20), max_depth=20) == json.loads("[" * 20 + "]" * 20)
    with pytest.raises(TooDeep):
        decode_json(body(21), max_depth=20)
    with pytest.raises(TooDeep):
        decode_json(("{" + '"a":' * 1) * 30, max_depth=20)  # unbalanced still counts


def test_brackets_inside_strings_do_not_nest() -> None:
    tricky = json.dumps({"data": "[[[[{{{{" * 100, "escaped": '\\"[[[[', "list": [[1], [2]]})
    assert decode_json(tricky, max_depth=5)["list"] == [[1], [2]]
    many_siblings = json.dumps([[i] for i in range(5000)])
    assert len(decode_json(many_siblings.encode(), max_depth=3)) == 5000


def test_not_json_is_still_a_value_error() -> None:
    with pytest.raises(ValueError):
        decode_json(b"{nope")
    with pytest.raises(ValueError):
        decode_json(b"\xff\xfe")


def _reference_depth(raw: bytes) -> int:
    """The deepest json.loads can get: a plain lexer that stops where JSON would."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in raw:
        char = chr(byte)
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char == "\\":
            break  # a stray backslash: json.loads stops here
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


@settings(max_examples=400, deadline=None)
@given(
    st.lists(st.sampled_from(["[", "]", "{", "}", '"', "\\", "a", ",", "\\\\", '\\"']), max_size=80)
)
def test_the_depth_check_never_lets_deeper_bodies_through(pieces: list[str]) -> None:
    raw = "".join(pieces).encode()
    try:
        validate_depth(raw, 6)
    except TooDeep:
        return
    assert _reference_depth(raw) <= 6


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.text(alphabet='[]{}"\\ab', max_size=6) | st.integers(),
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
        ),
        max_leaves=30,
    )
)
def test_valid_json_is_refused_exactly_when_too_deep(value: object) -> None:
    text = json.dumps(value)
    depth = _reference_depth(text.encode())
    if depth > 4:
        with pytest.raises(TooDeep):
            decode_json(text, max_depth=4)
    else:
        assert decode_json(text, max_depth=4) == value


def test_hostile_bodies_are_checked_in_linear_time() -> None:
    """The old regex rescanned from every quote of an unterminated string: 10 s for a 40 KB
    body, hours for 16 MB. Each of these 2 MB bodies now takes a fraction of a second; the
    bound below is generous (the old code needed minutes for the first)."""
    bodies = [
        b"[" * 600 + b'"' + b'\\"' * 1_000_000,
        b"[" * 600 + b'"' + b'\\"' * 1_000_000 + b"\\",
        b"[" * 600 + b'"a"' * 700_000,
        b"[" * 500 + b"[]," * 700_000 + b"1" + b"]" * 500,
    ]
    for body in bodies:
        started = time.perf_counter()
        with contextlib.suppress(ValueError):
            decode_json(body)
        assert time.perf_counter() - started < 5.0
