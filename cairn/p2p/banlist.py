"""Bans that outlive a restart or a crash: `<p2p dir>/bans.json` holds the running bans of
peer ids and IPs as wall-clock end times. Rewritten whole (atomically) whenever a ban starts,
read once when p2p is built; what is over is dropped. A file that cannot be read is ignored
with a warning (it is rewritten at the next ban): bans are a defence, never a reason not to
start."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

log = logging.getLogger("cairn.p2p")

BANS_FILE = "bans.json"
Bans = dict[str, dict[str, float]]


def load_bans(p2p_dir: Path) -> Bans:
    path = p2p_dir / BANS_FILE
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("ignoring %s: %s (it is rewritten at the next ban)", path, exc)
        return {}
    if not isinstance(raw, dict):
        log.warning("ignoring %s: not a JSON object (it is rewritten at the next ban)", path)
        return {}
    bans: Bans = {}
    for kind in ("peers", "ips"):
        table = raw.get(kind)
        if isinstance(table, dict):
            bans[kind] = {
                str(key): float(until)
                for key, until in table.items()
                if isinstance(until, int | float) and not isinstance(until, bool)
            }
    return bans


def save_bans(p2p_dir: Path, bans: Bans) -> None:
    p2p_dir.mkdir(parents=True, exist_ok=True)
    path = p2p_dir / BANS_FILE
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as fh:
        json.dump(bans, fh, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
