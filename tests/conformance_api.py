"""Run the conformance corpus end to end through boto3 against a real ``statewright serve``.

    python ../shared/conformance/run.py --python 'tests.conformance_api:run_case'

The first case starts a throwaway PostgreSQL cluster (or uses ``STATEWRIGHT_TEST_DATABASE_URL``)
and ``statewright serve`` with a mock config file; each case adds its mock config to that file
(its responses renamed under the case's state machine name, since cases reuse names), creates
the state machine through CreateStateMachine, starts it with StartExecution on
``<arn>#<test case>`` (Step Functions Local's convention), waits for the end with
DescribeExecution and reads GetExecutionHistory: the same path a boto3 user takes.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import boto3
import httpx
from botocore.config import Config

JSON = Any
ROOT = Path(__file__).resolve().parents[1]
ROLE = "arn:aws:iam::123456789012:role/conformance"


class _Service:
    """The server and its database, started once per process."""

    def __init__(self) -> None:
        _reap_orphans()
        self.stack = contextlib.ExitStack()
        self.dir = Path(tempfile.mkdtemp(prefix="statewright-conformance-"))
        self.mock_path = self.dir / "mocks.json"
        self.mock_path.write_text(json.dumps({"StateMachines": {}, "MockedResponses": {}}))
        url = os.environ.get("STATEWRIGHT_TEST_DATABASE_URL")
        if url:
            database = url
        else:
            from tests.postgres import throwaway_server

            server = self.stack.enter_context(throwaway_server())
            server.create_database("conformance")
            database = server.url("conformance", driver=None)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        # Signed requests, as against AWS: a server key, and an API key made by the CLI.
        env = {**os.environ, "STATEWRIGHT_SECRET_KEY": secrets.token_urlsafe(32)}
        made = subprocess.run(
            [
                *(sys.executable, "-m", "service.cli", "keys", "create", "--name", "conformance"),
                *("--json", "--database-url", database),
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            check=True,
        )
        key = json.loads(made.stdout)
        log = (self.dir / "server.log").open("wb")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "service.cli",
                "serve",
                "--database-url",
                database,
                "--port",
                str(port),
                "--workers",
                "2",
                "--mock-config",
                str(self.mock_path),
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        # Who owns the server: a later run kills it if this process died without cleaning up.
        (self.dir / "owner").write_text(f"{os.getpid()} {self.process.pid}")
        self.base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{self.base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(
                    f"the server did not start: {(self.dir / 'server.log').read_text()[-2000:]}"
                )
            time.sleep(0.1)
        self.client = boto3.client(
            "stepfunctions",
            endpoint_url=self.base,
            region_name="us-east-1",
            aws_access_key_id=key["id"],
            aws_secret_access_key=key["secret"],
            config=Config(retries={"total_max_attempts": 1}, inject_host_prefix=False),
        )
        atexit.register(self.close)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.stack.close()

    def add_mocks(self, name: str, config: dict[str, JSON]) -> None:
        """Merge a case's mock config, its response names made unique by ``name``."""
        merged = json.loads(self.mock_path.read_text())
        rename = {response: f"{name}/{response}" for response in config.get("MockedResponses", {})}
        machine = config["StateMachines"][name]
        merged["StateMachines"][name] = {
            "TestCases": {
                case: {state: rename.get(resp, resp) for state, resp in mapping.items()}
                for case, mapping in machine["TestCases"].items()
            }
        }
        for response, table in config.get("MockedResponses", {}).items():
            merged["MockedResponses"][rename[response]] = table
        temporary = self.mock_path.with_suffix(".tmp")
        temporary.write_text(json.dumps(merged))
        temporary.replace(self.mock_path)  # the runner never reads a half-written file


def _reap_orphans() -> None:
    """Stop servers left by runs that were killed before their atexit cleanup ran."""
    for owner in Path(tempfile.gettempdir()).glob("statewright-conformance-*/owner"):
        parent, server = (int(x) for x in owner.read_text().split())
        try:
            os.kill(parent, 0)
            continue  # its run is still going
        except ProcessLookupError:
            pass
        with contextlib.suppress(ProcessLookupError):
            os.kill(server, signal.SIGKILL)
        owner.unlink()


_service: _Service | None = None


def run_case(
    definition: dict[str, JSON],
    input: JSON,
    mock_config: dict[str, JSON] | None,
    test_case: str | None,
    name: str | None,
) -> dict[str, JSON]:
    """The conformance runner's ``--python`` contract, through the AWS API."""
    global _service
    if _service is None:
        _service = _Service()
    sfn = _service.client
    machine = name or f"conformance-{uuid.uuid4().hex[:12]}"
    if mock_config:
        _service.add_mocks(machine, mock_config)
    try:
        arn = sfn.create_state_machine(
            name=machine, definition=json.dumps(definition), roleArn=ROLE
        )["stateMachineArn"]
    except sfn.exceptions.StateMachineAlreadyExists:
        machine = f"{machine}-{uuid.uuid4().hex[:6]}"
        if mock_config:
            _service.add_mocks(
                machine,
                {
                    **mock_config,
                    "StateMachines": {machine: next(iter(mock_config["StateMachines"].values()))},
                },
            )
        arn = sfn.create_state_machine(
            name=machine, definition=json.dumps(definition), roleArn=ROLE
        )["stateMachineArn"]
    target = f"{arn}#{test_case}" if mock_config and test_case else arn
    execution = sfn.start_execution(stateMachineArn=target, input=json.dumps(input))["executionArn"]
    deadline = time.monotonic() + 60
    while True:
        described = sfn.describe_execution(executionArn=execution)
        if described["status"] != "RUNNING" or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    events: list[dict[str, JSON]] = []
    token = None
    while True:
        page = sfn.get_execution_history(
            executionArn=execution, maxResults=1000, **({"nextToken": token} if token else {})
        )
        events.extend({"type": e["type"]} for e in page["events"])
        token = page.get("nextToken")
        if not token:
            break
    return {
        "status": described["status"],
        "output": described.get("output"),
        "error": described.get("error"),
        "cause": described.get("cause"),
        "events": events,
    }
