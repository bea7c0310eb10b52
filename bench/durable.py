"""Durable Statewright on Postgres: throughput, latency, memory and cost curves beside baselines.

Run from the repository root:

    python bench/durable.py [--database-url URL] [--quick] [--no-fsync]

Without ``--database-url`` a throwaway Postgres cluster is started the way the test suite
does (``tests/postgres.py``: local binaries, as the ``postgres`` OS user when run as root)
and deleted at the end; it flushes commits to disk as a production server does
(``fsync=on``, ``full_page_writes=on``: the goals were set against such a server), and
``--no-fsync`` turns both off to see CPU-bound upper bounds.
With a URL, the script creates its own databases on that server (``swbench_*``; the role
needs CREATEDB) and drops them at the end. Every database the script uses is set to
``synchronous_commit = on`` (``--synchronous-commit off`` to change), so the baseline and
Statewright commit the same way; the settings in force are printed first.

Sections, all in one run (each Statewright section gets a fresh database and fresh
``python -m service.cli worker`` processes, which are killed at the end in any case):

(a) baseline, pgbench style, asyncpg: one ~300-byte INSERT per transaction (autocommit)
    with 1, 2, 4 and 8 clients (transactions/s), and a 10-row INSERT per transaction
    (rows/s); medians of repetitions;
(b) Statewright: N executions of a 20-state Pass chain, 1 and 2 worker processes of 2 lanes
    (``--lanes 1,2`` also runs processes of 1 lane);
    transitions/s (StateEntered events) from the first start to the last SUCCEEDED, and the
    ratio to the single-insert baseline at the same concurrency (lanes = clients);
(c) DBOS (if installed): 10-step workflows in a child process, sequential and with 4
    threads, on its own database of the same server; steps/s and Statewright's ratio;
(d) latency of a 10-state Pass chain with one worker: start_execution's commit to the
    SUCCEEDED commit (a NOTIFY from a trigger the benchmark adds to its own database);
(e) RSS of one worker idle, and with N executions parked in a Wait of an hour;
(f) time of one more decision against history length (~20, 2,000, 20,000 events): cold (a
    fresh worker folds the whole history) and warm (incremental fold); and Map time against
    item count (inline 100 and 1,000; distributed 100, 1,000 and 10,000).

Goals are printed beside the figures with MET / NOT MET. The machine is shared and has few
cores: compare ratios measured in the same run, not single figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

if TYPE_CHECKING:
    import asyncpg
    from sqlalchemy.ext.asyncio import AsyncEngine

    from tests.postgres import PostgresServer

from common import (  # noqa: E402
    median,
    notify_trigger,
    pass_chain,
    percentile,
    postgres,
    report_profile,
    say,
    verdict,
)

JSON = Any
GOAL_BASELINE_RATIO = 2.0  # Statewright transitions/s ÷ single-insert transactions/s
GOAL_DBOS_RATIO = 20.0  # Statewright transitions/s ÷ DBOS steps/s
GOAL_P50_MS = 10.0
GOAL_P99_MS = 50.0
GOAL_RSS_RATIO = 1.2  # parked RSS ÷ idle RSS
FLAT_FACTOR = 1.5  # warm decision at the longest history ÷ at the shortest
LINEAR_FACTOR = 1.5  # Map time per item at the largest size ÷ at the size 10x smaller
NOTIFY_CHANNEL = "swbench_done"
ROW_BODY = "x" * 256  # with the 36-char id, a seq and a timestamp: ~300 bytes a row


@dataclass(frozen=True)
class Sizes:
    """How big each section is (``--quick`` shrinks them)."""

    baseline_seconds: float
    baseline_reps: int
    throughput_executions: int
    throughput_reps: int
    dbos_workflows: int
    latency_executions: int
    parked: int
    history_targets: tuple[int, ...]
    history_replicas: int
    warm_triggers: int
    inline_map: tuple[int, ...]
    distributed_map: tuple[int, ...]
    map_reps: int


FULL = Sizes(1.0, 3, 300, 3, 200, 200, 10_000, (20, 2_000, 20_000), 3, 5, (100, 1_000), (100, 1_000, 10_000), 3)  # fmt: skip
QUICK = Sizes(0.5, 2, 100, 1, 50, 50, 2_000, (20, 2_000, 20_000), 2, 3, (100, 1_000), (100, 1_000, 10_000), 1)  # fmt: skip


# ---------------------------------------------------------------------------- definitions


CHAIN_INPUT = {"value": "hello", "last": {"step": 0, "n": 0}}

PARKED = {
    "StartAt": "Park",
    "States": {
        "Park": {"Type": "Wait", "Seconds": 3600, "Next": "Done"},
        "Done": {"Type": "Succeed"},
    },
}

# Count to $.n with Pass -> Choice (4 events a round), then wait on a task result forever:
# each result the benchmark sends is one decision (TaskSucceeded ... TaskScheduled, 6 events).
LOOP = {
    "StartAt": "Init",
    "States": {
        "Init": {"Type": "Pass", "Result": {"i": 0}, "ResultPath": "$.c", "Next": "Loop"},
        "Loop": {
            "Type": "Pass",
            "Parameters": {"i.$": "States.MathAdd($.c.i, 1)"},
            "ResultPath": "$.c",
            "Next": "Check",
        },
        "Check": {
            "Type": "Choice",
            "Choices": [
                {"Variable": "$.c.i", "NumericLessThanPath": "$.n", "Next": "Loop"},
                {"Variable": "$.stop", "IsPresent": True, "Next": "Done"},  # never: an End
            ],
            "Default": "Park",
        },
        "Done": {"Type": "Succeed"},
        "Park": {
            "Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {"FunctionName": "noop"},
            "ResultPath": "$.r",
            "Next": "Again",
        },
        "Again": {"Type": "Pass", "Next": "Park"},
    },
}
LOOP_FIXED_EVENTS = 5  # ExecutionStarted, Init (2), TaskStateEntered, TaskScheduled


def map_definition(mode: str) -> dict[str, JSON]:
    processor: dict[str, JSON] = {
        "ProcessorConfig": {"Mode": mode},
        "StartAt": "Item",
        "States": {"Item": {"Type": "Pass", "End": True}},
    }
    if mode == "DISTRIBUTED":
        processor["ProcessorConfig"]["ExecutionType"] = "STANDARD"
    return {
        "StartAt": "Fan",
        "States": {
            "Fan": {
                "Type": "Map",
                "ItemsPath": "$.items",
                "MaxConcurrency": 0,
                "ItemProcessor": processor,
                "ResultPath": None,
                "End": True,
            }
        },
    }


# ---------------------------------------------------------------------------- the server


NOTIFY_TRIGGER = notify_trigger(NOTIFY_CHANNEL)


@dataclass
class Bench:
    """Databases, worker processes and settings of one run; everything is undone by close()."""

    server: PostgresServer
    sync_commit: str
    sizes: Sizes
    logs: Path
    token: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    databases: list[str] = field(default_factory=list)
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    template: str | None = None
    profile: Path | None = None  # py-spy output directory (--py-spy)
    profilers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    lanes: list[int] = field(default_factory=lambda: [2])  # per worker process in (b)

    async def database(self, kind: str, *, migrated: bool = True, notify: bool = False) -> str:
        """A fresh database (schema migrated, unless not wanted); returns its name."""
        from service.db.migrate import upgrade

        if migrated and self.template is None:
            self.template = await self.database("template", migrated=False)
            await asyncio.to_thread(upgrade, self.server.url(self.template))
            await asyncio.to_thread(self.server.mark_template, self.template)
        name = f"swbench_{self.token}_{kind}"
        self.databases.append(name)
        template = self.template if migrated and self.template else "template0"
        await asyncio.to_thread(self.server.create_database, name, template)
        await asyncio.to_thread(
            self.server.execute,
            f"ALTER DATABASE {name} SET synchronous_commit = {self.sync_commit}",
        )
        if notify:
            conn = await self.connect(name)
            try:
                await conn.execute(NOTIFY_TRIGGER)
            finally:
                await conn.close()
        return name

    async def connect(self, database: str) -> asyncpg.Connection:
        import asyncpg

        return await asyncpg.connect(self.server.dsn(database), timeout=30)

    def engine(self, database: str, pool: int = 5) -> AsyncEngine:
        from service.db.engine import create_engine

        return create_engine(self.server.url(database), pool_size=pool)

    def spawn_worker(self, database: str, lanes: int = 2) -> subprocess.Popen[bytes]:
        log = self.logs / f"worker-{len(self.workers) + 1}-{database}.log"
        command = [sys.executable, "-m", "service.cli", "worker"]
        command += ["--database-url", self.server.url(database), "--lanes", str(lanes)]
        with log.open("wb") as out:
            process = subprocess.Popen(
                command,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                start_new_session=True,  # Ctrl-C reaches the benchmark, which stops the workers
            )
        self.workers.append(process)
        return process

    def check_workers(self) -> None:
        for process in self.workers:
            if process.returncode is None and process.poll() is not None:
                raise RuntimeError(
                    f"worker {process.pid} exited ({process.returncode}); see {self.logs}"
                )

    @staticmethod
    def stop_worker(process: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
        if process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    async def workers_ready(self, database: str, count: int, timeout: float = 60.0) -> None:
        """Wait until ``count`` workers LISTEN on ``database`` (their imports are done)."""
        conn = await self.connect(database)
        try:
            deadline = time.monotonic() + timeout
            query = (
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND query LIKE 'LISTEN%'"
            )
            while await conn.fetchval(query, database) < count:
                self.check_workers()
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"{count} worker(s) not ready after {timeout} s; see {self.logs}"
                    )
                await asyncio.sleep(0.05)
        finally:
            await conn.close()

    def start_profiler(self, worker: subprocess.Popen[bytes], label: str) -> Path | None:
        """``py-spy record`` the worker until stop_profilers() (with --py-spy DIR)."""
        if self.profile is None:
            return None
        spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        out = self.profile / f"{label}-{worker.pid}.txt"
        command = [spy, "record", "--pid", str(worker.pid), "--format", "raw", "--rate", "250"]
        command += ["--nonblocking", "--output", str(out)]
        self.profilers.append(
            subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        )
        return out

    def stop_profilers(self) -> None:
        for spy in self.profilers:
            if spy.poll() is None:
                spy.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        for spy in self.profilers:
            try:
                spy.wait(30)
            except subprocess.TimeoutExpired:
                spy.kill()
        self.profilers.clear()

    def close(self) -> None:
        self.stop_profilers()
        for process in self.workers:
            with contextlib.suppress(Exception):
                self.stop_worker(process, timeout=10)
        for process in self.workers:  # anything left (never expected)
            if process.poll() is None:
                process.kill()
        for name in reversed(self.databases):
            with contextlib.suppress(Exception):
                self.server.drop_database(name)


async def create_machine(engine: AsyncEngine, name: str, definition: dict[str, JSON]) -> None:
    from service import control

    await control.create_state_machine(engine, name, definition)


async def start_many(
    engine: AsyncEngine,
    machine: str,
    inputs: list[JSON],
    concurrency: int = 4,
    names: list[str] | None = None,
) -> list[str]:
    """Start executions through service.control with a few concurrent starters."""
    from service import control

    ids: list[str] = [""] * len(inputs)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(len(inputs)):
        queue.put_nowait(i)

    async def starter() -> None:
        while not queue.empty():
            i = queue.get_nowait()
            name = names[i] if names else None
            started = await control.start_execution(engine, machine, inputs[i], name=name)
            ids[i] = started if isinstance(started, str) else started.id

    await asyncio.gather(*(starter() for _ in range(concurrency)))
    return ids


async def wait_until(
    check: Callable[[], Awaitable[bool]],
    timeout: float,
    what: str,
    bench: Bench,
    pause: float = 0.02,
) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        bench.check_workers()
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(pause)


async def warm_up(bench: Bench, database: str, engine: AsyncEngine, count: int = 4) -> None:
    """Run a few short executions to completion (imports, pools and caches warm)."""
    await create_machine(engine, "warmup", pass_chain(3))
    ids = await start_many(engine, "warmup", [CHAIN_INPUT] * count)
    conn = await bench.connect(database)
    try:

        async def done() -> bool:
            query = "SELECT count(*) FROM executions WHERE id = ANY($1) AND status = 'SUCCEEDED'"
            return bool(await conn.fetchval(query, ids) == count)

        await wait_until(done, 60, "the warm-up executions", bench)
    finally:
        await conn.close()


Predicate = Callable[[str, int], bool]  # (status, version) -> wanted


class Notifications:
    """Commit notifications from the trigger: (execution name, status, version) at arrival.

    A notification is delivered when its transaction commits, so the time between two of them
    on one connection is the time between the two commits (delivery delays cancel out).
    """

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self.waiters: dict[str, list[tuple[Predicate, asyncio.Future[float]]]] = {}

    @classmethod
    @contextlib.asynccontextmanager
    async def listen(cls, bench: Bench, database: str) -> AsyncIterator[Notifications]:
        conn = await bench.connect(database)
        self = cls(conn)
        await conn.add_listener(NOTIFY_CHANNEL, self._arrived)
        try:
            yield self
        finally:
            await conn.close()

    def _arrived(self, conn: object, pid: int, channel: str, payload: str) -> None:
        at = time.perf_counter()
        name, status, version = payload.split(" ")
        waiting = self.waiters.get(name, [])
        for predicate, future in list(waiting):
            if not future.done() and predicate(status, int(version)):
                future.set_result(at)
                waiting.remove((predicate, future))

    def expect(self, name: str, predicate: Predicate) -> asyncio.Future[float]:
        """A future set to the arrival time of the first notification matching ``predicate``."""
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.waiters.setdefault(name, []).append((predicate, future))
        return future

    def started(self, name: str) -> asyncio.Future[float]:
        """The start's commit (the execution row's INSERT)."""
        return self.expect(name, lambda status, version: version == 0)

    def closed(self, name: str) -> asyncio.Future[float]:
        """The commit that ends the execution."""
        return self.expect(name, lambda status, _version: status != "RUNNING")


def read_rss_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process, in KiB."""
    values: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0])
    return values["VmRSS"], values["VmHWM"]


