"""W4: time from process start to serving RPC, and resident memory at rest, with 1k, 10k and
100k blocks on disk (empty blocks for both nodes; Anvil's chain is saved with --dump-state and
loaded with --load-state, the closest it has to a datadir)."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.harness import ANVIL, Target, rpc_sync
from cairn.chain.chain import Chain, open_store
from cairn.execution.builder import BlockEnv
from cairn.execution.forks import fork_named
from cairn.genesis.dev import dev_genesis
from cairn.genesis.parse import genesis_to_json

ACCOUNTS = 100
SETTLE_SECONDS = 2.0  # "at rest": let start-up allocations settle before reading RSS
# anvil_mine slows down as Anvil's in-memory chain grows: past ~90,000 blocks one call of
# 1,000 blocks took over 30 s (anvil 1.7.1), so Anvil is measured up to 10,000 blocks.
ANVIL_MAX_BLOCKS = 10_000
ANVIL_NOTE = "not measured: anvil_mine past ~90,000 blocks took >30 s per 1,000 blocks"


def extend_cairn_chain(datadir: Path, target_height: int) -> None:
    genesis = dev_genesis(accounts=ACCOUNTS)
    fork = fork_named(genesis.consensus.fork)
    datadir.mkdir(parents=True, exist_ok=True)
    (datadir / "genesis.json").write_text(json.dumps(genesis_to_json(genesis)))
    store = open_store(datadir / "chaindata", genesis, fork)
    try:
        chain = Chain(store, genesis, fork)
        while chain.head.block_number < target_height:
            head = chain.head
            env = BlockEnv(head, head.timestamp + 1, genesis.coinbase, head.gas_limit)
            chain.write_block(chain.executor.build(env, []), b"")
    finally:
        store.close()


def measure(target: Target) -> dict[str, Any]:
    seconds = target.start(timeout=600)
    height = int(rpc_sync(target.url, "eth_blockNumber"), 16)
    time.sleep(SETTLE_SECONDS)
    rss = target.rss_mib()
    workers = target.workers_rss_mib()
    target.stop()
    return {
        "height": height,
        "start_to_rpc_seconds": round(seconds, 3),
        "rss_mib": round(rss, 1),
        "workers_rss_mib": round(workers, 1),
    }


def restart_benchmark(blocks: int) -> dict[str, Any]:
    checkpoints = sorted({min(1_000, blocks), min(10_000, blocks), blocks})
    results: dict[str, Any] = {"checkpoints": checkpoints, "cairn": [], "anvil": []}
    with tempfile.TemporaryDirectory(prefix="cairn-restart-") as tmp:
        datadir = Path(tmp) / "dev"
        state = Path(tmp) / "anvil-state.json"
        mined = 0
        for height in checkpoints:
            t0 = time.monotonic()
            extend_cairn_chain(datadir, height)
            generation = time.monotonic() - t0
            cairn = Target("cairn", block_time=1000, accounts=ACCOUNTS, datadir=datadir)
            entry = measure(cairn)
            entry["generation_seconds"] = round(generation, 1)
            results["cairn"].append(entry)

            if height > ANVIL_MAX_BLOCKS:
                results["anvil"].append({"height": height, "skipped": ANVIL_NOTE})
                print(f"[bench] restart at {height} blocks: {results['cairn'][-1]}", flush=True)
                continue
            anvil = Target("anvil", block_time=0, accounts=ACCOUNTS)
            anvil.argv_extra = ["--dump-state", str(state)] + (
                ["--load-state", str(state)] if state.exists() else []
            )
            anvil.start()
            for _ in range(0, height - mined, 1000):  # one huge anvil_mine call times out
                rpc_sync(anvil.url, "anvil_mine", hex(min(1000, height - mined)))
                mined += min(1000, height - mined)
            anvil.stop()  # writes the state file
            reload = Target("anvil", block_time=0, accounts=ACCOUNTS)
            reload.argv_extra = ["--load-state", str(state)]
            results["anvil"].append(measure(reload))
            cairn_now, anvil_now = results["cairn"][-1], results["anvil"][-1]
            print(f"[bench] restart at {height} blocks: {cairn_now} / {anvil_now}", flush=True)
    return results


if __name__ == "__main__":
    import sys

    print(
        json.dumps(restart_benchmark(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000), indent=2)
    )
    assert ANVIL.exists()
