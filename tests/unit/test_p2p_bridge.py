"""The trio<->asyncio bridge against a real trio thread and a real asyncio loop."""

from __future__ import annotations

import asyncio
import contextlib
import threading

import pytest
import trio

from cairn.p2p.bridge import BridgeClosed, TrioThread


class Boom(Exception):
    pass


def _running(thread: TrioThread) -> bool:
    return thread.running


def test_calls_cross_both_ways_and_errors_travel() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        thread = TrioThread("test-bridge")
        core_thread = threading.get_ident()
        seen: list[str] = []

        async def core_double(x: int) -> int:
            assert threading.get_ident() == core_thread
            return 2 * x

        async def core_fail() -> None:
            raise Boom("from asyncio")

        async def in_trio(x: int) -> tuple[int, str]:
            trio.lowlevel.current_trio_token()  # raises unless on the trio thread
            doubled = await thread.call_core(core_double, x)
            try:
                await thread.call_core(core_fail)
            except Boom as exc:
                return doubled, str(exc)
            return doubled, "no error"

        async def trio_fail() -> None:
            raise Boom("from trio")

        def note(text: str) -> None:
            seen.append(text)

        async def main() -> None:
            await trio.sleep_forever()

        thread.start(main, loop)
        try:
            assert thread.running
            assert await thread.call(in_trio, 21) == (42, "from asyncio")
            with pytest.raises(Boom, match="from trio"):
                await thread.call(trio_fail)
            # FIFO order for fire-and-forget submissions.
            done = asyncio.Event()
            for i in range(50):
                thread.submit(note, str(i))

            def finish() -> None:
                loop.call_soon_threadsafe(done.set)

            thread.submit(finish)
            await asyncio.wait_for(done.wait(), 10)
            assert seen == [str(i) for i in range(50)]
        finally:
            await loop.run_in_executor(None, thread.stop)
        assert not _running(thread)
        with pytest.raises(BridgeClosed):
            thread.submit(note, "late")

    asyncio.run(scenario())


def test_a_failing_start_is_reported() -> None:
    async def scenario() -> None:
        thread = TrioThread("test-bridge-fail")

        async def main() -> None:
            raise Boom("cannot listen")

        # trio may die before or after start() returns; either way the error is kept.
        with contextlib.suppress(BaseExceptionGroup):
            thread.start(main, asyncio.get_running_loop())
        await asyncio.get_running_loop().run_in_executor(None, thread.stop)
        assert not _running(thread)
        failure = thread.failure
        assert isinstance(failure, BaseExceptionGroup)  # trio's nursery wraps it
        assert failure.subgroup(Boom) is not None

    asyncio.run(scenario())
