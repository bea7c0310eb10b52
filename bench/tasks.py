"""HTTP and container tasks through the full service, beside their baselines, in one run.

Run from the repository root:

    python bench/tasks.py [--database-url URL] [--items N] [--containers N] [--quick]

1. The echo server (uvicorn + httptools, one process, as the service runs) alone: requests/s
   with 50 concurrent keep-alive requests from a raw asyncio client (the server's capacity),
   and from the HTTP runner's own client (service.runners.http.Client), for reference.
2. Statewright: ``statewright serve --workers 2`` on Postgres (a throwaway cluster unless
   ``--database-url``), one execution of a Map of N items (1,000) with MaxConcurrency 50 whose
   iterations are HTTP tasks POSTing to the echo server; tasks/s from StartExecution to
   SUCCEEDED. Goal: at least 50% of the echo server's rate.

3. Container tasks: the engine of scripts/container-engine.sh (podman's API service and the
   busybox image); N (15) executions of one container Task running ``true``, one at a time,
   from StartExecution to SUCCEEDED, interleaved with N bare ``podman run --rm --network none
   localhost/busybox:test true``. Goal: the service's median at most 1.3x the bare median.
   ``--containers 0`` skips it.

Medians of repetitions; the machine is shared, compare the ratio, not single figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import fastapi

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from common import median, postgres, say, serve_app, verdict  # noqa: E402

GOAL_RATIO = 0.5
CONCURRENCY = 50
CONTAINER_GOAL = 1.3
IMAGE = "localhost/busybox:test"


def echo_app() -> Any:
    """The target: answers every POST with the JSON it was sent."""
    from fastapi import FastAPI
    from fastapi.responses import Response

    app = FastAPI()

    @app.post("/echo")
    async def echo(request: fastapi.Request) -> Response:
        return Response(await request.body(), media_type="application/json")

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def serve_echo(port: int) -> None:
    serve_app(echo_app(), port)


def cpu_seconds(match: Any) -> dict[int, float]:
    """CPU seconds (user + system, all threads) of each process ``match(pid, cmdline)`` picks."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if not match(int(entry.name), cmdline):
                continue
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
            out[int(entry.name)] = (int(fields[11]) + int(fields[12])) / tick
        except (OSError, ValueError, IndexError):  # gone meanwhile
            continue
    return out


