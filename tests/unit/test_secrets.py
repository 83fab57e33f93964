"""Secrets and network identity: database passwords never shown, the testnet password file
never readable by others (not even for a moment), tokens read from files, and a testnet
genesis that no other network shares."""

from __future__ import annotations

import argparse
import json
import logging
import os
import stat
from pathlib import Path

import pytest

from cairn.errors import ConfigError
from cairn.execution.forks import fork_named
from cairn.execution.genesis import genesis_block
from cairn.genesis.dev import dev_genesis
from cairn.genesis.parse import load_genesis
from cairn.mirror.service import has_password, redact
from cairn.node import cli
from cairn.node.cli_testnet import GENESIS_SALT_PREFIX
from cairn.node.config import add_options, resolve


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "postgresql://cairn:s3cr%40t@db:5432/x?sslmode=require",
            "postgresql://cairn:***@db:5432/x?sslmode=require",
        ),
        (
            "postgresql://cairn@db/x?password=hunter2&sslmode=require",
            "postgresql://cairn@db/x?password=***&sslmode=require",
        ),
        (
            "postgresql://db/x?sslmode=require&PASSWORD=abc",
            "postgresql://db/x?sslmode=require&PASSWORD=***",
        ),
        ("postgresql://u:p@db/x?sslpassword=k", "postgresql://u:***@db/x?sslpassword=***"),
        ("host=db password=secret user=x", "host=db password=*** user=x"),
        ("postgresql://cairn@db/x", "postgresql://cairn@db/x"),
    ],
)
def test_redact_hides_every_password(url: str, shown: str) -> None:
    assert redact(url) == shown
    assert has_password(url) is (shown != url)


def _genesis_hash(path: Path) -> bytes:
    genesis = load_genesis(path)
    return bytes(genesis_block(genesis, fork_named(genesis.consensus.fork)).header.hash)


def test_testnet_init_writes_the_password_file_private_from_the_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a permissive umask, a file written then chmod-ed is world-readable until the
    chmod: a secret's creation must already say 0600 (the password file, the compose .env
    with the database passwords, the Kubernetes Secret with the producer key)."""
    real_chmod = os.chmod

    def watched_chmod(path: object, mode: int, **kwargs: object) -> None:
        if mode & 0o077 == 0:
            raise AssertionError(f"{path} was narrowed to {mode:o} after it was written")
        real_chmod(path, mode, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "chmod", watched_chmod)
    old_umask = os.umask(0)
    try:
        code = cli.main(
            ["testnet", "init", "--sequencer", "--fullnodes", "1", "--dir", str(tmp_path / "a")]
        )
    finally:
        os.umask(old_umask)
    assert code == 0
    root = tmp_path / "a"
    password = root / "sequencer" / "password.txt"
    for secret in (password, root / ".env", root / "k8s" / "network.yaml"):
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600, secret
    assert len(password.read_text().strip()) == 32


def test_every_testnet_has_a_genesis_of_its_own(tmp_path: Path) -> None:
    for name in ("a", "b"):
        assert (
            cli.main(
                [
                    "testnet",
                    "init",
                    "--sequencer",
                    "--fullnodes",
                    "0",
                    "--dir",
                    str(tmp_path / name),
                ]
            )
            == 0
        )
    first, second = (tmp_path / n / "genesis.json" for n in ("a", "b"))
    extra = bytes.fromhex(json.loads(first.read_text())["extraData"][2:])
    assert extra.startswith(GENESIS_SALT_PREFIX) and len(extra) <= 32
    dev = dev_genesis()
    dev_hash = bytes(genesis_block(dev, fork_named(dev.consensus.fork)).header.hash)
    hashes = {_genesis_hash(first), _genesis_hash(second), dev_hash}
    assert len(hashes) == 3
    # the dev chain stays Anvil's: chain id 31337 and its accounts, no salt
    assert dev.chain_id == 31337 and dev.extra_data == b""
    assert load_genesis(first).alloc == dev.alloc


def _opts(argv: list[str], *, dev: bool) -> tuple[dict[str, object], argparse.Namespace]:
    parser = argparse.ArgumentParser()
    add_options(parser, dev=dev)
    args = parser.parse_args(argv)
    return resolve(args, {}), args


def test_token_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    token = tmp_path / "token"
    token.write_text("0123456789abcdef0123456789abcdef\n")
    token.chmod(0o600)
    opts, _ = _opts(["--rpc.token-file", str(token)], dev=False)
    config = cli._rpc_config(opts, dev=False)
    assert config.token == b"0123456789abcdef0123456789abcdef"
    assert config.http_api == frozenset({"eth", "net", "web3"})
    token.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="cairn.node"):
        cli._rpc_config(opts, dev=False)
    assert "can be read by other users" in caplog.text
    token.write_text("\n")
    with pytest.raises(ConfigError, match="expected one token on one line"):
        cli._rpc_config(opts, dev=False)
    opts, _ = _opts(["--rpc.token-file", str(tmp_path / "missing")], dev=False)
    with pytest.raises(ConfigError, match=r"--rpc\.token-file"):
        cli._rpc_config(opts, dev=False)


def test_defaults_differ_between_dev_and_run() -> None:
    dev = cli._rpc_config(_opts([], dev=True)[0], dev=True)
    run = cli._rpc_config(_opts([], dev=False)[0], dev=False)
    assert dev.http_api is None and dev.rate_limit_per_second == 0
    assert run.http_api == frozenset({"eth", "net", "web3"}) and run.rate_limit_per_second == 1000
    assert dev.cors_origins == () and dev.vhosts == ("localhost",)
    assert (dev.evm_timeout, dev.trace_timeout) == (5.0, 30.0)
    opts, _ = _opts(
        ["--rpc.ratelimit", "100/min", "--http.api", "*", "--rpc.evmtimeout", "1m30s"], dev=False
    )
    custom = cli._rpc_config(opts, dev=False)
    assert custom.http_api is None
    assert custom.rate_limit_per_second == pytest.approx(100 / 60)
    assert custom.rate_limit_burst == 100
    assert custom.evm_timeout == 90
    for bad, message in (
        (["--rpc.ratelimit", "lots"], "--rpc.ratelimit"),
        (["--rpc.evmtimeout", "soon"], "--rpc.evmtimeout"),
        (["--rpc.trusted-proxies", "proxy.local"], "not an IP or CIDR"),
    ):
        with pytest.raises(ConfigError, match=message):
            cli._rpc_config(_opts(bad, dev=True)[0], dev=True)


def test_mirror_url_from_a_file_and_a_warning_for_one_on_the_command_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = "postgresql://cairn:hunter2@db/x"
    url_file = tmp_path / "url"
    url_file.write_text(url + "\n")
    opts, args = _opts(["--mirror.url-file", str(url_file)], dev=True)
    with caplog.at_level(logging.WARNING, logger="cairn.node"):
        assert cli._mirror_url(opts, args) == url
    assert caplog.text == ""
    opts, args = _opts(["--mirror.url", url], dev=True)
    with caplog.at_level(logging.WARNING, logger="cairn.node"):
        assert cli._mirror_url(opts, args) == url
    assert "carries a password" in caplog.text and "hunter2" not in caplog.text
    opts, args = _opts(["--mirror.url", url, "--mirror.url-file", str(url_file)], dev=True)
    with pytest.raises(ConfigError, match="give the Postgres URL once"):
        cli._mirror_url(opts, args)
