"""The AWS-compatible API (awsJson1_0 on POST /) through boto3's real ``stepfunctions`` client,
against the real server (``statewright serve``) on both backends: SQLite and Postgres."""

from __future__ import annotations

import functools
import json
import time
import uuid
from datetime import datetime
from typing import Any

import boto3
import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from tests.service.server import Server

JSON = Any
ROLE = "arn:aws:iam::123456789012:role/statewright-test"
ACCOUNT_PREFIX = "arn:aws:states:us-east-1:123456789012"
MISSING_SM = f"{ACCOUNT_PREFIX}:stateMachine:does-not-exist"
MISSING_EXECUTION = f"{ACCOUNT_PREFIX}:execution:does-not-exist:nope"
TERMINAL = {"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"}

PASS_CHAIN = {
    "StartAt": "First",
    "States": {
        "First": {"Type": "Pass", "Parameters": {"n.$": "$.n", "step": 1}, "Next": "Second"},
        "Second": {"Type": "Pass", "ResultPath": "$.second", "Result": "two", "Next": "Third"},
        "Third": {"Type": "Pass", "End": True},
    },
}
LONG_WAIT = {
    "StartAt": "Hold",
    "States": {"Hold": {"Type": "Wait", "Seconds": 600, "End": True}},
}
CALLBACK_TASK = {
    "Type": "Task",
    "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
    "Parameters": {
        "QueueUrl": "https://example.invalid/queue",
        "MessageBody": {"token.$": "$$.Task.Token", "input.$": "$"},
    },
    "End": True,
}
CALLBACK = {"StartAt": "Callback", "States": {"Callback": CALLBACK_TASK}}
CALLBACK_CAUGHT = {
    "StartAt": "Callback",
    "States": {
        "Callback": {
            **CALLBACK_TASK,
            "Catch": [
                {"ErrorEquals": ["Custom.Error"], "ResultPath": "$.caught", "Next": "Recovered"}
            ],
        },
        "Recovered": {"Type": "Pass", "End": True},
    },
}
BRANCHY = {  # waits when the input asks for it, else succeeds at once
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


# ---------------------------------------------------------------------------- helpers


@functools.cache
def _client(base_url: str, key_id: str, secret: str, validate: bool = True) -> Any:
    return boto3.client(
        "stepfunctions",
        endpoint_url=base_url,
        region_name="us-east-1",
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        config=Config(
            retries={"total_max_attempts": 1},
            # TestState's model sends to the "sync-" host prefix, which a local endpoint lacks.
            inject_host_prefix=False,
            parameter_validation=validate,
        ),
    )


@pytest.fixture
def sfn(api_server: Server) -> Any:
    api_server.check_alive()
    return _client(api_server.base_url, api_server.key_id, api_server.secret)


@pytest.fixture
def raw_sfn(api_server: Server) -> Any:
    """A client that sends what it is given (no client-side parameter validation)."""
    return _client(api_server.base_url, api_server.key_id, api_server.secret, validate=False)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def create(sfn: Any, definition: JSON, prefix: str = "sm") -> str:
    arn: str = sfn.create_state_machine(
        name=unique(prefix), definition=json.dumps(definition), roleArn=ROLE
    )["stateMachineArn"]
    return arn


def error_code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    code: str = exc.value.response["Error"]["Code"]
    return code


def wait_status(server: Server, sfn: Any, arn: str, wanted: set[str] | str) -> dict[str, JSON]:
    """Poll DescribeExecution until its status is in ``wanted`` (fail early on another end)."""
    wanted = {wanted} if isinstance(wanted, str) else wanted

    def probe() -> dict[str, JSON] | None:
        described: dict[str, JSON] = sfn.describe_execution(executionArn=arn)
        status = described["status"]
        if status in wanted:
            return described
        assert status not in TERMINAL, f"execution ended {status}, wanted {wanted}: {described}"
        return None

    return server.wait_for(probe, f"execution {arn} to be {sorted(wanted)}", timeout=30)


def all_events(sfn: Any, arn: str, **kwargs: Any) -> list[dict[str, JSON]]:
    events: list[dict[str, JSON]] = []
    token = None
    while True:
        page = sfn.get_execution_history(
            executionArn=arn, **kwargs, **({"nextToken": token} if token else {})
        )
        events.extend(page["events"])
        token = page.get("nextToken")
        if not token:
            return events


def task_token(server: Server, sfn: Any, arn: str) -> str:
    """The task token from the TaskScheduled event's parameters (once it is there)."""

    def probe() -> str | None:
        for event in sfn.get_execution_history(executionArn=arn)["events"]:
            if event["type"] == "TaskScheduled":
                params = json.loads(event["taskScheduledEventDetails"]["parameters"])
                token: str = params["MessageBody"]["token"]
                return token
        return None

    return server.wait_for(probe, f"the TaskScheduled event of {arn}")


def raw_post(
    server: Server,
    target: str | None,
    content: bytes,
    *,
    credentials: tuple[str, str] | None = None,
    signed: bool = True,
) -> httpx.Response:
    """POST / with any body, signed with SigV4 by botocore's own signer (the tests' key, or
    ``credentials``) unless ``signed`` is False."""
    headers = {"Content-Type": "application/x-amz-json-1.0"}
    if target is not None:
        headers["X-Amz-Target"] = target
    if signed:
        key_id, secret = credentials or (server.key_id, server.secret)
        request = AWSRequest("POST", f"{server.base_url}/", data=content, headers=headers)
        SigV4Auth(Credentials(key_id, secret), "states", "us-east-1").add_auth(request)
        headers = dict(request.headers.items())
    return httpx.post(f"{server.base_url}/", headers=headers, content=content, timeout=30)


# ---------------------------------------------------------------------------- state machines


def test_delete_state_machine_lets_executions_finish_then_frees_the_name(
    api_server: Server, sfn: Any
) -> None:
    arn = create(sfn, BRANCHY, "delete")
    name = arn.rsplit(":", 1)[1]
    held = sfn.start_execution(stateMachineArn=arn, input=json.dumps({"hold": True}))
    execution = held["executionArn"]
    wait_status(api_server, sfn, execution, "RUNNING")

    assert (
        sfn.delete_state_machine(stateMachineArn=arn)["ResponseMetadata"]["HTTPStatusCode"] == 200
    )
    # Deleting: described as DELETING, not listed, starts refused, its execution runs on.
    assert sfn.describe_state_machine(stateMachineArn=arn)["status"] == "DELETING"
    listed = [m["stateMachineArn"] for m in sfn.list_state_machines()["stateMachines"]]
    assert arn not in listed
    with pytest.raises(ClientError) as refused:
        sfn.start_execution(stateMachineArn=arn, input="{}")
    assert error_code(refused) == "StateMachineDeleting"
    with pytest.raises(ClientError) as recreate:
        sfn.create_state_machine(name=name, definition=json.dumps(PASS_CHAIN), roleArn=ROLE)
    assert error_code(recreate) == "StateMachineDeleting"
    assert sfn.describe_execution(executionArn=execution)["status"] == "RUNNING"

    # Its last execution ends: the machine is gone, the execution's record stays.
    sfn.stop_execution(executionArn=execution)
    wait_status(api_server, sfn, execution, "ABORTED")
    with pytest.raises(ClientError) as gone:
        sfn.describe_state_machine(stateMachineArn=arn)
    assert error_code(gone) == "StateMachineDoesNotExist"
    assert sfn.describe_execution(executionArn=execution)["stateMachineArn"] == arn

    # The name can be created again, with another definition.
    again = sfn.create_state_machine(name=name, definition=json.dumps(PASS_CHAIN), roleArn=ROLE)
    assert again["stateMachineArn"] == arn
    described = sfn.describe_state_machine(stateMachineArn=arn)
    assert described["status"] == "ACTIVE"
    assert json.loads(described["definition"]) == PASS_CHAIN
    # Deleting what is not there succeeds, as on AWS.
    missing = f"{ACCOUNT_PREFIX}:stateMachine:{unique('never')}"
    assert (
        sfn.delete_state_machine(stateMachineArn=missing)["ResponseMetadata"]["HTTPStatusCode"]
        == 200
    )


def test_create_describe_and_list_state_machine(sfn: Any) -> None:
    name = unique("describe")
    definition = json.dumps(PASS_CHAIN)
    created = sfn.create_state_machine(name=name, definition=definition, roleArn=ROLE)
    arn = created["stateMachineArn"]
    assert arn == f"{ACCOUNT_PREFIX}:stateMachine:{name}"
    assert isinstance(created["creationDate"], datetime)

    described = sfn.describe_state_machine(stateMachineArn=arn)
    assert described["stateMachineArn"] == arn
    assert described["name"] == name
    assert described["status"] == "ACTIVE"
    assert described["type"] == "STANDARD"
    assert described["roleArn"] == ROLE
    assert json.loads(described["definition"]) == PASS_CHAIN
    assert described["creationDate"] == created["creationDate"]
    assert described["revisionId"]

    listed = sfn.list_state_machines()["stateMachines"]
    mine = [m for m in listed if m["stateMachineArn"] == arn]
    assert len(mine) == 1
    assert mine[0]["name"] == name
    assert mine[0]["type"] == "STANDARD"


def test_create_is_idempotent_for_the_same_definition_only(sfn: Any) -> None:
    name = unique("idem")
    first = sfn.create_state_machine(name=name, definition=json.dumps(PASS_CHAIN), roleArn=ROLE)
    again = sfn.create_state_machine(name=name, definition=json.dumps(PASS_CHAIN), roleArn=ROLE)
    assert again["stateMachineArn"] == first["stateMachineArn"]
    with pytest.raises(sfn.exceptions.StateMachineAlreadyExists):
        sfn.create_state_machine(name=name, definition=json.dumps(LONG_WAIT), roleArn=ROLE)


@pytest.mark.parametrize(
    "definition",
    [
        '{"StartAt": "Missing", "States": {"A": {"Type": "Pass", "End": true}}}',
        '{"StartAt": "A"}',
        "not json at all",
    ],
    ids=["unknown-start", "no-states", "not-json"],
)
def test_create_rejects_an_invalid_definition(sfn: Any, definition: str) -> None:
    with pytest.raises(sfn.exceptions.InvalidDefinition) as exc:
        sfn.create_state_machine(name=unique("invalid"), definition=definition, roleArn=ROLE)
    assert "Invalid State Machine Definition" in exc.value.response["Error"]["Message"]


@pytest.mark.parametrize("name", ["has space", "slash/name", "x" * 81, "semi;colon"])
def test_create_rejects_an_invalid_name(sfn: Any, name: str) -> None:
    with pytest.raises(sfn.exceptions.InvalidName):
        sfn.create_state_machine(name=name, definition=json.dumps(PASS_CHAIN), roleArn=ROLE)


def test_missing_state_machine_is_state_machine_does_not_exist(sfn: Any) -> None:
    calls = {
        "DescribeStateMachine": lambda: sfn.describe_state_machine(stateMachineArn=MISSING_SM),
        "UpdateStateMachine": lambda: sfn.update_state_machine(
            stateMachineArn=MISSING_SM, definition=json.dumps(PASS_CHAIN)
        ),
        "StartExecution": lambda: sfn.start_execution(stateMachineArn=MISSING_SM),
        "ListExecutions": lambda: sfn.list_executions(stateMachineArn=MISSING_SM),
    }
    for action, call in calls.items():
        with pytest.raises(sfn.exceptions.StateMachineDoesNotExist) as exc:
            call()
        assert MISSING_SM in exc.value.response["Error"]["Message"], action


@pytest.mark.parametrize(
    "arn",
    ["not-an-arn", MISSING_EXECUTION, "arn:aws:lambda:us-east-1:123456789012:function:f"],
    ids=["garbage", "execution-arn", "other-service"],
)
def test_state_machine_actions_reject_a_malformed_arn(sfn: Any, arn: str) -> None:
    with pytest.raises(sfn.exceptions.InvalidArn):
        sfn.describe_state_machine(stateMachineArn=arn)
    with pytest.raises(sfn.exceptions.InvalidArn):
        sfn.start_execution(stateMachineArn=arn)
    with pytest.raises(sfn.exceptions.InvalidArn):
        sfn.list_executions(stateMachineArn=arn)


def test_update_state_machine_publishes_the_new_definition(api_server: Server, sfn: Any) -> None:
    arn = create(sfn, PASS_CHAIN, "update")
    before = sfn.describe_state_machine(stateMachineArn=arn)
    changed = {
        "StartAt": "Only",
        "States": {"Only": {"Type": "Pass", "Result": {"v": 2}, "End": True}},
    }
    updated = sfn.update_state_machine(stateMachineArn=arn, definition=json.dumps(changed))
    assert isinstance(updated["updateDate"], datetime)
    assert updated["revisionId"] != before["revisionId"]

    after = sfn.describe_state_machine(stateMachineArn=arn)
    assert json.loads(after["definition"]) == changed
    assert after["revisionId"] == updated["revisionId"]

    # new executions run the new definition
    execution = sfn.start_execution(stateMachineArn=arn, input='{"n": 1}')["executionArn"]
    done = wait_status(api_server, sfn, execution, "SUCCEEDED")
    assert json.loads(done["output"]) == {"v": 2}

    # an invalid update is refused and changes nothing
    with pytest.raises(sfn.exceptions.InvalidDefinition):
        sfn.update_state_machine(stateMachineArn=arn, definition='{"StartAt": "Nope"}')
    assert sfn.describe_state_machine(stateMachineArn=arn)["revisionId"] == updated["revisionId"]


def test_update_state_machine_update_date_is_the_update_time(sfn: Any) -> None:
    arn = create(sfn, PASS_CHAIN, "updatedate")
    created = sfn.describe_state_machine(stateMachineArn=arn)["creationDate"]
    updated = sfn.update_state_machine(stateMachineArn=arn, definition=json.dumps(LONG_WAIT))
    assert updated["updateDate"] > created


# ---------------------------------------------------------------------------- executions


def test_execution_runs_to_success_with_history(api_server: Server, sfn: Any) -> None:
    arn = create(sfn, PASS_CHAIN, "flow")
    name = unique("run")
    started = sfn.start_execution(stateMachineArn=arn, name=name, input='{"n": 7}')
    execution = started["executionArn"]
    assert execution == f"{ACCOUNT_PREFIX}:execution:{arn.rsplit(':', 1)[1]}:{name}"
    assert isinstance(started["startDate"], datetime)

    done = wait_status(api_server, sfn, execution, "SUCCEEDED")
    assert done["name"] == name
    assert done["stateMachineArn"] == arn
    assert json.loads(done["input"]) == {"n": 7}
    assert json.loads(done["output"]) == {"n": 7, "step": 1, "second": "two"}
    assert done["startDate"] <= done["stopDate"]
    assert "error" not in done

    events = all_events(sfn, execution)
    assert [e["type"] for e in events] == [
        "ExecutionStarted",
        "PassStateEntered",
        "PassStateExited",
        "PassStateEntered",
        "PassStateExited",
        "PassStateEntered",
        "PassStateExited",
        "ExecutionSucceeded",
    ]
    assert [e["id"] for e in events] == list(range(1, len(events) + 1))
    assert all(isinstance(e["timestamp"], datetime) for e in events)
    assert json.loads(events[0]["executionStartedEventDetails"]["input"]) == {"n": 7}
    assert events[1]["stateEnteredEventDetails"]["name"] == "First"
    assert json.loads(events[-1]["executionSucceededEventDetails"]["output"]) == json.loads(
        done["output"]
    )

    # reverseOrder
    reversed_events = all_events(sfn, execution, reverseOrder=True)
    assert [e["id"] for e in reversed_events] == [e["id"] for e in reversed(events)]

    # pagination: pages of at most 2, following nextToken until exhausted, give everything once
    pages: list[list[dict[str, JSON]]] = []
    token = None
    while True:
        kwargs = {"nextToken": token} if token else {}
        page = sfn.get_execution_history(executionArn=execution, maxResults=2, **kwargs)
        pages.append(page["events"])
        token = page.get("nextToken")
        if not token:
            break
        assert len(pages) < 20, "pagination does not end"
    assert [len(p) for p in pages] == [2, 2, 2, 2]
    assert [e["id"] for p in pages for e in p] == [e["id"] for e in events]

    # includeExecutionData=False leaves out the payloads
    lean = all_events(sfn, execution, includeExecutionData=False)
    assert [e["type"] for e in lean] == [e["type"] for e in events]
    for event in lean:
        for key, details in event.items():
            if key.endswith("EventDetails"):
                assert "input" not in details and "output" not in details, event
    assert lean[1]["stateEnteredEventDetails"]["name"] == "First"


def test_start_execution_is_idempotent_while_running(api_server: Server, sfn: Any) -> None:
    arn = create(sfn, LONG_WAIT, "idem-run")
    name = unique("same")
    first = sfn.start_execution(stateMachineArn=arn, name=name, input='{"a": 1}')
    again = sfn.start_execution(stateMachineArn=arn, name=name, input='{"a": 1}')
    assert again["executionArn"] == first["executionArn"]
    assert again["startDate"] == first["startDate"]
    with pytest.raises(sfn.exceptions.ExecutionAlreadyExists):
        sfn.start_execution(stateMachineArn=arn, name=name, input='{"a": 2}')

    # once closed, even the same input is refused
    sfn.stop_execution(executionArn=first["executionArn"])
    wait_status(api_server, sfn, first["executionArn"], "ABORTED")
    with pytest.raises(sfn.exceptions.ExecutionAlreadyExists):
        sfn.start_execution(stateMachineArn=arn, name=name, input='{"a": 1}')


@pytest.mark.parametrize("bad", ['{"a": ', "not json", "{'single': 1}"])
def test_start_execution_rejects_input_that_is_not_json(sfn: Any, bad: str) -> None:
    arn = create(sfn, PASS_CHAIN, "badinput")
    with pytest.raises(sfn.exceptions.InvalidExecutionInput):
        sfn.start_execution(stateMachineArn=arn, input=bad)
    assert sfn.list_executions(stateMachineArn=arn)["executions"] == []


def test_start_execution_rejects_an_invalid_name(sfn: Any) -> None:
    arn = create(sfn, PASS_CHAIN, "badname")
    with pytest.raises(sfn.exceptions.InvalidName):
        sfn.start_execution(stateMachineArn=arn, name="bad name")


def test_missing_execution_is_execution_does_not_exist(sfn: Any) -> None:
    calls = {
        "DescribeExecution": lambda: sfn.describe_execution(executionArn=MISSING_EXECUTION),
        "StopExecution": lambda: sfn.stop_execution(executionArn=MISSING_EXECUTION),
        "GetExecutionHistory": lambda: sfn.get_execution_history(executionArn=MISSING_EXECUTION),
        "DescribeStateMachineForExecution": lambda: sfn.describe_state_machine_for_execution(
            executionArn=MISSING_EXECUTION
        ),
    }
    for action, call in calls.items():
        with pytest.raises(sfn.exceptions.ExecutionDoesNotExist) as exc:
            call()
        assert error_code(exc) == "ExecutionDoesNotExist", action


def test_describe_execution_of_a_malformed_arn_is_invalid_arn(sfn: Any) -> None:
    with pytest.raises(sfn.exceptions.InvalidArn):
        sfn.describe_execution(executionArn="not-an-arn")


def test_stop_execution_aborts_a_waiting_execution(api_server: Server, sfn: Any) -> None:
    arn = create(sfn, LONG_WAIT, "stop")
    execution = sfn.start_execution(stateMachineArn=arn)["executionArn"]
    api_server.wait_for(
        lambda: any(
            e["type"] == "WaitStateEntered"
            for e in sfn.get_execution_history(executionArn=execution)["events"]
        ),
        "the execution to enter its Wait state",
    )
    stopped = sfn.stop_execution(executionArn=execution, error="Stop.Test", cause="asked to")
    assert isinstance(stopped["stopDate"], datetime)

    done = wait_status(api_server, sfn, execution, "ABORTED")
    assert done["error"] == "Stop.Test"
    assert done["cause"] == "asked to"
    assert "stopDate" in done
    assert "output" not in done
    events = all_events(sfn, execution)
    assert events[-1]["type"] == "ExecutionAborted"
    assert events[-1]["executionAbortedEventDetails"] == {"error": "Stop.Test", "cause": "asked to"}


def test_stop_execution_takes_effect_when_it_returns(api_server: Server, sfn: Any) -> None:
    arn = create(sfn, LONG_WAIT, "stop-sync")
    execution = sfn.start_execution(stateMachineArn=arn)["executionArn"]
    try:
        stopped = sfn.stop_execution(executionArn=execution)
        described = sfn.describe_execution(executionArn=execution)
        assert described["status"] == "ABORTED"
        assert described["stopDate"] == stopped["stopDate"]
    finally:
        wait_status(api_server, sfn, execution, "ABORTED")


def test_list_executions_filters_by_status_and_paginates(api_server: Server, sfn: Any) -> None:
    arn = create(sfn, BRANCHY, "list")
    quick = [
        sfn.start_execution(stateMachineArn=arn, name=unique("quick"), input='{"hold": false}')[
            "executionArn"
        ]
        for _ in range(2)
    ]
    held = [
        sfn.start_execution(stateMachineArn=arn, name=unique("held"), input='{"hold": true}')[
            "executionArn"
        ]
        for _ in range(3)
    ]
    for execution in quick:
        wait_status(api_server, sfn, execution, "SUCCEEDED")

    def arns(**kwargs: Any) -> list[str]:
        return [
            e["executionArn"]
            for e in sfn.list_executions(stateMachineArn=arn, **kwargs)["executions"]
        ]

    assert sorted(arns(statusFilter="SUCCEEDED")) == sorted(quick)
    assert sorted(arns(statusFilter="RUNNING")) == sorted(held)
    assert arns(statusFilter="FAILED") == []

    everything = sfn.list_executions(stateMachineArn=arn)["executions"]
    assert sorted(e["executionArn"] for e in everything) == sorted(quick + held)
    starts = [e["startDate"] for e in everything]
    assert starts == sorted(starts, reverse=True), "newest first"
    for summary in everything:
        assert summary["stateMachineArn"] == arn
        assert summary["status"] in {"SUCCEEDED", "RUNNING"}
        assert ("stopDate" in summary) == (summary["status"] == "SUCCEEDED")

    pages: list[list[str]] = []
    token = None
    while True:
        kwargs: dict[str, Any] = {"maxResults": 2}
        if token:
            kwargs["nextToken"] = token
        page = sfn.list_executions(stateMachineArn=arn, **kwargs)
        pages.append([e["executionArn"] for e in page["executions"]])
        token = page.get("nextToken")
        if not token:
            break
        assert len(pages) < 10, "pagination does not end"
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [a for p in pages for a in p] == [e["executionArn"] for e in everything]

    # boto3's paginator follows the same tokens
    paginated = [
        e["executionArn"]
        for page in sfn.get_paginator("list_executions").paginate(
            stateMachineArn=arn, statusFilter="RUNNING", PaginationConfig={"PageSize": 1}
        )
        for e in page["executions"]
    ]
    assert sorted(paginated) == sorted(held)

    for execution in held:
        sfn.stop_execution(executionArn=execution)
    for execution in held:
        wait_status(api_server, sfn, execution, "ABORTED")
    assert sorted(arns(statusFilter="ABORTED")) == sorted(held)


def test_describe_state_machine_for_execution(api_server: Server, sfn: Any) -> None:
    arn = create(sfn, PASS_CHAIN, "for-exec")
    execution = sfn.start_execution(stateMachineArn=arn, input='{"n": 1}')["executionArn"]
    described = sfn.describe_state_machine_for_execution(executionArn=execution)
    machine = sfn.describe_state_machine(stateMachineArn=arn)
    assert described["stateMachineArn"] == arn
    assert described["name"] == machine["name"]
    assert json.loads(described["definition"]) == PASS_CHAIN
    assert described["roleArn"] == ROLE
    assert described["revisionId"] == machine["revisionId"]
    assert isinstance(described["updateDate"], datetime)
    wait_status(api_server, sfn, execution, "SUCCEEDED")


def test_describe_state_machine_for_execution_after_an_update(api_server: Server, sfn: Any) -> None:
    arn = create(sfn, LONG_WAIT, "for-exec-upd")
    execution = sfn.start_execution(stateMachineArn=arn)["executionArn"]
    original = sfn.describe_state_machine(stateMachineArn=arn)
    sfn.update_state_machine(stateMachineArn=arn, definition=json.dumps(PASS_CHAIN))
    try:
        described = sfn.describe_state_machine_for_execution(executionArn=execution)
        assert json.loads(described["definition"]) == LONG_WAIT
        assert described["revisionId"] == original["revisionId"]
    finally:
        sfn.stop_execution(executionArn=execution)
        wait_status(api_server, sfn, execution, "ABORTED")


# ---------------------------------------------------------------------------- callbacks


def test_callback_task_succeeds_with_the_sent_output(api_server: Server, sfn: Any) -> None:
    arn = create(sfn, CALLBACK, "cb-ok")
    execution = sfn.start_execution(stateMachineArn=arn, input='{"order": 42}')["executionArn"]
    token = task_token(api_server, sfn, execution)
    assert sfn.describe_execution(executionArn=execution)["status"] == "RUNNING"

    scheduled = next(e for e in all_events(sfn, execution) if e["type"] == "TaskScheduled")[
        "taskScheduledEventDetails"
    ]
    assert scheduled["resourceType"] == "sqs"
    assert scheduled["resource"] == "sendMessage.waitForTaskToken"
    assert json.loads(scheduled["parameters"])["MessageBody"]["input"] == {"order": 42}

    heartbeat = sfn.send_task_heartbeat(taskToken=token)
    assert heartbeat["ResponseMetadata"]["HTTPStatusCode"] == 200

    with pytest.raises(sfn.exceptions.InvalidOutput):
        sfn.send_task_success(taskToken=token, output="{not json")

    sfn.send_task_success(taskToken=token, output='{"shipped": true, "items": [1, 2]}')
    done = wait_status(api_server, sfn, execution, "SUCCEEDED")
    assert json.loads(done["output"]) == {"shipped": True, "items": [1, 2]}

    types = [e["type"] for e in all_events(sfn, execution)]
    assert "TaskSucceeded" in types
    assert types[-1] == "ExecutionSucceeded"

    # the token is spent: a second answer is TaskTimedOut, whatever it is
    with pytest.raises(sfn.exceptions.TaskTimedOut):
        sfn.send_task_success(taskToken=token, output="{}")
    with pytest.raises(sfn.exceptions.TaskTimedOut):
        sfn.send_task_failure(taskToken=token, error="Late")
    with pytest.raises(sfn.exceptions.TaskTimedOut):
        sfn.send_task_heartbeat(taskToken=token)


def test_callback_task_fails_with_the_sent_error(api_server: Server, sfn: Any) -> None:
    arn = create(sfn, CALLBACK, "cb-fail")
    execution = sfn.start_execution(stateMachineArn=arn, input="{}")["executionArn"]
    token = task_token(api_server, sfn, execution)
    sfn.send_task_failure(taskToken=token, error="Payment.Declined", cause="card expired")
    done = wait_status(api_server, sfn, execution, "FAILED")
    assert done["error"] == "Payment.Declined"
    assert done["cause"] == "card expired"
    events = all_events(sfn, execution)
    failed = next(e for e in events if e["type"] == "TaskFailed")["taskFailedEventDetails"]
    assert failed["error"] == "Payment.Declined"
    assert failed["cause"] == "card expired"
    assert events[-1]["type"] == "ExecutionFailed"
    assert events[-1]["executionFailedEventDetails"]["error"] == "Payment.Declined"


def test_callback_failure_is_caught(api_server: Server, sfn: Any) -> None:
    arn = create(sfn, CALLBACK_CAUGHT, "cb-catch")
    execution = sfn.start_execution(stateMachineArn=arn, input='{"k": "v"}')["executionArn"]
    token = task_token(api_server, sfn, execution)
    sfn.send_task_failure(taskToken=token, error="Custom.Error", cause="recoverable")
    done = wait_status(api_server, sfn, execution, "SUCCEEDED")
    assert json.loads(done["output"]) == {
        "k": "v",
        "caught": {"Error": "Custom.Error", "Cause": "recoverable"},
    }
    entered = [
        e["stateEnteredEventDetails"]["name"]
        for e in all_events(sfn, execution)
        if e["type"].endswith("StateEntered")
    ]
    assert entered == ["Callback", "Recovered"]


def keep_alive(sfn: Any, token: str, execution: str, seconds: float) -> None:
    """Heartbeat every 0.25 s for ``seconds``; the task must stay alive throughout."""
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        try:
            sfn.send_task_heartbeat(taskToken=token)
        except sfn.exceptions.TaskTimedOut:
            described = sfn.describe_execution(executionArn=execution)
            raise AssertionError(
                "the task timed out although a heartbeat came every 0.25 s: "
                f"{described['status']} {described.get('error')}"
            ) from None
        described = sfn.describe_execution(executionArn=execution)
        assert described["status"] == "RUNNING", described
        time.sleep(0.25)


def test_heartbeats_keep_a_callback_task_alive(api_server: Server, sfn: Any) -> None:
    definition = {
        "StartAt": "Callback",
        "States": {"Callback": {**CALLBACK_TASK, "HeartbeatSeconds": 2}},
    }
    arn = create(sfn, definition, "cb-heartbeat")
    execution = sfn.start_execution(stateMachineArn=arn)["executionArn"]
    token = task_token(api_server, sfn, execution)
    keep_alive(sfn, token, execution, 2.5)  # longer than HeartbeatSeconds: they count
    # without heartbeats the task times out
    done = wait_status(api_server, sfn, execution, "FAILED")
    assert done["error"] == "States.HeartbeatTimeout"
    assert any(e["type"] == "TaskTimedOut" for e in all_events(sfn, execution))
    with pytest.raises(sfn.exceptions.TaskTimedOut):
        sfn.send_task_success(taskToken=token, output="{}")


def test_heartbeats_in_time_keep_a_short_heartbeat_task_alive(
    sqlite_api_server: Server,
) -> None:
    sfn = _client(sqlite_api_server.base_url, sqlite_api_server.key_id, sqlite_api_server.secret)
    definition = {
        "StartAt": "Callback",
        "States": {"Callback": {**CALLBACK_TASK, "HeartbeatSeconds": 1}},
    }
    arn = create(sfn, definition, "cb-heartbeat-1s")
    execution = sfn.start_execution(stateMachineArn=arn)["executionArn"]
    token = task_token(sqlite_api_server, sfn, execution)
    try:
        keep_alive(sfn, token, execution, 3.0)
    finally:
        sfn.stop_execution(executionArn=execution)
        wait_status(sqlite_api_server, sfn, execution, {"ABORTED", "FAILED"})


def test_unknown_task_token_is_task_does_not_exist(sfn: Any) -> None:
    token = uuid.uuid4().hex * 2  # shaped like a real token
    with pytest.raises(sfn.exceptions.TaskDoesNotExist):
        sfn.send_task_success(taskToken=token, output="{}")
    with pytest.raises(sfn.exceptions.TaskDoesNotExist):
        sfn.send_task_failure(taskToken=token, error="E")
    with pytest.raises(sfn.exceptions.TaskDoesNotExist):
        sfn.send_task_heartbeat(taskToken=token)


def test_malformed_task_token_is_invalid_token(sfn: Any) -> None:
    with pytest.raises(sfn.exceptions.InvalidToken):
        sfn.send_task_success(taskToken="not-a-token", output="{}")


# ---------------------------------------------------------------------------- validate / test


def test_validate_state_machine_definition(sfn: Any) -> None:
    ok = sfn.validate_state_machine_definition(definition=json.dumps(PASS_CHAIN))
    assert ok["result"] == "OK"
    assert ok["diagnostics"] == []

    broken = {
        "StartAt": "Nowhere",
        "States": {"A": {"Type": "Pass", "Next": "Missing"}},
    }
    failed = sfn.validate_state_machine_definition(definition=json.dumps(broken))
    assert failed["result"] == "FAIL"
    assert failed["diagnostics"], failed
    for diagnostic in failed["diagnostics"]:
        assert diagnostic["severity"] in {"ERROR", "WARNING"}
        assert diagnostic["code"]
        assert diagnostic["message"]
        assert "location" in diagnostic
    errors = [d for d in failed["diagnostics"] if d["severity"] == "ERROR"]
    assert len(errors) >= 2, failed["diagnostics"]  # the StartAt and the Next
    assert failed["truncated"] is False

    one = sfn.validate_state_machine_definition(
        definition=json.dumps(broken), severity="ERROR", maxResults=1
    )
    assert one["result"] == "FAIL"
    assert len(one["diagnostics"]) == 1
    assert one["truncated"] is True

    assert sfn.validate_state_machine_definition(definition="{ nope")["result"] == "FAIL"


def test_test_state_pass_and_choice(sfn: Any) -> None:
    passed = sfn.test_state(
        definition=json.dumps({"Type": "Pass", "Parameters": {"got.$": "$.x"}, "Next": "After"}),
        roleArn=ROLE,
        input='{"x": 3}',
    )
    assert passed["status"] == "SUCCEEDED"
    assert json.loads(passed["output"]) == {"got": 3}
    assert passed["nextState"] == "After"

    choice = json.dumps(
        {
            "Type": "Choice",
            "Choices": [{"Variable": "$.n", "NumericGreaterThan": 10, "Next": "Big"}],
            "Default": "Small",
        }
    )
    big = sfn.test_state(definition=choice, roleArn=ROLE, input='{"n": 11}')
    small = sfn.test_state(definition=choice, roleArn=ROLE, input='{"n": 1}')
    assert (big["status"], big["nextState"]) == ("SUCCEEDED", "Big")
    assert (small["status"], small["nextState"]) == ("SUCCEEDED", "Small")

    debug = sfn.test_state(
        definition=json.dumps({"Type": "Pass", "InputPath": "$.a", "End": True}),
        roleArn=ROLE,
        input='{"a": {"b": 1}}',
        inspectionLevel="DEBUG",
    )
    assert json.loads(debug["output"]) == {"b": 1}
    assert "nextState" not in debug
    assert json.loads(debug["inspectionData"]["afterInputPath"]) == {"b": 1}

    with pytest.raises(sfn.exceptions.ValidationException):
        sfn.test_state(definition='{"Type": "Pass"', roleArn=ROLE)


# ---------------------------------------------------------------------------- wire protocol


def test_missing_required_member_is_validation_exception(raw_sfn: Any) -> None:
    for call in (
        lambda: raw_sfn.describe_execution(),
        lambda: raw_sfn.start_execution(),
        lambda: raw_sfn.create_state_machine(name="no-definition"),
        lambda: raw_sfn.send_task_success(output="{}"),
    ):
        with pytest.raises(raw_sfn.exceptions.ValidationException) as exc:
            call()
        assert "Member must not be null" in exc.value.response["Error"]["Message"]


def test_list_executions_rejects_an_unknown_status_filter(raw_sfn: Any) -> None:
    arn = create(raw_sfn, PASS_CHAIN, "statusfilter")
    with pytest.raises(raw_sfn.exceptions.ValidationException):
        raw_sfn.list_executions(stateMachineArn=arn, statusFilter="BOGUS")


def test_unknown_operation(api_server: Server) -> None:
    response = raw_post(api_server, "AWSStepFunctions.DeleteEverything", b"{}")
    assert response.status_code == 400
    assert response.json()["__type"] == "UnknownOperationException"
    assert raw_post(api_server, None, b"{}").json()["__type"] == "UnknownOperationException"
    other_service = raw_post(api_server, "AmazonSQS.ListQueues", b"{}")
    assert other_service.status_code == 400
    assert other_service.json()["__type"] == "UnknownOperationException"


def test_malformed_json_body_is_serialization_exception(api_server: Server) -> None:
    response = raw_post(api_server, "AWSStepFunctions.ListStateMachines", b'{"oops": ')
    assert response.status_code == 400
    assert response.json()["__type"] == "SerializationException"
    assert response.headers["content-type"].startswith("application/x-amz-json-1.0")

    not_an_object = raw_post(api_server, "AWSStepFunctions.ListStateMachines", b"[1, 2]")
    assert not_an_object.status_code == 400
    assert "__type" in not_an_object.json()


def test_oversized_body_is_rejected(api_server: Server) -> None:
    definition = json.dumps({"StartAt": "A", "States": {"A": {"Type": "Pass", "End": True}}})
    body = json.dumps(
        {"name": unique("huge"), "definition": definition, "padding": "x" * 2_000_000}
    ).encode()
    response = raw_post(api_server, "AWSStepFunctions.CreateStateMachine", body)
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["__type"]


def test_non_integer_max_results_is_a_client_error(api_server: Server, sfn: Any) -> None:
    arn = create(sfn, PASS_CHAIN, "maxresults")
    response = raw_post(
        api_server,
        "AWSStepFunctions.ListExecutions",
        json.dumps({"stateMachineArn": arn, "maxResults": "ten"}).encode(),
    )
    assert response.status_code == 400, response.text
    assert response.json()["__type"] == "ValidationException"


def test_test_state_with_a_mock_result_that_is_not_json(api_server: Server) -> None:
    body = {
        "definition": json.dumps(
            {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "End": True}
        ),
        "roleArn": ROLE,
        "mock": {"result": "{not json"},
    }
    response = raw_post(api_server, "AWSStepFunctions.TestState", json.dumps(body).encode())
    assert response.status_code == 400, response.text
    assert response.json()["__type"] == "ValidationException"


# ---------------------------------------------------------------------------- StartSyncExecution


def test_start_sync_execution_returns_the_result_of_an_express_workflow(sfn: Any) -> None:
    arn = sfn.create_state_machine(
        name=unique("express"),
        definition=json.dumps(
            {
                "StartAt": "Greet",
                "States": {
                    "Greet": {
                        "Type": "Pass",
                        "Parameters": {"msg.$": "States.Format('hi {}', $.who)"},
                        "End": True,
                    }
                },
            }
        ),
        roleArn=ROLE,
        type="EXPRESS",
    )["stateMachineArn"]
    result = sfn.start_sync_execution(stateMachineArn=arn, input=json.dumps({"who": "Ada"}))
    assert result["status"] == "SUCCEEDED"
    assert json.loads(result["output"]) == {"msg": "hi Ada"}
    assert result["stopDate"] >= result["startDate"]
    assert "billingDetails" in result


def test_start_sync_execution_reports_a_failure_with_status_200(sfn: Any) -> None:
    arn = sfn.create_state_machine(
        name=unique("express"),
        definition=json.dumps(
            {
                "StartAt": "F",
                "States": {"F": {"Type": "Fail", "Error": "Boom", "Cause": "on purpose"}},
            }
        ),
        roleArn=ROLE,
        type="EXPRESS",
    )["stateMachineArn"]
    result = sfn.start_sync_execution(stateMachineArn=arn, input="{}")
    assert (result["status"], result["error"], result["cause"]) == ("FAILED", "Boom", "on purpose")


def test_start_sync_execution_of_a_standard_machine_is_refused(sfn: Any) -> None:
    arn = create(sfn, {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}})
    with pytest.raises(sfn.exceptions.StateMachineTypeNotSupported):
        sfn.start_sync_execution(stateMachineArn=arn, input="{}")


