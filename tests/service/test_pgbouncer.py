"""Statewright behind a real PgBouncer in transaction pooling mode.

PgBouncer (Debian's package; 1.18 has no prepared statement support of its own) is started
with a config written here, in front of the test Postgres. ``statewright api`` and two
``statewright worker`` processes use it for everything; one worker LISTENs on a direct
connection, the other polls. Pass chains, a Wait, a Map, an HTTP task and a callback all
succeed. Beside it, the same transactions through the same PgBouncer show why the setting is
needed: without it, a statement SQLAlchemy's asyncpg dialect prepared in one transaction is
gone in the next ("prepared statement ... does not exist").
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
import sqlalchemy as sa

from service.db.engine import Pooler, create_engine
from tests.postgres import PostgresServer
from tests.service.server import ROOT, _child_env, running_server
from tests.service.test_api_rest import CALLBACK, start, task_token, upload, wait_status

START_TIMEOUT_S = 20.0
INSTALL = "apt-get install -y pgbouncer"
TRANSACTION_MODE = {"STATEWRIGHT_DATABASE_POOLER": "transaction"}


@dataclass
class PgBouncer:
    """A running PgBouncer: where it listens and its log."""

    host: str
    port: int
    log: Path

    def url(self, direct: str) -> str:
        """``direct`` (a URL of the test Postgres) with PgBouncer's host and port instead."""
        parts = urlsplit(direct)
        auth = parts.netloc.rpartition("@")[0]
        return urlunsplit(parts._replace(netloc=f"{auth}@{self.host}:{self.port}"))

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _version(binary: str) -> tuple[int, ...]:
    done = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30)
    found = re.search(r"(\d+)\.(\d+)", done.stdout + done.stderr)
    return tuple(int(n) for n in found.groups()) if found else (0,)


def _config(server: PostgresServer, port: int, folder: Path, version: tuple[int, ...]) -> str:
    target = f"host={server.host} port={server.port}"
    if server.password is not None:
        target += f" user={server.user} password={server.password}"
    # PgBouncer 1.21 and later can track prepared statements (max_prepared_statements); the
    # negative test shows what happens without that, as with Debian 12's 1.18 (which refuses
    # the key).
    tracking = "max_prepared_statements = 0\n" if version >= (1, 21) else ""
    return f"""\
[databases]
* = {target}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {folder / "users.txt"}
pool_mode = transaction
; Few server connections for many clients: transactions of different clients share them.
default_pool_size = 4
max_client_conn = 500
; LIFO reuse of idle server connections (the default, named here: the negative test's
; sequence of transactions relies on it).
server_round_robin = 0
{tracking}"""


def _wait_listening(process: subprocess.Popen[bytes], port: int) -> bool:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return True
        time.sleep(0.05)
    return False


