"""The HTTP API's StartExecution rate and start-to-finish latency, beside a bare FastAPI endpoint.

Run from the repository root:

    python bench/api.py [--database-url URL] [--seconds N] [--quick] [--py-spy DIR]

Without ``--database-url`` a throwaway Postgres cluster is started the way the test suite does
(``tests/postgres.py``: local binaries, ``fsync=off``) and deleted at the end; with a URL the
script creates its own ``swapi_*`` databases on that server (the role needs CREATEDB) and drops
them after. Each database is set to ``synchronous_commit = on`` (``--synchronous-commit off``
to change), as in ``bench/durable.py``.

Servers, all started by the script with uvicorn's settings from ``service/cli.py``
(``loop="uvloop"``, ``http="httptools"``, one process), on 127.0.0.1:

* ``bare``: a tiny FastAPI app defined here, ``POST /echo`` that reads the request body and
  returns ``{"ok": true}``: the floor any FastAPI endpoint costs on this machine;
* ``api+2w``: ``python -m service.cli api`` plus two ``python -m service.cli worker`` processes
  (2 lanes each), on their own database;
* ``serve-2l``: ``python -m service.cli serve --workers 2`` (API and 2 worker lanes in one
  process), on another database.

Sections, in one run:

1. throughput: ``--concurrency`` (16) httpx.AsyncClient connections in this process send as
   many requests as they can for ``--seconds``; the bare endpoint gets the same JSON body as
   StartExecution (``POST /`` with ``X-Amz-Target: AWSStepFunctions.StartExecution``, a
   5-state Pass workflow). Repetitions are interleaved (the order rotates) and the figures are
   medians; the ratio StartExecution/s ÷ bare requests/s is checked against the goal (>= 40%).
   CPU use of the client, the API and the workers during each window is printed, so a
   saturated client (which would flatter the ratio) shows.
2. drain: after each StartExecution window, the time until every execution started in it is
   SUCCEEDED (none may fail), and the end-to-end rate (executions ÷ (window + drain)).
3. latency, one execution at a time: from sending StartExecution to the SUCCEEDED commit,
   seen as a NOTIFY from a trigger the benchmark adds to its own database (the service is not
   changed); also StartExecution's response time, and start commit -> SUCCEEDED commit.

Every process the script starts is stopped at the end (SIGTERM, then SIGKILL), also on errors
and Ctrl-C. The machine is small and shared: compare ratios measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import fastapi  # at module level: the bare app's annotations are resolved in this namespace

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

if TYPE_CHECKING:
    import asyncpg
    import httpx
    from fastapi import FastAPI

    from tests.postgres import PostgresServer

from common import (  # noqa: E402
    median,
    notify_trigger,
    pass_chain,
    percentile,
    postgres,
    report_profile,
    say,
    serve_app,
    verdict,
)

JSON = Any
GOAL_RATIO = 0.40  # StartExecution/s ÷ bare endpoint requests/s
NOTIFY_CHANNEL = "swapi_done"
MACHINE = "pass5"
AWS_HEADERS = {
    "Content-Type": "application/x-amz-json-1.0",
    "X-Amz-Target": "AWSStepFunctions.StartExecution",
}
INPUT = {"value": "hello", "last": {"step": 0, "n": 0}}


@dataclass(frozen=True)
class Sizes:
    """How long each section runs (``--quick`` shrinks it)."""

    seconds: float
    reps: int
    warmup_seconds: float
    latency_executions: int


FULL = Sizes(seconds=5.0, reps=3, warmup_seconds=1.0, latency_executions=200)
QUICK = Sizes(seconds=2.0, reps=2, warmup_seconds=0.5, latency_executions=50)


# ---------------------------------------------------------------------------- the bare server


def bare_app() -> FastAPI:
    """The baseline: one FastAPI endpoint that reads the body and returns {"ok": true}."""
    from fastapi import FastAPI

    app = FastAPI()

    @app.post("/echo")
    async def echo(request: fastapi.Request) -> dict[str, bool]:
        await request.body()
        return {"ok": True}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def serve_bare(port: int) -> None:
    """Run the bare app as ``service/cli.py`` runs Statewright's (in a child process)."""
    serve_app(bare_app(), port)


# ---------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