# ---------------------------------------------------------------------------- (a) baseline


BASELINE_TABLE = """
CREATE TABLE bench_events (
  id bigserial PRIMARY KEY,
  execution_id text NOT NULL,
  seq integer NOT NULL,
  body text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
)
"""


async def insert_rate(
    bench: Bench, database: str, clients: int, rows: int, seconds: float, sync: str | None = None
) -> float:
    """Rows/s inserted by ``clients`` connections, ``rows`` rows per transaction."""
    conns = [await bench.connect(database) for _ in range(clients)]
    try:
        await conns[0].execute("TRUNCATE bench_events")
        if sync is not None:
            for conn in conns:
                await conn.execute(f"SET synchronous_commit = {sync}")
        execution_id = str(uuid.uuid4())
        single = "INSERT INTO bench_events (execution_id, seq, body) VALUES ($1, $2, $3)"
        batch = (
            "INSERT INTO bench_events (execution_id, seq, body) "
            "SELECT * FROM unnest($1::text[], $2::int[], $3::text[])"
        )
        counts = [0] * clients
        deadline = 0.0

        async def client(i: int, conn: asyncpg.Connection) -> None:
            n = 0
            while time.perf_counter() < deadline:
                if rows == 1:
                    await conn.execute(single, execution_id, n, ROW_BODY)
                else:
                    seqs = list(range(n, n + rows))
                    await conn.execute(batch, [execution_id] * rows, seqs, [ROW_BODY] * rows)
                n += rows
            counts[i] = n

        for conn in conns:  # prepare the statements before the clock starts
            await conn.execute(single, execution_id, -1, ROW_BODY)
            await conn.execute(batch, [execution_id], [-1], [ROW_BODY])
        start = time.perf_counter()
        deadline = start + seconds
        await asyncio.gather(*(client(i, conn) for i, conn in enumerate(conns)))
        return sum(counts) / (time.perf_counter() - start)
    finally:
        for conn in conns:
            await conn.close()


