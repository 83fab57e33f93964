"""Fork name -> py-evm VM class, and the codecs that fork's blocks use."""

from __future__ import annotations

from dataclasses import dataclass

import rlp
from eth.abc import (
    BlockHeaderAPI,
    ReceiptAPI,
    ReceiptBuilderAPI,
    SignedTransactionAPI,
    TransactionBuilderAPI,
    WithdrawalAPI,
)
from eth.vm.base import VM
from eth.vm.forks import CancunVM, PragueVM
from eth.vm.forks.cancun.headers import CancunBlockHeader
from eth.vm.forks.prague.headers import PragueBlockHeader
from eth.vm.forks.shanghai.withdrawals import Withdrawal

from cairn.errors import ConfigError
from cairn.execution.vm import cairn_vm

_FORKS: dict[str, tuple[type[VM], type[BlockHeaderAPI]]] = {
    "cancun": (CancunVM, CancunBlockHeader),
    "prague": (PragueVM, PragueBlockHeader),
}


@dataclass(frozen=True)
class Fork:
    """One fork's VM class and its encoders/decoders."""

    name: str
    vm_class: type[VM]
    header_class: type[BlockHeaderAPI]

    @property
    def tx_builder(self) -> type[TransactionBuilderAPI]:
        return self.vm_class.get_transaction_builder()

    @property
    def receipt_builder(self) -> type[ReceiptBuilderAPI]:
        return self.vm_class.get_receipt_builder()

    def decode_header(self, raw: bytes) -> BlockHeaderAPI:
        header: BlockHeaderAPI = rlp.decode(raw, sedes=self.header_class)
        return header

    def decode_transaction(self, raw: bytes) -> SignedTransactionAPI:
        return self.tx_builder.decode(raw)

    def decode_receipt(self, raw: bytes) -> ReceiptAPI:
        return self.receipt_builder.decode(raw)

    def decode_withdrawal(self, raw: bytes) -> WithdrawalAPI:
        return Withdrawal.decode(raw)


def fork_named(name: str) -> Fork:
    try:
        vm_class, header_class = _FORKS[name]
    except KeyError:
        raise ConfigError(f"unknown fork {name!r}; supported: {sorted(_FORKS)}") from None
    return Fork(name, cairn_vm(vm_class), header_class)


def encode_header(header: BlockHeaderAPI) -> bytes:
    return bytes(rlp.encode(header))
