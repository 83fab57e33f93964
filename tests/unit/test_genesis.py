from __future__ import annotations

import json
from pathlib import Path

import pytest
from eth_utils import to_checksum_address

from cairn.errors import GenesisError
from cairn.execution.forks import fork_named
from cairn.execution.genesis import genesis_block
from cairn.genesis.dev import dev_accounts, dev_genesis
from cairn.genesis.parse import genesis_to_json, load_genesis, parse_genesis

# The dev chain's identity. If this changes, every existing dev datadir is refused:
# change it only on purpose, with a note in the changelog.
DEV_GENESIS_HASH = "fda2b8778c30b12b5dcb8bd464c35d749ad67b369f6b410826e07c0658b07edb"

ANVIL_ACCOUNTS = [
    "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
    "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
    "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
    "0x90F79bf6EB2c4f870365E785982E1f101E93b906",
    "0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65",
    "0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc",
    "0x976EA74026E726554dB657fA54763abd0C3a0aa9",
    "0x14dC79964da2C08b23698B3D3cc7Ca32193d9955",
    "0x23618e81E3f5cdF7f54C3d65f7FBc0aBf5B21E8f",
    "0xa0Ee7A142d267C1f36714E4a8F75612F20a79720",
]


def test_dev_accounts_are_anvils() -> None:
    assert [to_checksum_address(a.address) for a in dev_accounts()] == ANVIL_ACCOUNTS
    assert dev_accounts()[0].private_key.hex() == (
        "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
    )


def test_dev_genesis_hash_is_pinned() -> None:
    genesis = dev_genesis()
    block = genesis_block(genesis, fork_named(genesis.consensus.fork))
    assert block.header.hash.hex() == DEV_GENESIS_HASH
    assert block.header.gas_limit == 30_000_000
    assert block.header.base_fee_per_gas == 1_000_000_000


def test_genesis_hash_is_deterministic_and_sensitive() -> None:
    fork = fork_named("prague")
    a = genesis_block(dev_genesis(), fork).header.hash
    b = genesis_block(dev_genesis(), fork).header.hash
    c = genesis_block(dev_genesis(chain_id=1337), fork).header.hash  # chain id: not in header
    d = genesis_block(dev_genesis(gas_limit=20_000_000), fork).header.hash
    e = genesis_block(dev_genesis(balance=1), fork).header.hash
    assert a == b == c
    assert len({a, d, e}) == 3


def test_json_round_trip(tmp_path: Path) -> None:
    genesis = dev_genesis(block_time=2)
    path = tmp_path / "genesis.json"
    path.write_text(json.dumps(genesis_to_json(genesis)))
    assert load_genesis(path) == genesis


def test_geth_style_genesis_with_code_storage_and_decimal_balance() -> None:
    genesis = parse_genesis(
        {
            "config": {"chainId": 1337, "cancunTime": 0},
            "gasLimit": "0x1c9c380",
            "alloc": {
                "0000000000000000000000000000000000000aaa": {
                    "balance": "1000000000000000000",
                    "code": "0x6001600055",
                    "storage": {"0x01": "0x02"},
                    "nonce": "0x1",
                }
            },
            "cairn": {"producers": ["0x" + "11" * 20]},
        }
    )
    account = next(iter(genesis.alloc.values()))
    assert account.balance == 10**18
    assert account.code == bytes.fromhex("6001600055")
    assert account.storage == {1: 2}
    assert account.nonce == 1
    assert genesis.consensus.fork == "cancun"
    block = genesis_block(genesis, fork_named("cancun"))
    assert block.header.block_number == 0


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"config": {}}, "config.chainId is required"),
        ({"extraData": "0x" + "00" * 33}, "extraData: 33 bytes"),
        ({"alloc": {"0x1234": {"balance": "1"}}}, "is not a 20-byte hex address"),
        ({"alloc": {"0x" + "11" * 20: {"balance": "ten"}}}, "is not a number"),
        ({"cairn": {"mode": "pow"}}, "cairn.mode"),
        ({"cairn": {"producers": []}}, "exactly one producer"),
        ({"cairn": {"mode": "validators", "producers": ["0x" + "11" * 20]}}, "at least 4"),
        ({"cairn": {"producers": ["0x" + "11" * 20], "fork": "osaka"}}, "not supported"),
        ({"gasLimit": "0x10"}, "below the protocol minimum"),
    ],
)
def test_bad_genesis_names_the_field(patch: dict[str, object], message: str) -> None:
    base: dict[str, object] = {
        "config": {"chainId": 5},
        "cairn": {"producers": ["0x" + "11" * 20]},
    }
    base.update(patch)
    with pytest.raises(GenesisError, match=message.replace(".", r"\.")):
        parse_genesis(base)


# geth's genesis of the execution-apis fixtures: every fork from homestead to prague at 0.
GETH_CONFIG = json.loads(
    (Path(__file__).parents[1] / "fixtures" / "execution-apis" / "genesis.json").read_text()
)["config"]


def _geth(**config: object) -> dict[str, object]:
    merged = {**GETH_CONFIG, **config}
    return {"config": {k: v for k, v in merged.items() if v is not None}, "difficulty": "0x20000"}


def test_full_geth_config_maps_to_prague_and_foreign_chain() -> None:
    genesis = parse_genesis(_geth())
    assert genesis.consensus.fork == "prague"
    assert genesis.consensus.is_foreign and genesis.consensus.producers == ()
    assert parse_genesis(_geth(pragueTime=None)).consensus.fork == "cancun"
    # round trip keeps it foreign (no cairn section) and the same genesis block
    again = parse_genesis(genesis_to_json(genesis))
    fork = fork_named("prague")
    assert genesis_block(again, fork).header.hash == genesis_block(genesis, fork).header.hash


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"osakaTime": 0}, "py-evm has no osaka fork"),
        ({"bpo1Time": 100}, "py-evm has no bpo1 fork"),
        ({"pragueTime": 1_700_000_000}, "config.pragueTime = 1700000000 is after the genesis"),
        ({"londonBlock": 5}, "config.londonBlock = 5: Cairn runs one fork from genesis"),
        ({"terminalTotalDifficulty": 10**20}, "proof of work"),
        (
            {"blobSchedule": {"prague": {"target": 6, "max": 12, "baseFeeUpdateFraction": 1}}},
            "config.blobSchedule.prague.max = 12",
        ),
        ({"depositContractAddress": "0x" + "42" * 20}, "deposit requests"),
    ],
)
def test_geth_configs_cairn_cannot_run_are_refused(config: dict[str, object], message: str) -> None:
    with pytest.raises(GenesisError, match=message):
        parse_genesis(_geth(**config))
