"""The chain: the committed blocks as one object, and the one way a block enters them.

Owns `Chain` (reads, head view, the synced write), the `BlockApplier` every block source
goes through (sequencer, BFT commit, gossip, range sync, import, dev helpers), the events
it publishes, the commit format and its check against the producer set, and the block
bundle that carries a committed block between nodes. Must never choose blocks (consensus
does) nor know a transport (p2p does): it judges a block's proof and stores it.
"""
