"""Operator options read clearly or refused by name: faucet amount and key options,
--metrics.watch entries; worker CPU read from /proc."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cairn.errors import ConfigError, KeystoreError
from cairn.node.cli import _faucet_config
from cairn.node.faucet.service import format_eth, format_wait, is_valid_address, parse_amount
from cairn.node.metrics import Watched, cpu_seconds, parse_watch


def test_amounts() -> None:
    assert parse_amount("1") == 10**18
    assert parse_amount(" 0.25 ") == 25 * 10**16
    assert format_eth(1_000_040_000_000_000_000) == "1.00004" and format_eth(10**18) == "1"
    for bad, message in (("abc", "not a number"), ("0", "positive"), ("-1", "positive"),
                         ("1e-19", "positive amount")):  # fmt: skip
        with pytest.raises(ConfigError, match=message):
            parse_amount(bad)


def test_waits_and_addresses() -> None:
    assert format_wait(86_400) == "24 h" and format_wait(3599.2) == "1 h"
    assert format_wait(61) == "1 min 1 s" and format_wait(0.2) == "1 s"
    assert is_valid_address("0x" + "ab" * 20) and is_valid_address("0x" + "AB" * 20)
    assert not is_valid_address("0x" + "ab" * 19) and not is_valid_address("0xabcdefg" + "0" * 33)


def test_watch_list() -> None:
    a, b = "0x" + "11" * 20, "22" * 20
    assert parse_watch(f"{a}=keeper, {b}") == (
        Watched(bytes.fromhex("11" * 20), "keeper"),  # type: ignore[arg-type]
        Watched(bytes.fromhex("22" * 20), "watched"),  # type: ignore[arg-type]
    )
    assert parse_watch(None) == () and parse_watch(" , ") == ()
    with pytest.raises(ConfigError, match=r"--metrics.watch: '0x1234' is not an address"):
        parse_watch("0x1234=short")


def test_faucet_options(tmp_path: Path) -> None:
    base = {
        "faucet": False, "faucet_keystore": None, "faucet_password": None,
        "faucet_amount": "1", "faucet_cooldown": "24h", "faucet_addr": "127.0.0.1",
        "faucet_port": 8081,
    }  # fmt: skip
    assert _faucet_config(base) is None
    with pytest.raises(ConfigError, match="without --faucet"):
        _faucet_config(dict(base, faucet_keystore="k"))
    with pytest.raises(ConfigError, match=r"needs --faucet\.keystore FILE and --faucet\.password"):
        _faucet_config(dict(base, faucet=True))
    (tmp_path / "pw").write_text("x\n")
    with pytest.raises(KeystoreError, match="cannot read keystore"):
        _faucet_config(
            dict(base, faucet=True, faucet_keystore=str(tmp_path / "none"),
                 faucet_password=str(tmp_path / "pw"))
        )  # fmt: skip


def test_cpu_seconds_of_a_process() -> None:
    sum(i * i for i in range(300_000))  # some CPU time of our own
    assert (cpu_seconds(os.getpid()) or 0) > 0
    assert cpu_seconds(2**22 + 12345) is None  # no such process
