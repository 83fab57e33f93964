from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.proc import NodeProcess


@pytest.fixture
def dev_node(tmp_path: Path) -> Iterator[NodeProcess]:
    """A `cairn dev` process (automine) on its own datadir and port."""
    node = NodeProcess(tmp_path / "dev", "dev").start()
    yield node
    node.stop()
