"""eth_call and eth_estimateGas in worker processes, off the node's interpreter lock.

A call is py-evm interpretation: CPU-bound Python that, run in the node process, takes the
one interpreter lock from the RPC loop and the block builder. A worker runs `CallRunner` on
its own view of the chain: state (trie nodes and code) and headers are stored under their
hash, so whatever a worker has read stays true and is kept in its cache; what it lacks it
asks the node for over its pipe, and the node's event loop answers from LevelDB. Calls are
queued to a worker a few ahead (PIPELINE), so it never waits for the node between two of
them, but none behind a call that has already run 50 ms (it may loop to its timeout); the
rest wait in the node, in arrival order, for the first worker with room, and a call whose
caller gave up meanwhile (a client gone, a batch stopped) is never sent.
Each call carries its wall-clock limit (--rpc.evmtimeout), which the worker enforces inside
execution; a call past it answers geth's "execution aborted (timeout = 5s)" and the worker
goes on with the next one. Nothing in a worker is ever written.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import pickle
import signal
import socket
import struct
from collections import OrderedDict, deque
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

import rlp
from eth.abc import BlockHeaderAPI, StateAPI
from eth.chains.base import ChainContext
from eth.db.backends.base import BaseDB

from cairn.errors import ExecutionFailed, TransactionReverted
from cairn.execution.call import DEFAULT_TIMEOUT, CallParams, CallRunner
from cairn.execution.evmdb import EvmChainDB, StateOverlay
from cairn.execution.forks import Fork, fork_named
from cairn.execution.reader import ChainReader
from cairn.execution.worker_process import die_with_parent

log = logging.getLogger("cairn.execution")

# node -> worker: (CALL | ESTIMATE, header RLP, CallParams, timeout in seconds), or
# (ANSWER, value) to a question
CALL, ESTIMATE, ANSWER = "call", "estimate", "answer"
# worker -> node: a question (STATE key, HEADER hash, NUMBER n, HEAD) or an outcome
STATE, HEADER, NUMBER, HEAD = "state", "header", "number", "head"
DONE, REVERTED, FAILED, CRASHED = "done", "reverted", "failed", "crashed"

CACHE_BYTES = 64 * 1024 * 1024
PIPELINE = 4  # calls sent ahead to one worker; more wait in the node
# A worker whose current call has run this long gets no more until it is done: the calls
# behind it would wait for it (a loop may run to --rpc.evmtimeout), others may be free.
SLOW_CALL_SECONDS = 0.05


class _Cache:
    """Least-recently-used values by key, bounded by their total size."""

    def __init__(self, limit: int) -> None:
        self._items: OrderedDict[bytes, bytes] = OrderedDict()
        self._size = 0
        self._limit = limit

    def get(self, key: bytes) -> bytes | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: bytes, value: bytes) -> None:
        if key in self._items:
            return
        self._items[key] = value
        self._size += len(key) + len(value)
        while self._size > self._limit:
            old_key, old_value = self._items.popitem(last=False)
            self._size -= len(old_key) + len(old_value)


class _RemoteState(BaseDB):
    """The node's state keyspace, read through the pipe and cached (keys are hashes)."""

    def __init__(self, ask: Callable[[str, Any], Any]) -> None:
        self._ask = ask
        self._cache = _Cache(CACHE_BYTES)

    def __getitem__(self, key: bytes) -> bytes:
        value = self._cache.get(key)
        if value is None:
            value = self._ask(STATE, key)
            if value is None:
                raise KeyError(key)
            self._cache.put(key, value)
        return value

    def _exists(self, key: bytes) -> bool:
        try:
            self[key]
        except KeyError:
            return False
        return True

    def __setitem__(self, key: bytes, value: bytes) -> None:
        raise TypeError("a call worker's view of state is read-only")

    def __delitem__(self, key: bytes) -> None:
        raise TypeError("a call worker's view of state is read-only")


