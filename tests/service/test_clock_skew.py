"""Workers whose clocks are 5 s apart (libfaketime shifts each process's clock) share one
Postgres: no timer fires early, none fires late, because every decision reads the time from
the database, never from the worker's own clock."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from service import control
from service.db.engine import create_engine
from service.db.migrate import upgrade

ROOT = Path(__file__).resolve().parents[2]
WAIT_SECONDS = 2
MACHINE = {
    "StartAt": "Before",
    "States": {
        "Before": {"Type": "Pass", "Next": "Sleep"},
        "Sleep": {"Type": "Wait", "Seconds": WAIT_SECONDS, "Next": "After"},
        "After": {"Type": "Pass", "End": True},
    },
}
SKEWS = ("+5s", "-5s")

# libfaketime, preloaded into the worker process with FAKETIME="+5s" (the faketime command
# would stand between the worker and the signals the test sends it).
LIBFAKETIME = next(iter(sorted(Path("/usr/lib").glob("*/faketime/libfaketime.so.1"))), None)

pytestmark = pytest.mark.skipif(
    LIBFAKETIME is None,
    reason="needs libfaketime (Debian package faketime; .ci/run installs it)",
)


def _skewed_worker(url: str, skew: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "service.cli", "worker", "--database-url", url, "--lanes", "1"],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={
                **os.environ,
                "PYTHONUNBUFFERED": "1",
                "LD_PRELOAD": str(LIBFAKETIME),
                "FAKETIME": skew,
            },
        )


def test_workers_with_clocks_5_s_apart_fire_timers_neither_early_nor_late(
    postgres_database: str, tmp_path: Path
) -> None:
    url = postgres_database
    upgrade(url)
    logs = [tmp_path / f"worker{i}.log" for i in range(len(SKEWS))]
    workers = [_skewed_worker(url, skew, log) for skew, log in zip(SKEWS, logs, strict=True)]
    try:
        # Each worker logs its own idea of the time when it starts: the skew is real.
        deadline = time.monotonic() + 30
        while not all("worker started at" in log.read_text() for log in logs):
            assert time.monotonic() < deadline, [log.read_text() for log in logs]
            assert all(w.poll() is None for w in workers), [log.read_text() for log in logs]
            time.sleep(0.05)
        for skew, log in zip(SKEWS, logs, strict=True):
            found = re.search(r"worker started at (\S+)", log.read_text())
            assert found is not None
            offset = (datetime.fromisoformat(found[1]) - datetime.now(UTC)).total_seconds()
            assert abs(offset - int(skew[:-1])) < 2, (skew, offset)
        results = asyncio.run(_run_executions(url, count=12))
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker, log in zip(workers, logs, strict=True):
            assert worker.wait(timeout=15) == 0, log.read_text()
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    for status, entered, exited in results:
        assert status == "SUCCEEDED"
        waited = exited - entered
        # Not early at all (the skew would allow 5 s early), and not late by the skew either:
        # a worker 5 s behind does not sleep 5 s too long.
        assert waited >= timedelta(seconds=WAIT_SECONDS), waited
        assert waited < timedelta(seconds=WAIT_SECONDS + 1.5), waited
    # Both workers took part (the executions were shared out), so both clocks were tested.
    for log in logs:
        found = re.search(r"worker stopped after (\d+) decisions", log.read_text())
        assert found is not None and int(found[1]) > 0, log.read_text()


async def _run_executions(url: str, count: int) -> list[tuple[str, datetime, datetime]]:
    engine = create_engine(url)
    try:
        await control.create_state_machine(engine, "skewed", MACHINE)
        ids = []
        for i in range(count):
            ids.append((await control.start_execution(engine, "skewed", {"i": i})).id)
            await asyncio.sleep(0.1)  # spread the starts so both workers take some
        deadline = time.monotonic() + 30
        while True:
            summaries = [await control.describe_execution(engine, i) for i in ids]
            if all(s.status != "RUNNING" for s in summaries):
                break
            assert time.monotonic() < deadline, [s.status for s in summaries]
            await asyncio.sleep(0.1)
        out = []
        for summary in summaries:
            history = {e.type: e.timestamp for e in await control.history(engine, summary.id)}
            out.append((summary.status, history["WaitStateEntered"], history["WaitStateExited"]))
        return out
    finally:
        await engine.dispose()
