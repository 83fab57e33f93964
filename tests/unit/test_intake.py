"""Group commit in the txpool's intake, on a real LevelDB pool: submissions made in one
event-loop turn share one journal write, each caller gets its own answer (including the
duplicate inside the group), and a journal that cannot be written fails them all with
nothing admitted."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path

from cairn.chain.chain import Chain
from cairn.txpool.intake import Intake
from cairn.txpool.pool import TxPool
from tests.support.chain import open_chain, transfer


class CountingJournal:
    """The chain's real journal, with its writes counted (and optionally failing)."""

    def __init__(self, chain: Chain) -> None:
        self._store = chain.store
        self.writes = 0
        self.broken = False

    def save_journal(self, entries: Iterable[tuple[bytes, bytes]]) -> None:
        if self.broken:
            raise OSError("disk full")
        self.writes += 1
        self._store.save_journal(entries)

    def delete_journal(self, tx_hashes: Iterable[bytes]) -> None:
        self._store.delete_journal(tx_hashes)

    def load_journal(self) -> list[bytes]:
        return self._store.load_journal()


def test_one_turn_one_journal_write_and_an_answer_each(tmp_path: Path) -> None:
    async def scenario(chain: Chain) -> None:
        journal = CountingJournal(chain)
        pool = TxPool(chain.fork, chain.chain_id, chain.head_view, journal)
        intake = Intake(pool)
        raws = [transfer(0, n) for n in range(20)]
        answers = await asyncio.gather(*(intake.submit(r) for r in [*raws, raws[3]]))
        assert journal.writes == 1
        assert [a.error for a in answers[:20]] == [None] * 20
        duplicate = answers[20].error
        assert duplicate is not None and duplicate.reason.startswith("already known")
        assert len(chain.store.load_journal()) == 20
        # a later turn is a later write
        await intake.submit(transfer(1, 0))
        assert journal.writes == 2

    with open_chain(tmp_path) as chain:
        asyncio.run(scenario(chain))


def test_a_journal_that_cannot_be_written_fails_every_caller(tmp_path: Path) -> None:
    async def scenario(chain: Chain) -> None:
        journal = CountingJournal(chain)
        pool = TxPool(chain.fork, chain.chain_id, chain.head_view, journal)
        intake = Intake(pool)
        journal.broken = True
        outcomes = await asyncio.gather(
            *(intake.submit(transfer(0, n)) for n in range(3)), return_exceptions=True
        )
        assert all(isinstance(o, OSError) and "disk full" in str(o) for o in outcomes)
        assert len(pool) == 0 and chain.store.load_journal() == []

    with open_chain(tmp_path) as chain:
        asyncio.run(scenario(chain))
