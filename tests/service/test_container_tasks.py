"""Container tasks (arn:statewright:::container:run) through a real server on Postgres against
the real podman API service and the busybox image scripts/container-engine.sh provides: the
output shape, a non-zero exit caught, the container's own timeout, environment, stdin and
file input, limits, a missing image, bad Parameters, the callback pattern, a state timeout
and StopExecution killing the container, no container left behind, and a worker SIGKILLed
while its container runs (exactly one container for the attempt, the execution finishes)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import sqlalchemy as sa

from service import control
from service.db import queries
from service.db.engine import create_engine
from service.db.migrate import upgrade
from service.runners.container import EXECUTION_LABEL, KEY_LABEL
from tests.postgres import PostgresServer, _Names, clone_database
from tests.service.server import ROOT, Server, running_server

pytestmark = pytest.mark.postgres
RUN = "arn:statewright:::container:run"
IMAGE = "localhost/busybox:test"
T = TypeVar("T")


def deadline_wait(probe: Callable[[], T | None], what: str, timeout: float = 30.0) -> T:
    """Poll ``probe`` until it returns something true; fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout:g} s waiting for {what}"
        time.sleep(0.1)


def engine_client() -> httpx.Client:
    """The tests' own client of the container engine (the one the workers use)."""
    host = os.environ["DOCKER_HOST"]
    return httpx.Client(
        transport=httpx.HTTPTransport(uds=host.removeprefix("unix://")),
        base_url="http://docker/v1.41",
        timeout=30,
    )


def containers_of(execution: str, running_only: bool = False) -> list[dict[str, Any]]:
    """The containers labelled with an execution's id."""
    filters = {"label": [f"{EXECUTION_LABEL}={execution}"]}
    with engine_client() as engine:
        found = engine.get(
            "/containers/json",
            params={"all": "0" if running_only else "1", "filters": json.dumps(filters)},
        )
    found.raise_for_status()
    listed: list[dict[str, Any]] = found.json()
    return listed


def creates_of(execution: str, since: float) -> int:
    """How many containers the engine created for an execution since ``since`` (its events)."""
    filters = {"label": [f"{EXECUTION_LABEL}={execution}"], "type": ["container"]}
    with engine_client() as engine:
        events = engine.get(
            "/events",
            params={
                "since": str(int(since) - 1),
                "until": str(int(time.time()) + 1),
                "filters": json.dumps(filters),
            },
        )
    events.raise_for_status()
    actions = [json.loads(line) for line in events.text.splitlines() if line.strip()]
    return sum(1 for a in actions if (a.get("Action") or a.get("status")) == "create")


@pytest.fixture(scope="module")
def server(
    container_engine: str,
    tmp_path_factory: pytest.TempPathFactory,
    postgres_server: PostgresServer,
    schema_template: str,
    _postgres_names: _Names,
) -> Iterator[Server]:
    template = schema_template
    name = _postgres_names.next("containers")
    url = clone_database(postgres_server, template, name)
    folder = tmp_path_factory.mktemp("containers")
    try:
        with running_server(
            url,
            folder / "server.log",
            backend="postgres",
            # Lease renewals (and checks that the task is still wanted) every 0.5 s.
            env={"STATEWRIGHT_CONTAINER_LEASE_SECONDS": "1.5"},
        ) as server:
            yield server
    finally:
        with contextlib.suppress(Exception):
            postgres_server.drop_database(name)


@pytest.fixture
def api(server: Server) -> Iterator[httpx.Client]:
    server.check_alive()
    with httpx.Client(
        base_url=f"{server.base_url}/api/v1", headers=server.headers, timeout=30
    ) as client:
        yield client


def start(api: httpx.Client, definition: dict[str, Any], data: Any = None) -> str:
    name = f"containers-{uuid.uuid4().hex[:10]}"
    made = api.post("/state-machines", json={"name": name, "definition": definition})
    assert made.status_code == 201, made.text
    started = api.post(f"/state-machines/{name}/executions", json={"input": data or {}})
    assert started.status_code == 201, started.text
    execution: str = started.json()["id"]
    return execution