async def section_baseline(bench: Bench) -> dict[tuple[int, int], float]:
    say("(a) baseline: INSERTs of ~300-byte rows, autocommit, asyncpg, one process")
    database = await bench.database("baseline", migrated=False)
    conn = await bench.connect(database)
    await conn.execute(BASELINE_TABLE)
    await conn.close()
    sizes = bench.sizes
    results: dict[tuple[int, int], float] = {}
    for rows in (1, 10):
        for clients in (1, 2, 4, 8):
            reps = [
                await insert_rate(bench, database, clients, rows, sizes.baseline_seconds)
                for _ in range(sizes.baseline_reps)
            ]
            results[(rows, clients)] = median(reps)
            what = "1-row INSERT / tx " if rows == 1 else "10-row INSERT / tx"
            unit = "transactions/s" if rows == 1 else "rows/s"
            extra = f"  ({median(reps) / rows:8.0f} transactions/s)" if rows > 1 else ""
            say(f"    {what}  {clients} client(s): {median(reps):9.0f} {unit}{extra}")
    other = "off" if bench.sync_commit == "on" else "on"
    for clients in (1, 8):
        rate = median(
            [
                await insert_rate(bench, database, clients, 1, sizes.baseline_seconds, sync=other)
                for _ in range(sizes.baseline_reps)
            ]
        )
        say(
            f"    for reference, synchronous_commit={other}: 1-row INSERT / tx {clients} "
            f"client(s): {rate:9.0f} transactions/s"
        )
    say()
    return results