@pytest.fixture(scope="module")
def pgbouncer(postgres_server: PostgresServer) -> Iterator[PgBouncer]:
    binary = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin")
    if binary is None:
        pytest.fail(f"pgbouncer is not installed: install it with `{INSTALL}`", pytrace=False)
    # Under /tmp and readable by all: as root, PgBouncer runs as the postgres OS user (-u).
    folder = Path(tempfile.mkdtemp(prefix="statewright-pgbouncer-", dir="/tmp"))
    folder.chmod(0o755)
    as_root = hasattr(os, "geteuid") and os.geteuid() == 0
    log = folder / "pgbouncer.log"
    (folder / "users.txt").write_text(f'"{postgres_server.user}" ""\n')
    process: subprocess.Popen[bytes] | None = None
    try:
        for _ in range(3):  # the free port can be taken between picking and binding it
            port = _free_port()
            config = folder / "pgbouncer.ini"
            config.write_text(_config(postgres_server, port, folder, _version(binary)))
            for path in folder.iterdir():
                path.chmod(0o644)
            with log.open("ab") as out:
                process = subprocess.Popen(
                    [binary, *(("-u", "postgres") if as_root else ()), str(config)],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            if _wait_listening(process, port):
                break
            process.kill()
            process.wait()
        else:
            raise AssertionError(f"pgbouncer did not start; its log:\n{log.read_text()}")
        yield PgBouncer("127.0.0.1", port, log)
    finally:
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(folder, ignore_errors=True)


# ---------------------------------------------------------------- why the setting is needed


async def _interleaved(url: str, pooler: Pooler) -> None:
    """Transactions of two pooled connections, A and B, through PgBouncer (LIFO reuse of
    server connections): A holds server connection 1 while B prepares its statement on 2;
    then A, and after it B, run the same statement again, both on server connection 1."""
    engine = create_engine(url, pool_size=2, max_overflow=0, pooler=pooler)
    statement = sa.text("SELECT count(*) FROM pg_class WHERE relpages >= :pages")
    try:
        async with engine.connect() as a, engine.connect() as b:
            await a.execute(statement, {"pages": 0})  # A's transaction stays open
            await b.execute(statement, {"pages": 0})
            await b.commit()
            await a.commit()  # server connection 1 is the one released last
            await a.execute(statement, {"pages": 0})
            await a.commit()
            await b.execute(statement, {"pages": 0})  # on 1, where B prepared nothing
            await b.commit()
    finally:
        await engine.dispose()


def test_without_the_setting_prepared_statements_break(
    pgbouncer: PgBouncer, postgres_database: str
) -> None:
    with pytest.raises(sa.exc.DBAPIError, match=r"prepared statement .* does not exist"):
        asyncio.run(_interleaved(pgbouncer.url(postgres_database), "none"))


def test_with_the_setting_the_same_transactions_work(
    pgbouncer: PgBouncer, postgres_database: str
) -> None:
    asyncio.run(_interleaved(pgbouncer.url(postgres_database), "transaction"))


# ---------------------------------------------------------------- the service behind it

PASS_CHAIN = {
    "StartAt": "One",
    "States": {
        "One": {"Type": "Pass", "Result": 1, "ResultPath": "$.one", "Next": "Two"},
        "Two": {"Type": "Pass", "Result": 2, "ResultPath": "$.two", "Next": "Three"},
        "Three": {"Type": "Pass", "Result": 3, "ResultPath": "$.three", "End": True},
    },
}
WAIT = {
    "StartAt": "Nap",
    "States": {
        "Nap": {"Type": "Wait", "Seconds": 1, "Next": "Done"},
        "Done": {"Type": "Pass", "End": True},
    },
}
MAP = {
    "StartAt": "Each",
    "States": {
        "Each": {
            "Type": "Map",
            "ItemsPath": "$.items",
            "MaxConcurrency": 3,
            "ItemProcessor": {
                "StartAt": "Double",
                "States": {
                    "Double": {
                        "Type": "Pass",
                        "Parameters": {"n.$": "States.MathAdd($, $)"},
                        "End": True,
                    }
                },
            },
            "End": True,
        }
    },
}


@pytest.fixture(scope="module")
def target() -> Iterator[str]:
    """A local HTTP server for the HTTP task: answers every request with a JSON body."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.dumps({"echo": json.loads(self.rfile.read(length) or b"null")}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _worker(url: str, log: Path, *flags: str) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:  # the child keeps its own descriptor
        return subprocess.Popen(
            [
                *(sys.executable, "-m", "service.cli", "worker", "--database-url", url),
                *("--lanes", "2", "--database-pooler", "transaction", *flags),
            ],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=_child_env(),
        )


@contextlib.contextmanager
def _running(process: subprocess.Popen[bytes]) -> Iterator[subprocess.Popen[bytes]]:
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.mark.timeout(180)
def test_the_service_runs_behind_pgbouncer_in_transaction_mode(
    pgbouncer: PgBouncer, postgres_database: str, target: str, tmp_path: Path
) -> None:
    pooled = pgbouncer.url(postgres_database)
    # The API (and its `keys create`, and the migration at its start) through PgBouncer, with
    # the setting from the environment; the workers with the flags.
    with (
        running_server(
            pooled, tmp_path / "api.log", backend="postgres", command="api", env=TRANSACTION_MODE
        ) as server,
        _running(
            _worker(
                pooled,
                tmp_path / "listening.log",
                *("--listen-database-url", postgres_database),
            )
        ),
        _running(_worker(pooled, tmp_path / "polling.log")),
        httpx.Client(
            base_url=f"{server.base_url}/api/v1", timeout=30, headers=server.headers
        ) as api,
    ):
        passes = upload(api, PASS_CHAIN, "pgb-pass")
        chains = [start(api, passes, input={"i": i})["id"] for i in range(50)]
        waiting = start(api, upload(api, WAIT, "pgb-wait"))["id"]
        mapped = start(api, upload(api, MAP, "pgb-map"), input={"items": [1, 2, 3, 4, 5]})["id"]
        http_task = {
            "StartAt": "Call",
            "States": {
                "Call": {
                    "Type": "Task",
                    "Resource": "arn:aws:states:::http:invoke",
                    "Parameters": {
                        "ApiEndpoint": f"{target}/echo",
                        "Method": "POST",
                        "RequestBody": {"order.$": "$.order"},
                    },
                    "OutputPath": "$.ResponseBody",
                    "End": True,
                }
            },
        }
        called = start(api, upload(api, http_task, "pgb-http"), input={"order": 7})["id"]
        parked = start(api, upload(api, CALLBACK, "pgb-callback"))["id"]
        token = task_token(server, api, parked)
        answered = httpx.post(
            f"{server.base_url}/api/v1/callbacks/{token}/success", json={"ok": True}, timeout=30
        )
        assert answered.status_code == 202, answered.text

        for i, execution in enumerate(chains):
            done = wait_status(server, api, execution, "SUCCEEDED")
            assert done["output"] == {"i": i, "one": 1, "two": 2, "three": 3}
        wait_status(server, api, waiting, "SUCCEEDED")
        assert wait_status(server, api, mapped, "SUCCEEDED")["output"] == [
            {"n": 2},
            {"n": 4},
            {"n": 6},
            {"n": 8},
            {"n": 10},
        ]
        assert wait_status(server, api, called, "SUCCEEDED")["output"] == {"echo": {"order": 7}}
        assert wait_status(server, api, parked, "SUCCEEDED")["output"] == {"ok": True}

    listening = (tmp_path / "listening.log").read_text()
    polling = (tmp_path / "polling.log").read_text()
    assert "listening for wake-ups on" in listening, listening
    assert "no LISTEN/NOTIFY wake-ups, polling every" in polling, polling
    # Every process went through PgBouncer (the test database's logins are in its log).
    assert f"db={urlsplit(postgres_database).path.lstrip('/')} " in pgbouncer.tail(10_000)
    logs = {"api": server.tail(400), "listening": listening, "polling": polling}
    for name, text in logs.items():
        assert "prepared statement" not in text, f"{name}:\n{text}"
        assert "Traceback" not in text, f"{name}:\n{text}"