def test_an_unknown_state_machine_type_is_a_validation_error(raw_sfn: Any) -> None:
    with pytest.raises(raw_sfn.exceptions.ClientError) as caught:
        raw_sfn.create_state_machine(
            name=unique("typed"),
            definition=json.dumps({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}),
            roleArn=ROLE,
            type="TURBO",
        )
    assert caught.value.response["Error"]["Code"] == "ValidationException"


# ---------------------------------------------------------------------------- activities


def test_an_activity_worker_takes_the_task_and_answers_it(api_server: Server, sfn: Any) -> None:
    activity = sfn.create_activity(name=unique("act"))["activityArn"]
    assert (
        sfn.create_activity(name=activity.rsplit(":", 1)[1])["activityArn"] == activity
    )  # idempotent
    assert activity in [a["activityArn"] for a in sfn.list_activities()["activities"]]
    assert sfn.describe_activity(activityArn=activity)["name"] == activity.rsplit(":", 1)[1]
    arn = create(
        sfn,
        {
            "StartAt": "Work",
            "States": {
                "Work": {
                    "Type": "Task",
                    "Resource": activity,
                    "ResultPath": "$.answer",
                    "End": True,
                }
            },
        },
    )
    execution = sfn.start_execution(stateMachineArn=arn, input=json.dumps({"job": 7}))[
        "executionArn"
    ]
    task: dict[str, Any] = {}
    deadline = time.monotonic() + 30
    while not task.get("taskToken"):
        assert time.monotonic() < deadline, "no activity task was handed out"
        task = sfn.get_activity_task(activityArn=activity, workerName="worker-1")
    assert json.loads(task["input"]) == {"job": 7}
    sfn.send_task_heartbeat(taskToken=task["taskToken"])
    sfn.send_task_success(taskToken=task["taskToken"], output=json.dumps({"done": True}))
    described = wait_status(api_server, sfn, execution, "SUCCEEDED")
    assert json.loads(described["output"]) == {"job": 7, "answer": {"done": True}}
    types = [e["type"] for e in sfn.get_execution_history(executionArn=execution)["events"]]
    assert types == [
        "ExecutionStarted",
        "TaskStateEntered",
        "ActivityScheduled",
        "ActivityStarted",
        "ActivitySucceeded",
        "TaskStateExited",
        "ExecutionSucceeded",
    ]
    with pytest.raises(sfn.exceptions.TaskTimedOut):
        sfn.send_task_success(taskToken=task["taskToken"], output="{}")


