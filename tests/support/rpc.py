"""A minimal JSON-RPC client on the standard library, for tests that need raw answers."""

from __future__ import annotations

import itertools
import json
import urllib.error
import urllib.request
from typing import Any

_ids = itertools.count(1)


class RpcFailure(Exception):
    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(f"{error.get('code')}: {error.get('message')}")
        self.code = error.get("code")
        self.message = str(error.get("message", ""))
        self.data = error.get("data")


def post(url: str, payload: Any, timeout: float = 30.0) -> Any:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            text = response.read()
    except urllib.error.HTTPError as exc:
        text = exc.read()
    return json.loads(text) if text else None


def call(url: str, method: str, *params: Any, timeout: float = 30.0) -> Any:
    answer = post(
        url, {"jsonrpc": "2.0", "id": next(_ids), "method": method, "params": list(params)}, timeout
    )
    if "error" in answer:
        raise RpcFailure(answer["error"])
    return answer["result"]
