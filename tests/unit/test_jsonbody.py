"""Request bodies: nesting depth is checked before json.loads, brackets in strings ignored."""

from __future__ import annotations

import json

import pytest

from cairn.rpc.jsonbody import TooDeep, decode_json


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
