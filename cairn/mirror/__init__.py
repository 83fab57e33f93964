"""The Postgres mirror: committed blocks, transactions with receipts, logs, accounts and
network state copied into Postgres (asyncpg) for explorers and analytics.

LevelDB stays the source of truth: the mirror only reads it, can be dropped and rebuilt at
any time, and must never make block production, import or RPC wait on Postgres.
"""