class _Channel:
    """The worker's end of the pipe. The node sends calls as they come, so an answer to a
    question may arrive behind calls queued after the one running: those wait here."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._queued: deque[tuple[Any, ...]] = deque()

    def ask(self, kind: str, arg: Any) -> Any:
        self._conn.send((kind, arg))
        while True:
            message = self._conn.recv()
            if message[0] == ANSWER:
                return message[1]
            self._queued.append(message)

    def next_call(self) -> tuple[Any, ...]:
        return self._queued.popleft() if self._queued else self._conn.recv()

    def send(self, outcome: tuple[Any, ...]) -> None:
        self._conn.send(outcome)


class _RemoteChain:
    """A `CallSource` in the worker: the node's state and headers, asked for when missing."""

    def __init__(self, channel: _Channel, fork: Fork, chain_id: int) -> None:
        self._channel = channel
        self.fork = fork
        self.chain_id = chain_id
        self._chain_context = ChainContext(chain_id)
        self._state = _RemoteState(self._ask)
        self._headers: dict[bytes, BlockHeaderAPI] = {}

    def _ask(self, kind: str, arg: Any) -> Any:
        return self._channel.ask(kind, arg)

    def _decode(self, raw: bytes | None) -> BlockHeaderAPI | None:
        return None if raw is None else self.fork.decode_header(raw)

    def header_by_hash(self, block_hash: bytes) -> BlockHeaderAPI | None:
        header = self._headers.get(block_hash)
        if header is None:
            header = self._decode(self._ask(HEADER, block_hash))
            if header is not None:
                if len(self._headers) >= 4096:
                    self._headers.clear()
                self._headers[block_hash] = header
        return header

    def header_by_number(self, number: int) -> BlockHeaderAPI | None:
        return self._decode(self._ask(NUMBER, number))  # not cached: a rewind changes it

    def head_header(self) -> BlockHeaderAPI:
        header = self._decode(self._ask(HEAD, None))
        assert header is not None
        return header

    def state_db(self) -> BaseDB:
        return self._state

    def evm_chaindb(self, overlay: StateOverlay) -> EvmChainDB:
        return EvmChainDB(overlay.db, self)

    def state_at(self, header: BlockHeaderAPI) -> StateAPI:
        overlay = StateOverlay(self._state)
        state: StateAPI = self.fork.vm_class.build_state(overlay.db, header, self._chain_context)
        return state


def _serve(
    conn: Connection, fork_name: str, chain_id: int, gas_cap: int, next_block: bool, parent: int
) -> None:
    """A worker's life: run each call sent, answer with its outcome, until the pipe closes."""
    die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the node's to handle
    fork = fork_named(fork_name)
    channel = _Channel(conn)
    runner = CallRunner(_RemoteChain(channel, fork, chain_id), gas_cap, next_block=next_block)
    headers: dict[bytes, BlockHeaderAPI] = {}  # decoded once: most calls ask for the head
    while True:
        try:
            kind, raw_header, params, timeout = channel.next_call()
        except (EOFError, OSError):
            return
        header = headers.get(raw_header)
        if header is None:
            if len(headers) >= 256:
                headers.clear()
            header = headers[raw_header] = fork.decode_header(raw_header)
        answer: tuple[Any, ...]
        try:
            if kind == CALL:
                answer = (DONE, runner.call(header, params, timeout=timeout).output)
            else:
                answer = (DONE, runner.estimate_gas(header, params, timeout=timeout))
        except TransactionReverted as exc:
            answer = (REVERTED, exc.data, str(exc))
        except ExecutionFailed as exc:
            answer = (FAILED, str(exc))
        except Exception as exc:  # reported to the caller as an internal error, worker lives
            answer = (CRASHED, f"{type(exc).__name__}: {exc}")
        channel.send(answer)


class WorkerGone(Exception):
    """The worker process ended while it held a call."""


_FRAME = struct.Struct("!i")  # multiprocessing.Connection's framing: length, then a pickle


