"""Consensus: who may produce the next block and the proof that they did (the commit).

Owns commit signing and verification, the sequencer loop, and (for validators) BFT rounds.
Must never write storage directly: it hands executed blocks and their commits to the node.
"""