# ---------------------------------------------------------------------------- (b) throughput


async def start_backlog(engine: AsyncEngine, machine: str, names: list[str]) -> None:
    """Start executions in one transaction, so that the workers see all of them at once (at
    the commit): what the workers then do is measured apart from how fast starts arrive."""
    import secrets

    import sqlalchemy as sa

    from service.control import execution_arn
    from service.db import queries

    async with engine.begin() as conn:
        sm, v = queries.state_machines, queries.versions
        sm_id, version_id, at = (
            await conn.execute(
                sa.select(sm.c.id, sa.func.max(v.c.id), sa.func.clock_timestamp())
                .join(v, v.c.state_machine_id == sm.c.id)
                .where(sm.c.name == machine)
                .group_by(sm.c.id)
            )
        ).one()
        for name in names:
            await queries.start_execution(
                conn,
                execution_id=str(uuid.uuid4()),
                arn=execution_arn(machine, name),
                name=name,
                state_machine_id=sm_id,
                version_id=version_id,
                input_value=CHAIN_INPUT,
                seed=secrets.randbits(62),
                at=at,
            )


async def section_throughput(
    bench: Bench, baseline: dict[tuple[int, int], float]
) -> dict[int, float]:
    say(
        "(b) Statewright: 20-state Pass chains, worker processes of "
        + " or ".join(str(n) for n in bench.lanes)
        + " lane(s) each (a lane is one decision in flight: one connection committing)"
    )
    say("    drain: N executions started in one transaction, run by the workers; the time from")
    say("           the first ExecutionStarted to the last SUCCEEDED, both on the server's clock")
    say("    end to end: N executions started by 4 concurrent control.start_execution calls in")
    say("           this process while the workers run; first start to last SUCCEEDED")
    sizes = bench.sizes
    n = sizes.throughput_executions
    best: dict[int, float] = {}
    for processes, lanes_each in [(p, k) for k in bench.lanes for p in (1, 2)]:
        database = await bench.database(f"throughput{processes}x{lanes_each}")
        engine = bench.engine(database, pool=4)
        procs = [bench.spawn_worker(database, lanes=lanes_each) for _ in range(processes)]
        conn = await bench.connect(database)
        try:
            await bench.workers_ready(database, processes)
            await warm_up(bench, database, engine, count=4 * processes)
            await create_machine(engine, "chain20", pass_chain(20))
            profiles = [
                bench.start_profiler(p, f"throughput{processes}x{lanes_each}") for p in procs
            ]
            drains: list[float] = []
            rates: list[float] = []
            per_execution: list[float] = []
            start_rates: list[float] = []

            async def transitions(prefix: str, conn: asyncpg.Connection = conn) -> int:
                return int(
                    await conn.fetchval(
                        "SELECT count(*) FROM events e JOIN executions x ON x.id = e.execution_id "
                        "WHERE x.name LIKE $1 AND e.type LIKE '%StateEntered'",
                        prefix,
                    )
                )

            async def all_done(prefix: str, conn: asyncpg.Connection = conn) -> bool:
                done, bad = await conn.fetchrow(
                    "SELECT count(*) FILTER (WHERE status = 'SUCCEEDED'), "
                    "count(*) FILTER (WHERE status NOT IN ('RUNNING', 'SUCCEEDED')) "
                    "FROM executions WHERE name LIKE $1",
                    prefix,
                )
                if bad:
                    raise RuntimeError(f"{bad} execution(s) did not succeed")
                return bool(done == n)

            for rep in range(sizes.throughput_reps):
                prefix = f"dr{rep}-%"
                await start_backlog(engine, "chain20", [f"dr{rep}-{i}" for i in range(n)])
                await wait_until(
                    lambda prefix=prefix: all_done(prefix), 300, "the backlog", bench, pause=0.01
                )
                seconds = await conn.fetchval(
                    "SELECT extract(epoch FROM max(x.stopped_at) - min(e.timestamp)) "
                    "FROM executions x JOIN events e ON e.execution_id = x.id AND e.seq = 1 "
                    "WHERE x.name LIKE $1",
                    prefix,
                )
                drains.append(await transitions(prefix) / float(seconds))

                names = [f"tp{rep}-{i}" for i in range(n)]
                start = time.perf_counter()

                async def start_all(
                    names: list[str] = names, engine: AsyncEngine = engine
                ) -> float:
                    await start_many(engine, "chain20", [CHAIN_INPUT] * n, names=names)
                    return time.perf_counter()

                starting = asyncio.create_task(start_all())
                prefix = f"tp{rep}-%"
                await wait_until(
                    lambda prefix=prefix: all_done(prefix),
                    300,
                    "the throughput executions",
                    bench,
                    pause=0.01,
                )
                elapsed = time.perf_counter() - start
                start_rates.append(n / (await starting - start))
                count = await transitions(prefix)
                rates.append(count / elapsed)
                per_execution.append(count / n)
            bench.stop_profilers()
            drain, rate = median(drains), median(rates)
            best[processes] = max(rate, best.get(processes, 0.0))
            lanes = lanes_each * processes
            base = baseline.get((1, lanes), float("nan"))
            say(
                f"    {processes} worker process(es) ({lanes} lanes), {n} executions, "
                f"median of {len(rates)}:"
            )
            say(
                f"        drain:      {drain:8.0f} transitions/s "
                f"({drain / median(per_execution):6.1f} executions/s)"
            )
            say(
                f"        end to end: {rate:8.0f} transitions/s "
                f"({rate / median(per_execution):6.1f} executions/s; the starts alone went at "
                f"{median(start_rates):.0f}/s)"
            )
            for label, figure in (("drain", drain), ("end to end", rate)):
                say(
                    f"        {label} ÷ single-insert baseline at {lanes} clients ({base:.0f} tx/s)"
                    f" = {figure / base:5.2f}x   goal >= {GOAL_BASELINE_RATIO:g}x: "
                    f"{verdict(figure / base >= GOAL_BASELINE_RATIO)}"
                )
            say(
                f"        drain ÷ single-insert baseline at 1 client: {drain / baseline[(1, 1)]:.2f}x"
            )
            for profile in profiles:
                if profile is not None:
                    report_profile(profile, indent="        ")
        finally:
            await conn.close()
            await engine.dispose()
            for process in procs:
                bench.stop_worker(process)
    say()
    return best


