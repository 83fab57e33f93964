"""Genesis: geth-format genesis.json plus a `cairn` section (mode, producers, block time, fork).

Owns parsing and writing genesis files and the dev genesis. Must never touch disk state or
execute anything: the genesis block itself is built by `cairn.execution`.
"""

from cairn.genesis.model import AllocAccount, ConsensusParams, Genesis
from cairn.genesis.parse import genesis_to_json, load_genesis, parse_genesis

__all__ = [
    "AllocAccount",
    "ConsensusParams",
    "Genesis",
    "genesis_to_json",
    "load_genesis",
    "parse_genesis",
]