def finished(api: httpx.Client, execution: str, timeout: float = 30.0) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        described: dict[str, Any] = api.get(f"/executions/{execution}").json()
        return described if described["status"] != "RUNNING" else None

    return deadline_wait(probe, f"execution {execution} to finish", timeout)


def history(api: httpx.Client, execution: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = api.get(f"/executions/{execution}/history").json()
    return events


def task(parameters: dict[str, Any], **state: Any) -> dict[str, Any]:
    """A one-state machine running a container task."""
    return {
        "StartAt": "Run",
        "States": {
            "Run": {"Type": "Task", "Resource": RUN, "Parameters": parameters, "End": True} | state
        },
    }


def none_left(execution: str) -> None:
    deadline_wait(lambda: not containers_of(execution), f"{execution}'s containers removed", 10)


def test_exit_0_with_json_stdout(api: httpx.Client) -> None:
    execution = start(
        api,
        task(
            {
                "Image": IMAGE,
                "Command": ["sh", "-c", 'echo \'{"answer": 42, "ok": true}\'; echo warn >&2'],
            }
        ),
    )
    done = finished(api, execution)
    assert done["status"] == "SUCCEEDED", done
    output = done["output"]
    assert set(output) == {"ExitCode", "Stdout", "StderrTail", "Duration"}
    assert output["ExitCode"] == 0
    assert output["Stdout"] == {"answer": 42, "ok": True}
    assert output["StderrTail"] == "warn\n"
    assert isinstance(output["Duration"], float | int) and 0 <= output["Duration"] < 10
    events = history(api, execution)
    scheduled = next(e for e in events if e["type"] == "TaskScheduled")
    details = scheduled["taskScheduledEventDetails"]
    assert (details["resourceType"], details["resource"]) == ("container", "run")
    assert [e["type"] for e in events].count("TaskStarted") == 1
    none_left(execution)  # removed after success: no leak


def test_text_stdout_stays_text(api: httpx.Client) -> None:
    execution = start(api, task({"Image": IMAGE, "Command": ["echo", "plain words"]}))
    done = finished(api, execution)
    assert done["status"] == "SUCCEEDED", done
    assert done["output"]["Stdout"] == "plain words\n"


def test_a_container_past_the_quick_wait_is_still_waited_for(api: httpx.Client) -> None:
    # podman is asked every 10 ms for 2 s, then every 200 ms.
    execution = start(api, task({"Image": IMAGE, "Command": ["sh", "-c", "sleep 2.5; echo 7"]}))
    done = finished(api, execution)
    assert done["status"] == "SUCCEEDED", done
    assert done["output"]["Stdout"] == 7
    assert 2.5 <= done["output"]["Duration"] < 10


def test_non_zero_exit_is_caught_with_stderr_tail_as_cause(api: httpx.Client) -> None:
    definition = {
        "StartAt": "Run",
        "States": {
            "Run": {
                "Type": "Task",
                "Resource": RUN,
                "Parameters": {
                    "Image": IMAGE,
                    "Command": ["sh", "-c", "echo working; echo 'it broke' >&2; exit 3"],
                },
                "Catch": [
                    {"ErrorEquals": ["Container.ExitCode.3"], "ResultPath": "$.error", "Next": "Ok"}
                ],
                "End": True,
            },
            "Ok": {"Type": "Pass", "End": True},
        },
    }
    execution = start(api, definition)
    done = finished(api, execution)
    assert done["status"] == "SUCCEEDED", done
    assert done["output"]["error"] == {"Error": "Container.ExitCode.3", "Cause": "it broke\n"}
    none_left(execution)


def test_timeout_seconds_kills_the_container(api: httpx.Client) -> None:
    began = time.monotonic()
    execution = start(api, task({"Image": IMAGE, "Command": ["sleep", "30"], "TimeoutSeconds": 1}))
    done = finished(api, execution, timeout=15)
    assert (done["status"], done["error"]) == ("FAILED", "Container.Timeout"), done
    assert "TimeoutSeconds (1 s)" in done["cause"]
    assert time.monotonic() - began < 15
    none_left(execution)


def test_environment_and_stdin_input(api: httpx.Client) -> None:
    script = 'printf \'{"greeting": "%s", "n": %s, "stdin": %s}\' "$GREETING" "$N" "$(cat)"'
    execution = start(
        api,
        task(
            {
                "Image": IMAGE,
                "Command": ["sh", "-c", script],
                "Environment": {"GREETING": "hello there", "N": 3, "WHO.$": "$.who"},
                "Input.$": "$.payload",
            }
        ),
        {"who": "Ada", "payload": {"items": [1, 2], "name": "Ada Lovelace"}},
    )
    done = finished(api, execution)
    assert done["status"] == "SUCCEEDED", done
    assert done["output"]["Stdout"] == {
        "greeting": "hello there",
        "n": 3,
        "stdin": {"items": [1, 2], "name": "Ada Lovelace"},
    }


def test_input_file_working_dir_user_and_limits(api: httpx.Client) -> None:
    # cgroup v2 or v1, whichever the engine's host has.
    script = (
        "mem=$(cat /sys/fs/cgroup/memory.max 2>/dev/null || "
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes); "
        'cpu=$(cut -d" " -f1 /sys/fs/cgroup/cpu.max 2>/dev/null || '
        "cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us); "
        'printf \'{"file": %s, "pwd": "%s", "uid": %s, "mem": %s, "cpu": %s, "stdin": "%s"}\' '
        '"$(cat /input/task.json)" "$(pwd)" "$(id -u)" "$mem" "$cpu" "$(cat)"'
    )
    execution = start(
        api,
        task(
            {
                "Image": IMAGE,
                "Command": ["sh", "-c", script],
                "Input": {"from": "file"},
                "InputFile": "/input/task.json",
                "WorkingDir": "/tmp",
                "User": "1000",
                "MemoryMiB": 64,
                "CpuCount": 0.5,
            }
        ),
    )
    done = finished(api, execution)
    assert done["status"] == "SUCCEEDED", done
    assert done["output"]["Stdout"] == {
        "file": {"from": "file"},
        "pwd": "/tmp",
        "uid": 1000,
        "mem": 64 * 1024 * 1024,
        "cpu": 50000,  # 0.5 of the default 100,000 µs period
        "stdin": "",  # the input went to the file, not to stdin
    }