@dataclass
class Processes:
    """Child processes of the run; close() stops every one of them."""

    logs: Path
    children: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    profilers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def spawn(self, label: str, command: list[str]) -> subprocess.Popen[bytes]:
        log = self.logs / f"{label}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                command,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                start_new_session=True,  # Ctrl-C reaches the benchmark, which stops them
            )
        self.children.append((label, process))
        return process

    def check(self) -> None:
        for label, process in self.children:
            if process.poll() is not None:
                tail = (self.logs / f"{label}.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(
                    f"{label} (pid {process.pid}) exited ({process.returncode}):\n{tail}"
                )

    def start_profiler(self, pid: int, out: Path) -> None:
        """``py-spy record`` a process until stop_profilers()."""
        spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        command = [spy, "record", "--pid", str(pid), "--format", "raw", "--rate", "200"]
        command += ["--nonblocking", "--output", str(out)]
        self.profilers.append(
            subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        )

    def stop_profilers(self) -> None:
        for spy in self.profilers:
            if spy.poll() is None:
                spy.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        for spy in self.profilers:
            try:
                spy.wait(30)
            except subprocess.TimeoutExpired:
                spy.kill()
                spy.wait()
        self.profilers.clear()

    def close(self) -> None:
        self.stop_profilers()
        for _, process in self.children:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for _, process in self.children:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# ---------------------------------------------------------------------------- the database


NOTIFY_TRIGGER = notify_trigger(NOTIFY_CHANNEL)


class Notifications:
    """(execution name, status, version) notifications from the trigger, timed at arrival.

    A NOTIFY is delivered at commit, so the time between two of them on one connection is the
    time between the two commits.
    """

    def __init__(self) -> None:
        self.waiters: dict[str, list[tuple[str, asyncio.Future[float]]]] = {}

    def arrived(self, conn: object, pid: int, channel: str, payload: str) -> None:
        at = time.perf_counter()
        name, status, version = payload.split(" ")
        for kind, future in list(self.waiters.get(name, [])):
            started = kind == "started" and version == "0"
            closed = kind == "closed" and status != "RUNNING"
            if (started or closed) and not future.done():
                future.set_result(at)

    def expect(self, name: str, kind: str) -> asyncio.Future[float]:
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.waiters.setdefault(name, []).append((kind, future))
        return future


# ---------------------------------------------------------------------------- targets


@dataclass
class Target:
    """One server under load: where to send what, and which processes do the work."""

    label: str
    port: int
    path: str
    headers: dict[str, str]
    server_pid: int
    worker_pids: list[int] = field(default_factory=list)
    database: str | None = None
    started: int = 0  # StartExecution calls answered 200 so far
    # Per client kind ("httpx", "raw"): one entry per timed window.
    rates: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    drains: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    end_to_end: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    cpu: dict[str, list[dict[str, float]]] = field(default_factory=lambda: defaultdict(list))
    errors: int = 0
    key: tuple[str, str] | None = None  # an API key: requests are signed with SigV4
    _signed: dict[bytes, dict[str, str]] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def headers_for(self, body: bytes) -> dict[str, str]:
        """The headers of a POST of ``body``: signed with SigV4 as boto3 signs (once per
        distinct body; a signature holds for 15 minutes) when the target wants a key."""
        if self.key is None:
            return self.headers
        if body not in self._signed:
            from botocore.auth import SigV4Auth
            from botocore.awsrequest import AWSRequest
            from botocore.credentials import Credentials

            request = AWSRequest("POST", self.base + self.path, data=body, headers=self.headers)
            SigV4Auth(Credentials(*self.key), "states", "us-east-1").add_auth(request)
            self._signed[body] = dict(request.headers.items())
        return self._signed[body]

    @property
    def bearer(self) -> dict[str, str]:
        """The REST API's Authorization header."""
        return {"Authorization": f"Bearer {self.key[0]}:{self.key[1]}"} if self.key else {}


@dataclass
class Window:
    """What one timed load window measured."""

    ok: int
    errors: int
    seconds: float
    cpu: dict[str, float]  # percent of one core, per role; "machine" is % of all cores

    @property
    def rate(self) -> float:
        return self.ok / self.seconds