# ---------------------------------------------------------------------------- (c) DBOS


def dbos_child(url: str, workflows: int, threads: int, steps: int) -> None:
    """Run in a child process: ``workflows`` workflows of ``steps`` DBOS steps; print JSON."""
    import logging
    from concurrent.futures import ThreadPoolExecutor

    from dbos import DBOS

    logging.getLogger("dbos").setLevel(logging.WARNING)
    DBOS(config={"name": "swbench", "system_database_url": url, "log_level": "WARNING"})

    @DBOS.step()
    def step(i: int, x: int) -> int:
        return x + i

    @DBOS.workflow()
    def flow(x: int) -> int:
        for i in range(steps):
            x = step(i, x)
        return x

    DBOS.launch()
    try:
        for i in range(3):  # warm-up
            flow(i)
        start = time.perf_counter()
        if threads == 1:
            results = [flow(i) for i in range(workflows)]
        else:
            with ThreadPoolExecutor(threads) as pool:
                results = list(pool.map(flow, range(workflows)))
        elapsed = time.perf_counter() - start
        assert results[1] == 1 + sum(range(steps))
        print(json.dumps({"steps_per_s": workflows * steps / elapsed, "seconds": elapsed}))
    finally:
        DBOS.destroy()


async def section_dbos(bench: Bench, statewright: dict[int, float]) -> None:
    say("(c) DBOS: workflows of 10 steps, its system database on the same server")
    try:
        import dbos  # noqa: F401
    except ImportError as exc:
        say(f"    DBOS unavailable: {exc} (pip install dbos); skipped\n")
        return
    database = await bench.database("dbos", migrated=False)
    url = bench.server.dsn(database)
    rates: dict[int, float] = {}
    for threads in (1, 4):
        command = [sys.executable, str(Path(__file__).resolve()), "--dbos-child", url]
        command += [
            "--dbos-workflows",
            str(bench.sizes.dbos_workflows),
            "--dbos-threads",
            str(threads),
        ]
        done = await asyncio.to_thread(
            subprocess.run,
            command,
            capture_output=True,
            text=True,
            timeout=600,
            cwd=ROOT,
            check=False,
        )
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if done.returncode != 0 or not lines:
            tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
            say(
                f"    DBOS with {threads} thread(s) failed ({done.returncode}): " + " | ".join(tail)
            )
            continue
        rates[threads] = json.loads(lines[-1])["steps_per_s"]
        say(
            f"    {threads} thread(s): {rates[threads]:8.0f} steps/s ({bench.sizes.dbos_workflows} workflows)"
        )
    if not rates:
        say("    no DBOS figure; ratio not computed\n")
        return
    for processes, threads in ((1, 1), (2, 4)):
        if threads in rates:
            say(
                f"    Statewright {processes} process(es) ÷ DBOS {threads} thread(s) = "
                f"{statewright[processes] / rates[threads]:6.1f}x"
            )
    ratio = max(statewright.values()) / max(rates.values())
    say(
        f"    best ÷ best = {ratio:.1f}x   goal >= {GOAL_DBOS_RATIO:g}x: "
        f"{verdict(ratio >= GOAL_DBOS_RATIO)}\n"
    )