def test_activity_timeouts_fire_as_on_aws(api_server: Server, sfn: Any) -> None:
    activity = sfn.create_activity(name=unique("slow"))["activityArn"]

    def machine(timeout: int) -> str:
        state = {"Type": "Task", "Resource": activity, "HeartbeatSeconds": 1, "End": True}
        definition = {"StartAt": "Work", "States": {"Work": {**state, "TimeoutSeconds": timeout}}}
        return create(sfn, definition, "act-timeout")

    # Nobody takes the task: only TimeoutSeconds runs (the heartbeat clock starts when a
    # worker takes it), so the task times out, not its heartbeat.
    idle = sfn.start_execution(stateMachineArn=machine(2), input="{}")["executionArn"]
    done = wait_status(api_server, sfn, idle, "FAILED")
    assert done["error"] == "States.Timeout"
    assert "ActivityTimedOut" in [e["type"] for e in all_events(sfn, idle)]
    # A worker takes it and never beats: HeartbeatSeconds ends it sooner.
    quiet = sfn.start_execution(stateMachineArn=machine(30), input="{}")["executionArn"]
    task: dict[str, Any] = {}
    deadline = time.monotonic() + 30
    while not task.get("taskToken"):
        assert time.monotonic() < deadline, "no activity task was handed out"
        task = sfn.get_activity_task(activityArn=activity, workerName="quiet")
    done = wait_status(api_server, sfn, quiet, "FAILED")
    assert done["error"] == "States.HeartbeatTimeout"
    with pytest.raises(sfn.exceptions.TaskTimedOut):
        sfn.send_task_success(taskToken=task["taskToken"], output="{}")


