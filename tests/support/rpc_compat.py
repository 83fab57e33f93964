"""The execution-apis `.io` exchanges, replayed against a node as hive's `rpc-compat` does.

An exchange file holds `// comment` lines, then one `>> request` and one `<< response` per
round trip. Results are compared as exact JSON; an expected error matches an error with the
same code (the message is reported beside it); a file whose comments say `speconly` is
checked only for the shape of its result (the same JSON types and object keys, recursively),
as hive checks such answers against the schema only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support import rpc


@dataclass(frozen=True)
class Exchange:
    name: str  # "<method>/<file stem>"
    speconly: bool
    rounds: tuple[tuple[str, str], ...]  # (request text, expected response text)


@dataclass(frozen=True)
class Verdict:
    name: str
    ok: bool
    detail: str = ""


def load_exchanges(root: Path) -> list[Exchange]:
    exchanges = []
    for path in sorted(root.glob("*/*.io")):
        requests: list[str] = []
        responses: list[str] = []
        speconly = False
        for line in path.read_text().splitlines():
            if line.startswith("//"):
                speconly = speconly or "speconly" in line
            elif line.startswith(">> "):
                requests.append(line[3:])
            elif line.startswith("<< "):
                responses.append(line[3:])
        if not requests or len(requests) != len(responses):
            raise ValueError(f"{path}: {len(requests)} requests for {len(responses)} responses")
        name = f"{path.parent.name}/{path.stem}"
        exchanges.append(Exchange(name, speconly, tuple(zip(requests, responses, strict=True))))
    return exchanges


def same_shape(want: Any, got: Any) -> bool:
    if isinstance(want, dict):
        return (
            isinstance(got, dict)
            and set(want) == set(got)
            and all(same_shape(want[k], got[k]) for k in want)
        )
    if isinstance(want, list):
        return (
            isinstance(got, list) and all(same_shape(want[0], g) for g in got[:1])
            if want
            else (isinstance(got, list))
        )
    if want is None:
        return got is None
    return type(want) is type(got)


def _diff(want: Any, got: Any, path: str = "") -> str:
    """The first place two JSON values differ, for the report."""
    if isinstance(want, dict) and isinstance(got, dict):
        for key in sorted(set(want) | set(got)):
            if key not in got:
                return f"{path}.{key}: missing"
            if key not in want:
                return f"{path}.{key}: unexpected {json.dumps(got[key])[:120]}"
            found = _diff(want[key], got[key], f"{path}.{key}")
            if found:
                return found
        return ""
    if isinstance(want, list) and isinstance(got, list):
        if len(want) != len(got):
            return f"{path}: {len(got)} items, expected {len(want)}"
        for i, (w, g) in enumerate(zip(want, got, strict=True)):
            found = _diff(w, g, f"{path}[{i}]")
            if found:
                return found
        return ""
    if want != got:
        return f"{path}: got {json.dumps(got)[:160]}, expected {json.dumps(want)[:160]}"
    return ""


def without_fields(value: Any, names: frozenset[str]) -> Any:
    """`value` with every object key in `names` removed, recursively."""
    if isinstance(value, dict):
        return {k: without_fields(v, names) for k, v in value.items() if k not in names}
    if isinstance(value, list):
        return [without_fields(v, names) for v in value]
    return value


def judge(exchange: Exchange, want: dict[str, Any], got: dict[str, Any]) -> str:
    """ "" when `got` answers as `want` does, else what differs."""
    if "error" in want:
        if "error" not in got:
            return (
                f"expected error {want['error']}, got result {json.dumps(got.get('result'))[:160]}"
            )
        if want["error"].get("code") != got["error"].get("code"):
            mine = got["error"]
            return f"error {mine.get('code')} ({mine.get('message')}), expected {want['error']}"
        return ""
    if "error" in got:
        return f"error {got['error']}"
    if exchange.speconly:
        return (
            ""
            if same_shape(want.get("result"), got.get("result"))
            else (f"shape differs: {_diff(want.get('result'), got.get('result'))}")
        )
    return _diff(want.get("result"), got.get("result"))


def replay(url: str, exchange: Exchange, ignore: frozenset[str] = frozenset()) -> Verdict:
    """Send each request of `exchange` and judge the answers; keys in `ignore` are removed
    from the answers first (fields a later revision of the spec added)."""
    for request, response in exchange.rounds:
        got = rpc.post(url, request.encode())
        want = json.loads(response)
        if not isinstance(got, dict):
            return Verdict(exchange.name, False, f"answer is not an object: {got!r}"[:200])
        if ignore:
            got = without_fields(got, ignore)
        detail = judge(exchange, want, got)
        if detail:
            return Verdict(exchange.name, False, detail)
    return Verdict(exchange.name, True)
