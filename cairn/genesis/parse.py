"""Read and write genesis.json in geth's format, with Cairn's `cairn` section."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

from eth_typing import Address
from eth_utils import is_hex_address, to_canonical_address, to_checksum_address

from cairn.errors import GenesisError
from cairn.genesis.model import DEFAULT_FORK, FORKS, AllocAccount, ConsensusParams, Genesis, Mode


def _int(value: Any, where: str) -> int:
    """geth accepts numbers, decimal strings and 0x-hex strings."""
    if isinstance(value, bool):
        raise GenesisError(f"{where}: expected a number, got {value!r}")
    if isinstance(value, int):
        result = value
    elif isinstance(value, str):
        text = value.strip()
        try:
            result = int(text, 16) if text.lower().startswith("0x") else int(text, 10)
        except ValueError:
            raise GenesisError(f"{where}: {value!r} is not a number") from None
    else:
        raise GenesisError(f"{where}: expected a number, got {value!r}")
    if result < 0:
        raise GenesisError(f"{where}: must not be negative, got {result}")
    return result


def _bytes(value: Any, where: str, size: int | None = None) -> bytes:
    if not isinstance(value, str) or not value.lower().startswith("0x"):
        raise GenesisError(f"{where}: expected a 0x-prefixed hex string, got {value!r}")
    text = value[2:]
    if len(text) % 2:
        text = "0" + text
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise GenesisError(f"{where}: {value!r} is not hex") from None
    if size is not None:
        if len(raw) > size:
            raise GenesisError(f"{where}: {len(raw)} bytes, at most {size} allowed")
        raw = raw.rjust(size, b"\x00")
    return raw


def _address(value: Any, where: str) -> Address:
    text = value if isinstance(value, str) else ""
    if not text.startswith("0x"):
        text = "0x" + text
    if not is_hex_address(text):
        raise GenesisError(f"{where}: {value!r} is not a 20-byte hex address")
    return Address(to_canonical_address(text))


def _fork(config: Mapping[str, Any], cairn: Mapping[str, Any]) -> str:
    if "fork" in cairn:
        fork = str(cairn["fork"]).lower()
    elif "pragueTime" in config:
        fork = "prague"
    elif "cancunTime" in config:
        fork = "cancun"
    else:
        fork = DEFAULT_FORK
    if fork not in FORKS:
        raise GenesisError(f"cairn.fork: {fork!r} is not supported; choose one of {FORKS}")
    return fork


def _consensus(config: Mapping[str, Any], cairn: Mapping[str, Any]) -> ConsensusParams:
    mode = str(cairn.get("mode", "sequencer"))
    if mode not in ("sequencer", "validators"):
        raise GenesisError(f"cairn.mode: {mode!r}; expected 'sequencer' or 'validators'")
    raw_producers = cairn.get("producers", [])
    if not isinstance(raw_producers, list):
        raise GenesisError("cairn.producers: expected a list of addresses")
    producers = tuple(_address(p, f"cairn.producers[{i}]") for i, p in enumerate(raw_producers))
    if len(set(producers)) != len(producers):
        raise GenesisError("cairn.producers: an address appears twice")
    if mode == "sequencer" and len(producers) != 1:
        raise GenesisError(
            f"cairn.producers: sequencer mode needs exactly one producer, got {len(producers)}"
        )
    if mode == "validators" and len(producers) < 4:
        raise GenesisError(
            f"cairn.producers: validators mode needs at least 4 validators, got {len(producers)}"
        )
    block_time = cairn.get("blockTime", 0)
    if not isinstance(block_time, int | float) or block_time < 0:
        raise GenesisError(f"cairn.blockTime: expected seconds >= 0, got {block_time!r}")
    timeouts = {}
    for name, default in (("timeoutPropose", 2.0), ("timeoutVote", 1.0)):
        value = cairn.get(name, default)
        if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
            raise GenesisError(f"cairn.{name}: expected seconds > 0, got {value!r}")
        timeouts[name] = float(value)
    return ConsensusParams(
        mode=cast(Mode, mode),
        producers=producers,
        block_time=float(block_time),
        empty_blocks=bool(cairn.get("emptyBlocks", False)),
        fork=_fork(config, cairn),
        timeout_propose=timeouts["timeoutPropose"],
        timeout_vote=timeouts["timeoutVote"],
    )


def _alloc(raw: Any) -> dict[Address, AllocAccount]:
    if not isinstance(raw, dict):
        raise GenesisError("alloc: expected an object of address -> account")
    alloc: dict[Address, AllocAccount] = {}
    for key, entry in raw.items():
        where = f"alloc[{key}]"
        address = _address(key, where)
        if not isinstance(entry, dict):
            raise GenesisError(f"{where}: expected an object")
        storage_raw = entry.get("storage", {}) or {}
        if not isinstance(storage_raw, dict):
            raise GenesisError(f"{where}.storage: expected an object of slot -> value")
        storage = {
            int.from_bytes(_bytes(k, f"{where}.storage key", 32), "big"): int.from_bytes(
                _bytes(v, f"{where}.storage[{k}]", 32), "big"
            )
            for k, v in storage_raw.items()
        }
        alloc[address] = AllocAccount(
            balance=_int(entry.get("balance", 0), f"{where}.balance"),
            nonce=_int(entry.get("nonce", 0), f"{where}.nonce"),
            code=_bytes(entry.get("code", "0x"), f"{where}.code"),
            storage=storage,
        )
    return alloc


def parse_genesis(data: Mapping[str, Any]) -> Genesis:
    """Build a `Genesis` from a decoded genesis.json; every problem names its field."""
    config = data.get("config")
    if not isinstance(config, dict) or "chainId" not in config:
        raise GenesisError("config.chainId is required")
    cairn = data.get("cairn", {})
    if not isinstance(cairn, dict):
        raise GenesisError("cairn: expected an object")
    chain_id = _int(config["chainId"], "config.chainId")
    if chain_id == 0:
        raise GenesisError("config.chainId must not be 0")
    extra = _bytes(data.get("extraData", "0x"), "extraData")
    if len(extra) > 32:
        raise GenesisError(f"extraData: {len(extra)} bytes, at most 32 allowed")
    gas_limit = _int(data.get("gasLimit", 30_000_000), "gasLimit")
    if gas_limit < 5000:
        raise GenesisError(f"gasLimit: {gas_limit} is below the protocol minimum of 5000")
    return Genesis(
        chain_id=chain_id,
        alloc=_alloc(data.get("alloc", {})),
        consensus=_consensus(config, cairn),
        gas_limit=gas_limit,
        base_fee_per_gas=_int(data.get("baseFeePerGas", 1_000_000_000), "baseFeePerGas"),
        timestamp=_int(data.get("timestamp", 0), "timestamp"),
        extra_data=extra,
        coinbase=_address(data.get("coinbase", "0x" + "00" * 20), "coinbase"),
        difficulty=_int(data.get("difficulty", 0), "difficulty"),
        mix_hash=_bytes(data.get("mixHash", "0x" + "00" * 32), "mixHash", 32),
        nonce=_bytes(data.get("nonce", "0x0"), "nonce", 8),
    )


def load_genesis(path: Path) -> Genesis:
    try:
        text = path.read_text()
    except OSError as exc:
        raise GenesisError(f"cannot read genesis file {path}: {exc.strerror}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise GenesisError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise GenesisError(f"{path}: expected a JSON object")
    try:
        return parse_genesis(data)
    except GenesisError as exc:
        raise GenesisError(f"{path}: {exc}") from exc


def _hex(value: int) -> str:
    return hex(value)


def genesis_to_json(genesis: Genesis) -> dict[str, Any]:
    """The genesis as geth-format JSON (round-trips through `parse_genesis`)."""
    c = genesis.consensus
    fork_times = {"cancunTime": 0} if c.fork == "cancun" else {"cancunTime": 0, "pragueTime": 0}
    alloc: dict[str, Any] = {}
    for address, account in genesis.alloc.items():
        entry: dict[str, Any] = {"balance": _hex(account.balance)}
        if account.nonce:
            entry["nonce"] = _hex(account.nonce)
        if account.code:
            entry["code"] = "0x" + account.code.hex()
        if account.storage:
            entry["storage"] = {
                "0x" + k.to_bytes(32, "big").hex(): "0x" + v.to_bytes(32, "big").hex()
                for k, v in account.storage.items()
            }
        alloc[to_checksum_address(address)] = entry
    return {
        "config": {
            "chainId": genesis.chain_id,
            "homesteadBlock": 0,
            "eip150Block": 0,
            "eip155Block": 0,
            "eip158Block": 0,
            "byzantiumBlock": 0,
            "constantinopleBlock": 0,
            "petersburgBlock": 0,
            "istanbulBlock": 0,
            "berlinBlock": 0,
            "londonBlock": 0,
            "mergeNetsplitBlock": 0,
            "shanghaiTime": 0,
            **fork_times,
            "terminalTotalDifficulty": 0,
        },
        "nonce": "0x" + genesis.nonce.hex(),
        "timestamp": _hex(genesis.timestamp),
        "extraData": "0x" + genesis.extra_data.hex(),
        "gasLimit": _hex(genesis.gas_limit),
        "difficulty": _hex(genesis.difficulty),
        "mixHash": "0x" + genesis.mix_hash.hex(),
        "coinbase": to_checksum_address(genesis.coinbase),
        "baseFeePerGas": _hex(genesis.base_fee_per_gas),
        "alloc": alloc,
        "cairn": {
            "mode": c.mode,
            "producers": [to_checksum_address(p) for p in c.producers],
            "blockTime": c.block_time,
            "emptyBlocks": c.empty_blocks,
            "fork": c.fork,
            **(
                {"timeoutPropose": c.timeout_propose, "timeoutVote": c.timeout_vote}
                if c.mode == "validators"
                else {}
            ),
        },
    }
