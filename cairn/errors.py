"""The one error tree of Cairn. Every error carries the data that names what failed.

RPC maps these to JSON-RPC codes in one place (`cairn.rpc.errors`); nothing else does.
"""

from __future__ import annotations


class CairnError(Exception):
    """Base of every error Cairn raises on purpose."""


class ConfigError(CairnError):
    """A flag, environment variable, TOML or genesis value is unusable."""


class GenesisError(ConfigError):
    """genesis.json is malformed or inconsistent."""


class DatadirError(CairnError):
    """The data directory cannot be used as it is (foreign, newer schema, locked)."""


class GenesisMismatch(DatadirError):
    def __init__(self, datadir: str, stored: bytes, configured: bytes) -> None:
        self.datadir = datadir
        self.stored = stored
        self.configured = configured
        super().__init__(
            f"datadir {datadir} holds a chain with genesis 0x{stored.hex()}, but the configured "
            f"genesis has hash 0x{configured.hex()}. Nothing was changed. Use the genesis.json "
            f"this datadir was created with, pick another --datadir, or wipe it on purpose with "
            f"`cairn db reset --datadir {datadir}`."
        )


class InvalidTransaction(CairnError):
    """A transaction cannot be admitted; `reason` uses geth's wording where geth has one."""

    def __init__(self, reason: str, tx_hash: bytes | None = None) -> None:
        self.reason = reason
        self.tx_hash = tx_hash
        super().__init__(reason)


class TransactionReverted(CairnError):
    """An eth_call or estimate ran into REVERT; `data` is the revert payload."""

    def __init__(self, data: bytes, message: str = "execution reverted") -> None:
        self.data = data
        self.message = message
        super().__init__(message)


class SimulationRejected(CairnError):
    """eth_simulateV1 refused a request or one of its calls (geth's checks); `code` is the
    one execution-apis gives the case (-38010 nonce too low, -38020 block numbers out of
    order, ...)."""

    def __init__(self, code: int, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(message)


class ExecutionFailed(CairnError):
    """An eth_call or estimate failed for a reason other than REVERT (out of gas, bad opcode)."""


class ExecutionTimeout(ExecutionFailed):
    """A call or trace ran past its wall-clock limit (--rpc.evmtimeout); geth's wording."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        super().__init__(f"execution aborted (timeout = {go_duration(timeout)})")


def go_duration(seconds: float) -> str:
    """Go's time.Duration.String for the durations a flag takes: 5s, 1.5s, 500ms, 1m30s."""
    if seconds < 1:
        return f"{round(seconds * 1000, 3):g}ms"
    minutes, rest = divmod(seconds, 60)
    hours, minutes = divmod(int(minutes), 60)
    text = f"{round(rest, 9):g}s"
    if minutes or hours:
        text = f"{minutes}m" + text
    if hours:
        text = f"{hours}h" + text
    return text


class InvalidBlock(CairnError):
    def __init__(self, number: int, block_hash: bytes, reason: str) -> None:
        self.number = number
        self.block_hash = block_hash
        self.reason = reason
        if number < 0:  # bytes that never decoded into a block
            super().__init__(f"invalid block data: {reason}")
            return
        super().__init__(f"invalid block #{number} 0x{block_hash.hex()}: {reason}")


class InvalidCommit(CairnError):
    def __init__(self, number: int, block_hash: bytes, reason: str) -> None:
        self.number = number
        self.block_hash = block_hash
        self.reason = reason
        if number < 0:
            super().__init__(f"invalid commit data: {reason}")
            return
        super().__init__(f"invalid commit for block #{number} 0x{block_hash.hex()}: {reason}")


class Equivocation(CairnError):
    """A validator signed two different consensus messages for one height, round and step
    (kept as evidence; the peer that published them is penalised)."""

    def __init__(self, validator: bytes, what: str) -> None:
        self.validator = validator
        super().__init__(f"validator 0x{validator.hex()} equivocated: {what}")


class NotFound(CairnError):
    """A block, transaction or state the caller named does not exist here."""


class MirrorError(CairnError):
    """The Postgres mirror cannot use its database as it is (another chain, a newer schema)."""


class InvalidDevRequest(CairnError):
    """A dev-chain helper (evm_*, anvil_*, hardhat_*) was asked for something it cannot do."""


class KeystoreError(CairnError):
    """A keystore file or its password cannot be used."""
