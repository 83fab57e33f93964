"""JSON-RPC error codes, and the one place Cairn errors become them."""

from __future__ import annotations

from typing import Any

from cairn.errors import (
    CairnError,
    ExecutionFailed,
    InvalidDevRequest,
    InvalidTransaction,
    NotFound,
    SimulationRejected,
    TransactionReverted,
)

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
SERVER_ERROR = -32000
RESOURCE_NOT_FOUND = -32001
LIMIT_EXCEEDED = -32005
UNAUTHORIZED = -32004
EXECUTION_REVERTED = 3


class RpcError(Exception):
    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def to_json(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


def invalid_params(message: str) -> RpcError:
    return RpcError(INVALID_PARAMS, message)


def from_exception(exc: BaseException) -> RpcError:
    """Map an exception raised while serving a call to the error the client sees."""
    if isinstance(exc, RpcError):
        return exc
    if isinstance(exc, TransactionReverted):
        return RpcError(EXECUTION_REVERTED, exc.message, "0x" + exc.data.hex())
    if isinstance(exc, InvalidTransaction):
        return RpcError(SERVER_ERROR, exc.reason)
    if isinstance(exc, SimulationRejected):
        return RpcError(exc.code, exc.message)
    if isinstance(exc, InvalidDevRequest):
        return RpcError(INVALID_PARAMS, str(exc))
    if isinstance(exc, ExecutionFailed):
        return RpcError(SERVER_ERROR, str(exc))
    if isinstance(exc, NotFound):
        return RpcError(SERVER_ERROR, str(exc))
    if isinstance(exc, CairnError):
        return RpcError(SERVER_ERROR, str(exc))
    return RpcError(INTERNAL_ERROR, f"internal error: {type(exc).__name__}")