class _Worker:
    """One worker process and the node's end of its pipe, served by the event loop: calls
    sent are run in order, its questions answered as they arrive, and each outcome settles
    the oldest waiting call and calls `on_free`."""

    def __init__(
        self,
        spec: tuple[str, int, int, bool],
        reader: ChainReader,
        on_free: Callable[[], None],
    ) -> None:
        self._reader = reader
        self._on_free = on_free
        self.reserved = 0  # places promised to callers that have not sent their call yet
        self._running_since = 0.0  # when the call it runs now started (as far as we know)
        self._state = reader.state_db()
        # spawn: the node process has threads, so forking it is unsafe
        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe()
        self.process = context.Process(
            target=_serve, args=(theirs, *spec, os.getpid()), name="cairn-call-worker", daemon=True
        )
        self.process.start()
        theirs.close()
        self._sock = socket.socket(fileno=os.dup(ours.fileno()))
        ours.close()
        self._waiting: deque[asyncio.Future[tuple[Any, ...]]] = deque()
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None
        log.info("eth_call worker started (pid %s)", self.process.pid)

    @property
    def load(self) -> int:
        return len(self._waiting)

    def room(self, now: float) -> int:
        """Calls it may be given now: none past PIPELINE, none behind a slow call."""
        taken = self.load + self.reserved
        if self.load and now - self._running_since > SLOW_CALL_SECONDS:
            return 0
        return max(0, PIPELINE - taken)

    async def connect(self) -> None:
        reader, self._writer = await asyncio.open_unix_connection(sock=self._sock)
        self._task = asyncio.create_task(self._serve(reader), name="call-worker-pipe")

    def _send(self, message: Any) -> None:
        assert self._writer is not None
        payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        self._writer.write(_FRAME.pack(len(payload)) + payload)

    async def run(self, request: tuple[str, bytes, CallParams, float]) -> tuple[Any, ...]:
        if self._task is None or self._task.done():
            raise WorkerGone(f"call worker {self.process.pid} stopped: its pipe is closed")
        loop = asyncio.get_running_loop()
        outcome: asyncio.Future[tuple[Any, ...]] = loop.create_future()
        if not self._waiting:
            self._running_since = loop.time()
        self._waiting.append(outcome)
        self._send(request)
        return await outcome  # cancelled, it stays queued: its outcome is read and dropped

    async def _serve(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                (size,) = _FRAME.unpack(await reader.readexactly(_FRAME.size))
                message = pickle.loads(await reader.readexactly(size))
                kind = message[0]
                if kind == STATE:
                    self._send((ANSWER, self._state.get(message[1])))
                elif kind == HEADER:
                    self._send((ANSWER, _encoded(self._reader.header_by_hash(message[1]))))
                elif kind == NUMBER:
                    self._send((ANSWER, _encoded(self._reader.header_by_number(message[1]))))
                elif kind == HEAD:
                    self._send((ANSWER, _encoded(self._reader.head_header())))
                else:
                    outcome = self._waiting.popleft()
                    if not outcome.done():
                        outcome.set_result(message)
                    self._running_since = asyncio.get_running_loop().time()
                    self._on_free()
        except (asyncio.IncompleteReadError, ConnectionError, OSError) as exc:
            gone = WorkerGone(f"call worker {self.process.pid} stopped: {exc or 'pipe closed'}")
            while self._waiting:
                outcome = self._waiting.popleft()
                if not outcome.done():
                    outcome.set_exception(gone)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._task is not None:
            await asyncio.wait([self._task], timeout=5)
        await asyncio.to_thread(self.process.join, 5)
        if self.process.is_alive():
            self.process.kill()
            await asyncio.to_thread(self.process.join)


def _encoded(header: BlockHeaderAPI | None) -> bytes | None:
    return None if header is None else rlp.encode(header)


class CallWorkers:
    """`count` worker processes running calls; each call goes to the first worker with room."""

    def __init__(
        self, reader: ChainReader, gas_cap: int, count: int, *, next_block: bool = True
    ) -> None:
        """`next_block`: as `CallRunner`'s."""
        self._reader = reader
        self._spec = (reader.fork.name, reader.chain_id, gas_cap, next_block)
        self._workers = [_Worker(self._spec, reader, self._pump) for _ in range(count)]
        self._raw_headers: dict[bytes, bytes] = {}
        # callers waiting for a place on a worker, oldest first; each gets the worker
        self._places: deque[asyncio.Future[_Worker]] = deque()

    async def start(self) -> None:
        for worker in self._workers:
            await worker.connect()

    async def call(
        self, header: BlockHeaderAPI, params: CallParams, *, evm_timeout: float = DEFAULT_TIMEOUT
    ) -> bytes:
        """`CallRunner.call`'s output (raises as it does), computed in a worker within
        `evm_timeout` seconds of execution."""
        output: bytes = await self._run(CALL, header, params, evm_timeout)
        return output

    async def estimate_gas(
        self, header: BlockHeaderAPI, params: CallParams, *, evm_timeout: float = DEFAULT_TIMEOUT
    ) -> int:
        """`CallRunner.estimate_gas`, computed in a worker."""
        gas: int = await self._run(ESTIMATE, header, params, evm_timeout)
        return gas

    def _raw(self, header: BlockHeaderAPI) -> bytes:
        raw = self._raw_headers.get(header.hash)
        if raw is None:
            if len(self._raw_headers) >= 256:
                self._raw_headers.clear()
            raw = self._raw_headers[header.hash] = rlp.encode(header)
        return raw

    async def _run(
        self, kind: str, header: BlockHeaderAPI, params: CallParams, evm_timeout: float
    ) -> Any:
        request = (kind, self._raw(header), params, evm_timeout)
        try:
            outcome = await self._on_a_worker(request)
        except WorkerGone:
            try:  # a call is read-only: it runs again, once, on a fresh worker
                outcome = await self._on_a_worker(request)
            except WorkerGone as again:
                raise ExecutionFailed("the call worker stopped twice running this call") from again
        if outcome[0] == DONE:
            return outcome[1]
        if outcome[0] == REVERTED:
            raise TransactionReverted(outcome[1], outcome[2])
        if outcome[0] == FAILED:
            raise ExecutionFailed(outcome[1])
        raise RuntimeError(f"call worker: {outcome[1]}")

    async def _on_a_worker(self, request: tuple[str, bytes, CallParams, float]) -> tuple[Any, ...]:
        place: asyncio.Future[_Worker] = asyncio.get_running_loop().create_future()
        self._places.append(place)
        self._pump()
        try:
            worker = await place
        except asyncio.CancelledError:
            if place.done() and not place.cancelled():  # given a place, gone before using it
                place.result().reserved -= 1
                self._pump()
            raise
        worker.reserved -= 1
        try:
            return await worker.run(request)
        except WorkerGone as exc:
            log.warning("%s; starting another", exc)
            await self._replace(worker)
            raise

    def _pump(self) -> None:
        """Give waiting callers places on the workers with the most room (up to PIPELINE
        each, none behind a slow call); callers that gave up are skipped, so their calls
        never reach a worker."""
        now = asyncio.get_running_loop().time()
        while self._places:
            worker = max(self._workers, key=lambda w: (w.room(now), -w.load))
            if worker.room(now) == 0:
                return  # room comes back only with an outcome, which pumps again
            place = self._places.popleft()
            if place.done():
                continue
            worker.reserved += 1
            place.set_result(worker)

    async def _replace(self, worker: _Worker) -> None:
        if worker not in self._workers:
            return  # another caller of the same dead worker replaced it already
        fresh = _Worker(self._spec, self._reader, self._pump)
        await fresh.connect()  # before it can be given calls
        if worker not in self._workers:  # replaced by another caller meanwhile
            await fresh.close()
            return
        self._workers[self._workers.index(worker)] = fresh
        self._pump()
        await worker.close()

    def pids(self) -> list[int]:
        """Process ids of the workers, in index order (for /metrics)."""
        return [w.process.pid for w in self._workers if w.process.pid is not None]

    async def close(self) -> None:
        for worker in self._workers:
            await worker.close()
