"""Shared test machinery: real node processes, a JSON-RPC client, waiting with deadlines,
and contracts compiled with solc-js."""
