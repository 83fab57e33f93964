"""Configuration precedence: flags > environment (CAIRN_*) > TOML > defaults."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from cairn.errors import ConfigError
from cairn.node.config import add_options, resolve


def parse(argv: list[str], *, dev: bool = False) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_options(parser, dev=dev)
    return parser.parse_args(argv)


def test_precedence(tmp_path: Path) -> None:
    toml = tmp_path / "cairn.toml"
    toml.write_text(
        'datadir = "/from/toml"\n[http]\nport = 1111\naddr = "10.0.0.1"\n[log]\nlevel = "debug"\n'
    )
    env = {"CAIRN_HTTP_PORT": "2222", "CAIRN_LOG_LEVEL": "warning"}
    opts = resolve(parse(["--config", str(toml), "--http.port", "3333"]), env)
    assert opts["http_port"] == 3333  # flag beats env and file
    assert opts["log_level"] == "warning"  # env beats file
    assert opts["http_addr"] == "10.0.0.1"  # file beats default
    assert opts["datadir"] == "/from/toml"
    assert opts["ws_port"] == 8546  # default


def test_dev_only_flags_exist_only_for_dev() -> None:
    assert parse(["--gas-limit", "9000000"], dev=True).gas_limit == 9_000_000
    with pytest.raises(SystemExit):
        parse(["--gas-limit", "9000000"], dev=False)
    # the block time and empty blocks apply to `run` too (sequencers and validators)
    assert parse(["--block-time", "2", "--empty-blocks"], dev=False).block_time == 2.0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[http]\nprot = 1\n", "unknown keys http.prot"),
        ("[http\n", "not valid TOML"),
        ('[http]\nport = "eighty"\n', "http.port expects int"),
    ],
)
def test_bad_files_are_refused_by_name(tmp_path: Path, content: str, message: str) -> None:
    toml = tmp_path / "bad.toml"
    toml.write_text(content)
    with pytest.raises(ConfigError, match=message):
        resolve(parse(["--config", str(toml)]), {})


def test_bad_environment_value_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="CAIRN_HTTP_PORT"):
        resolve(parse([]), {"CAIRN_HTTP_PORT": "many"})


def test_switch_with_options_as_a_table(tmp_path: Path) -> None:
    toml = tmp_path / "cairn.toml"
    toml.write_text('[faucet]\nenabled = true\nport = 9081\namount = "0.5"\n')
    opts = resolve(parse(["--config", str(toml)]), {})
    assert opts["faucet"] is True and opts["faucet_port"] == 9081
    assert opts["faucet_amount"] == "0.5"
    toml.write_text('faucet = true\n"faucet.cooldown" = "1h"\n[metrics]\nwatch = "0x00"\n')
    opts = resolve(parse(["--config", str(toml)]), {})
    assert opts["faucet"] is True and opts["faucet_cooldown"] == "1h"
    assert opts["metrics_watch"] == "0x00"
    toml.write_text("[metrics]\nenabled = true\n")  # not a switch: refused by name
    with pytest.raises(ConfigError, match="unknown keys metrics_enabled"):
        resolve(parse(["--config", str(toml)]), {})