def cpu_used(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds between two cpu_seconds() readings (a process that appeared counts whole)."""
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_healthy(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    import httpx

    deadline = time.monotonic() + 60
    async with httpx.AsyncClient(timeout=2) as client:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{url} exited: {log.read_text()[-2000:]}")
            try:
                if (await client.get(url)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not answer: {log.read_text()[-2000:]}")
            await asyncio.sleep(0.05)


async def echo_capacity(port: int, seconds: float, client: str) -> float:
    """Requests/s the echo server answers to 50 concurrent keep-alive requests: "raw" writes
    prepared bytes on asyncio streams (what the server can do), "runner" uses the HTTP
    runner's own client (what the runner could do if it did nothing else)."""
    body = json.dumps({"item": 1, "payload": "x" * 64}).encode()
    done = 0
    deadline = time.perf_counter() + seconds
    if client == "raw":
        head = (
            f"POST /echo HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        request = head.encode() + body

        async def raw_loop() -> None:
            nonlocal done
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                while time.perf_counter() < deadline:
                    writer.write(request)
                    answer = await reader.readuntil(b"\r\n\r\n")
                    length = 0
                    for line in answer.split(b"\r\n")[1:]:
                        name, _, value = line.partition(b":")
                        if name.strip().lower() == b"content-length":
                            length = int(value)
                    await reader.readexactly(length)
                    if not answer.startswith(b"HTTP/1.1 200"):
                        raise RuntimeError(answer.decode(errors="replace"))
                    done += 1
            finally:
                writer.close()

        start = time.perf_counter()
        await asyncio.gather(*(raw_loop() for _ in range(CONCURRENCY)))
        return done / (time.perf_counter() - start)
    import yarl

    from service.runners.http import Client

    runner_client = Client(CONCURRENCY)
    url = yarl.URL(f"http://127.0.0.1:{port}/echo")
    try:

        async def runner_loop() -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                answer = await runner_client.send(
                    "POST", url, [("Content-Type", "application/json")], body, 10, shown="echo"
                )
                if answer.status != 200:
                    raise RuntimeError(f"the echo server answered {answer.status}")
                done += 1

        start = time.perf_counter()
        await asyncio.gather(*(runner_loop() for _ in range(CONCURRENCY)))
        return done / (time.perf_counter() - start)
    finally:
        await runner_client.aclose()


async def statewright_rate(
    base: str, echo: str, items: int, label: str, cpu: dict[str, Any] | None = None
) -> float:
    """HTTP tasks/s of one execution: a Map of ``items`` HTTP tasks, MaxConcurrency 50. With
    ``cpu`` ({name: match} for cpu_seconds), the CPU ms per task each group of processes used
    from the start to SUCCEEDED is printed."""
    import httpx

    definition = {
        "StartAt": "Fan",
        "States": {
            "Fan": {
                "Type": "Map",
                "ItemsPath": "$.items",
                "MaxConcurrency": CONCURRENCY,
                "ItemProcessor": {
                    "StartAt": "Call",
                    "States": {
                        "Call": {
                            "Type": "Task",
                            "Resource": "arn:aws:states:::http:invoke",
                            "Parameters": {
                                "ApiEndpoint": f"{echo}/echo",
                                "Method": "POST",
                                "RequestBody.$": "$",
                            },
                            "ResultSelector": {"echoed.$": "$.ResponseBody.item"},
                            "End": True,
                        }
                    },
                },
                "End": True,
            }
        },
    }
    async with httpx.AsyncClient(base_url=f"{base}/api/v1", timeout=60) as client:
        made = await client.post("/state-machines", json={"name": label, "definition": definition})
        made.raise_for_status()
        data = {"items": [{"item": i} for i in range(items)]}
        before = {name: cpu_seconds(match) for name, match in (cpu or {}).items()}
        start = time.perf_counter()
        started = await client.post(f"/state-machines/{label}/executions", json={"input": data})
        started.raise_for_status()
        execution = started.json()["id"]
        while True:
            described = (await client.get(f"/executions/{execution}")).json()
            if described["status"] != "RUNNING":
                break
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - start
        used = {
            name: cpu_used(before[name], cpu_seconds(match)) for name, match in (cpu or {}).items()
        }
        if used:
            total = sum(used.values())
            say(
                "          CPU per task: "
                + ", ".join(f"{name} {1000 * value / items:.2f} ms" for name, value in used.items())
                + f"; in all {1000 * total / items:.2f} ms: at most "
                f"{items * (os.cpu_count() or 1) / total:.0f} tasks/s on this machine's "
                f"{os.cpu_count()} cores"
            )
        if described["status"] != "SUCCEEDED":
            raise RuntimeError(f"the Map execution ended {described['status']}: {described}")
        if [o["echoed"] for o in described["output"]] != list(range(items)):
            raise RuntimeError("the Map's output is not the items echoed back in order")
        events: list[dict[str, Any]] = []
        while True:
            page = await client.get(
                f"/executions/{execution}/history",
                params={"after": events[-1]["id"] if events else 0, "limit": 1000},
            )
            page.raise_for_status()
            if not page.json():
                break
            events.extend(page.json())
    report_phases(events)
    return items / elapsed


PHASES = (
    ("waiting for a runner", "TaskScheduled", "TaskStarted"),
    ("request and recording", "TaskStarted", "TaskSucceeded"),
    ("waiting for the decision", "TaskSucceeded", "MapIterationSucceeded"),
)


def report_phases(events: list[dict[str, Any]]) -> None:
    """Where an iteration's time goes, from the history's timestamps: for each phase between
    two event types, the mean time in it (Little's law: the area under the count of tasks in
    the phase over time, divided by the tasks), and the mean number of tasks in it."""
    from datetime import datetime

    marks = [(datetime.fromisoformat(e["timestamp"]).timestamp(), e["type"]) for e in events]
    if len(marks) < 2:
        return
    span = marks[-1][0] - marks[0][0]
    for label, enter, leave in PHASES:
        inside, area, previous, entered = 0, 0.0, marks[0][0], 0
        for at, kind in marks:
            area += inside * (at - previous)
            previous = at
            if kind == enter:
                inside += 1
                entered += 1
            elif kind == leave:
                inside -= 1
        if entered:
            say(
                f"          {label:26s} {1000 * area / entered:7.1f} ms per task, "
                f"{area / span if span else 0:5.1f} tasks in it on average"
            )


def container_engine() -> dict[str, str]:
    """DOCKER_HOST and CONTAINERS_CONF of the engine scripts/container-engine.sh starts."""
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "container-engine.sh")],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"no container engine: {done.stderr[-2000:]}")
    return dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)


