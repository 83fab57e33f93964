"""BFT consensus for validator networks (Tendermint / QBFT style): with n validators it stays
safe with up to f = (n - 1) // 3 of them faulty and makes a block final as soon as more than
two thirds precommit it.

 - `messages`: proposals and votes, their signatures and bytes;
 - `votes`: one vote set per (height, round, kind), which also catches equivocation;
 - `state`: the round state machine, a pure function of (state, event) -> (state, actions);
 - `wal`: the write-ahead log (every message before it is handled, own ones fsync'd) and the
   sign guard that makes signing two blocks at one height and round impossible;
 - `engine`: the single writer that owns the round state, reads one queue, and turns actions
   into blocks, signatures, timers and messages.
Must never write storage except through the chain's applier, nor import p2p.
"""