def test_missing_image(api: httpx.Client) -> None:
    execution = start(api, task({"Image": "localhost/no-such-image:1", "Command": ["true"]}))
    done = finished(api, execution)
    assert (done["status"], done["error"]) == ("FAILED", "Container.ImageNotFound"), done
    assert "localhost/no-such-image:1" in done["cause"]


@pytest.mark.parametrize(
    ("parameters", "words"),
    [
        ({"Command": ["true"]}, "Image must name an image"),
        ({"Image": IMAGE, "Command": "echo hi"}, "Command must be a list of strings"),
        ({"Image": IMAGE, "Network": "host"}, "Network 'host' is not allowed"),
        ({"Image": IMAGE, "Environment": {"A": {"b": 1}}}, "A must be a string"),
        ({"Image": IMAGE, "Memory": 64}, "unknown field(s) Memory"),
    ],
)
def test_bad_parameters(api: httpx.Client, parameters: dict[str, Any], words: str) -> None:
    execution = start(api, task(parameters))
    done = finished(api, execution)
    assert (done["status"], done["error"]) == ("FAILED", "States.Runtime"), done
    assert words in done["cause"]


def test_wait_for_task_token(api: httpx.Client) -> None:
    definition = {
        "StartAt": "Run",
        "States": {
            "Run": {
                "Type": "Task",
                "Resource": RUN + ".waitForTaskToken",
                "Parameters": {
                    "Image": IMAGE,
                    "Command": ["sh", "-c", 'echo "{\\"token\\": \\"$TOKEN\\"}"'],
                    "Environment": {"TOKEN.$": "$$.Task.Token"},
                },
                "End": True,
            }
        },
    }
    execution = start(api, definition)

    def submitted() -> dict[str, Any] | None:
        return next((e for e in history(api, execution) if e["type"] == "TaskSubmitted"), None)

    event = deadline_wait(submitted, "TaskSubmitted")
    output = json.loads(event["taskSubmittedEventDetails"]["output"])
    token = output["Stdout"]["token"]
    answered = api.post(f"/callbacks/{token}/success", json={"approved": True})
    assert answered.status_code == 202, answered.text
    done = finished(api, execution)
    assert done["status"] == "SUCCEEDED", done
    assert done["output"] == {"approved": True}
    none_left(execution)


