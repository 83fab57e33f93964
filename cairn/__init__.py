"""Cairn: a persistent, multi-node EVM test network node."""

import importlib.util
import os

__version__ = "0.1.0"

# eth-hash picks pycryptodome by default; safe-pysha3's C keccak is ~6x faster on the short
# inputs tries and addresses hash. Must be chosen before eth_hash.auto is first used.
if importlib.util.find_spec("sha3") is not None:
    os.environ.setdefault("ETH_HASH_BACKEND", "pysha3")