def raw_request(target: Target, body: bytes) -> bytes:
    """The bytes of one HTTP/1.1 keep-alive POST of ``body`` to ``target``."""
    head = [f"POST {target.path} HTTP/1.1", f"Host: 127.0.0.1:{target.port}"]
    head += [f"{k}: {v}" for k, v in target.headers_for(body).items()]
    head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def raw_exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[int, bytes]:
    """Send a prepared request, read the answer (uvicorn always sends Content-Length)."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return int(head[9:12]), (await reader.readexactly(length) if length else b"")


async def load(
    client: httpx.AsyncClient,
    kind: str,
    target: Target,
    body: bytes,
    concurrency: int,
    seconds: float,
) -> Window:
    """``concurrency`` loops POSTing ``body`` for ``seconds``; count the 200 answers.

    ``kind`` "httpx" sends through the shared httpx.AsyncClient; "raw" writes prepared bytes
    on ``concurrency`` keep-alive asyncio streams, a client that costs far less CPU per request.
    """
    ok = 0
    errors: list[str] = []
    deadline = 0.0
    url = target.base + target.path
    request = raw_request(target, body)
    streams = []
    if kind == "raw":
        for _ in range(concurrency):
            streams.append(await asyncio.open_connection("127.0.0.1", target.port))

    async def loop(i: int) -> None:
        nonlocal ok
        while time.perf_counter() < deadline:
            if kind == "raw":
                status, text = await raw_exchange(*streams[i], request)
            else:
                response = await client.post(url, content=body, headers=target.headers_for(body))
                status, text = response.status_code, response.content
            if status == 200:
                ok += 1
            else:
                errors.append(f"{status} {text[:200].decode(errors='replace')}")

    pids = {"client": [os.getpid()], "server": [target.server_pid], "workers": target.worker_pids}
    cpu_before = {role: sum(cpu_seconds(p) for p in ps) for role, ps in pids.items()}
    busy_before = machine_busy()
    start = time.perf_counter()
    deadline = start + seconds
    try:
        await asyncio.gather(*(loop(i) for i in range(concurrency)))
    finally:
        for _, writer in streams:
            writer.close()
    elapsed = time.perf_counter() - start
    busy_after = machine_busy()
    cpu = {
        role: 100 * (sum(cpu_seconds(p) for p in ps) - cpu_before[role]) / elapsed
        for role, ps in pids.items()
    }
    cpu["machine"] = 100 * (busy_after[0] - busy_before[0]) / (busy_after[1] - busy_before[1])
    if errors:
        say(f"      {target.label}: {len(errors)} error answer(s), e.g. {errors[0]}")
    return Window(ok, len(errors), elapsed, cpu)


@dataclass
class Bench:
    """The run: server, databases, processes; close() undoes all of it."""

    server: PostgresServer
    processes: Processes
    sizes: Sizes
    concurrency: int
    sync_commit: str
    token: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    databases: list[str] = field(default_factory=list)
    arn: str = ""

    async def database(self, kind: str) -> str:
        """A fresh, migrated database; returns its name."""
        from service.db.migrate import upgrade

        name = f"swapi_{self.token}_{kind}"
        self.databases.append(name)
        await asyncio.to_thread(self.server.create_database, name)
        await asyncio.to_thread(
            self.server.execute,
            f"ALTER DATABASE {name} SET synchronous_commit = {self.sync_commit}",
        )
        await asyncio.to_thread(upgrade, self.server.url(name))
        return name

    async def api_key(self, database: str) -> tuple[str, str]:
        """A new API key in ``database`` (sealed with STATEWRIGHT_SECRET_KEY)."""
        from service.auth import create_key
        from service.db.engine import create_engine
        from service.sealing import Sealer

        engine = create_engine(self.server.url(database))
        try:
            key, secret = await create_key(
                engine, "bench", Sealer(os.environ["STATEWRIGHT_SECRET_KEY"])
            )
        finally:
            await engine.dispose()
        return key.id, secret

    async def connect(self, database: str) -> asyncpg.Connection:
        import asyncpg

        return await asyncpg.connect(self.server.dsn(database), timeout=30)

    def cli(self, label: str, *args: str) -> subprocess.Popen[bytes]:
        return self.processes.spawn(label, [sys.executable, "-m", "service.cli", *args])

    async def http_ready(self, client: httpx.AsyncClient, target: Target) -> None:
        deadline = time.monotonic() + 60
        while True:
            self.processes.check()
            with contextlib.suppress(Exception):
                if (await client.get(target.base + "/healthz")).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{target.label} not answering after 60 s")
            await asyncio.sleep(0.1)

    async def listeners_ready(self, database: str, count: int) -> None:
        """Wait until ``count`` workers LISTEN on ``database``."""
        conn = await self.connect(database)
        try:
            deadline = time.monotonic() + 60
            query = (
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND query LIKE 'LISTEN%'"
            )
            while await conn.fetchval(query, database) < count:
                self.processes.check()
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{count} worker(s) on {database} not ready after 60 s")
                await asyncio.sleep(0.05)
        finally:
            await conn.close()

    async def drain(self, target: Target, timeout: float = 600) -> float:
        """Seconds until every execution of ``target``'s database has SUCCEEDED."""
        assert target.database is not None
        conn = await self.connect(target.database)
        start = time.perf_counter()
        try:
            while True:
                total, done, bad = await conn.fetchrow(
                    "SELECT count(*), count(*) FILTER (WHERE status = 'SUCCEEDED'), "
                    "count(*) FILTER (WHERE status NOT IN ('RUNNING', 'SUCCEEDED')) FROM executions"
                )
                if bad:
                    raise RuntimeError(f"{target.label}: {bad} execution(s) did not succeed")
                if total != target.started:
                    raise RuntimeError(
                        f"{target.label}: {total} execution rows, {target.started} starts answered"
                    )
                if done == total:
                    return time.perf_counter() - start
                self.processes.check()
                if time.perf_counter() - start > timeout:
                    raise RuntimeError(
                        f"{target.label}: {total - done} still running after {timeout} s"
                    )
                await asyncio.sleep(0.01)
        finally:
            await conn.close()

    def close(self) -> None:
        self.processes.close()
        for name in reversed(self.databases):
            with contextlib.suppress(Exception):
                self.server.drop_database(name)


