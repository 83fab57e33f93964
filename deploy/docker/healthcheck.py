#!/usr/bin/env python3
"""The image's HEALTHCHECK: healthy while the node serves RPC and is ready (not catching up).

GET /health/ready must answer 200 (the node serves an up-to-date chain) and /healthz must say
`healthy`; anything else, or no answer within the timeout, is unhealthy. The node's address
comes from CAIRN_HEALTHCHECK_URL (default http://127.0.0.1:<CAIRN_HTTP_PORT or 8545>).
Standard library only: the image carries no curl.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request


def main() -> int:
    port = os.environ.get("CAIRN_HTTP_PORT", "8545")
    base = os.environ.get("CAIRN_HEALTHCHECK_URL", f"http://127.0.0.1:{port}").rstrip("/")
    try:
        with urllib.request.urlopen(f"{base}/health/ready", timeout=2) as ready:
            ready.read()
        with urllib.request.urlopen(f"{base}/healthz", timeout=2) as answer:
            body = json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        print(f"unhealthy: {exc.url} answered {exc.code}: {exc.read()[:200]!r}")
        return 1
    except (OSError, ValueError) as exc:
        print(f"unhealthy: {base} did not answer: {exc}")
        return 1
    if not body.get("healthy"):
        print(f"unhealthy: /healthz says {body}")
        return 1
    print(f"healthy: {body.get('mode')} at block {body.get('blockNumber')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
