"""The worker as a real process: SIGTERM stops it cleanly, an absent database is waited for."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from service import control
from service.db.engine import create_engine
from service.db.migrate import upgrade

ROOT = Path(__file__).resolve().parents[2]
CHAIN = {
    "StartAt": "A",
    "States": {
        "A": {"Type": "Pass", "Next": "W"},
        "W": {"Type": "Wait", "Seconds": 1, "End": True},
    },
}


def _worker(url: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:  # the child keeps its own descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "service.cli", "worker", "--database-url", url, "--lanes", "1"],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )


def _wait_for(predicate, seconds: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_sigterm_stops_the_worker_cleanly_and_work_resumes_elsewhere(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    upgrade(url)

    async def start() -> list[str]:
        engine = create_engine(url)
        await control.create_state_machine(engine, "sm", CHAIN)
        ids = [(await control.start_execution(engine, "sm", {"i": i})).id for i in range(5)]
        await engine.dispose()
        return ids

    async def statuses(ids: list[str]) -> list[tuple[str, int]]:
        engine = create_engine(url)
        out = [await control.describe_execution(engine, i) for i in ids]
        await engine.dispose()
        return [(s.status, s.events) for s in out]

    ids = asyncio.run(start())
    log = tmp_path / "worker.log"
    worker = _worker(url, log)
    try:
        _wait_for(
            lambda: all(n >= 4 for _, n in asyncio.run(statuses(ids))),
            20,
            "the executions to reach their Wait",
        )
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=15) == 0, log.read_text()
    finally:
        if worker.poll() is None:
            worker.kill()
    assert "worker stopped after" in log.read_text()
    assert all(status == "RUNNING" for status, _ in asyncio.run(statuses(ids)))
    # Another worker picks the waiting executions up: the timers were durable.
    second = _worker(url, tmp_path / "second.log")
    try:
        _wait_for(
            lambda: all(s == "SUCCEEDED" for s, _ in asyncio.run(statuses(ids))),
            20,
            "the executions to finish",
        )
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=15)


def test_a_worker_waits_for_an_unreachable_database_instead_of_dying(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port where nothing listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = tmp_path / "worker.log"
    worker = _worker(f"postgresql://postgres@127.0.0.1:{port}/nothing", log)
    try:
        _wait_for(lambda: "retrying in" in log.read_text(), 20, "the worker to report retries")
        assert worker.poll() is None, log.read_text()  # still alive, still trying
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=15) == 0, log.read_text()
    finally:
        if worker.poll() is None:
            worker.kill()
    text = log.read_text()
    assert "Traceback" not in text, text


@pytest.mark.parametrize("url", ["mysql://x/y", "not a url at all"])
def test_a_bad_database_url_is_a_usage_error(url: str) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "service.cli", "worker", "--database-url", url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 2
    assert "statewright:" in completed.stderr
    assert "Traceback" not in completed.stderr
