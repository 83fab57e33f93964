from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.postgres import PostgresServer
from tests.support.proc import NodeProcess


@pytest.fixture
def dev_node(tmp_path: Path) -> Iterator[NodeProcess]:
    """A `cairn dev` process (automine) on its own datadir and port."""
    node = NodeProcess(tmp_path / "dev", "dev").start()
    yield node
    node.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One real PostgreSQL server for the session, started on first use."""
    server = PostgresServer().start()
    yield server
    server.destroy()


@pytest.fixture
def mirror_db(postgres: PostgresServer, request: pytest.FixtureRequest) -> str:
    """A fresh, empty database on the session's server; its URL."""
    if not postgres.is_ready():
        postgres.start()  # a test that stopped the server failed before restarting it
    name = "t_" + "".join(c if c.isalnum() else "_" for c in request.node.name)[:50].lower()
    return postgres.create_database(name)
