"""JSON-RPC 2.0 over HTTP and WebSocket (aiohttp): namespaces, formatting, errors, limits.

Owns the wire format wallets and explorers see. Must never change chain state except through
the txpool and the block producer interfaces it is given.
"""