def test_state_timeout_kills_the_container(api: httpx.Client) -> None:
    execution = start(api, task({"Image": IMAGE, "Command": ["sleep", "30"]}, TimeoutSeconds=2))
    deadline_wait(lambda: containers_of(execution, running_only=True), "the container to run")
    done = finished(api, execution, timeout=15)
    assert (done["status"], done["error"]) == ("FAILED", "States.Timeout"), done
    none_left(execution)


def test_stop_execution_kills_the_container(api: httpx.Client) -> None:
    execution = start(api, task({"Image": IMAGE, "Command": ["sleep", "30"]}))
    deadline_wait(lambda: containers_of(execution, running_only=True), "the container to run")
    stopped = api.post(f"/executions/{execution}/stop", json={})
    assert stopped.status_code == 202, stopped.text
    done = finished(api, execution, timeout=15)
    assert done["status"] == "ABORTED", done
    none_left(execution)


# ---------------------------------------------------------------------------- crash


def _worker(url: str, log: Path, **extra: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STATEWRIGHT_")}
    env.update(PYTHONUNBUFFERED="1", STATEWRIGHT_CONTAINER_LEASE_SECONDS="2", **extra)
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "service.cli", "worker", "--database-url", url],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )


async def _begin(url: str, definition: dict[str, Any]) -> str:
    engine = create_engine(url)
    await control.create_state_machine(engine, "crash", definition)
    execution = (await control.start_execution(engine, "crash", {})).id
    await engine.dispose()
    return execution


async def _outcome(url: str, execution: str) -> tuple[str, Any, list[str]]:
    engine = create_engine(url)
    summary = await control.describe_execution(engine, execution)
    types = [e.type for e in await control.history(engine, execution)]
    await engine.dispose()
    return summary.status, summary.output, types


def _ended(url: str, execution: str) -> Callable[[], tuple[str, Any, list[str]] | None]:
    def probe() -> tuple[str, Any, list[str]] | None:
        result = asyncio.run(_outcome(url, execution))
        return result if result[0] != "RUNNING" else None

    return probe


def test_a_killed_worker_s_container_is_followed_not_run_again(
    container_engine: str, postgres_database: str, tmp_path: Path
) -> None:
    url = postgres_database
    upgrade(url)
    definition = task({"Image": IMAGE, "Command": ["sh", "-c", "sleep 3; echo '{\"done\": true}'"]})
    log = tmp_path / "workers.log"
    since = time.time()
    first = _worker(url, log)
    second: subprocess.Popen[bytes] | None = None
    try:
        execution = asyncio.run(_begin(url, definition))
        deadline_wait(lambda: containers_of(execution, running_only=True), "the container")
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        assert containers_of(execution, running_only=True), (
            f"the container died with the worker: {containers_of(execution)}"
        )
        second = _worker(url, log)
        status, output, types = deadline_wait(_ended(url, execution), "the execution")
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
    assert status == "SUCCEEDED", log.read_text()
    assert output["Stdout"] == {"done": True}
    assert types.count("TaskStarted") == 1 and types.count("TaskSucceeded") == 1, types
    assert "following the existing container" in log.read_text(), log.read_text()
    # The engine's own record: one container was ever created for this execution's attempt.
    assert creates_of(execution, since) == 1, log.read_text()
    none_left(execution)


