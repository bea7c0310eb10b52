"""A worker SIGKILLed while its HTTP task's request is in flight: once its lease runs out,
another worker sends the request again with the same Idempotency-Key (at least once, and
de-duplicable), TaskStarted is recorded once, and the execution finishes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from service import control
from service.db.engine import create_engine
from service.db.migrate import upgrade

ROOT = Path(__file__).resolve().parents[2]


class Target:
    """Answers /work, slowly the first time (the test kills the worker meanwhile)."""

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.first_arrived = threading.Event()
        target = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                target.keys.append(self.headers["Idempotency-Key"])
                if len(target.keys) == 1:
                    target.first_arrived.set()
                    time.sleep(3)  # the worker that sent this is killed in the meantime
                body = json.dumps({"done": len(target.keys)}).encode()
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:  # the killed worker's connection is gone
                    pass
                finally:
                    self.close_connection = True

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/work"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def _worker(url: str, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STATEWRIGHT_")}
    env.update(
        PYTHONUNBUFFERED="1",
        STATEWRIGHT_HTTP_ALLOW="127.0.0.1",
        STATEWRIGHT_HTTP_TIMEOUT_SECONDS="1",  # a lease of 6 s
    )
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "service.cli", "worker", "--database-url", url],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )


def test_a_killed_worker_s_request_is_sent_again_with_the_same_key(
    postgres_database: str, tmp_path: Path
) -> None:
    url = postgres_database
    upgrade(url)
    target = Target()
    definition = {
        "StartAt": "Call",
        "States": {
            "Call": {
                "Type": "Task",
                "Resource": "arn:aws:states:::http:invoke",
                "Parameters": {"ApiEndpoint": target.url, "Method": "POST", "RequestBody": {}},
                "End": True,
            }
        },
    }

    async def start() -> str:
        engine = create_engine(url)
        await control.create_state_machine(engine, "calls", definition)
        execution = (await control.start_execution(engine, "calls", {})).id
        await engine.dispose()
        return execution

    async def outcome(execution: str) -> tuple[str, Any, list[str]]:
        engine = create_engine(url)
        summary = await control.describe_execution(engine, execution)
        types = [e.type for e in await control.history(engine, execution)]
        await engine.dispose()
        return summary.status, summary.output, types

    log = tmp_path / "workers.log"
    first = _worker(url, log)
    second: subprocess.Popen[bytes] | None = None
    try:
        execution = asyncio.run(start())
        assert target.first_arrived.wait(30), log.read_text()
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        second = _worker(url, log)
        deadline = time.monotonic() + 30
        while True:
            status, output, types = asyncio.run(outcome(execution))
            if status != "RUNNING":
                break
            assert time.monotonic() < deadline, (types, log.read_text())
            time.sleep(0.2)
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
        target.server.shutdown()
        target.server.server_close()
    assert status == "SUCCEEDED", log.read_text()
    assert output["ResponseBody"] == {"done": 2}
    # Sent twice (at least once), both times with the one key of this attempt.
    assert len(target.keys) == 2 and target.keys[0] == target.keys[1]
    assert types.count("TaskStarted") == 1 and types.count("TaskSucceeded") == 1