# ---------------------------------------------------------------------------- (d) latency


async def section_latency(bench: Bench) -> None:
    say("(d) latency: 10-state Pass chain, one worker process (2 lanes), executions one at a time")
    database = await bench.database("latency", notify=True)
    engine = bench.engine(database, pool=2)
    process = bench.spawn_worker(database)
    try:
        await bench.workers_ready(database, 1)
        await warm_up(bench, database, engine)
        await create_machine(engine, "chain10", pass_chain(10))
        from service import control

        latencies: list[float] = []
        start_calls: list[float] = []
        async with Notifications.listen(bench, database) as notes:
            for i in range(bench.sizes.latency_executions):
                name = f"lat-{i}"
                started, done = notes.started(name), notes.closed(name)
                before = time.perf_counter()
                await control.start_execution(engine, "chain10", CHAIN_INPUT, name=name)
                start_calls.append((time.perf_counter() - before) * 1000)
                finished = await asyncio.wait_for(done, 30)
                latencies.append((finished - await started) * 1000)
                await asyncio.sleep(0.005)  # the worker goes idle between executions
        conn = await bench.connect(database)
        pickup = await conn.fetchval(
            "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM "
            "stopped_at - started_at) * 1000) FROM executions WHERE name LIKE 'lat-%'"
        )
        await conn.close()
    finally:
        await engine.dispose()
        bench.stop_worker(process)
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    say(
        f"    start commit -> SUCCEEDED commit over {len(latencies)}: p50 {p50:6.2f} ms, "
        f"p99 {p99:6.2f} ms, max {max(latencies):6.2f} ms"
    )
    say(
        f"    goals p50 <= {GOAL_P50_MS:g} ms: {verdict(p50 <= GOAL_P50_MS)}; "
        f"p99 <= {GOAL_P99_MS:g} ms: {verdict(p99 <= GOAL_P99_MS)}"
    )
    say(
        f"    (the start_execution call itself: p50 {percentile(start_calls, 50):.2f} ms; server "
        f"clock, start to the deciding transaction's clock: p50 {pickup:.2f} ms)\n"
    )


# ---------------------------------------------------------------------------- (e) memory


async def section_memory(bench: Bench) -> None:
    parked = bench.sizes.parked
    say(
        f"(e) memory: RSS of one worker process (2 lanes), idle vs {parked} executions parked in Wait 3600 s"
    )
    database = await bench.database("memory")
    engine = bench.engine(database, pool=8)
    process = bench.spawn_worker(database)
    conn = await bench.connect(database)
    try:
        await bench.workers_ready(database, 1)
        await warm_up(bench, database, engine, count=20)
        await create_machine(engine, "parked", PARKED)
        await start_many(
            engine, "parked", [{}] * 4, concurrency=1, names=[f"w{i}" for i in range(4)]
        )
        await asyncio.sleep(2.0)
        idle, _ = read_rss_kib(process.pid)
        started = time.perf_counter()
        await start_many(engine, "parked", [{"i": i} for i in range(parked)], concurrency=8)
        total = parked + 4

        async def all_parked() -> bool:
            query = "SELECT count(*) FROM executions WHERE version >= 2 AND status = 'RUNNING'"
            return bool(await conn.fetchval(query) >= total)

        await wait_until(all_parked, 900, "the parked executions", bench, pause=0.2)
        elapsed = time.perf_counter() - started
        await asyncio.sleep(2.0)
        loaded, peak = read_rss_kib(process.pid)
    finally:
        await conn.close()
        await engine.dispose()
        bench.stop_worker(process)
    ratio = loaded / idle
    say(
        f"    idle {idle / 1024:7.1f} MiB; parked {loaded / 1024:7.1f} MiB (peak {peak / 1024:.1f} MiB); "
        f"ratio {ratio:.2f}   goal <= {GOAL_RSS_RATIO:g}: {verdict(ratio <= GOAL_RSS_RATIO)}"
    )
    say(f"    ({parked} started and parked in {elapsed:.1f} s)\n")