# ---------------------------------------------------------------------------- sections


def cpu_text(cpu: dict[str, float], workers: bool, rate: float) -> str:
    """CPU use in a window; the server's also as milliseconds of CPU per request."""
    per = 10 * cpu["server"] / rate if rate else float("nan")
    parts = [f"client {cpu['client']:.0f}%", f"server {cpu['server']:.0f}% = {per:.2f} ms/request"]
    if workers and cpu["workers"] == cpu["server"]:  # serve: the lanes run in the server
        parts[1] = f"server incl. lanes {cpu['server']:.0f}% = {per:.2f} ms/request"
    elif workers:
        parts.append(f"workers {cpu['workers']:.0f}%")
    parts.append(f"machine {cpu['machine']:.0f}% of {os.cpu_count()} CPUs")
    return ", ".join(parts)


async def measure(
    bench: Bench,
    client: httpx.AsyncClient,
    kind: str,
    target: Target,
    body: bytes,
    seconds: float,
    record: bool = True,
) -> None:
    """One load window, then (Statewright) the wait until its executions have all SUCCEEDED."""
    window = await load(client, kind, target, body, bench.concurrency, seconds)
    target.errors += window.errors
    label = f"{kind:5} {target.label:8}"
    if target.database is None:
        if record:
            target.rates[kind].append(window.rate)
            target.cpu[kind].append(window.cpu)
            say(
                f"    {label} {window.rate:6.0f} requests/s        ({cpu_text(window.cpu, False, window.rate)})"
            )
        return
    target.started += window.ok
    drain = await bench.drain(target)
    if record:
        end_to_end = window.ok / (window.seconds + drain)
        target.rates[kind].append(window.rate)
        target.drains[kind].append(drain)
        target.end_to_end[kind].append(end_to_end)
        target.cpu[kind].append(window.cpu)
        say(
            f"    {label} {window.rate:6.0f} StartExecution/s  "
            f"({cpu_text(window.cpu, bool(target.worker_pids), window.rate)})\n"
            f"    {'':14} {window.ok} started, all SUCCEEDED {drain:.2f} s after the window "
            f"({end_to_end:.0f} executions/s end to end)"
        )


