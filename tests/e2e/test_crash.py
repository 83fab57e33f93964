"""kill -9 while a client streams transactions: nothing reported is ever lost."""

from __future__ import annotations

import random
import threading
from pathlib import Path

import pytest

from tests.support import rpc
from tests.support.chain import ADDRESSES, transfer
from tests.support.proc import NodeProcess
from tests.support.wait import wait_until

CYCLES = 6
SENDERS = 4


class Streamer(threading.Thread):
    """Sends transfers from several accounts and records every answer the node gave."""

    def __init__(self, url: str, nonces: dict[int, int]) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.nonces = nonces
        self.accepted: list[str] = []
        self.blocks: dict[int, str] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        i = 0
        while not self.stop.is_set():
            sender = i % SENDERS
            i += 1
            raw = transfer(sender, self.nonces[sender], value=1 + i)
            try:
                tx_hash = rpc.call(self.url, "eth_sendRawTransaction", "0x" + raw.hex(), timeout=5)
            except Exception:
                return  # the node is gone
            self.accepted.append(tx_hash)
            self.nonces[sender] += 1
            if i % 5 == 0:
                try:
                    number = int(rpc.call(self.url, "eth_blockNumber", timeout=5), 16)
                    block = rpc.call(
                        self.url, "eth_getBlockByNumber", hex(number), False, timeout=5
                    )
                except Exception:
                    return
                self.blocks[number] = block["hash"]


def wait_for_accepted(streamer: Streamer, count: int) -> None:
    wait_until(
        lambda: len(streamer.accepted) >= count or not streamer.is_alive(),
        timeout=60,
        message=f"{count} accepted transactions",
    )


def run_cycle(
    node: NodeProcess,
    cycle: int,
    accepted: list[str],
    seen_blocks: dict[int, str],
    nonces: dict[int, int],
    rng: random.Random,
) -> None:
    # Everything any earlier incarnation reported is still here, unchanged.
    for number, block_hash in seen_blocks.items():
        block = node.call("eth_getBlockByNumber", hex(number), False)
        assert isinstance(block, dict), f"cycle {cycle}: block {number} is gone"
        assert block["hash"] == block_hash, f"cycle {cycle}: block {number} changed"
    for tx_hash in accepted:
        receipt = node.call("eth_getTransactionReceipt", tx_hash)
        pending = node.call("eth_getTransactionByHash", tx_hash)
        assert receipt is not None or pending is not None, f"cycle {cycle}: {tx_hash} lost"
    for s in range(SENDERS):
        address = "0x" + ADDRESSES[s].hex()
        nonces[s] = int(str(node.call("eth_getTransactionCount", address, "pending")), 16)
    streamer = Streamer(node.url, nonces)
    streamer.start()
    # kill at a random moment, often in the middle of building or committing a block
    wait_for_accepted(streamer, 20 + rng.randint(5, 60))
    node.kill9()
    streamer.join(timeout=10)
    accepted.extend(streamer.accepted)
    seen_blocks.update(streamer.blocks)


@pytest.mark.slow
def test_kill9_cycles_lose_nothing(tmp_path: Path) -> None:
    rng = random.Random(7)
    datadir = tmp_path / "dev"
    accepted: list[str] = []
    seen_blocks: dict[int, str] = {}
    nonces = {s: 0 for s in range(SENDERS)}
    for cycle in range(CYCLES):
        node = NodeProcess(datadir, "dev").start()
        try:
            run_cycle(node, cycle, accepted, seen_blocks, nonces, rng)
        finally:
            node.stop()  # already dead after kill -9; stops it if an assertion failed first

    node = NodeProcess(datadir, "dev").start()
    try:
        for number, block_hash in seen_blocks.items():
            assert node.call("eth_getBlockByNumber", hex(number), False)["hash"] == block_hash  # type: ignore[index]

        # every accepted transaction gets mined once the node runs on
        def all_mined() -> bool:
            return all(node.call("eth_getTransactionReceipt", h) is not None for h in accepted)

        wait_until(all_mined, timeout=60, message="every accepted transaction to be mined")
        # and the chain goes on
        head = int(str(node.call("eth_blockNumber")), 16)
        nonce = int(
            str(node.call("eth_getTransactionCount", "0x" + ADDRESSES[0].hex(), "pending")), 16
        )
        node.call("eth_sendRawTransaction", "0x" + transfer(0, nonce).hex())
        wait_until(
            lambda: int(str(node.call("eth_blockNumber")), 16) > head,
            timeout=30,
            message="a new block",
        )
        assert len(accepted) > CYCLES * 20
        assert len(seen_blocks) >= CYCLES
    finally:
        node.stop()
