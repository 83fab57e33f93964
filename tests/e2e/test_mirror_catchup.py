"""A node whose mirror is 2,000 blocks behind: COPY catch-up with progress in the log, a
kill -9 in the middle of it and in the middle of streaming under load (no gap, no duplicate
after restart), and `cairn mirror rebuild` starting over."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
from eth._utils.address import generate_contract_address
from eth_utils import to_checksum_address

from cairn.genesis.dev import dev_genesis
from cairn.genesis.parse import genesis_to_json
from tests.support.chain import ADDRESSES, mine, open_chain, transfer
from tests.support.contracts import compile_contract
from tests.support.mirror import (
    Load,
    assert_no_gap_no_duplicate,
    call,
    constructor_args,
    deploy,
    head,
    health,
    metric,
    wait_mirrored,
)
from tests.support.postgres import PostgresServer
from tests.support.proc import NodeProcess, run_cli
from tests.support.wait import wait_until

BACKLOG = 2_000


@pytest.fixture(scope="module")
def backlog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dev datadir with BACKLOG blocks (transfers, and ERC-20 events every 10th block),
    made in-process; tests copy it."""
    datadir = tmp_path_factory.mktemp("backlog") / "dev"
    genesis = dev_genesis()
    token = compile_contract("Token.sol", "Token")
    code = bytes.fromhex(token.bytecode[2:])
    code += constructor_args(["string", "string", "uint256"], ["B", "B", 10**24])
    with open_chain(datadir, genesis) as chain:
        mine(chain, [deploy(5, 0, code)])
        address = "0x" + bytes(generate_contract_address(ADDRESSES[5], 0)).hex()
        nonces = [0] * 5
        for number in range(2, BACKLOG + 1):
            sender = number % 5
            recipient = to_checksum_address(bytes([number % 251]) * 20)
            raws = [transfer(sender, nonces[sender], to=recipient, value=number)]
            nonces[sender] += 1
            if number % 10 == 0:
                raws.append(
                    call(5, number // 10, address, "transfer(address,uint256)",
                         ["address", "uint256"], ["0x" + ADDRESSES[number % 7].hex(), number],
                         gas=100_000)
                )  # fmt: skip
            mine(chain, raws)
        assert chain.store.head.number == BACKLOG
    (datadir / "genesis.json").write_text(json.dumps(genesis_to_json(genesis)))
    return datadir


def copy_of(backlog: Path, tmp_path: Path) -> Path:
    target = tmp_path / "dev"
    shutil.copytree(backlog, target)
    return target


def cursor_of(node: NodeProcess) -> int:
    cursor = health(node)[1]["cursor"]
    return -1 if cursor is None else int(cursor)