async def section_latency(
    bench: Bench, client: httpx.AsyncClient, target: Target, count: int
) -> None:
    assert target.database is not None
    conn = await bench.connect(target.database)
    await conn.execute(NOTIFY_TRIGGER)
    notes = Notifications()
    await conn.add_listener(NOTIFY_CHANNEL, notes.arrived)
    total: list[float] = []
    answer: list[float] = []
    commits: list[float] = []
    try:
        for i in range(count + 5):  # the first 5 warm the trigger and the plans up
            name = f"lat-{bench.token}-{i}"
            started, closed = notes.expect(name, "started"), notes.expect(name, "closed")
            body = json.dumps(
                {"stateMachineArn": bench.arn, "input": json.dumps(INPUT), "name": name}
            ).encode()
            sent = time.perf_counter()
            response = await client.post(
                target.base + "/", content=body, headers=target.headers_for(body)
            )
            answered = time.perf_counter()
            if response.status_code != 200:
                raise RuntimeError(
                    f"{target.label}: StartExecution {response.status_code} {response.text}"
                )
            target.started += 1
            done = await asyncio.wait_for(closed, 60)
            begun = await asyncio.wait_for(started, 60)
            if i >= 5:
                total.append(1000 * (done - sent))
                answer.append(1000 * (answered - sent))
                commits.append(1000 * (done - begun))
        await bench.drain(target)  # and checks they all SUCCEEDED
    finally:
        await conn.close()
    say(f"    {target.label}: {count} executions one at a time")
    for what, values in (
        ("StartExecution sent -> SUCCEEDED commit", total),
        ("StartExecution response time          ", answer),
        ("start commit -> SUCCEEDED commit      ", commits),
    ):
        say(
            f"      {what}: p50 {percentile(values, 50):6.1f} ms   p99 {percentile(values, 99):6.1f} ms"
            f"   (max {max(values):6.1f} ms)"
        )


