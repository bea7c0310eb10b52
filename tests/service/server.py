"""The REAL Statewright server in a subprocess, for API tests over HTTP.

``running_server(database_url, log_path)`` starts ``python -m service.cli serve`` on a free
127.0.0.1 port, waits until ``GET /healthz`` answers, yields a :class:`Server` and stops it
(SIGTERM, then SIGKILL) at the end. The server's output goes to ``log_path``; ``Server.tail()``
gives its last lines for failure messages. The fixtures that use it live in
``tests/service/conftest.py`` (``sqlite_api_server``, ``postgres_api_server``, ``api_server``).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
START_ATTEMPTS = 3  # the free port can be taken between picking and binding it
T = TypeVar("T")


@dataclass
class Server:
    """A running server: its base URL, backend, process and log."""

    base_url: str
    backend: str
    database_url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    key_id: str = ""  # an API key made for the tests (statewright keys create)
    secret: str = ""

    @property
    def headers(self) -> dict[str, str]:
        """The REST API's Authorization header for the tests' key."""
        return {"Authorization": f"Bearer {self.key_id}:{self.secret}"}

    @property
    def aws_credentials(self) -> dict[str, str]:
        """boto3.client(...) keyword arguments: the tests' key as AWS credentials."""
        return {"aws_access_key_id": self.key_id, "aws_secret_access_key": self.secret}

    def tail(self, lines: int = 40) -> str:
        """The last lines of the server's output (for failure messages)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as exc:
            return f"(no server log: {exc})"
        return "\n".join(text.splitlines()[-lines:]) or "(server log is empty)"

    def check_alive(self) -> None:
        """Fail with the log tail when the server process has exited."""
        code = self.process.poll()
        if code is not None:
            raise AssertionError(
                f"the {self.backend} server exited with {code}; log tail:\n{self.tail()}"
            )

    def wait_for(
        self, probe: Callable[[], T | None], what: str, timeout: float = 30.0, every: float = 0.1
    ) -> T:
        """Poll ``probe`` until it returns something other than None/False, or fail at the
        deadline with ``what`` and the server log's tail."""
        deadline = time.monotonic() + timeout
        last: object = None
        while True:
            value = probe()
            if value is not None and value is not False:
                return value
            last = value
            if time.monotonic() > deadline:
                self.check_alive()
                raise AssertionError(
                    f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r}) "
                    f"on the {self.backend} server; log tail:\n{self.tail()}"
                )
            time.sleep(every)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# The server key of the test servers (each test run makes its own).
SERVER_KEY = secrets.token_urlsafe(32)


def _child_env() -> dict[str, str]:
    # Flags decide the configuration: drop STATEWRIGHT_* settings inherited from the shell.
    env = {k: v for k, v in os.environ.items() if not k.startswith("STATEWRIGHT_")}
    env["PYTHONUNBUFFERED"] = "1"
    # GetActivityTask's long poll: short, so a test of an empty activity takes a second.
    env["STATEWRIGHT_ACTIVITY_POLL_SECONDS"] = "1"
    env["STATEWRIGHT_SECRET_KEY"] = SERVER_KEY
    # HTTP tasks of the tests call servers the tests start on loopback; short timeouts.
    env["STATEWRIGHT_HTTP_ALLOW"] = "127.0.0.1"
    env["STATEWRIGHT_HTTP_TIMEOUT_SECONDS"] = "1.5"
    env["STATEWRIGHT_HTTP_PER_HOST"] = "4"  # test_http_tasks checks the limit holds
    env["STATEWRIGHT_SCHEDULE_SECONDS"] = "true"  # rate(1 second) schedules in tests
    return env


def create_key(
    database_url: str, name: str = "tests", env: dict[str, str] | None = None
) -> tuple[str, str]:
    """A new API key in the database, made the way users make one: ``statewright keys
    create --json`` (with ``env`` added to the test settings). Returns (id, secret)."""
    done = subprocess.run(
        [
            *(sys.executable, "-m", "service.cli", "keys", "create"),
            *("--name", name, "--json", "--database-url", database_url),
        ],
        cwd=ROOT,
        capture_output=True,
        env={**_child_env(), **(env or {})},
        timeout=60,
    )
    if done.returncode != 0:
        raise AssertionError(f"statewright keys create failed: {done.stderr.decode()}")
    made = json.loads(done.stdout)
    return made["id"], made["secret"]


def _stop(process: subprocess.Popen[bytes]) -> int | None:
    if process.poll() is not None:
        return process.returncode
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=STOP_TIMEOUT_S)
        return None


def _wait_healthy(server: Server, deadline: float) -> bool:
    """True once /healthz answers 200; False when the process died first (e.g. port taken)."""
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                return False
            try:
                if client.get(f"{server.base_url}/healthz").status_code == 200:
                    return True
            except httpx.TransportError:
                pass
            time.sleep(0.05)
    raise AssertionError(
        f"the {server.backend} server did not answer /healthz within {START_TIMEOUT_S:.0f} s; "
        f"log tail:\n{server.tail()}"
    )


def _launch(
    database_url: str,
    backend: str,
    log_path: Path,
    workers: int,
    key: tuple[str, str],
    command: str,
    env: dict[str, str] | None = None,
) -> Server:
    port = free_port()
    with log_path.open("ab") as out:  # the child keeps its own descriptor
        out.write(f"--- starting on port {port}\n".encode())
        out.flush()
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "service.cli",
                command,
                "--database-url",
                database_url,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                # `api` runs no workers (they are separate `statewright worker` processes)
                *(("--workers", str(workers)) if command != "api" else ()),
            ],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**_child_env(), **(env or {})},
        )
    return Server(f"http://127.0.0.1:{port}", backend, database_url, process, log_path, *key)


@contextlib.contextmanager
def running_server(
    database_url: str,
    log_path: Path,
    *,
    backend: str,
    workers: int = 2,
    command: str = "serve",
    env: dict[str, str] | None = None,
) -> Iterator[Server]:
    """Start ``statewright serve`` (or ``command``: ``dev``, ``api``) on ``database_url``, with
    ``env`` added to the test settings (of ``keys create`` too); yield it once healthy; stop
    it after."""
    deadline = time.monotonic() + START_TIMEOUT_S
    server: Server | None = None
    key = create_key(database_url, env=env)
    try:
        for _ in range(START_ATTEMPTS):
            server = _launch(database_url, backend, log_path, workers, key, command, env)
            if _wait_healthy(server, deadline):
                break
            _stop(server.process)
        else:
            assert server is not None
            raise AssertionError(
                f"the {backend} server exited during start-up {START_ATTEMPTS} times; "
                f"log tail:\n{server.tail()}"
            )
        yield server
    finally:
        if server is not None:
            _stop(server.process)
