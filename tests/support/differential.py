"""Send the same JSON-RPC calls to two nodes and compare the answers after normalising.

Block hashes (which differ because timestamps and state roots do) are replaced by
`<block N>` on each side before comparing; every remaining difference must be matched by a
named rule, and each rule is documented in docs/anvil-differences.md.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from tests.support import rpc

Params = list[Any] | Callable[["Side"], list[Any]] | None
Canonical = Callable[[Any], Any]
_ids = itertools.count(1)


@dataclass
class Side:
    name: str
    url: str
    block_names: dict[str, str] = field(default_factory=dict)

    def request(self, method: str, params: list[Any]) -> dict[str, Any]:
        payload = {"jsonrpc": "2.0", "id": next(_ids), "method": method, "params": params}
        answer: dict[str, Any] = rpc.post(self.url, payload)
        return answer

    def result(self, method: str, *params: Any) -> Any:
        return rpc.call(self.url, method, *params)

    def learn_blocks(self) -> None:
        """Name every block hash of this side by its number."""
        head = int(self.result("eth_blockNumber"), 16)
        for number in range(head + 1):
            block = self.result("eth_getBlockByNumber", hex(number), False)
            self.block_names[block["hash"]] = f"<block {number}>"


@dataclass(frozen=True)
class Call:
    label: str
    method: str
    answers: dict[str, dict[str, Any]]


@dataclass(frozen=True)
class Rule:
    """An intended difference: `path` (a regex over `label:json.path`) may differ because
    of `reason`, and only when `when(cairn_value, anvil_value)` holds if given; `id` names
    the section of docs/anvil-differences.md explaining it."""

    id: str
    path: str
    reason: str
    when: Callable[[Any, Any], bool] | None = None

    def explains(self, diff: Difference) -> bool:
        if not re.fullmatch(self.path, diff.where()):
            return False
        return self.when is None or self.when(diff.ours, diff.theirs)


@dataclass(frozen=True)
class Difference:
    label: str
    path: str
    ours: Any
    theirs: Any

    def where(self) -> str:
        return f"{self.label}:{self.path}"

    def __str__(self) -> str:
        return f"{self.where()}\n    cairn: {_short(self.ours)}\n    anvil: {_short(self.theirs)}"


class Session:
    """Runs each call on both sides (Anvil first, then Cairn) and keeps the answers."""

    def __init__(self, cairn: Side, anvil: Side) -> None:
        self.sides = (cairn, anvil)
        self.calls: list[Call] = []

    def call(
        self, label: str, method: str, params: Params = None, canonical: Canonical | None = None
    ) -> dict[str, Any]:
        """Ask both sides; `canonical` rewrites each result before comparing (for answers
        whose order is not part of their meaning)."""
        answers: dict[str, dict[str, Any]] = {}
        for side in self.sides:
            resolved = params(side) if callable(params) else list(params or [])
            answer = side.request(method, resolved)
            if canonical is not None and "result" in answer:
                answer = {**answer, "result": canonical(answer["result"])}
            answers[side.name] = answer
        self.calls.append(Call(label, method, answers))
        return {name: answer.get("result") for name, answer in answers.items()}

    def differences(self) -> list[Difference]:
        cairn, anvil = self.sides
        found: list[Difference] = []
        for call in self.calls:
            ours = normalise(_outcome(call.answers[cairn.name]), cairn.block_names)
            theirs = normalise(_outcome(call.answers[anvil.name]), anvil.block_names)
            found.extend(
                Difference(call.label, path, a, b) for path, a, b in compare(ours, theirs, "")
            )
        return found


def _outcome(answer: dict[str, Any]) -> Any:
    if "error" in answer:
        return {"error": answer["error"]}
    return {"result": answer.get("result")}


def normalise(value: Any, names: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {k: normalise(v, names) for k, v in value.items()}
    if isinstance(value, list):
        return [normalise(v, names) for v in value]
    if isinstance(value, str):
        return names.get(value.lower(), names.get(value, value))
    return value


def compare(ours: Any, theirs: Any, path: str) -> Iterator[tuple[str, Any, Any]]:
    if isinstance(ours, dict) and isinstance(theirs, dict):
        for key in sorted(set(ours) | set(theirs)):
            sub = f"{path}.{key}" if path else key
            if key not in ours:
                yield sub, "<absent>", theirs[key]
            elif key not in theirs:
                yield sub, ours[key], "<absent>"
            else:
                yield from compare(ours[key], theirs[key], sub)
        return
    if isinstance(ours, list) and isinstance(theirs, list):
        if len(ours) != len(theirs):
            yield f"{path}.length", len(ours), len(theirs)
        for i, (a, b) in enumerate(zip(ours, theirs, strict=False)):
            yield from compare(a, b, f"{path}[{i}]")
        return
    if ours != theirs:
        yield path, ours, theirs


def explain(
    differences: list[Difference], rules: list[Rule]
) -> tuple[dict[str, int], list[Difference]]:
    """How often each rule was needed, and the differences no rule explains."""
    used: dict[str, int] = {}
    unexplained: list[Difference] = []
    for diff in differences:
        for rule in rules:
            if rule.explains(diff):
                used[rule.id] = used.get(rule.id, 0) + 1
                break
        else:
            unexplained.append(diff)
    return used, unexplained


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 300 else text[:297] + "..."
