"""`cairn export` / `cairn import` as processes on a real Cairn chain: the commits travel in
the side file, ranges and gzip, trusted imports that no peer mistakes for committed blocks,
kill -9 mid-import and resume, and clear errors for bad files."""

from __future__ import annotations

import asyncio
import gzip
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import rlp

from cairn.chain.apply import BlockApplier
from cairn.chain.chain import Chain
from cairn.chain.events import ChainEvents
from cairn.errors import InvalidCommit
from cairn.genesis.dev import dev_genesis
from cairn.genesis.parse import genesis_to_json
from cairn.node.cli_data import commits_path, decode_block, iterate_rlp_items
from cairn.txpool.pool import TxPool
from tests.support.chain import mine, open_chain, transfer
from tests.support.net import enode, log_has
from tests.support.proc import REPO, NodeProcess, run_cli
from tests.support.wait import wait_until

BLOCKS = 240


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dev chain of BLOCKS blocks, two transfers each, committed by the dev sequencer."""
    datadir = tmp_path_factory.mktemp("export") / "src"
    with open_chain(datadir) as chain:
        for n in range(BLOCKS):
            mine(chain, [transfer(0, n), transfer(1, n, value=n + 1)])
    (datadir / "genesis.json").write_text(json.dumps(genesis_to_json(dev_genesis())))
    return datadir


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, timeout=180)


def heads_and_commits(datadir: Path) -> tuple[int, bytes, list[bytes]]:
    with open_chain(datadir) as chain:
        head = chain.store.head
        commits = [chain.store.load_commit(n) or b"" for n in range(head.number + 1)]
        return head.number, head.block_hash, commits


def test_round_trip_keeps_commits_and_bytes(source: Path, tmp_path: Path) -> None:
    out = tmp_path / "chain.rlp.gz"
    done = cli("export", "--datadir", str(source), str(out))
    assert done.returncode == 0, done.stderr
    assert commits_path(out).name == "chain.rlp.commits.gz"
    assert gzip.decompress(commits_path(out).read_bytes())  # gzip as the name says

    target = tmp_path / "dst"
    done = cli("import", "--datadir", str(target), "--genesis", str(source / "genesis.json"),
               str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"imported {BLOCKS} blocks, skipped 1 already present" in done.stdout
    src_head, src_hash, src_commits = heads_and_commits(source)
    dst_head, dst_hash, dst_commits = heads_and_commits(target)
    assert (dst_head, dst_hash) == (src_head, src_hash) == (BLOCKS, src_hash)
    assert dst_commits == src_commits and all(src_commits[1:])  # every block's commit came along

    again = tmp_path / "again.rlp"
    assert cli("export", "--datadir", str(target), str(again)).returncode == 0
    assert again.read_bytes() == gzip.decompress(out.read_bytes())
    assert commits_path(again).read_bytes() == gzip.decompress(commits_path(out).read_bytes())


def test_ranges_import_in_pieces(source: Path, tmp_path: Path) -> None:
    first, second = tmp_path / "a.rlp", tmp_path / "b.rlp"
    assert cli("export", "--datadir", str(source), str(first), "0", "100").returncode == 0
    done = cli("export", "--datadir", str(source), str(second), "101")
    assert done.returncode == 0 and f"#101..#{BLOCKS}" in done.stdout
    assert len(list(_items(first))) == 101
    bad = cli("export", "--datadir", str(source), str(tmp_path / "x.rlp"), "5", "99999")
    assert bad.returncode == 2 and "past the head" in bad.stderr

    target = tmp_path / "dst"
    done = cli("import", "--datadir", str(target), "--genesis", str(source / "genesis.json"),
               str(first), str(second))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert heads_and_commits(target)[:2] == heads_and_commits(source)[:2]


def test_trusted_import_is_never_taken_for_committed(source: Path, tmp_path: Path) -> None:
    out = tmp_path / "chain.rlp"
    assert cli("export", "--datadir", str(source), str(out), "0", "30").returncode == 0
    commits_path(out).unlink()
    genesis = str(source / "genesis.json")

    refused = cli("import", "--datadir", str(tmp_path / "dst"), "--genesis", genesis, str(out))
    assert refused.returncode == 2
    assert "without a commits file" in refused.stderr and "--trusted" in refused.stderr
    with open_chain(tmp_path / "dst") as chain:
        assert chain.store.head.number == 0  # refused before a block was written

    done = cli("import", "--trusted", "--datadir", str(tmp_path / "dst"), "--genesis", genesis,
               str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "30 of them trusted" in done.stdout
    _, _, commits = heads_and_commits(tmp_path / "dst")
    assert commits == [b""] * 31  # stored with the empty commit

    # What a peer does with a block synced from the trusted node: the empty commit is refused.
    with open_chain(tmp_path / "peer") as peer:
        raw = _items(out)[1]
        with pytest.raises(InvalidCommit):
            asyncio.run(_apply(peer, raw, b""))
        assert peer.store.head.number == 0


async def _apply(chain: Chain, raw: bytes, commit: bytes) -> None:
    with ThreadPoolExecutor(1) as writer:
        pool = TxPool(chain.fork, chain.chain_id, chain.head_view, chain.store)
        applier = BlockApplier(chain, pool, ChainEvents(), writer)
        await applier.import_block(decode_block(chain.fork, raw, "test"), commit)


def test_kill9_mid_import_resumes(source: Path, tmp_path: Path) -> None:
    out = tmp_path / "chain.rlp"
    assert cli("export", "--datadir", str(source), str(out)).returncode == 0
    target = tmp_path / "dst"
    log = tmp_path / "import.log"
    genesis = str(source / "genesis.json")
    argv = [sys.executable, "-m", "cairn", "import", "--progress.interval", "0.05",
            "--datadir", str(target), "--genesis", genesis, str(out)]  # fmt: skip
    with log.open("wb") as fh:
        proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, cwd=REPO)
        try:
            wait_until(
                lambda: _progress(log) >= 40 or proc.poll() is not None,
                timeout=120,
                message="the import to pass block 40",
            )
            assert proc.poll() is None, "the import finished before it could be killed"
            proc.kill()
        finally:
            proc.wait(timeout=30)
    assert proc.returncode == -9
    stopped, _, commits = heads_and_commits(target)
    assert 40 <= stopped < BLOCKS and all(commits[1:])

    done = cli("import", "--datadir", str(target), str(out))  # the datadir's genesis.json now
    assert done.returncode == 0, done.stderr
    assert f"imported {BLOCKS - stopped} blocks" in done.stdout
    assert f"skipped {stopped + 1} already present" in done.stdout
    assert heads_and_commits(target) == heads_and_commits(source)


def test_bad_files_are_refused_clearly(source: Path, tmp_path: Path) -> None:
    out = tmp_path / "chain.rlp"
    assert cli("export", "--datadir", str(source), str(out), "0", "20").returncode == 0
    genesis = str(source / "genesis.json")
    items = list(_items(out))

    truncated = tmp_path / "truncated.rlp"
    truncated.write_bytes(out.read_bytes()[:-10])
    commits_path(truncated).write_bytes(commits_path(out).read_bytes())
    done = cli("import", "--datadir", str(tmp_path / "t"), "--genesis", genesis, str(truncated))
    assert done.returncode == 2 and "truncated" in done.stderr
    assert heads_and_commits(tmp_path / "t")[0] == 19  # every whole block before it is in

    # Block 12 claims another state root: refused by re-execution (even trusted), nothing
    # after it written. (With the commits file its changed hash would not match its commit.)
    tampered = tmp_path / "tampered.rlp"
    block = rlp.decode(items[12])
    block[0][3] = b"\x11" * 32
    tampered.write_bytes(b"".join(items[:12]) + rlp.encode(block) + b"".join(items[13:]))
    done = cli("import", "--trusted", "--datadir", str(tmp_path / "s"), "--genesis", genesis,
               str(tampered))  # fmt: skip
    assert done.returncode == 2
    assert "block #12" in done.stderr and "state_root mismatch" in done.stderr
    assert "head #11" in done.stderr

    other = json.loads((source / "genesis.json").read_text())
    other["config"]["chainId"] = 999
    (tmp_path / "other.json").write_text(json.dumps(other))
    done = cli("import", "--datadir", str(tmp_path / "o"), "--genesis",
               str(tmp_path / "other.json"), str(out))  # fmt: skip
    assert done.returncode == 2 and "not of this chain 999" in done.stderr


def _items(path: Path) -> list[bytes]:
    with path.open("rb") as fh:
        return list(iterate_rlp_items(fh, str(path)))


def _progress(log: Path) -> int:
    numbers = [
        int(line.split("#")[1].split()[0])
        for line in log.read_text(errors="replace").splitlines()
        if line.startswith("imported block #")
    ]
    return max(numbers, default=0)


@pytest.mark.slow
def test_peers_refuse_trusted_blocks_over_sync(source: Path, tmp_path: Path) -> None:
    """A node serving trusted-imported blocks: a full node syncing from it refuses every one
    (their empty commit proves nothing) and stays at genesis."""
    out = tmp_path / "chain.rlp"
    assert cli("export", "--datadir", str(source), str(out), "0", "10").returncode == 0
    commits_path(out).unlink()
    genesis = str(source / "genesis.json")
    done = cli("import", "--trusted", "--datadir", str(tmp_path / "trusted"), "--genesis",
               genesis, str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    trusted = NodeProcess(tmp_path / "trusted", "run", "--genesis", genesis).start()
    try:
        follower = NodeProcess(
            tmp_path / "follower", "run", "--genesis", genesis, "--bootnodes", enode(trusted)
        ).start()
        try:
            wait_until(
                lambda: log_has(follower, "rejected") and log_has(follower, "invalid commit"),
                timeout=90,
                message="the full node to refuse the trusted blocks",
            )
            assert follower.call("eth_blockNumber") == "0x0"
            assert trusted.call("eth_blockNumber") == "0xa"  # it serves them itself
        finally:
            follower.stop()
    finally:
        trusted.stop()
