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


# geth's fork keys in activation order: (key, the fork it starts). Block-numbered forks
# before the merge, timestamped forks after it.
_BLOCK_FORKS = (
    "homesteadBlock",
    "eip150Block",
    "eip155Block",
    "eip158Block",
    "byzantiumBlock",
    "constantinopleBlock",
    "petersburgBlock",
    "istanbulBlock",
    "muirGlacierBlock",
    "berlinBlock",
    "londonBlock",
    "arrowGlacierBlock",
    "grayGlacierBlock",
    "mergeNetsplitBlock",
)
_TIME_FORKS = (("shanghaiTime", "shanghai"), ("cancunTime", "cancun"), ("pragueTime", "prague"))
# Forks geth knows and py-evm 0.12 does not: a chain that reaches one cannot be executed.
_UNSUPPORTED_TIME_FORKS = (
    "osakaTime",
    "bpo1Time",
    "bpo2Time",
    "bpo3Time",
    "bpo4Time",
    "bpo5Time",
    "amsterdamTime",
    "verkleTime",
)
# The blob parameters py-evm hard-codes per fork (EIP-4844, EIP-7691).
_BLOB_SCHEDULE = {
    "cancun": {"target": 3, "max": 6, "baseFeeUpdateFraction": 3_338_477},
    "prague": {"target": 6, "max": 9, "baseFeeUpdateFraction": 5_007_716},
}
# py-evm scans deposit logs of the mainnet deposit contract (EIP-6110); geth the configured one.
_MAINNET_DEPOSIT_CONTRACT = "0x00000000219ab540356cbb839cbe05303d7705fa"


def _fork_from_config(config: Mapping[str, Any], timestamp: int, difficulty: int) -> str:
    """The fork a geth `config` runs from genesis, or a `GenesisError` naming the key that
    Cairn cannot follow. Cairn runs one fork for the whole chain (py-evm's Cancun or Prague):
    every earlier fork must be active at genesis and none may start later."""
    for key in _BLOCK_FORKS:
        if key in config and config[key] is not None and _int(config[key], f"config.{key}"):
            raise GenesisError(
                f"config.{key} = {config[key]}: Cairn runs one fork from genesis (cancun or "
                "prague), so every fork before it must be active at block 0"
            )
    dao = config.get("daoForkBlock")
    if dao is not None and _int(dao, "config.daoForkBlock"):
        raise GenesisError("config.daoForkBlock: the DAO fork is not supported")
    ttd = config.get("terminalTotalDifficulty")
    if ttd is not None and _int(ttd, "config.terminalTotalDifficulty") > difficulty:
        raise GenesisError(
            f"config.terminalTotalDifficulty = {ttd} is above the genesis difficulty "
            f"{difficulty}: the chain starts with proof of work, which Cairn does not run"
        )
    for key in _UNSUPPORTED_TIME_FORKS:
        if key in config and config[key] is not None:
            name = key.removesuffix("Time")
            raise GenesisError(
                f"config.{key} = {config[key]}: py-evm has no {name} fork, so Cairn cannot run "
                f"a chain that schedules it; remove {key} (Cairn runs up to prague)"
            )
    fork = None
    for key, name in _TIME_FORKS:
        if key not in config or config[key] is None:
            continue  # Cairn's own files name only the fork they run; earlier ones are implied
        at = _int(config[key], f"config.{key}")
        if at > timestamp:
            raise GenesisError(
                f"config.{key} = {at} is after the genesis timestamp {timestamp}: Cairn runs one "
                "fork from genesis, so forks cannot be scheduled later"
            )
        fork = name
    if fork not in ("cancun", "prague"):
        raise GenesisError(
            "config: Cairn runs cancun or prague from genesis; set shanghaiTime, cancunTime "
            "(and pragueTime) to the genesis timestamp"
        )
    _check_blob_schedule(config.get("blobSchedule"))
    deposit = config.get("depositContractAddress")
    if fork == "prague" and deposit is not None:
        address = _address(deposit, "config.depositContractAddress")
        if any(address) and "0x" + address.hex() != _MAINNET_DEPOSIT_CONTRACT:
            raise GenesisError(
                f"config.depositContractAddress {deposit}: py-evm reads deposit requests "
                f"(EIP-6110) from {_MAINNET_DEPOSIT_CONTRACT} only"
            )
    return fork


def _check_blob_schedule(schedule: Any) -> None:
    """Entries for cancun and prague must be py-evm's; later forks' entries are ignored
    (their activation keys are refused)."""
    if schedule is None:
        return
    if not isinstance(schedule, dict):
        raise GenesisError("config.blobSchedule: expected an object of fork -> parameters")
    for name, params in schedule.items():
        wanted = _BLOB_SCHEDULE.get(name)
        if wanted is None:
            continue
        if not isinstance(params, dict):
            raise GenesisError(f"config.blobSchedule.{name}: expected an object")
        for field, value in wanted.items():
            got = _int(params.get(field, value), f"config.blobSchedule.{name}.{field}")
            if got != value:
                raise GenesisError(
                    f"config.blobSchedule.{name}.{field} = {got}: py-evm runs {name} with "
                    f"{field} {value} only"
                )


def _fork(
    config: Mapping[str, Any], cairn: Mapping[str, Any], timestamp: int, difficulty: int
) -> str:
    if "fork" in cairn:
        fork = str(cairn["fork"]).lower()
    elif "cancunTime" in config or "pragueTime" in config:
        fork = _fork_from_config(config, timestamp, difficulty)
    else:
        fork = DEFAULT_FORK
    if fork not in FORKS:
        raise GenesisError(f"cairn.fork: {fork!r} is not supported; choose one of {FORKS}")
    return fork


def _consensus(
    config: Mapping[str, Any], cairn: Mapping[str, Any] | None, timestamp: int, difficulty: int
) -> ConsensusParams:
    if cairn is None:
        # A genesis made for another client: no Cairn producers, so no block of this chain
        # can carry a valid commit; its blocks enter only by trusted import (`cairn import`).
        return ConsensusParams(
            mode="sequencer", producers=(), fork=_fork(config, {}, timestamp, difficulty)
        )
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
        fork=_fork(config, cairn, timestamp, difficulty),
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
    cairn = data.get("cairn")
    if cairn is not None and not isinstance(cairn, dict):
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
    timestamp = _int(data.get("timestamp", 0), "timestamp")
    difficulty = _int(data.get("difficulty", 0), "difficulty")
    return Genesis(
        chain_id=chain_id,
        alloc=_alloc(data.get("alloc", {})),
        consensus=_consensus(config, cairn, timestamp, difficulty),
        gas_limit=gas_limit,
        base_fee_per_gas=_int(data.get("baseFeePerGas", 1_000_000_000), "baseFeePerGas"),
        timestamp=timestamp,
        extra_data=extra,
        coinbase=_address(data.get("coinbase", "0x" + "00" * 20), "coinbase"),
        difficulty=difficulty,
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
            "blobSchedule": {f: _BLOB_SCHEDULE[f] for f in ("cancun", c.fork)},
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
        **({} if c.is_foreign else {"cairn": _cairn_section(c)}),
    }


def _cairn_section(c: ConsensusParams) -> dict[str, Any]:
    return {
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
    }
