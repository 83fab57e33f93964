"""The `cairn_` namespace: the commit stored beside any block (cairn_getCommit: who signed
it), what a validator network's consensus is doing (cairn_consensusStatus) and the
equivocation evidence it kept (cairn_getEvidence). Fed by a `ConsensusView` Protocol wired in
cairn/node; never imports consensus."""

from __future__ import annotations

from typing import Any, Protocol

from cairn.chain.chain import Chain
from cairn.chain.commit import Commit, recover_signer
from cairn.rpc import params
from cairn.rpc.blocks import BlockResolver
from cairn.rpc.dispatch import rpc_method
from cairn.rpc.errors import METHOD_NOT_FOUND, RpcError
from cairn.rpc.format import hexb, q


class ConsensusView(Protocol):
    def snapshot(self) -> dict[str, Any]: ...

    def evidence(self) -> list[dict[str, Any]]: ...


class CairnNamespace:
    def __init__(self, chain: Chain, view: ConsensusView | None) -> None:
        self._chain = chain
        self._blocks = BlockResolver(chain.reader)
        self._view = view

    def _require(self, method: str) -> ConsensusView:
        if self._view is None:
            raise RpcError(
                METHOD_NOT_FOUND,
                f"the method {method} is not available: this node is not a validator",
            )
        return self._view

    @rpc_method("cairn_consensusStatus")
    async def consensus_status(self) -> dict[str, Any]:
        return self._require("cairn_consensusStatus").snapshot()

    @rpc_method("cairn_getEvidence")
    async def get_evidence(self) -> list[dict[str, Any]]:
        return self._require("cairn_getEvidence").evidence()

    @rpc_method("cairn_getCommit")
    async def get_commit(self, block: Any) -> dict[str, Any] | None:
        """The commit stored beside a block: its round, signatures and their signers."""
        header = self._blocks.header(params.block_ref(block, 0, default="latest"))
        raw = self._chain.store.load_commit(header.block_number)
        if raw is None:
            return None
        commit = Commit.decode(raw)
        signers = [
            hexb(
                recover_signer(
                    sig, self._chain.chain_id, commit.height, commit.round, commit.block_hash
                )
            )
            for sig in commit.signatures
        ]
        return {
            "number": q(commit.height),
            "round": q(commit.round),
            "blockHash": hexb(commit.block_hash),
            "signatures": [hexb(sig) for sig in commit.signatures],
            "signers": signers,
        }
