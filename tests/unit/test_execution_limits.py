"""Wall-clock and memory limits of execution on a real chain (LevelDB, py-evm): a call that
loops stops at its deadline with geth's message and leaves the runner usable; a struct log
stops at its byte budget, counting the memory it copies."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cairn.chain.chain import Chain
from cairn.errors import ExecutionFailed, ExecutionTimeout, go_duration
from cairn.execution.call import CallParams, CallRunner, check_deadline, execution_deadline
from cairn.execution.trace import (
    StructLogOptions,
    StructResult,
    TraceOptions,
    Tracer,
    TraceTooLarge,
)
from tests.support.chain import ADDRESSES, open_chain
from tests.support.hostile import SPIN, memory_then_spin

LOOP = CallParams(sender=ADDRESSES[0], data=bytes.fromhex(SPIN[2:]))
NOTHING = CallParams(sender=ADDRESSES[0], to=ADDRESSES[1])


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[Chain]:
    with open_chain(tmp_path) as opened:
        yield opened


def test_a_looping_call_stops_at_its_deadline(chain: Chain) -> None:
    runner = CallRunner(chain.reader, 50_000_000, timeout=0.3)
    for run in (
        lambda: runner.call(chain.head, LOOP),
        lambda: runner.estimate_gas(chain.head, LOOP),
    ):
        started = time.monotonic()
        with pytest.raises(ExecutionTimeout, match=r"^execution aborted \(timeout = 300ms\)$"):
            run()
        assert time.monotonic() - started < 3
    # the runner (and its warm state) serves the next call as if nothing happened
    assert runner.call(chain.head, NOTHING).output == b""
    assert runner.estimate_gas(chain.head, NOTHING) == 21_000


def test_an_explicit_timeout_wins_and_zero_is_none(chain: Chain) -> None:
    runner = CallRunner(chain.reader, 2_000_000, timeout=30)
    with pytest.raises(ExecutionTimeout, match=r"timeout = 200ms"):
        runner.call(chain.head, LOOP, timeout=0.2)
    # with no limit the loop ends when its 2M gas are spent
    with pytest.raises(ExecutionFailed, match="out of gas"):
        runner.call(chain.head, LOOP, timeout=0)


def test_deadlines_nest_and_the_earlier_one_holds() -> None:
    with execution_deadline(10):
        with execution_deadline(0.05):
            time.sleep(0.1)
            with pytest.raises(ExecutionTimeout, match="50ms"):
                check_deadline()
        check_deadline()  # back to the outer ten seconds
        with execution_deadline(60):
            check_deadline()
    check_deadline()  # none at all


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(5, "5s"), (1.5, "1.5s"), (0.5, "500ms"), (90, "1m30s"), (3600, "1h0m0s"), (0.001, "1ms")],
)
def test_durations_read_as_go_prints_them(seconds: float, text: str) -> None:
    assert go_duration(seconds) == text


def test_struct_log_memory_counts_against_its_budget(chain: Chain) -> None:
    """16 KiB of memory at every step: a 1 MB budget is spent within a few dozen steps."""
    calls = CallRunner(chain.reader, 50_000_000)
    tracer = Tracer(chain.reader, calls, max_bytes=1_000_000, max_seconds=30)
    hog = CallParams(
        sender=ADDRESSES[0], data=bytes.fromhex(memory_then_spin(16 * 1024)[2:]), gas=300_000
    )
    memory = TraceOptions(struct=StructLogOptions(enable_memory=True))
    with pytest.raises(TraceTooLarge, match="the struct log passed 1000000 bytes at step") as err:
        tracer.trace_call(chain.head, hog, memory)
    step = int(str(err.value).split("at step ")[1].split()[0])
    assert step < 40
    # the same trace without memory fits: it is the copies that were counted
    small = TraceOptions(struct=StructLogOptions(limit=2000))
    result = tracer.trace_call(chain.head, hog, small)
    assert isinstance(result, StructResult) and len(result.steps) == 2000


def test_a_trace_stops_at_its_own_timeout_and_at_the_cap(chain: Chain) -> None:
    calls = CallRunner(chain.reader, 50_000_000)
    capped = Tracer(chain.reader, calls, max_seconds=0.3)
    for tracer, options in (
        (capped, TraceOptions(struct=StructLogOptions(limit=1), timeout=3600)),
        (capped, TraceOptions(tracer="callTracer", timeout=3600)),
        (Tracer(chain.reader, calls), TraceOptions(tracer="callTracer", timeout=0.3)),
    ):
        started = time.monotonic()
        with pytest.raises(ExecutionFailed, match=r"^execution timeout$"):
            tracer.trace_call(chain.head, LOOP, options)
        assert time.monotonic() - started < 3
