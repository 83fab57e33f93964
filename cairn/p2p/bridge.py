"""The one place where trio (py-libp2p's thread) and the asyncio core meet.

`TrioThread` runs a trio event loop in its own thread. Calls cross in two ways only:
  - asyncio -> trio: `await thread.call(fn, *args)` schedules `fn` in trio's nursery with
    `TrioToken.run_sync_soon` (non-blocking, thread-safe) and resolves an asyncio future
    through `loop.call_soon_threadsafe`;
  - trio -> asyncio: `await thread.call_core(coro_fn, *args)` runs a coroutine on the core
    loop with `asyncio.run_coroutine_threadsafe` and wakes trio through the token again.
Nothing else in Cairn may touch both libraries; nothing here knows about blocks or peers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import Future as ThreadFuture
from typing import Any, TypeVar

import trio

from cairn.errors import CairnError

log = logging.getLogger("cairn.p2p.bridge")

T = TypeVar("T")


class BridgeClosed(CairnError):
    """The p2p thread is not running (not started yet, or stopped)."""


class TrioThread:
    def __init__(self, name: str = "cairn-p2p") -> None:
        self._name = name
        self._thread: threading.Thread | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._nursery: trio.Nursery | None = None
        self._core: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._stop: trio.Event | None = None
        self._error: BaseException | None = None

    # ------------------------------------------------------------ lifecycle
    def start(
        self,
        main: Callable[[], Awaitable[None]],
        core: asyncio.AbstractEventLoop,
        on_exit: Callable[[BaseException | None], None] | None = None,
    ) -> None:
        """Start trio in a thread; `main` runs until `stop`; returns once trio is up.

        `on_exit(error)` is called on the core loop once the thread has ended, whether by
        `stop` (error None) or by a failure, so a supervisor can tell a crash from a stop.
        """
        self._core = core

        async def runner() -> None:
            self._token = trio.lowlevel.current_trio_token()
            self._stop = trio.Event()
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._main_until_stopped, main)
                self._ready.set()
            self._nursery = None

        def target() -> None:
            try:
                trio.run(runner)
            except BaseException as exc:  # reported to on_exit; the thread must not die silently
                self._error = exc
                log.exception("the p2p thread failed")
            finally:
                self._token = None
                self._ready.set()
                if on_exit is not None and not core.is_closed():
                    with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                        core.call_soon_threadsafe(on_exit, self._error)

        self._thread = threading.Thread(target=target, name=self._name, daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error

    async def _main_until_stopped(self, main: Callable[[], Awaitable[None]]) -> None:
        assert self._stop is not None and self._nursery is not None
        nursery = self._nursery

        async def watch() -> None:
            assert self._stop is not None
            await self._stop.wait()
            nursery.cancel_scope.cancel()

        nursery.start_soon(watch)
        await main()

    def stop(self, timeout: float = 15.0) -> None:
        """Cancel everything in the trio thread and join it (blocking)."""
        token, stop = self._token, self._stop
        if token is not None and stop is not None:
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(stop.set)
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("the p2p thread did not stop within %.0fs", timeout)
        self._token = None

    @property
    def failure(self) -> BaseException | None:
        """What ended the trio thread, if it ended by an error."""
        return self._error

    @property
    def running(self) -> bool:
        return self._token is not None and self._thread is not None and self._thread.is_alive()

    # ------------------------------------------------------------ asyncio -> trio
    async def call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run `fn(*args)` in trio and await its result from asyncio."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()

        def deliver(ok: bool, value: Any) -> None:
            if future.done():
                return
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)

        async def run() -> None:
            try:
                result = await fn(*args)
            except BaseException as exc:
                loop.call_soon_threadsafe(deliver, False, _portable(exc))
                if not isinstance(exc, Exception):
                    raise
                return
            loop.call_soon_threadsafe(deliver, True, result)

        def spawn() -> None:
            if self._nursery is None:
                loop.call_soon_threadsafe(deliver, False, BridgeClosed("p2p is stopping"))
                return
            self._nursery.start_soon(run)

        self._schedule(spawn)
        return await future

    def post(self, fn: Callable[..., Awaitable[None]], *args: Any) -> None:
        """Fire and forget `fn(*args)` in trio (errors are logged there)."""

        async def run() -> None:
            try:
                await fn(*args)
            except Exception:
                log.exception("p2p task %s failed", getattr(fn, "__name__", fn))

        def spawn() -> None:
            if self._nursery is not None:
                self._nursery.start_soon(run)

        self._schedule(spawn)

    def submit(self, sync_fn: Callable[..., None], *args: Any) -> None:
        """From any thread: call `sync_fn(*args)` on the trio thread soon, in FIFO order."""
        token = self._token
        if token is None:
            raise BridgeClosed("the p2p thread is not running")
        try:
            token.run_sync_soon(sync_fn, *args)
        except trio.RunFinishedError as exc:
            raise BridgeClosed("the p2p thread has stopped") from exc

    def _schedule(self, sync_fn: Callable[[], None]) -> None:
        self.submit(sync_fn)

    # ------------------------------------------------------------ trio -> asyncio
    async def call_core(self, coro_fn: Callable[..., Coroutine[Any, Any, T]], *args: Any) -> T:
        """From trio: run `coro_fn(*args)` on the core asyncio loop and await the result."""
        core = self._core
        if core is None or core.is_closed():
            raise BridgeClosed("the core event loop is gone")
        token = trio.lowlevel.current_trio_token()
        done = trio.Event()
        future: ThreadFuture[T] = asyncio.run_coroutine_threadsafe(coro_fn(*args), core)

        def wake(_: object) -> None:
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(done.set)

        future.add_done_callback(wake)
        try:
            await done.wait()
        except trio.Cancelled:
            future.cancel()
            raise
        return future.result()

    def notify_core(self, fn: Callable[..., None], *args: Any) -> None:
        """From trio: call `fn(*args)` soon on the core loop, without waiting."""
        core = self._core
        if core is not None and not core.is_closed():
            core.call_soon_threadsafe(fn, *args)


def _portable(exc: BaseException) -> BaseException:
    # trio.Cancelled must not leak into asyncio, where it means nothing.
    if isinstance(exc, trio.Cancelled):
        return BridgeClosed("p2p call cancelled (p2p is stopping)")
    return exc