def verify_cli(datadir: Path, url: str) -> str:
    result = run_cli("mirror", "verify", "--datadir", str(datadir), "--mirror.url", url,
                     timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("0 differences"), last
    return last


def test_far_behind_catches_up_with_copy_and_reports_progress(
    backlog: Path, tmp_path: Path, mirror_db: str, postgres: PostgresServer
) -> None:
    db = mirror_db.rsplit("/", 1)[1]
    datadir = copy_of(backlog, tmp_path)
    node = NodeProcess(datadir, "dev", "--mirror.url", mirror_db).start()
    try:
        wait_mirrored(node, timeout=180)
        log = node.log_path.read_text()
        assert f"{BACKLOG + 1} blocks behind (cursor #none, head #{BACKLOG}); catching up with " \
               "COPY batches" in log  # fmt: skip
        progress = [line for line in log.splitlines() if "mirror catching up: #" in line]
        assert progress, log[-3000:]
        assert all(" blocks/s, " in p and " rows/s, ETA " in p for p in progress)
        assert f"caught up to #{BACKLOG}" in log
        assert (metric(node, "cairn_mirror_catchup_blocks_per_second") or 0) > 0
        assert (metric(node, "cairn_mirror_catchup_rows_per_second") or 0) > 0
        # Rebuild without --datadir while the node runs: the running mirror refills from 0.
        reset = run_cli("mirror", "rebuild", "--mirror.url", mirror_db, "--yes")
        assert reset.returncode == 0, reset.stderr
        assert "refills them from block 0" in reset.stdout
        wait_until(
            lambda: postgres.psql("SELECT count(*) FROM blocks", db) == str(BACKLOG + 1),
            timeout=120,
            message="the running node's mirror to refill the rebuilt tables",
        )
        wait_mirrored(node)
        # LevelDB is locked by the running node: rebuild refuses before dropping anything.
        refused = run_cli("mirror", "rebuild", "--datadir", str(datadir), "--mirror.url",
                          mirror_db, "--yes")  # fmt: skip
        assert refused.returncode == 2
        assert "stop the node" in refused.stderr
        assert postgres.psql("SELECT count(*) FROM blocks", db) == str(BACKLOG + 1)
    finally:
        node.stop()
    assert assert_no_gap_no_duplicate(postgres, db) == BACKLOG
    verify_cli(datadir, mirror_db)

    # Start over from scratch: drop, re-create, refill from LevelDB.
    rebuilt = run_cli("mirror", "rebuild", "--datadir", str(datadir), "--mirror.url", mirror_db,
                      "--yes", timeout=300)  # fmt: skip
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert f"mirrored blocks #0..#{BACKLOG}" in rebuilt.stdout
    assert postgres.psql("SELECT count(*) FROM schema_migrations", db) == "1"
    assert assert_no_gap_no_duplicate(postgres, db) == BACKLOG
    verify_cli(datadir, mirror_db)


def test_kill9_mid_mirroring_leaves_no_gap_or_duplicate(
    backlog: Path, tmp_path: Path, mirror_db: str, postgres: PostgresServer
) -> None:
    db = mirror_db.rsplit("/", 1)[1]
    rng = random.Random(5)
    datadir = copy_of(backlog, tmp_path)

    # 1. kill -9 in the middle of the COPY catch-up. Postgres comes up only once the node
    #    runs, so the catch-up cannot finish before this test starts watching it.
    postgres.stop()
    node = NodeProcess(datadir, "dev", "--mirror.url", mirror_db).start()
    try:
        postgres.start()
        wait_until(
            lambda: 0 <= cursor_of(node) < BACKLOG - 100,
            timeout=120,
            interval=0.02,
            message="a first COPY batch",
        )
    finally:
        node.kill9()
    first_cursor = assert_no_gap_no_duplicate(postgres, db)
    assert 0 <= first_cursor < BACKLOG

    # 2. kill -9 while streaming block by block under load, twice at random moments
    accepted: list[str] = []
    unanswered: list[str] = []  # in flight at a kill: committed or not, never answered
    for _ in range(2):
        node = NodeProcess(datadir, "dev", "--mirror.url", mirror_db).start()
        load = Load(node.url, range(8, 10), rate=100)
        try:
            load.start()
            target = max(BACKLOG, head(node)) + rng.randint(10, 40)
            wait_until(
                lambda n=node, t=target: cursor_of(n) >= t,  # type: ignore[misc]
                timeout=120,
                message=f"the mirror at #{target}",
            )
        finally:
            node.kill9()
            load.stop()
            accepted.extend(load.accepted)
            unanswered.extend(load.unanswered)
        assert assert_no_gap_no_duplicate(postgres, db) >= target

    # 3. restart: everything accepted gets mined and mirrored, exactly once
    node = NodeProcess(datadir, "dev", "--mirror.url", mirror_db).start()
    try:
        wait_until(
            lambda: all(node.call("eth_getTransactionReceipt", h) for h in accepted[-20:]),
            timeout=60,
            message="the journal's transactions mined",
        )
        final = wait_mirrored(node)
    finally:
        node.stop()
    assert assert_no_gap_no_duplicate(postgres, db) == final["head"]
    hashes = postgres.psql(
        "SELECT '0x' || encode(hash, 'hex') FROM transactions WHERE from_address IN "
        f"('\\x{ADDRESSES[8].hex()}', '\\x{ADDRESSES[9].hex()}')",
        db,
    ).split()
    # every accepted transaction exactly once; nothing that was never sent
    assert len(hashes) == len(set(hashes))
    assert set(accepted) <= set(hashes) <= set(accepted) | set(unanswered)
    verify_cli(datadir, mirror_db)
