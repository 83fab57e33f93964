"""Consensus: who makes the next block, and how a node takes blocks others made.

Owns the sequencer loop (and the dev chain's hook into it), the follower that judges gossiped
blocks, block sync by ranges, and (for validators) BFT rounds. Must never write storage
except through `cairn.chain.apply.BlockApplier`, and never imports p2p: the network reaches it
through small Protocols (`BlockSource`) and plain bytes.
"""
