"""A real PostgreSQL server for tests: its own cluster in a temp dir, on 127.0.0.1, trust auth.

`initdb` refuses to run as root (CI runs as root), so as root the cluster belongs to an
unprivileged system user (created when missing) and every server command runs through
`runuser -u <user> --`. As any other user the server simply runs as that user.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.support.proc import free_port
from tests.support.wait import wait_until

SERVICE_USER = "cairn-pg"
SUPERUSER = "postgres"


def find_pg_bin() -> Path:
    """Debian's server binaries (/usr/lib/postgresql/<version>/bin), newest version first."""
    explicit = os.environ.get("CAIRN_PG_BIN")
    candidates = [Path(explicit)] if explicit else []
    root = Path("/usr/lib/postgresql")
    if root.is_dir():
        versions = sorted(
            (p for p in root.iterdir() if p.name.isdigit()), key=lambda p: -int(p.name)
        )
        candidates += [v / "bin" for v in versions]
    for candidate in candidates:
        if (candidate / "initdb").exists() and (candidate / "pg_ctl").exists():
            return candidate
    raise FileNotFoundError(
        "PostgreSQL server binaries not found (initdb, pg_ctl): run `make system-deps` "
        "(Debian package postgresql) or set CAIRN_PG_BIN"
    )


def _ensure_service_user() -> str:
    try:
        pwd.getpwnam(SERVICE_USER)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                SERVICE_USER,
            ],
            check=True,
            capture_output=True,
        )
    return SERVICE_USER


class PostgresServer:
    """One throw-away cluster. `stop()`/`start()` may be called any number of times; the port
    and data stay, so a client sees the same server come back."""

    def __init__(self) -> None:
        self.bin = find_pg_bin()
        self.as_root = os.geteuid() == 0
        self.user = _ensure_service_user() if self.as_root else None
        # mkdtemp in /tmp (world-traversable) rather than pytest's 0700 per-user tree, which
        # the service user could not enter.
        self.root = Path(tempfile.mkdtemp(prefix="cairn-pg-"))
        self.data = self.root / "data"
        self.log_path = self.root / "server.log"
        self.port = free_port()
        self.host = "127.0.0.1"
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self._initdb()

    def _run(self, *argv: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin / argv[0]), *argv[1:]]
        if self.user is not None:
            command = ["runuser", "-u", self.user, "--", *command]
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, cwd=self.root
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}\n"
                f"{result.stderr}\n{self.server_log()}"
            )
        return result

    def _initdb(self) -> None:
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )
        conf = self.data / "postgresql.conf"
        with conf.open("a") as fh:
            fh.write(
                "\n# cairn tests\n"
                f"listen_addresses = '{self.host}'\n"
                f"port = {self.port}\n"
                f"unix_socket_directories = '{self.root}'\n"
                "max_connections = 100\n"
                "shared_buffers = 128MB\n"
                # Throw-away data: skip the disk flushes, keep every other behaviour.
                "fsync = off\n"
                "full_page_writes = off\n"
                "logging_collector = off\n"
            )

    def start(self) -> PostgresServer:
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log_path), "-w", "-t", "60", "start"
        )
        wait_until(self.is_ready, timeout=30, interval=0.1, message="postgres to accept")
        return self

    def stop(self, mode: str = "fast") -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def is_ready(self) -> bool:
        result = subprocess.run(
            [
                str(self.bin / "pg_isready"),
                "-h",
                self.host,
                "-p",
                str(self.port),
                "-U",
                SUPERUSER,
            ],
            capture_output=True,
            timeout=10,
        )
        return result.returncode == 0

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@{self.host}:{self.port}/{database}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run SQL through psql; unaligned, tuples only, so answers are easy to parse."""
        result = subprocess.run(
            [str(self.bin / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
             "-d", self.url(database), "-c", sql],
            capture_output=True,
            text=True,
            timeout=120,
        )  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(f"psql failed: {result.stderr}")
        return result.stdout.strip()

    def create_database(self, name: str) -> str:
        """A fresh, empty database; returns its URL."""
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.psql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def server_log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def destroy(self) -> None:
        try:
            self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