# ---------------------------------------------------------------------------- (f) cost curves


async def trigger(
    engine: AsyncEngine, conn: asyncpg.Connection, notes: Notifications, name: str
) -> float:
    """Answer the execution's pending task; ms from that commit to the decision's commit."""
    from service.db import queries

    execution_id, version, task_id = await conn.fetchrow(
        "SELECT x.id, x.version, (SELECT max(seq) FROM events WHERE execution_id = x.id "
        "AND type = 'TaskScheduled') FROM executions x WHERE x.name = $1",
        name,
    )
    done = notes.expect(name, lambda _s, v: v > version)
    async with engine.begin() as sa_conn:
        at = await queries.now(sa_conn)
        body = {"task_id": task_id, "output": {"ok": True}}
        await queries.enqueue(sa_conn, execution_id, "task_succeeded", body, at)
    committed = time.perf_counter()
    finished = await asyncio.wait_for(done, 120)
    return max(finished - committed, 0.0) * 1000


async def section_costs(bench: Bench) -> None:
    sizes = bench.sizes
    say("(f) cost against size")
    database = await bench.database("costs", notify=True)
    engine = bench.engine(database, pool=4)
    conn = await bench.connect(database)
    try:
        await create_machine(engine, "loop", LOOP)
        names: dict[int, list[str]] = {}
        inputs: list[JSON] = []
        all_names: list[str] = []
        for target in sizes.history_targets:
            rounds = max(1, -(-(target - LOOP_FIXED_EVENTS) // 4))  # ceil
            names[target] = [f"h{target}-{r}" for r in range(sizes.history_replicas)]
            all_names += names[target]
            inputs += [{"n": rounds}] * sizes.history_replicas
        builder = bench.spawn_worker(database)
        await bench.workers_ready(database, 1)
        built = time.perf_counter()
        await start_many(engine, "loop", inputs, concurrency=1, names=all_names)

        async def all_parked() -> bool:
            query = (
                "SELECT count(*) FROM executions x WHERE x.name = ANY($1) AND EXISTS "
                "(SELECT 1 FROM outbox o WHERE o.execution_id = x.id)"
            )
            return bool(await conn.fetchval(query, all_names) == len(all_names))

        await wait_until(all_parked, 600, "the long histories", bench, pause=0.05)
        bad = await conn.fetchval(
            "SELECT count(*) FROM executions WHERE name = ANY($1) AND status <> 'RUNNING'",
            all_names,
        )
        if bad:
            raise RuntimeError(f"{bad} history execution(s) ended early; see {bench.logs}")
        build_seconds = time.perf_counter() - built
        bench.stop_worker(builder)
        lengths = {
            target: await conn.fetchval(
                "SELECT max(version) FROM executions WHERE name = ANY($1)", names[target]
            )
            for target in sizes.history_targets
        }
        fresh = bench.spawn_worker(database)
        await bench.workers_ready(database, 1)
        await warm_up(bench, database, engine)
        cold: dict[int, list[float]] = {t: [] for t in sizes.history_targets}
        warm: dict[int, list[float]] = {t: [] for t in sizes.history_targets}
        async with Notifications.listen(bench, database) as notes:
            for target in sizes.history_targets:
                for name in names[target]:
                    cold[target].append(await trigger(engine, conn, notes, name))
            for _ in range(sizes.warm_triggers):
                for target in sizes.history_targets:
                    for name in names[target]:
                        warm[target].append(await trigger(engine, conn, notes, name))
            say(
                "    one more decision (a task result -> its commit; history built in "
                f"{build_seconds:.1f} s), medians in ms:"
            )
            say(f"    {'events in history':>20} {'cold (fresh worker)':>20} {'warm (cached)':>14}")
            for target in sizes.history_targets:
                say(
                    f"    {lengths[target]:>20} {median(cold[target]):>20.2f} "
                    f"{median(warm[target]):>14.2f}"
                )
            first, last = sizes.history_targets[0], sizes.history_targets[-1]
            flat = median(warm[last]) / median(warm[first])
            say(
                f"    warm {lengths[last]} ÷ warm {lengths[first]} events = {flat:.2f}x   "
                f"goal flat (<= {FLAT_FACTOR:g}x): {verdict(flat <= FLAT_FACTOR)}"
            )
            cold_per_event = (median(cold[last]) - median(cold[first])) / (
                lengths[last] - lengths[first]
            )
            say(f"    cold grows {cold_per_event * 1000:.1f} µs per event of history (a full fold)")

            await section_maps(bench, database, engine, notes)
        bench.stop_worker(fresh)
    finally:
        await conn.close()
        await engine.dispose()


async def section_maps(
    bench: Bench, database: str, engine: AsyncEngine, notes: Notifications
) -> None:
    from service import control

    sizes = bench.sizes
    say("    Map of a trivial Pass, MaxConcurrency 0 (start commit -> SUCCEEDED commit), medians:")
    say(f"    {'mode':>12} {'items':>7} {'ms':>10} {'µs / item':>10}")
    for mode, counts in (("INLINE", sizes.inline_map), ("DISTRIBUTED", sizes.distributed_map)):
        machine = f"map-{mode.lower()}"
        await create_machine(engine, machine, map_definition(mode))
        per_item: dict[int, float] = {}
        for count in counts:
            times: list[float] = []
            for rep in range(sizes.map_reps):
                name = f"{machine}-{count}-{rep}"
                started, done = notes.started(name), notes.closed(name)
                await control.start_execution(
                    engine, machine, {"items": list(range(count))}, name=name
                )
                finished = await asyncio.wait_for(done, 600)
                times.append((finished - await started) * 1000)
            ms = median(times)
            per_item[count] = ms * 1000 / count
            say(f"    {mode:>12} {count:>7} {ms:>10.1f} {per_item[count]:>10.1f}")
        conn = await bench.connect(database)
        failed = await conn.fetchval(
            "SELECT count(*) FROM executions WHERE name LIKE $1 AND status <> 'SUCCEEDED'",
            f"{machine}-%",
        )
        await conn.close()
        if failed:
            say(f"    WARNING: {failed} {mode} Map execution(s) did not succeed")
        if len(counts) >= 2:
            big, smaller = counts[-1], counts[-2]
            growth = per_item[big] / per_item[smaller]
            say(
                f"    {mode} per item at {big} ÷ at {smaller} = {growth:.2f}x   "
                f"goal linear (<= {LINEAR_FACTOR:g}x): {verdict(growth <= LINEAR_FACTOR)}"
            )
    say()


# ---------------------------------------------------------------------------- main


async def settings(bench: Bench) -> None:
    database = await bench.database("settings", migrated=False)
    conn = await bench.connect(database)
    try:
        names = (
            "server_version",
            "fsync",
            "synchronous_commit",
            "full_page_writes",
            "wal_sync_method",
        )
        values = {name: await conn.fetchval(f"SHOW {name}") for name in names}
        values["shared_buffers"] = await conn.fetchval("SHOW shared_buffers")
    finally:
        await conn.close()
    where = "throwaway cluster (tests/postgres.py)" if bench.server.managed else "the given server"
    say(
        f"Postgres {values.pop('server_version')} on {bench.server.host}:{bench.server.port}, {where}"
    )
    say("durability settings of every database used, baseline and Statewright alike:")
    say("    " + ", ".join(f"{k}={v}" for k, v in values.items()))
    if values["fsync"] == "off":
        say("    (fsync=off: commits are not flushed to disk; figures are CPU-bound upper bounds,")
        say("     not what a production server does; leave out --no-fsync for that)")
    say(f"machine: {os.cpu_count()} CPUs; Python {sys.version.split()[0]}; sizes: {bench.sizes}")
    say()


async def run(bench: Bench, only: set[str]) -> None:
    await settings(bench)
    baseline: dict[tuple[int, int], float] = {}
    statewright: dict[int, float] = {}
    if only & {"a", "b", "c"}:  # b compares with a, c with b
        baseline = await section_baseline(bench)
    if "b" in only or "c" in only:
        statewright = await section_throughput(bench, baseline)
    if "c" in only:
        await section_dbos(bench, statewright)
    if "d" in only:
        await section_latency(bench)
    if "e" in only:
        await section_memory(bench)
    if "f" in only:
        await section_costs(bench)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--database-url", metavar="URL", help="a Postgres server to use (postgresql://...)"
    )
    parser.add_argument("--quick", action="store_true", help="smaller sizes: under 2 minutes")
    parser.add_argument(
        "--no-fsync",
        action="store_true",
        help="throwaway cluster with fsync=off, full_page_writes=off (CPU-bound upper bounds)",
    )
    parser.add_argument("--synchronous-commit", choices=["on", "off"], default="on")
    parser.add_argument(
        "--sections",
        default="abcdef",
        help="sections to run (default abcdef; b runs a too, c runs a and b)",
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep the worker logs")
    parser.add_argument(
        "--lanes",
        default="2",
        help="lanes per worker process in (b), a comma-separated list (default 2; e.g. 1,2)",
    )
    parser.add_argument(
        "--py-spy",
        metavar="DIR",
        type=Path,
        help="profile the workers of (b) with py-spy (pip install py-spy) into DIR",
    )
    parser.add_argument("--dbos-child", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--dbos-workflows", type=int, default=100, help=argparse.SUPPRESS)
    parser.add_argument("--dbos-threads", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.dbos_child:
        dbos_child(args.dbos_child, args.dbos_workflows, args.dbos_threads, steps=10)
        return 0
    logs = Path(tempfile.mkdtemp(prefix="swbench-logs-"))
    started = time.perf_counter()
    failed = False
    with postgres(args.database_url, "durable.py", fsync=not args.no_fsync) as server:
        bench = Bench(server, args.synchronous_commit, QUICK if args.quick else FULL, logs)
        bench.lanes = [int(n) for n in args.lanes.split(",")]
        if args.py_spy:
            args.py_spy.mkdir(parents=True, exist_ok=True)
            bench.profile = args.py_spy
        try:
            asyncio.run(run(bench, set(args.sections)))
        except Exception:
            failed = True
            raise
        finally:
            bench.close()
            if failed or args.keep_logs:
                say(f"worker logs: {logs}")
            else:
                shutil.rmtree(logs, ignore_errors=True)
    say(f"total {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