def test_an_unreachable_engine_leaves_the_task_to_be_retried(
    container_engine: str, postgres_database: str, tmp_path: Path
) -> None:
    url = postgres_database
    upgrade(url)
    definition = task({"Image": IMAGE, "Command": ["echo", '{"late": true}']})
    log = tmp_path / "workers.log"
    first = _worker(url, log, DOCKER_HOST=f"unix://{tmp_path}/no-engine.sock")
    second: subprocess.Popen[bytes] | None = None
    try:
        execution = asyncio.run(_begin(url, definition))
        deadline_wait(lambda: "cannot be reached" in log.read_text(), "the worker's complaint")
        status, _, types = asyncio.run(_outcome(url, execution))
        assert status == "RUNNING" and "TaskFailed" not in types, types
        first.send_signal(signal.SIGTERM)  # it hands its task back as it stops
        first.wait(15)
        second = _worker(url, log)
        status, output, types = deadline_wait(_ended(url, execution), "the execution")
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
    assert status == "SUCCEEDED", log.read_text()
    assert output["Stdout"] == {"late": True}
    assert types.count("TaskStarted") == 1 and "TaskFailed" not in types


def test_a_container_left_behind_after_its_result_is_swept(
    container_engine: str, postgres_database: str, tmp_path: Path
) -> None:
    url = postgres_database
    upgrade(url)
    definition = task({"Image": IMAGE, "Command": ["true"]})
    log = tmp_path / "workers.log"

    async def key_of(execution: str) -> str:
        engine = create_engine(url)
        async with engine.connect() as conn:
            outbox = queries.outbox
            found = await conn.execute(
                sa.select(outbox.c.idempotency_key).where(outbox.c.execution_id == execution)
            )
            key: str = found.scalar_one()
        await engine.dispose()
        return key

    async def start_another() -> str:
        engine = create_engine(url)
        execution = (await control.start_execution(engine, "crash", {})).id
        await engine.dispose()
        return execution

    def exited_container(name: str, labels: dict[str, str]) -> None:
        with engine_client() as engine:
            body = {"Image": IMAGE, "Cmd": ["true"], "Labels": labels}
            made = engine.post("/containers/create", params={"name": name}, json=body)
            assert made.status_code == 201, made.text
            assert engine.post(f"/containers/{name}/start").status_code == 204
            assert engine.post(f"/containers/{name}/wait", timeout=30).status_code == 200

    first = _worker(url, log)
    second: subprocess.Popen[bytes] | None = None
    theirs = f"statewright-test-{uuid.uuid4().hex[:8]}"
    try:
        execution = asyncio.run(_begin(url, definition))
        assert deadline_wait(_ended(url, execution), "the execution")[0] == "SUCCEEDED"
        # As if a worker died between recording the result and removing the container:
        key = asyncio.run(key_of(execution))
        exited_container(
            f"statewright-test-{uuid.uuid4().hex[:8]}", {KEY_LABEL: key, EXECUTION_LABEL: execution}
        )
        # ... and one of an attempt this database does not know (another deployment's).
        exited_container(theirs, {KEY_LABEL: "elsewhere:1", EXECUTION_LABEL: "elsewhere"})
        first.send_signal(signal.SIGTERM)
        first.wait(15)
        second = _worker(url, log)  # sweeps after its first claim
        another = asyncio.run(start_another())
        none_left(execution)
        assert containers_of("elsewhere"), "another database's container was removed"
        assert deadline_wait(_ended(url, another), "the other execution")[0] == "SUCCEEDED"
        none_left(another)
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
        with engine_client() as engine:
            engine.delete(f"/containers/{theirs}", params={"force": "1"})