async def container_overhead(base: str, runs: int, engine: dict[str, str]) -> None:
    """One container Task running ``true`` through the service, against a bare podman run."""
    import httpx

    definition = {
        "StartAt": "Run",
        "States": {
            "Run": {
                "Type": "Task",
                "Resource": "arn:statewright:::container:run",
                "Parameters": {"Image": IMAGE, "Command": ["true"]},
                "End": True,
            }
        },
    }
    bare_command = ["podman", "run", "--rm", "--network", "none", IMAGE, "true"]
    env = {**os.environ, **engine}
    service_times, bare_times = [], []
    async with httpx.AsyncClient(base_url=f"{base}/api/v1", timeout=60) as client:
        made = await client.post(
            "/state-machines", json={"name": "container-true", "definition": definition}
        )
        made.raise_for_status()

        async def through_service() -> float:
            start = time.perf_counter()
            started = await client.post("/state-machines/container-true/executions", json={})
            started.raise_for_status()
            execution = started.json()["id"]
            while True:
                described = (await client.get(f"/executions/{execution}")).json()
                if described["status"] != "RUNNING":
                    break
                await asyncio.sleep(0.005)
            elapsed = time.perf_counter() - start
            if described["status"] != "SUCCEEDED":
                raise RuntimeError(f"the container execution ended: {described}")
            return elapsed

        def bare() -> float:
            start = time.perf_counter()
            subprocess.run(bare_command, env=env, check=True, capture_output=True)
            return time.perf_counter() - start

        await through_service()  # warm-up: the engine's image cache, the runner's client
        await asyncio.to_thread(bare)
        for run in range(runs):
            # Interleaved, and alternating which goes first, so both see the same machine.
            if run % 2:
                bare_times.append(await asyncio.to_thread(bare))
                service_times.append(await through_service())
            else:
                service_times.append(await through_service())
                bare_times.append(await asyncio.to_thread(bare))
    service, baseline = median(service_times), median(bare_times)
    say(f"bare `{' '.join(bare_command)}`: {baseline:6.3f} s (median of {runs})")
    say(f"one container Task through Statewright:     {service:6.3f} s (median of {runs})")
    ratio = service / baseline
    say(f"ratio {ratio:5.2f}   goal <= {CONTAINER_GOAL:g}: {verdict(ratio <= CONTAINER_GOAL)}")