async def run(bench: Bench, profile: Path | None, clients: list[str]) -> None:
    import httpx

    sizes = bench.sizes
    say(
        f"settings: {bench.concurrency} concurrent connections ({' and '.join(clients)} clients), "
        f"{sizes.seconds:g} s windows, "
        f"{sizes.reps} repetition(s) interleaved; synchronous_commit = {bench.sync_commit}; "
        f"{os.cpu_count()} CPUs; python {sys.version.split()[0]}"
    )
    split_db, serve_db = await bench.database("split"), await bench.database("serve")
    # Requests carry API keys, as in production: the servers check a SigV4 signature on each.
    os.environ["STATEWRIGHT_SECRET_KEY"] = secrets.token_urlsafe(32)
    split_key, serve_key = await bench.api_key(split_db), await bench.api_key(serve_db)
    bare_port, split_port, serve_port = free_port(), free_port(), free_port()
    bare = bench.processes.spawn(
        "bare", [sys.executable, str(Path(__file__).resolve()), "--serve-bare", str(bare_port)]
    )
    split = bench.cli(
        "api", "api", "--database-url", bench.server.url(split_db), "--port", str(split_port)
    )
    workers = [
        bench.cli(
            f"worker-{i}", "worker", "--database-url", bench.server.url(split_db), "--lanes", "2"
        )
        for i in (1, 2)
    ]
    serve = bench.cli(
        "serve",
        "serve",
        "--database-url",
        bench.server.url(serve_db),
        "--port",
        str(serve_port),
        "--workers",
        "2",
    )
    targets = [
        Target("bare", bare_port, "/echo", {"Content-Type": "application/json"}, bare.pid),
        Target(
            "api+2w",
            split_port,
            "/",
            AWS_HEADERS,
            split.pid,
            [w.pid for w in workers],
            split_db,
            key=split_key,
        ),
        Target(
            "serve-2l",
            serve_port,
            "/",
            AWS_HEADERS,
            serve.pid,
            [serve.pid],
            serve_db,
            key=serve_key,
        ),
    ]
    limits = httpx.Limits(
        max_connections=bench.concurrency, max_keepalive_connections=bench.concurrency
    )
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        for target in targets:
            await bench.http_ready(client, target)
        await bench.listeners_ready(split_db, 2)
        await bench.listeners_ready(serve_db, 1)
        definition = pass_chain(5)
        for target in targets[1:]:
            response = await client.post(
                target.base + "/api/v1/state-machines",
                json={"name": MACHINE, "definition": definition},
                headers=target.bearer,
            )
            response.raise_for_status()
            bench.arn = response.json()["arn"]
        body = json.dumps({"stateMachineArn": bench.arn, "input": json.dumps(INPUT)}).encode()
        say(f"request body ({len(body)} bytes): {body.decode()}")
        say()

        say("1-2. throughput: bare FastAPI endpoint vs StartExecution (5-state Pass chain)")
        for kind in clients:  # warm-up: imports, pools, plans
            for target in targets:
                await measure(bench, client, kind, target, body, sizes.warmup_seconds, False)
        for rep in range(sizes.reps):
            say(f"  repetition {rep + 1}")
            order = targets[rep % 3 :] + targets[: rep % 3]
            for kind in clients if rep % 2 == 0 else clients[::-1]:
                for target in order:
                    if profile is not None and rep == sizes.reps - 1 and target.database:
                        out = profile / f"{kind}-{target.label}-{target.server_pid}.txt"
                        bench.processes.start_profiler(target.server_pid, out)
                    await measure(bench, client, kind, target, body, sizes.seconds)
                    bench.processes.stop_profilers()
        say()
        say("  medians:")
        for kind in clients:
            bare_rate = median(targets[0].rates[kind])
            if not bare_rate > 0:
                raise RuntimeError("the bare endpoint answered no request with 200")
            client_cpu = median([c["client"] for c in targets[0].cpu[kind]])
            say(
                f"    {kind} client: bare FastAPI POST /echo {bare_rate:6.0f} requests/s "
                f"(the client itself used {client_cpu:.0f}% of a core)"
            )
            for target in targets[1:]:
                rate = median(target.rates[kind])
                ratio = rate / bare_rate
                what = "api + 2 workers" if target.label == "api+2w" else "serve --workers 2"
                say(
                    f"      StartExecution, {what:17} {rate:6.0f} calls/s = {100 * ratio:5.1f}% "
                    f"of bare   goal >= {100 * GOAL_RATIO:.0f}%: {verdict(ratio >= GOAL_RATIO)}"
                )
                say(
                    f"        then all SUCCEEDED: drain median {median(target.drains[kind]):.2f} s "
                    f"(max {max(target.drains[kind]):.2f} s); end to end "
                    f"{median(target.end_to_end[kind]):.0f} executions/s"
                )
            if client_cpu > 85:
                say(
                    f"      NOTE: the {kind} client is near saturation against the bare endpoint "
                    "(it is partly client-bound), which flatters these ratios"
                )
        for target in targets[1:]:
            say(f"    {target.label}: {target.started} executions in all, every one SUCCEEDED")
        if any(t.errors for t in targets):
            say(f"    error answers: {', '.join(f'{t.label} {t.errors}' for t in targets)}")
        say()

        say(
            "3. latency: start via the AWS API -> SUCCEEDED commit (NOTIFY from a benchmark trigger)"
        )
        for target in targets[1:]:
            await section_latency(bench, client, target, sizes.latency_executions)
        say()
    if profile is not None:
        say("profiles of the API processes (last repetition):")
        for path in sorted(profile.glob("*.txt")):
            report_profile(
                path, top=15, skip=("asyncio", "<module>", "uvloop", "run (", "_run_once")
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--database-url", metavar="URL", help="a Postgres server (default: throwaway)"
    )
    parser.add_argument("--seconds", type=float, help="length of each load window")
    parser.add_argument("--reps", type=int, help="repetitions of each window")
    parser.add_argument(
        "--concurrency", type=int, default=16, help="client connections (default 16)"
    )
    parser.add_argument("--latency-executions", type=int, help="executions in section 3")
    parser.add_argument(
        "--client",
        choices=["httpx", "raw", "both"],
        default="both",
        help="load generator: httpx.AsyncClient, raw keep-alive asyncio streams, or both (default)",
    )
    parser.add_argument("--quick", action="store_true", help="shorter windows, fewer repetitions")
    parser.add_argument("--synchronous-commit", choices=["on", "off"], default="on")
    parser.add_argument("--py-spy", metavar="DIR", type=Path, help="profile the API processes")
    parser.add_argument("--serve-bare", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_bare:
        serve_bare(args.serve_bare)
        return 0
    sizes = QUICK if args.quick else FULL
    sizes = Sizes(
        seconds=args.seconds or sizes.seconds,
        reps=args.reps or sizes.reps,
        warmup_seconds=sizes.warmup_seconds,
        latency_executions=args.latency_executions or sizes.latency_executions,
    )
    if args.py_spy is not None:
        args.py_spy.mkdir(parents=True, exist_ok=True)

    def terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, terminate)
    logs = Path(tempfile.mkdtemp(prefix="swapi-logs-"))
    with postgres(args.database_url, "api.py") as server:
        bench = Bench(server, Processes(logs), sizes, args.concurrency, args.synchronous_commit)
        try:
            import uvloop

            clients = ["httpx", "raw"] if args.client == "both" else [args.client]
            uvloop.run(run(bench, args.py_spy, clients))
        except BaseException:
            say(f"api.py: failed; the servers' logs are in {logs}")
            raise
        finally:
            bench.close()
    shutil.rmtree(logs, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
