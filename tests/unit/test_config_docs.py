"""Every option the node accepts is documented in docs/configuration.md."""

from __future__ import annotations

from pathlib import Path

from cairn.node.config import OPTIONS

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_every_option_is_documented() -> None:
    text = DOC.read_text()
    missing = [o.name for o in OPTIONS if f"`--{o.name}`" not in text]
    assert missing == []
