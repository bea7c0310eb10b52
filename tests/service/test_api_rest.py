"""The REST API (/api/v1) over HTTP with httpx, against the real server (``statewright serve``)
on both backends: SQLite and Postgres."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from statemachine.validate import validate
from tests.service.server import Server

JSON = Any
TERMINAL = {"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"}
PASS_CHAIN = {
    "StartAt": "First",
    "States": {
        "First": {"Type": "Pass", "Parameters": {"n.$": "$.n"}, "Next": "Second"},
        "Second": {"Type": "Pass", "Result": "two", "ResultPath": "$.second", "End": True},
    },
}
LONG_WAIT = {
    "StartAt": "Hold",
    "States": {"Hold": {"Type": "Wait", "Seconds": 600, "End": True}},
}
BRANCHY = {
    "StartAt": "Decide",
    "States": {
        "Decide": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.hold", "BooleanEquals": True, "Next": "Hold"}],
            "Default": "Done",
        },
        "Hold": {"Type": "Wait", "Seconds": 600, "Next": "Done"},
        "Done": {"Type": "Pass", "End": True},
    },
}
CALLBACK = {
    "StartAt": "Callback",
    "States": {
        "Callback": {
            "Type": "Task",
            "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
            "Parameters": {"MessageBody": {"token.$": "$$.Task.Token"}},
            "End": True,
        }
    },
}


@pytest.fixture
def api(api_server: Server) -> Iterator[httpx.Client]:
    api_server.check_alive()
    with httpx.Client(
        base_url=f"{api_server.base_url}/api/v1", timeout=30, headers=api_server.headers
    ) as client:
        yield client


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def upload(api: httpx.Client, definition: JSON, prefix: str = "sm") -> str:
    name = unique(prefix)
    response = api.post("/state-machines", json={"name": name, "definition": definition})
    assert response.status_code == 201, response.text
    return name


def start(api: httpx.Client, machine: str, **body: JSON) -> dict[str, JSON]:
    response = api.post(f"/state-machines/{machine}/executions", json=body)
    assert response.status_code == 201, response.text
    started: dict[str, JSON] = response.json()
    return started


def wait_status(server: Server, api: httpx.Client, execution: str, wanted: str) -> dict[str, JSON]:
    def probe() -> dict[str, JSON] | None:
        response = api.get(f"/executions/{execution}")
        assert response.status_code == 200, response.text
        described: dict[str, JSON] = response.json()
        if described["status"] == wanted:
            return described
        assert described["status"] not in TERMINAL, f"ended otherwise: {described}"
        return None

    return server.wait_for(probe, f"execution {execution} to be {wanted}", timeout=30)


def history(api: httpx.Client, execution: str, **params: JSON) -> list[dict[str, JSON]]:
    response = api.get(f"/executions/{execution}/history", params=params)
    assert response.status_code == 200, response.text
    events: list[dict[str, JSON]] = response.json()
    return events


def task_token(server: Server, api: httpx.Client, execution: str) -> str:
    def probe() -> str | None:
        for event in history(api, execution):
            if event["type"] == "TaskScheduled":
                params = json.loads(event["taskScheduledEventDetails"]["parameters"])
                token: str = params["MessageBody"]["token"]
                return token
        return None

    return server.wait_for(probe, f"the TaskScheduled event of {execution}")


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, JSON]:
    assert response.status_code == status, response.text
    body: dict[str, JSON] = response.json()
    assert body["code"] == code, body
    assert body["message"]
    return body


# ---------------------------------------------------------------------------- state machines


def test_upload_list_and_describe(api: httpx.Client) -> None:
    name = unique("upload")
    created = api.post("/state-machines", json={"name": name, "definition": PASS_CHAIN})
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["name"] == name
    assert body["arn"] == f"arn:aws:states:us-east-1:123456789012:stateMachine:{name}"
    assert body["version"] == 1
    assert body["definition"] == PASS_CHAIN
    datetime.fromisoformat(body["created_at"])

    # the same definition again changes nothing; another one is version 2
    same = api.post("/state-machines", json={"name": name, "definition": PASS_CHAIN})
    assert same.status_code == 201
    assert same.json()["version"] == 1
    newer = api.post("/state-machines", json={"name": name, "definition": json.dumps(LONG_WAIT)})
    assert newer.status_code == 201, newer.text
    assert newer.json()["version"] == 2
    assert newer.json()["definition"] == LONG_WAIT

    described = api.get(f"/state-machines/{name}")
    assert described.status_code == 200
    assert described.json()["version"] == 2
    assert described.json()["definition"] == LONG_WAIT

    listed = api.get("/state-machines")
    assert listed.status_code == 200
    mine = [m for m in listed.json() if m["name"] == name]
    assert len(mine) == 1
    assert mine[0]["version"] == 2


def test_upload_invalid_definition_reports_every_diagnostic(api: httpx.Client) -> None:
    broken = {
        "StartAt": "Nowhere",
        "States": {
            "A": {"Type": "Pass", "Next": "Missing"},
            "B": {"Type": "Wait", "End": True},
        },
    }
    expected = [(d.code, d.location) for d in validate(json.dumps(broken)) if d.severity == "ERROR"]
    assert len(expected) >= 3, expected  # the test needs several errors
    name = unique("invalid")
    body = assert_error(
        api.post("/state-machines", json={"name": name, "definition": broken}),
        400,
        "InvalidDefinition",
    )
    got = [(d["code"], d["location"]) for d in body["diagnostics"]]
    assert got == expected
    assert all(d["severity"] == "ERROR" and d["message"] for d in body["diagnostics"])
    assert_error(api.get(f"/state-machines/{name}"), 404, "StateMachineDoesNotExist")

    assert_error(
        api.post("/state-machines", json={"name": name, "definition": "{ not json"}),
        400,
        "InvalidDefinition",
    )


def test_upload_rejects_bad_names_and_bodies(api: httpx.Client) -> None:
    assert_error(
        api.post("/state-machines", json={"name": "has space", "definition": PASS_CHAIN}),
        400,
        "InvalidName",
    )
    for body in ({"definition": PASS_CHAIN}, {"name": "", "definition": PASS_CHAIN}, {}):
        response = api.post("/state-machines", json=body)
        assert response.status_code == 422, response.text
        assert response.json()["code"] == "ValidationException"


def test_unknown_state_machine_is_404(api: httpx.Client) -> None:
    assert_error(api.get("/state-machines/no-such-machine"), 404, "StateMachineDoesNotExist")
    assert_error(
        api.post("/state-machines/no-such-machine/executions", json={}),
        404,
        "StateMachineDoesNotExist",
    )
    assert_error(
        api.get("/executions", params={"state_machine": "no-such-machine"}),
        404,
        "StateMachineDoesNotExist",
    )


@pytest.mark.parametrize(
    ("path", "content"),
    [
        ("/state-machines", b'{"name": "x", "definition": '),
        ("/state-machines", b"\xff\xfe not utf-8"),
        ("/state-machines/any/executions", b"{'input': 1}"),
        ("/callbacks/some-token/success", b"{nope"),
        ("/callbacks/some-token/failure", b"[1,"),
    ],
)
def test_malformed_json_body_is_a_client_error(
    api: httpx.Client, path: str, content: bytes
) -> None:
    response = api.post(path, content=content, headers={"Content-Type": "application/json"})
    assert 400 <= response.status_code < 500, (response.status_code, response.text)


# ---------------------------------------------------------------------------- executions


def test_start_describe_and_history(api_server: Server, api: httpx.Client) -> None:
    machine = upload(api, PASS_CHAIN, "run")
    started = start(api, machine, input={"n": 5}, name=unique("exec"))
    assert started["status"] in {"RUNNING", "SUCCEEDED"}
    assert started["input"] == {"n": 5}
    assert started["state_machine_arn"].endswith(f":stateMachine:{machine}")
    assert started["arn"].endswith(f":execution:{machine}:{started['name']}")

    done = wait_status(api_server, api, started["id"], "SUCCEEDED")
    assert done["output"] == {"n": 5, "second": "two"}
    assert done["error"] is None
    assert datetime.fromisoformat(done["started_at"]) <= datetime.fromisoformat(done["stopped_at"])
    assert done["events"] == 6

    # by ARN too
    by_arn = api.get(f"/executions/{started['arn']}")
    assert by_arn.status_code == 200, by_arn.text
    assert by_arn.json()["id"] == started["id"]

    events = history(api, started["id"])
    assert [e["type"] for e in events] == [
        "ExecutionStarted",
        "PassStateEntered",
        "PassStateExited",
        "PassStateEntered",
        "PassStateExited",
        "ExecutionSucceeded",
    ]
    assert [e["id"] for e in events] == [1, 2, 3, 4, 5, 6]
    for event in events:
        datetime.fromisoformat(event["timestamp"])
    assert json.loads(events[-1]["executionSucceededEventDetails"]["output"]) == done["output"]

    assert [e["id"] for e in history(api, started["id"], after=4)] == [5, 6]
    assert [e["id"] for e in history(api, started["id"], limit=2)] == [1, 2]
    assert [e["id"] for e in history(api, started["id"], reverse=True)] == [6, 5, 4, 3, 2, 1]
    assert [e["id"] for e in history(api, started["id"], reverse=True, limit=2)] == [6, 5]
    assert [e["id"] for e in history(api, started["id"], after=2, limit=2)] == [3, 4]
    assert history(api, started["id"], after=6) == []
    assert api.get(f"/executions/{started['id']}/history", params={"limit": 0}).status_code == 422


def test_start_is_idempotent_for_the_same_name_and_input(
    api_server: Server, api: httpx.Client
) -> None:
    machine = upload(api, LONG_WAIT, "idem")
    name = unique("same")
    first = start(api, machine, name=name, input={"a": [1, 2]})
    again = start(api, machine, name=name, input={"a": [1, 2]})
    assert again["id"] == first["id"]
    assert again["arn"] == first["arn"]
    assert_error(
        api.post(f"/state-machines/{machine}/executions", json={"name": name, "input": {"a": 3}}),
        409,
        "ExecutionAlreadyExists",
    )
    assert_error(
        api.post(f"/state-machines/{machine}/executions", json={"name": "bad name"}),
        400,
        "InvalidName",
    )
    stopped = api.post(f"/executions/{first['id']}/stop")
    assert stopped.status_code == 202, stopped.text
    wait_status(api_server, api, first["id"], "ABORTED")
    # closed: even the same input is refused
    assert_error(
        api.post(
            f"/state-machines/{machine}/executions", json={"name": name, "input": {"a": [1, 2]}}
        ),
        409,
        "ExecutionAlreadyExists",
    )


def test_unknown_execution_is_404(api: httpx.Client) -> None:
    missing = str(uuid.uuid4())
    for response in (
        api.get(f"/executions/{missing}"),
        api.get(f"/executions/{missing}/history"),
        api.post(f"/executions/{missing}/stop", json={}),
        api.get("/executions/arn:aws:states:us-east-1:123456789012:execution:sm:nope"),
    ):
        assert_error(response, 404, "ExecutionDoesNotExist")


def test_stop_aborts_the_execution(api_server: Server, api: httpx.Client) -> None:
    machine = upload(api, LONG_WAIT, "stop")
    execution = start(api, machine)["id"]
    api_server.wait_for(
        lambda: any(e["type"] == "WaitStateEntered" for e in history(api, execution)),
        "the execution to enter its Wait state",
    )
    response = api.post(
        f"/executions/{execution}/stop", json={"error": "Ops.Stop", "cause": "maintenance"}
    )
    assert response.status_code == 202, response.text
    datetime.fromisoformat(response.json()["stop_requested_at"])
    done = wait_status(api_server, api, execution, "ABORTED")
    assert (done["error"], done["cause"]) == ("Ops.Stop", "maintenance")
    assert done["stopped_at"] is not None
    assert history(api, execution)[-1]["type"] == "ExecutionAborted"


def test_list_executions_with_filters(api_server: Server, api: httpx.Client) -> None:
    machine = upload(api, BRANCHY, "list")
    other = upload(api, BRANCHY, "list-other")
    tag = uuid.uuid4().hex[:8]
    quick = [
        start(api, machine, name=f"q_{tag}-{i}", input={"hold": False})["id"] for i in range(2)
    ]
    held = [start(api, machine, name=f"h_{tag}-{i}", input={"hold": True})["id"] for i in range(2)]
    # an underscore in the prefix is literal, not a LIKE wildcard
    decoy = start(api, machine, name=f"qX{tag}-0", input={"hold": False})["id"]
    foreign = start(api, other, name=f"q_{tag}-9", input={"hold": False})["id"]
    for execution in [*quick, decoy, foreign]:
        wait_status(api_server, api, execution, "SUCCEEDED")

    def ids(**params: JSON) -> list[str]:
        response = api.get("/executions", params=params)
        assert response.status_code == 200, response.text
        return [e["id"] for e in response.json()]

    mine = ids(state_machine=machine)
    assert sorted(mine) == sorted([*quick, *held, decoy])
    assert sorted(ids(state_machine=machine, status="RUNNING")) == sorted(held)
    assert sorted(ids(state_machine=machine, status="SUCCEEDED")) == sorted([*quick, decoy])
    assert sorted(ids(state_machine=machine, name_prefix=f"q_{tag}")) == sorted(quick)
    assert sorted(ids(name_prefix=f"q_{tag}")) == sorted([*quick, foreign])
    assert ids(state_machine=machine, status="SUCCEEDED", name_prefix=f"h_{tag}") == []
    limited = ids(state_machine=machine, limit=2)
    assert limited == mine[:2]

    listed = api.get("/executions", params={"state_machine": machine}).json()
    starts = [datetime.fromisoformat(e["started_at"]) for e in listed]
    assert starts == sorted(starts, reverse=True), "newest first"
    assert api.get("/executions", params={"limit": 0}).status_code == 422

    for execution in held:
        assert api.post(f"/executions/{execution}/stop").status_code == 202
    for execution in held:
        wait_status(api_server, api, execution, "ABORTED")
    assert sorted(ids(state_machine=machine, status="ABORTED")) == sorted(held)


# ---------------------------------------------------------------------------- callbacks


def test_callback_success_heartbeat_and_late_answer(api_server: Server, api: httpx.Client) -> None:
    machine = upload(api, CALLBACK, "cb-ok")
    execution = start(api, machine, input={"order": 1})["id"]
    token = task_token(api_server, api, execution)

    # The systems that call back hold the token, not an API key: no Authorization header.
    keyless = httpx.Client(base_url=str(api.base_url), timeout=30)
    with keyless:
        beat = keyless.post(f"/callbacks/{token}/heartbeat")
        assert beat.status_code == 202, beat.text
        # The index finds candidates by the first 16 characters; the rest must match too.
        forged = token[:-1] + ("0" if token[-1] != "0" else "1")
        refused = keyless.post(f"/callbacks/{forged}/success", json={"forged": True})
        assert_error(refused, 404, "TaskDoesNotExist")
        ok = keyless.post(f"/callbacks/{token}/success", json={"done": True, "n": [1, 2]})
    assert ok.status_code == 202, ok.text
    assert ok.json() == {"status": "accepted"}
    done = wait_status(api_server, api, execution, "SUCCEEDED")
    assert done["output"] == {"done": True, "n": [1, 2]}

    assert_error(api.post(f"/callbacks/{token}/success", json={}), 409, "TaskTimedOut")
    assert_error(api.post(f"/callbacks/{token}/failure", json={}), 409, "TaskTimedOut")
    assert_error(api.post(f"/callbacks/{token}/heartbeat"), 409, "TaskTimedOut")


def test_callback_failure(api_server: Server, api: httpx.Client) -> None:
    machine = upload(api, CALLBACK, "cb-fail")
    execution = start(api, machine)["id"]
    token = task_token(api_server, api, execution)
    failed = api.post(
        f"/callbacks/{token}/failure", json={"error": "Card.Declined", "cause": "expired"}
    )
    assert failed.status_code == 202, failed.text
    done = wait_status(api_server, api, execution, "FAILED")
    assert (done["error"], done["cause"]) == ("Card.Declined", "expired")
    task_failed = [e for e in history(api, execution) if e["type"] == "TaskFailed"]
    assert len(task_failed) == 1
    assert task_failed[0]["taskFailedEventDetails"]["error"] == "Card.Declined"


def test_unknown_callback_token_is_404(api: httpx.Client) -> None:
    token = uuid.uuid4().hex * 2
    assert_error(api.post(f"/callbacks/{token}/success", json={}), 404, "TaskDoesNotExist")
    assert_error(api.post(f"/callbacks/{token}/failure", json={}), 404, "TaskDoesNotExist")
    assert_error(api.post(f"/callbacks/{token}/heartbeat"), 404, "TaskDoesNotExist")


# ---------------------------------------------------------------------------- docs


def test_openapi_and_docs(api_server: Server) -> None:
    schema = httpx.get(f"{api_server.base_url}/openapi.json", timeout=30)
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    for path in (
        "/api/v1/state-machines",
        "/api/v1/state-machines/{name}",
        "/api/v1/state-machines/{name}/executions",
        "/api/v1/executions",
        "/api/v1/executions/{execution_id}",
        "/api/v1/executions/{execution_id}/history",
        "/api/v1/executions/{execution_id}/stop",
        "/api/v1/callbacks/{token}/success",
        "/api/v1/callbacks/{token}/failure",
        "/api/v1/callbacks/{token}/heartbeat",
    ):
        assert path in paths, path
    assert "/" not in paths  # the AWS endpoint stays out of the REST schema
    docs = httpx.get(f"{api_server.base_url}/docs", timeout=30)
    assert docs.status_code == 200
    assert "text/html" in docs.headers["content-type"]
    assert "openapi.json" in docs.text


def test_delete_state_machine(api: httpx.Client) -> None:
    machine = upload(api, {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}, "del")
    deleted = api.delete(f"/state-machines/{machine}")
    assert deleted.status_code == 202, deleted.text
    assert deleted.json() == {"status": "DELETED"}  # nothing was running
    assert_error(api.get(f"/state-machines/{machine}"), 404, "StateMachineDoesNotExist")
    assert machine not in [m["name"] for m in api.get("/state-machines").json()]
    again = api.delete(f"/state-machines/{machine}")
    assert again.status_code == 202 and again.json() == {"status": "DELETED"}


def test_oversized_bodies_are_refused_with_413(api: httpx.Client) -> None:
    big = b'{"name": "big", "definition": "' + b"x" * 2_000_000 + b'"}'
    declared = api.post(
        "/state-machines", content=big, headers={"content-type": "application/json"}
    )
    assert declared.status_code == 413
    assert declared.json()["code"] == "RequestTooLarge"

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        for _ in range(40):
            yield b"x" * 65536

    streamed = api.post(
        "/state-machines", content=chunks(), headers={"content-type": "application/json"}
    )
    assert streamed.status_code == 413
    assert streamed.json()["code"] == "RequestTooLarge"


def test_deeply_nested_data_is_answered_like_any_other(
    api_server: Server, api: httpx.Client
) -> None:
    # 300 levels: within what JSON parsers take, beyond the framework's own serializer, which
    # once made the start, and then every list of executions, answer 500.
    deep: JSON = {"leaf": True}
    for _ in range(300):
        deep = {"a": deep}
    machine = upload(api, {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}})
    started = start(api, machine, input=deep)
    assert started["input"] == deep
    done = wait_status(api_server, api, started["id"], "SUCCEEDED")
    assert done["output"] == deep
    listed = api.get("/executions", params={"state_machine": machine})
    assert listed.status_code == 200 and listed.json()[0]["input"] == deep
    assert history(api, started["id"])[-1]["type"] == "ExecutionSucceeded"
