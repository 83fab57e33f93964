"""The transaction pool: admission with geth's error messages, per-sender nonce order,
replacement by fee bump, limits, and a durable journal so an accepted transaction survives
a crash. Must never execute a transaction or decide what goes on chain.
"""