def test_get_activity_task_with_nothing_to_do_returns_no_token(sfn: Any) -> None:
    activity = sfn.create_activity(name=unique("idle"))["activityArn"]
    started = time.monotonic()
    task = sfn.get_activity_task(activityArn=activity)
    assert not task.get("taskToken")
    assert time.monotonic() - started >= 0.9  # it held the request (the long poll), then gave up


def test_activity_errors(sfn: Any) -> None:
    missing = "arn:aws:states:us-east-1:123456789012:activity:no-such-activity"
    with pytest.raises(sfn.exceptions.ActivityDoesNotExist):
        sfn.describe_activity(activityArn=missing)
    with pytest.raises(sfn.exceptions.ActivityDoesNotExist):
        sfn.get_activity_task(activityArn=missing)
    with pytest.raises(sfn.exceptions.InvalidArn):
        sfn.describe_activity(activityArn="not-an-arn")
    activity = sfn.create_activity(name=unique("gone"))["activityArn"]
    sfn.delete_activity(activityArn=activity)
    with pytest.raises(sfn.exceptions.ActivityDoesNotExist):
        sfn.describe_activity(activityArn=activity)


# ---------------------------------------------------------------------------- redrive


def test_redrive_continues_a_failed_execution_from_the_failed_state(
    api_server: Server, sfn: Any
) -> None:
    # The callback task fails first; after the redrive the same state waits again and succeeds.
    arn = create(
        sfn,
        {
            "StartAt": "Prepare",
            "States": {
                "Prepare": {
                    "Type": "Pass",
                    "Result": 1,
                    "ResultPath": "$.prepared",
                    "Next": "Wait",
                },
                "Wait": {
                    "Type": "Task",
                    "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
                    "Parameters": {"MessageBody": {"token.$": "$$.Task.Token"}},
                    "End": True,
                },
            },
        },
    )
    execution = sfn.start_execution(stateMachineArn=arn, input="{}")["executionArn"]

    def token() -> str | None:
        for event in sfn.get_execution_history(executionArn=execution, reverseOrder=True)["events"]:
            if event["type"] == "TaskScheduled":
                params = json.loads(event["taskScheduledEventDetails"]["parameters"])
                value: str = params["MessageBody"]["token"]
                return value
        return None

    first = api_server.wait_for(token, "the first task token", timeout=30)
    sfn.send_task_failure(taskToken=first, error="Downstream.Broken", cause="maintenance")
    failed = wait_status(api_server, sfn, execution, "FAILED")
    assert failed["redriveStatus"] == "REDRIVABLE"
    redriven = sfn.redrive_execution(executionArn=execution)
    assert redriven["redriveDate"]

    def new_token() -> str | None:
        current = token()
        return current if current and current != first else None

    second = api_server.wait_for(new_token, "a new task token after the redrive", timeout=30)
    sfn.send_task_success(taskToken=second, output=json.dumps({"ok": True}))
    described = wait_status(api_server, sfn, execution, "SUCCEEDED")
    assert json.loads(described["output"]) == {"ok": True}
    assert described["redriveCount"] == 1
    types = [e["type"] for e in all_events(sfn, execution)]
    assert types.count("PassStateEntered") == 1  # Prepare was not run again
    assert "ExecutionRedriven" in types
    with pytest.raises(sfn.exceptions.ExecutionNotRedrivable):
        sfn.redrive_execution(executionArn=execution)


