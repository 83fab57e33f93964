"""Execution: py-evm behind small, typed functions.

Owns the fork schedule, building a block from transactions, importing (re-executing and
checking) a block made elsewhere, state reads, eth_call and gas estimation. Must never write
to disk itself: it returns `BlockResult`s whose bytes `cairn.storage` commits.
"""
