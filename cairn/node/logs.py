"""Logging: human-readable by default, one JSON object per line with `--log.format json`.

A record made while an RPC request is served carries its request id (`request` in JSON,
`[req ID]` in text), the id an internal-error answer names to the client.
"""

from __future__ import annotations

import json
import logging
import sys
import time

from cairn.errors import ConfigError
from cairn.rpc.dispatch import REQUEST_ID


class RequestIdFilter(logging.Filter):
    """Stamps each record with the id of the RPC request being served ("" outside one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request = getattr(record, "request_id", "")
        if request:
            entry["request"] = request
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry)


class TextFormatter(logging.Formatter):
    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        line = super().formatMessage(record)
        request = getattr(record, "request_id", "")
        return f"{line} [req {request}]" if request else line


def setup_logging(level: str, fmt: str) -> None:
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ConfigError(f"--log.level: unknown level {level!r}")
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    elif fmt == "text":
        handler.setFormatter(
            TextFormatter("%(asctime)s %(levelname)-5s %(name)s: %(message)s", "%H:%M:%S")
        )
    else:
        raise ConfigError(f"--log.format: expected 'text' or 'json', got {fmt!r}")
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    for noisy in ("eth", "trie", "aiohttp.access", "asyncio"):
        logging.getLogger(noisy).setLevel(max(numeric, logging.WARNING))