# ---------------------------------------------------------------------------- versions


def test_versions_are_immutable_and_can_be_started_by_arn(api_server: Server, sfn: Any) -> None:
    first = {"StartAt": "P", "States": {"P": {"Type": "Pass", "Result": "one", "End": True}}}
    second = {"StartAt": "P", "States": {"P": {"Type": "Pass", "Result": "two", "End": True}}}
    arn = create(sfn, first, "versioned")
    v1 = sfn.publish_state_machine_version(stateMachineArn=arn)["stateMachineVersionArn"]
    assert v1 == f"{arn}:1"
    sfn.update_state_machine(stateMachineArn=arn, definition=json.dumps(second))
    v2 = sfn.publish_state_machine_version(stateMachineArn=arn)["stateMachineVersionArn"]
    assert v2 == f"{arn}:2"
    listed = [
        v["stateMachineVersionArn"]
        for v in sfn.list_state_machine_versions(stateMachineArn=arn)["stateMachineVersions"]
    ]
    assert listed == [v2, v1]
    assert json.loads(sfn.describe_state_machine(stateMachineArn=v1)["definition"]) == first
    old = sfn.start_execution(stateMachineArn=v1, input="{}")["executionArn"]
    new = sfn.start_execution(stateMachineArn=arn, input="{}")["executionArn"]
    assert json.loads(wait_status(api_server, sfn, old, "SUCCEEDED")["output"]) == "one"
    assert json.loads(wait_status(api_server, sfn, new, "SUCCEEDED")["output"]) == "two"
    # Started through a version ARN, the execution says so; unqualified, it does not.
    assert sfn.describe_execution(executionArn=old)["stateMachineVersionArn"] == v1
    assert "stateMachineVersionArn" not in sfn.describe_execution(executionArn=new)
    with pytest.raises(sfn.exceptions.ResourceNotFound):
        sfn.describe_state_machine(stateMachineArn=f"{arn}:99")


