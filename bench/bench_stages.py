"""Where the CPU time of a block goes, in-process (no RPC): decode + sender recovery, block
build (execution + roots + state root), the synced LevelDB commit, and re-execution on import.
Prints per-stage microseconds per transaction; run with --profile for a cProfile listing."""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import tempfile
import time
from pathlib import Path
from typing import Any

from eth.abc import SignedTransactionAPI
from eth_keys.datatypes import PrivateKey

from bench.harness import sign_transfers
from cairn.chain.chain import Chain, open_store
from cairn.chain.commit import make_commit
from cairn.execution.builder import BlockEnv
from cairn.execution.forks import fork_named
from cairn.genesis.dev import DEV_PRODUCER_KEY, dev_genesis


def run(blocks: int, per_block: int, profile: bool) -> dict[str, Any]:
    genesis = dev_genesis(accounts=100)
    fork = fork_named(genesis.consensus.fork)
    per_sender = per_block * blocks // 100
    raws = [bytes.fromhex(r[2:]) for row in sign_transfers(100, per_sender) for r in row]
    key = PrivateKey(DEV_PRODUCER_KEY)
    totals = {"decode_recover": 0.0, "build": 0.0, "commit": 0.0, "import": 0.0}
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(Path(tmp) / "chaindata", genesis, fork)
        chain = Chain(store, genesis, fork)
        profiler = cProfile.Profile() if profile else None
        try:
            for b in range(blocks):
                batch = raws[b * per_block : (b + 1) * per_block]
                t0 = time.process_time()
                txs: list[SignedTransactionAPI] = [fork.decode_transaction(r) for r in batch]
                for tx in txs:
                    _ = tx.sender
                t1 = time.process_time()
                head = chain.head
                env = BlockEnv(head, head.timestamp + 1, genesis.coinbase, head.gas_limit)
                if profiler:
                    profiler.enable()
                result = chain.executor.build(env, txs)
                if profiler:
                    profiler.disable()
                t2 = time.process_time()
                header = result.header
                commit = make_commit(key, chain.chain_id, header.block_number, header.hash)
                chain.write_block(result, commit.encode())
                t3 = time.process_time()
                totals["decode_recover"] += t1 - t0
                totals["build"] += t2 - t1
                totals["commit"] += t3 - t2
            # re-execute the last block on a second datadir-less path: import checks every root
            stored = chain.reader.block_by_number(chain.head.block_number)
            assert stored is not None
        finally:
            store.close()
        # import timing: a fresh chain re-executing the same blocks
        store2 = open_store(Path(tmp) / "follower", genesis, fork)
        chain2 = Chain(store2, genesis, fork)
        store = open_store(Path(tmp) / "chaindata", genesis, fork)
        reader = Chain(store, genesis, fork).reader
        try:
            for n in range(1, blocks + 1):
                block = reader.block_by_number(n)
                assert block is not None
                fresh = [fork.decode_transaction(t.encode()) for t in block.transactions]
                for tx in fresh:
                    _ = tx.sender
                copy = block.block.copy(transactions=fresh)
                t0 = time.process_time()
                imported = chain2.executor.import_block(copy)
                totals["import"] += time.process_time() - t0
                chain2.write_block(imported, b"")
        finally:
            store.close()
            store2.close()
    txs_total = blocks * per_block
    result_json: dict[str, Any] = {
        "blocks": blocks,
        "transactions": txs_total,
        "us_per_tx": {k: round(v / txs_total * 1e6, 1) for k, v in totals.items()},
        "build_tx_per_s": round(txs_total / totals["build"], 1),
        "pipeline_tx_per_s": round(
            txs_total / (totals["decode_recover"] + totals["build"] + totals["commit"]), 1
        ),
    }
    if profiler:
        stats = pstats.Stats(profiler)
        stats.sort_stats("cumulative").print_stats(40)
    return result_json


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--blocks", type=int, default=5)
    parser.add_argument("--per-block", type=int, default=1400)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    print(json.dumps(run(args.blocks, args.per_block, args.profile), indent=2))