async def run(
    server: Any, items: int, reps: int, seconds: float, logs: Path, containers: int
) -> None:
    children: list[subprocess.Popen[bytes]] = []

    def spawn(label: str, command: list[str], env: dict[str, str] | None = None) -> Any:
        log = logs / f"{label}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env
            )
        children.append(process)
        return process, log

    try:
        echo_port, sw_port = free_port(), free_port()
        echo, echo_log = spawn(
            "echo", [sys.executable, str(Path(__file__).resolve()), "--serve-echo", str(echo_port)]
        )
        echo_base = f"http://127.0.0.1:{echo_port}"
        await wait_healthy(f"{echo_base}/healthz", echo, echo_log)

        database = "swtasks_" + secrets.token_hex(4)
        await asyncio.to_thread(server.create_database, database)
        url = server.url(database)
        engine = container_engine() if containers else {}
        env = {k: v for k, v in os.environ.items() if not k.startswith("STATEWRIGHT_")}
        env.update(STATEWRIGHT_HTTP_ALLOW="127.0.0.1", STATEWRIGHT_HTTP_CONCURRENCY="64")
        env.update(engine)
        service, service_log = spawn(
            "serve",
            [
                *(sys.executable, "-m", "service.cli", "serve", "--no-auth"),
                *("--database-url", url, "--port", str(sw_port), "--workers", "2"),
            ],
            env,
        )
        sw_base = f"http://127.0.0.1:{sw_port}"
        await wait_healthy(f"{sw_base}/healthz", service, service_log)

        say(
            f"1. the echo server alone: {CONCURRENCY} concurrent keep-alive requests, {seconds:g} s"
        )
        capacities, runner_rates = [], []
        for _ in range(reps):
            capacities.append(await echo_capacity(echo_port, seconds, "raw"))
            runner_rates.append(await echo_capacity(echo_port, seconds, "runner"))
            say(
                f"    {capacities[-1]:8.0f} requests/s (raw client); "
                f"{runner_rates[-1]:8.0f} with the HTTP runner's client"
            )
        say(f"2. Statewright: a Map of {items} HTTP tasks, MaxConcurrency {CONCURRENCY}")
        await statewright_rate(sw_base, echo_base, 50, "warmup")
        # CPU per task: the service (API and workers in one process), the Postgres backends
        # serving its database, and the echo server (the rest of the machine is not counted).
        cpu = {
            "service": lambda pid, _: pid == service.pid,
            "postgres": lambda _, line: line.startswith("postgres:") and f" {database} " in line,
            "echo": lambda pid, _: pid == echo.pid,
        }
        rates = []
        for rep in range(reps):
            rates.append(await statewright_rate(sw_base, echo_base, items, f"map{rep}", cpu))
            say(f"    {rates[-1]:8.0f} tasks/s")
        capacity, rate = median(capacities), median(rates)
        say()
        say(f"echo server alone:     {capacity:8.0f} requests/s (median of {reps}, raw client)")
        say(f"  (the HTTP runner's client alone reaches {median(runner_rates):.0f} requests/s)")
        say(f"through Statewright:   {rate:8.0f} HTTP tasks/s (median of {reps})")
        say(
            f"ratio {rate / capacity:5.2f}   goal >= {GOAL_RATIO:g}: "
            f"{verdict(rate / capacity >= GOAL_RATIO)}"
        )
        if containers:
            say()
            say(f"3. container tasks: `true` in {IMAGE}, one at a time")
            await container_overhead(sw_base, containers, engine)
    finally:
        for process in children:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in children:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", metavar="URL", help="a Postgres server to use")
    parser.add_argument("--items", type=int, default=1000, help="Map items (default 1000)")
    parser.add_argument(
        "--containers", type=int, default=15, help="container runs of each kind (0: skip)"
    )
    parser.add_argument("--quick", action="store_true", help="one repetition, shorter windows")
    parser.add_argument("--serve-echo", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_echo:
        serve_echo(args.serve_echo)
        return 0
    logs = Path(tempfile.mkdtemp(prefix="swbench-tasks-"))
    reps, seconds = (1, 2.0) if args.quick else (3, 5.0)
    with postgres(args.database_url, "tasks.py", fsync=True) as server:
        asyncio.run(run(server, args.items, reps, seconds, logs, args.containers))
    say(f"logs: {logs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