def test_aliases_route_executions_to_versions_by_weight(api_server: Server, sfn: Any) -> None:
    first = {"StartAt": "P", "States": {"P": {"Type": "Pass", "Result": "one", "End": True}}}
    second = {"StartAt": "P", "States": {"P": {"Type": "Pass", "Result": "two", "End": True}}}
    arn = create(sfn, first, "aliased")
    v1 = sfn.publish_state_machine_version(stateMachineArn=arn)["stateMachineVersionArn"]
    sfn.update_state_machine(stateMachineArn=arn, definition=json.dumps(second))
    v2 = sfn.publish_state_machine_version(stateMachineArn=arn)["stateMachineVersionArn"]

    prod = sfn.create_state_machine_alias(
        name="prod",
        description="live traffic",
        routingConfiguration=[{"stateMachineVersionArn": v1, "weight": 100}],
    )["stateMachineAliasArn"]
    assert prod == f"{arn}:prod"
    described = sfn.describe_state_machine_alias(stateMachineAliasArn=prod)
    assert described["name"] == "prod" and described["description"] == "live traffic"
    assert described["routingConfiguration"] == [{"stateMachineVersionArn": v1, "weight": 100}]
    # The same alias again is the same alias; another routing under its name is a conflict.
    again = sfn.create_state_machine_alias(
        name="prod",
        description="live traffic",
        routingConfiguration=[{"stateMachineVersionArn": v1, "weight": 100}],
    )
    assert again["stateMachineAliasArn"] == prod
    with pytest.raises(ClientError) as conflict:
        sfn.create_state_machine_alias(
            name="prod", routingConfiguration=[{"stateMachineVersionArn": v2, "weight": 100}]
        )
    assert error_code(conflict) == "ConflictException"

    def output_of(alias_arn: str) -> str:
        run = sfn.start_execution(stateMachineArn=alias_arn, input="{}")["executionArn"]
        done = wait_status(api_server, sfn, run, "SUCCEEDED")
        out: str = json.loads(done["output"])
        return out

    assert output_of(prod) == "one"
    through_alias = sfn.start_execution(stateMachineArn=prod, input="{}")["executionArn"]
    described = sfn.describe_execution(executionArn=through_alias)
    assert described["stateMachineAliasArn"] == prod
    assert described["stateMachineVersionArn"] == v1
    # Shift all traffic to version 2, then split it: both versions get executions.
    sfn.update_state_machine_alias(
        stateMachineAliasArn=prod,
        routingConfiguration=[{"stateMachineVersionArn": v2, "weight": 100}],
    )
    assert output_of(prod) == "two"
    sfn.update_state_machine_alias(
        stateMachineAliasArn=prod,
        routingConfiguration=[
            {"stateMachineVersionArn": v1, "weight": 50},
            {"stateMachineVersionArn": v2, "weight": 50},
        ],
    )
    seen = {output_of(prod) for _ in range(24)}  # both, but for 2 x 0.5^24
    assert seen == {"one", "two"}

    listed = sfn.list_state_machine_aliases(stateMachineArn=arn)["stateMachineAliases"]
    assert [a["stateMachineAliasArn"] for a in listed] == [prod]
    for bad_routing, code in (
        ([{"stateMachineVersionArn": v1, "weight": 60}], "ValidationException"),
        ([{"stateMachineVersionArn": f"{arn}:99", "weight": 100}], "ResourceNotFound"),
        (
            [
                {"stateMachineVersionArn": v1, "weight": 50},
                {"stateMachineVersionArn": v1, "weight": 50},
            ],
            "ValidationException",
        ),
    ):
        with pytest.raises(ClientError) as refused:
            sfn.update_state_machine_alias(
                stateMachineAliasArn=prod, routingConfiguration=bad_routing
            )
        assert error_code(refused) == code, bad_routing
    sfn.delete_state_machine_alias(stateMachineAliasArn=prod)
    with pytest.raises(ClientError) as gone:
        sfn.describe_state_machine_alias(stateMachineAliasArn=prod)
    assert error_code(gone) == "ResourceNotFound"
    with pytest.raises(ClientError) as no_start:
        sfn.start_execution(stateMachineArn=prod, input="{}")
    assert error_code(no_start) == "ResourceNotFound"
