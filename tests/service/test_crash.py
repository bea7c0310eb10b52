"""Crash test: worker processes SIGKILLed at random and a Postgres restart lose and repeat nothing.

300 executions of several state machines (Pass chains with Parameters/ResultPath, Waits of
1-3 s, an inline Map with MaxConcurrency, a Parallel whose branches wait), started in batches
over ~10 s, are run by three ``statewright worker --lanes 2`` processes while a killer SIGKILLs a
random worker every ~0.5 s and starts a new one at once (it picks among the workers that have
been deciding for a moment: importing a worker takes Python a second or more, and a process
killed before it decides anything tests nothing). In the middle the throwaway Postgres cluster
is stopped (``pg_ctl -m fast``), kept down 10 s and started again on the same port; the workers
must find it again by themselves. Afterwards every execution has SUCCEEDED with a gap- and
duplicate-free history equal to run_local's for the same definition and input (timestamps and
ARNs aside), every Wait was left exactly once (no timer fired twice), and no timer or inbox row
is left over. The counts (kills, events, seconds to recover, ...) are printed (``pytest -s``)
and are part of every assertion message, with the tail of the workers' logs.

Against an external server (``STATEWRIGHT_TEST_DATABASE_URL``) the Postgres restart is left out
(the test must not stop a server others may use) and, once the rest has passed, the test is
reported as skipped with that reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from service import control
from service.db.engine import create_engine
from service.db.migrate import upgrade
from statemachine import run_local
from statemachine.events import Event
from tests.postgres import CloneFactory, PostgresServer, TemplateFactory
from tests.service.test_store import _clean_details, _shape

JSON = Any
ROOT = Path(__file__).resolve().parents[2]

EXECUTIONS = 300
WORKERS = 3
LANES = 2
KILL_EVERY_S = (0.3, 0.7)  # ~0.5 s between kills
MIN_KILLS = 10  # fewer would not mean much
START_BATCH, START_EVERY_S = 30, 1.0  # 300 starts over ~10 s
MIN_UP_S = (0.1, 0.8)  # a worker decides at least this long (drawn per process) before a kill
POSTGRES_DOWN_S = 10.0  # the issue: Postgres unreachable for 10 s mid-run
DONE_DEADLINE_S = 120.0  # from the first start to every execution closed
RECOVERY_DEADLINE_S = 30.0  # from Postgres back to the first decision after it
LOG_TAIL_LINES = 25


def _pass(i: int, next_state: str | None, path: str = "$.n") -> dict[str, JSON]:
    state: dict[str, JSON] = {
        "Type": "Pass",
        "Parameters": {"step": i, "value.$": path},
        "ResultPath": f"$.p{i}",
    }
    if next_state is None:
        state["End"] = True
    else:
        state["Next"] = next_state
    return state


def _chain(prefix: str, count: int, then: str | None) -> dict[str, JSON]:
    """``count`` Pass states prefix0 -> prefix1 -> ... -> then."""
    names = [f"{prefix}{i}" for i in range(count)]
    return {name: _pass(i, names[i + 1] if i + 1 < count else then) for i, name in enumerate(names)}


# Ten Pass states: one decision.
PASS_CHAIN = {"StartAt": "P0", "States": _chain("P", 10, None)}

# Two Waits (SecondsPath 1-3 s, then 1 s) between Pass chains.
WAITS = {
    "StartAt": "A0",
    "States": {
        **_chain("A", 3, "Nap"),
        "Nap": {"Type": "Wait", "SecondsPath": "$.delay", "Next": "B0"},
        **_chain("B", 3, "Doze"),
        "Doze": {"Type": "Wait", "Seconds": 1, "Next": "Sum"},
        "Sum": {
            "Type": "Pass",
            "Parameters": {"sum.$": "States.MathAdd($.n, $.delay)", "tag.$": "$.tag"},
            "End": True,
        },
    },
}

# Wait 1 s, an inline Map (MaxConcurrency 2), a Parallel whose branches wait 2 s and 1 s.
FAN = {
    "StartAt": "Wait",
    "States": {
        "Wait": {"Type": "Wait", "Seconds": 1, "Next": "Fan"},
        "Fan": {
            "Type": "Map",
            "ItemsPath": "$.items",
            "MaxConcurrency": 2,
            "ItemProcessor": {
                "StartAt": "Double",
                "States": {
                    "Double": {
                        "Type": "Pass",
                        "Parameters": {"v.$": "States.MathAdd($, $)"},
                        "Next": "Label",
                    },
                    "Label": {
                        "Type": "Pass",
                        "Result": "doubled",
                        "ResultPath": "$.how",
                        "End": True,
                    },
                },
            },
            "ResultPath": "$.doubled",
            "Next": "Both",
        },
        "Both": {
            "Type": "Parallel",
            "Branches": [
                {
                    "StartAt": "PA",
                    "States": {
                        "PA": {"Type": "Pass", "Result": "a", "Next": "WA"},
                        "WA": {"Type": "Wait", "Seconds": 2, "End": True},
                    },
                },
                {
                    "StartAt": "PB",
                    "States": {
                        "PB": {"Type": "Pass", "Parameters": {"n.$": "$.n"}, "Next": "WB"},
                        "WB": {"Type": "Wait", "Seconds": 1, "End": True},
                    },
                },
            ],
            "ResultPath": "$.branches",
            "Next": "Done",
        },
        "Done": _pass(0, None, "$.branches"),
    },
}

# Pass chain, Map (MaxConcurrency 3), Parallel (one branch waits $.delay), Wait 1 s, Pass chain.
MIXED = {
    "StartAt": "C0",
    "States": {
        **_chain("C", 3, "Fan"),
        "Fan": {
            "Type": "Map",
            "ItemsPath": "$.items",
            "MaxConcurrency": 3,
            "ItemProcessor": {
                "StartAt": "Wrap",
                "States": {"Wrap": {"Type": "Pass", "Parameters": {"i.$": "$"}, "End": True}},
            },
            "ResultPath": "$.wrapped",
            "Next": "Both",
        },
        "Both": {
            "Type": "Parallel",
            "Branches": [
                {
                    "StartAt": "Slow",
                    "States": {
                        "Slow": {"Type": "Pass", "Next": "Sleep"},
                        "Sleep": {"Type": "Wait", "SecondsPath": "$.delay", "End": True},
                    },
                },
                {
                    "StartAt": "Fast",
                    "States": {"Fast": {"Type": "Pass", "InputPath": "$.tag", "End": True}},
                },
            ],
            "ResultSelector": {"fast.$": "$[1]", "count.$": "States.ArrayLength($)"},
            "ResultPath": "$.tag2",
            "Next": "Rest",
        },
        "Rest": {"Type": "Wait", "Seconds": 1, "Next": "D0"},
        **_chain("D", 4, None),
    },
}

MACHINES: dict[str, dict[str, JSON]] = {
    "crash_chain": PASS_CHAIN,
    "crash_waits": WAITS,
    "crash_fan": FAN,
    "crash_mixed": MIXED,
}


def _input(i: int) -> dict[str, JSON]:
    return {"n": i, "tag": f"t{i % 7}", "delay": 1 + i % 3, "items": list(range(i % 5))}


def _build_schema(url: str) -> None:
    upgrade(url)


@pytest.fixture(scope="session")
def crash_schema_template(postgres_template_factory: TemplateFactory) -> str:
    return postgres_template_factory("crash", _build_schema)


# --- the worker processes --------------------------------------------------------------------


@dataclass
class Workers:
    """``slots`` slots, each running one ``statewright worker`` process at a time.

    ``env`` adds variables to every worker's environment, ``slot_env`` to one slot's (e.g. a
    skewed clock that the slot's replacements keep too).
    """

    url: str
    log_dir: Path
    rng: random.Random = field(default_factory=random.Random)
    slots: int = WORKERS
    lanes: int = LANES
    env: dict[str, str] = field(default_factory=dict)
    slot_env: dict[int, dict[str, str]] = field(default_factory=dict)
    procs: list[subprocess.Popen[bytes] | None] = field(init=False)
    offsets: list[int] = field(init=False)  # where each log begins
    spawned_at: list[float] = field(init=False)
    up_since: list[float | None] = field(init=False)
    min_up: list[float] = field(init=False)
    startup_s: list[float] = field(default_factory=list)  # spawn to "worker started" (at ticks)
    spawned: int = 0
    kills: int = 0
    unexpected_exits: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.procs = [None] * self.slots
        self.offsets = [0] * self.slots
        self.spawned_at = [0.0] * self.slots
        self.up_since = [None] * self.slots
        self.min_up = [0.0] * self.slots

    def log(self, slot: int) -> Path:
        return self.log_dir / f"worker-{slot}.log"

    def spawn(self, slot: int) -> None:
        self.spawned += 1
        with self.log(slot).open("ab") as out:  # the child keeps its own descriptor
            stamp = datetime.now(UTC).strftime("%H:%M:%S.%f")[:-3]
            out.write(f"=== {stamp} process #{self.spawned} in slot {slot} ===\n".encode())
            out.flush()
            self.offsets[slot] = out.tell()
            self.spawned_at[slot] = time.monotonic()
            self.up_since[slot] = None
            self.min_up[slot] = self.rng.uniform(*MIN_UP_S)
            self.procs[slot] = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "service.cli",
                    "worker",
                    "--database-url",
                    self.url,
                    "--lanes",
                    str(self.lanes),
                ],
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={
                    **os.environ,
                    "PYTHONUNBUFFERED": "1",
                    **self.env,
                    **self.slot_env.get(slot, {}),
                },
            )

    def start_all(self) -> None:
        for slot in range(self.slots):
            self.spawn(slot)

    def killable(self) -> list[int]:
        """Slots whose process has been deciding a little while (its own random MIN_UP_S).

        Python takes a second or more (several on a loaded machine) to import the worker: a
        process killed before it decides anything tests nothing and starves the executions.
        """
        now = time.monotonic()
        ready = []
        for slot, proc in enumerate(self.procs):
            if proc is None or proc.poll() is not None:
                continue
            if self.up_since[slot] is None:
                with self.log(slot).open("rb") as log:
                    log.seek(self.offsets[slot])
                    if b"worker started" not in log.read():
                        continue
                self.up_since[slot] = now
                self.startup_s.append(now - self.spawned_at[slot])
            up_since = self.up_since[slot]
            if up_since is not None and now - up_since >= self.min_up[slot]:
                ready.append(slot)
        return ready

    def reap_exited(self) -> None:
        """A worker that exited by itself (it must retry, not die): note it, start another."""
        for slot, proc in enumerate(self.procs):
            if proc is not None and proc.poll() is not None:
                self.unexpected_exits.append(f"slot {slot} pid {proc.pid} exit {proc.returncode}")
                self.spawn(slot)

    def kill_and_replace(self, slot: int) -> None:
        proc = self.procs[slot]
        assert proc is not None
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            self.kills += 1
        else:
            self.unexpected_exits.append(f"slot {slot} pid {proc.pid} exit {proc.returncode}")
        self.spawn(slot)

    def kill_all(self) -> None:
        for proc in self.procs:
            if proc is not None and proc.poll() is None:
                with contextlib.suppress(OSError):
                    proc.send_signal(signal.SIGKILL)
        for proc in self.procs:
            if proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=10)

    def tails(self) -> str:
        parts = []
        for slot in range(self.slots):
            path = self.log(slot)
            lines = path.read_text(errors="replace").splitlines() if path.exists() else []
            parts.append(f"--- {path.name} (last {LOG_TAIL_LINES} lines) ---")
            parts.extend(lines[-LOG_TAIL_LINES:])
        return "\n".join(parts)

    def tracebacks(self) -> int:
        return sum(
            self.log(slot).read_text(errors="replace").count("Traceback")
            for slot in range(self.slots)
            if self.log(slot).exists()
        )


def _worker_pids(url: str) -> list[int]:
    """Processes still running ``service.cli worker`` on this test's database."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"service.cli" in argv and b"worker" in argv and url.encode() in argv:
            found.append(int(proc.name))
    return found


# --- database probes (a probe during the outage just answers None) ----------------------------


async def _scalar(engine: Any, sql: str, **params: Any) -> Any:
    try:
        async with engine.connect() as conn:
            return (await conn.execute(sa.text(sql), params)).scalar()
    except Exception:  # Postgres is down or restarting: the caller polls again
        return None


async def _running(engine: Any) -> int | None:
    return await _scalar(engine, "SELECT count(*) FROM executions WHERE status = 'RUNNING'")


async def _poll(probe: Any, ready: Any, deadline: float, interval: float = 0.1) -> Any:
    """Call ``probe()`` until ``ready(value)`` or the deadline; returns the last value."""
    while True:
        value = await probe()
        if ready(value) or time.monotonic() > deadline:
            return value
        await asyncio.sleep(interval)


async def _sample_progress(engine: Any, since: float, out: list[str]) -> None:
    """Once a second: executions running, those due for a decision now, events so far."""
    while True:
        row = None
        try:
            async with engine.connect() as conn:
                row = (
                    await conn.execute(
                        sa.text(
                            "SELECT count(*) FILTER (WHERE status = 'RUNNING'),"
                            " count(*) FILTER (WHERE wake_at <= clock_timestamp()),"
                            " (SELECT count(*) FROM events) FROM executions"
                        )
                    )
                ).one()
        except Exception:  # Postgres is down
            pass
        sample = "down" if row is None else f"{row[0]}/{row[1]}/{row[2]}"
        out.append(f"{time.monotonic() - since:.0f}s:{sample}")
        await asyncio.sleep(1.0)


def _id_of(started: Any) -> str:
    # control.start_execution returns the execution id (or, in newer versions, its summary).
    return started if isinstance(started, str) else str(started.id)


# --- checks ----------------------------------------------------------------------------------


def _wait_exits_per_entry(history: list[Event]) -> list[str]:
    """Every WaitStateEntered is followed by exactly one WaitStateExited (a timer fires once)."""
    problems = []
    for entered in (e for e in history if e.type == "WaitStateEntered"):
        exits = [
            e for e in history if e.type == "WaitStateExited" and e.previous_event_id == entered.id
        ]
        if len(exits) != 1:
            problems.append(
                f"WaitStateEntered #{entered.id} ({entered.details.get('name')}) "
                f"has {len(exits)} WaitStateExited"
            )
    return problems


def _first_difference(got: list[tuple[Any, ...]], want: list[tuple[Any, ...]]) -> str:
    for index, (a, b) in enumerate(zip(got, want, strict=False)):
        if a != b:
            return f"event #{index + 1}: service {a!r} != run_local {b!r}"
    return f"lengths differ: service {len(got)} events, run_local {len(want)}"


@dataclass
class Started:
    id: str
    machine: str
    input: JSON


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_killed_workers_and_a_postgres_restart_lose_and_repeat_nothing(
    postgres_server: PostgresServer,
    postgres_clone: CloneFactory,
    crash_schema_template: str,
    tmp_path: Path,
) -> None:
    url = postgres_clone(crash_schema_template)
    restart_skipped = (
        None
        if postgres_server.managed
        else "the Postgres restart part needs the throwaway cluster; "
        "STATEWRIGHT_TEST_DATABASE_URL names an external server, which this test must not stop"
    )
    seed = int(time.time())
    rng = random.Random(seed)
    workers = Workers(url, tmp_path, rng=random.Random(seed + 1))
    stats: dict[str, Any] = {"seed": seed, "postgres_restarts": 0}
    began = time.monotonic()
    progress: list[str] = []  # seconds:running/due/events, once a second
    server_log = postgres_server.log_path() if postgres_server.managed else None
    server_log_offset = server_log.stat().st_size if server_log is not None else 0

    async def killer() -> None:
        while True:
            await asyncio.sleep(rng.uniform(*KILL_EVERY_S))
            workers.reap_exited()
            ready = workers.killable()
            # Kill only while another worker decides: on a loaded machine a new worker takes
            # many seconds to import, and killing the last one up would only stop all work.
            if len(ready) >= 2:
                workers.kill_and_replace(rng.choice(ready))

    async def restart_postgres(engine: Any) -> None:
        running = await _running(engine)
        stats["running_at_restart"] = running
        await asyncio.to_thread(postgres_server.stop)
        down = time.monotonic()
        await asyncio.sleep(POSTGRES_DOWN_S)  # the outage itself, not a wait for a result
        back_wall = datetime.now(UTC)
        await asyncio.to_thread(postgres_server.start)
        up = time.monotonic()
        stats["postgres_start_s"] = round((datetime.now(UTC) - back_wall).total_seconds(), 2)
        stats["postgres_restarts"] += 1
        stats["postgres_down_s"] = round(up - down, 2)
        # The first decision after the restart: its events carry the database's clock (this
        # machine's clock) taken when the decision began; it commits right after.
        first = await _poll(
            lambda: _scalar(
                engine, "SELECT min(timestamp) FROM events WHERE timestamp >= :t", t=back_wall
            ),
            lambda value: value is not None,
            time.monotonic() + RECOVERY_DEADLINE_S,
            interval=0.02,
        )
        assert first is not None, (
            f"no decision within {RECOVERY_DEADLINE_S} s after Postgres came back "
            f"({running} executions running)\n{workers.tails()}"
        )
        stats["recovery_s"] = round((first - back_wall).total_seconds(), 2)

    async def scenario() -> tuple[list[Started], dict[str, list[Event]], dict[str, Any]]:
        engine = create_engine(url)
        kill_task: asyncio.Task[None] | None = None
        sampler: asyncio.Task[None] | None = None
        try:
            for name, definition in MACHINES.items():
                await control.create_state_machine(engine, name, definition)
            names = list(MACHINES)
            workers.start_all()
            first_start = time.monotonic()
            kill_task = asyncio.create_task(killer())
            sampler = asyncio.create_task(_sample_progress(engine, first_start, progress))
            # Starts arrive in batches while the workers run and die: the run lasts long enough
            # for a few dozen kills, with executions at every stage when they happen.
            # A fast machine runs the first EXECUTIONS before enough workers died (a new one
            # takes seconds to import): more batches follow until MIN_KILLS, at most as many.
            started = []
            i = 0
            while i < EXECUTIONS or (workers.kills < MIN_KILLS and i < 2 * EXECUTIONS):
                if i % START_BATCH == 0:
                    batch_at = first_start + (i // START_BATCH) * START_EVERY_S
                    await asyncio.sleep(max(0.0, batch_at - time.monotonic()))
                machine = names[i % len(names)]
                data = _input(i)
                started.append(
                    Started(
                        _id_of(await control.start_execution(engine, machine, data)), machine, data
                    )
                )
                i += 1
            stats["start_s"] = round(time.monotonic() - first_start, 2)
            if restart_skipped is None:
                # In the middle: all started, a third closed, the others in flight.
                await _poll(
                    lambda: _running(engine),
                    lambda value: value is not None and value <= EXECUTIONS * 2 // 3,
                    first_start + DONE_DEADLINE_S / 2,
                )
                await restart_postgres(engine)
            left = await _poll(
                lambda: _running(engine),
                lambda value: value == 0,
                first_start + DONE_DEADLINE_S,
                interval=0.2,
            )
            stats["run_s"] = round(time.monotonic() - first_start, 2)
            kill_task.cancel()
            sampler.cancel()
            stats["progress"] = " ".join(progress)
            workers.reap_exited()  # a worker that died by itself near the end
            workers.kill_all()
            assert left == 0, (
                f"{left} of {len(started)} executions still RUNNING after {DONE_DEADLINE_S} s "
                f"({stats}, kills {workers.kills})\n{workers.tails()}"
            )
            histories = {s.id: await control.history(engine, s.id) for s in started}
            summaries = {s.id: await control.describe_execution(engine, s.id) for s in started}
            leftovers = {
                table: await _scalar(engine, f"SELECT count(*) FROM {table}")
                for table in ("timers", "inbox")
            }
            return started, histories, {"summaries": summaries, "leftovers": leftovers}
        finally:
            for task in (kill_task, sampler):
                if task is not None:
                    task.cancel()
            try:
                workers.kill_all()
                if postgres_server.managed:
                    await asyncio.to_thread(postgres_server.start)  # up again, also after failures
            finally:
                await engine.dispose()

    try:
        started, histories, extra = asyncio.run(scenario())
    finally:
        with contextlib.suppress(Exception):
            workers.kill_all()
        orphans = _worker_pids(url)  # whatever went wrong above, no worker outlives the test
        for pid in orphans:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
    assert not orphans, f"worker processes left running: {orphans}"

    problems: list[str] = []
    events = transitions = waits = 0
    expected_cache: dict[tuple[str, str], Any] = {}
    for s in started:
        history = histories[s.id]
        summary = extra["summaries"][s.id]
        key = (s.machine, json.dumps(s.input, sort_keys=True))
        if key not in expected_cache:
            expected_cache[key] = run_local(MACHINES[s.machine], s.input)
        expected = expected_cache[key]
        events += len(history)
        transitions += sum(1 for e in history if e.type.endswith("StateEntered"))
        waits += sum(1 for e in history if e.type == "WaitStateEntered")
        where = f"execution {s.id} ({s.machine}, input {json.dumps(s.input)})"
        if summary.status != "SUCCEEDED":
            problems.append(f"{where}: {summary.status} {summary.error}: {summary.cause}")
            continue
        ids = [e.id for e in history]
        if ids != list(range(1, len(history) + 1)):
            problems.append(f"{where}: event ids are not 1..{len(history)}: {ids}")
        got, want = _shape(_clean_details(history)), _shape(_clean_details(expected.events))
        if got != want:
            problems.append(
                f"{where}: history differs from run_local: {_first_difference(got, want)}"
            )
        if summary.output != expected.output:
            problems.append(f"{where}: output {summary.output!r} != run_local {expected.output!r}")
        if summary.events != len(history):
            problems.append(f"{where}: version {summary.events} but {len(history)} events")
        problems += [f"{where}: {p}" for p in _wait_exits_per_entry(history)]
    for table, count in extra["leftovers"].items():
        if count != 0:
            problems.append(f"{count} row(s) left in {table}")
    if workers.unexpected_exits:
        problems.append(f"workers exited by themselves: {workers.unexpected_exits}")

    if server_log is not None:
        with server_log.open("rb") as log:
            log.seek(server_log_offset)
            text = log.read().decode(errors="replace")
        # A worker killed inside a transaction (a decision, or a lane's wake-up read): the
        # server rolls it back and says so.
        stats["open_transactions_killed"] = text.count(
            "unexpected EOF on client connection with an open transaction"
        )
    stats.update(
        executions=len(started),
        events=events,
        transitions=transitions,
        waits=waits,
        kills=workers.kills,
        worker_processes=workers.spawned,
        worker_startup_median_s=round(statistics.median(workers.startup_s or [0.0]), 2),
        worker_tracebacks=workers.tracebacks(),
        total_s=round(time.monotonic() - began, 2),
    )
    if restart_skipped is not None:
        stats["postgres_restart"] = f"skipped: {restart_skipped}"
    print(f"\ncrash test: {json.dumps(stats)}")
    assert not problems, (
        f"{len(problems)} problem(s) ({stats}):\n"
        + "\n".join(problems[:20])
        + f"\n{workers.tails()}"
    )
    assert stats["postgres_restarts"] == (0 if restart_skipped else 1), stats
    if restart_skipped is None:
        assert stats["running_at_restart"], f"the restart did not hit executions in flight: {stats}"
    assert workers.kills >= MIN_KILLS, f"too few kills to mean anything: {stats}"
    if restart_skipped is not None:
        pytest.skip(
            f"{restart_skipped} (the rest passed: {len(started)} executions, {workers.kills} kills)"
        )
