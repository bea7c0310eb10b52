"""run_local: mock configs, task providers and timers on the virtual clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from statemachine import NEVER, MockConfigError, TaskError, TaskRequest, run_local

START = datetime(2025, 1, 1, tzinfo=UTC)
TASK = "arn:aws:states:::http:invoke"


def _task_machine(**fields: Any) -> dict[str, Any]:
    return {
        "StartAt": "T",
        "States": {"T": {"Type": "Task", "Resource": TASK, "End": True, **fields}},
    }


def _mock(responses: dict[str, Any]) -> dict[str, Any]:
    return {
        "StateMachines": {"sm": {"TestCases": {"Case": {"T": "TResponse"}}}},
        "MockedResponses": {"TResponse": responses},
    }


def test_mock_ranges_answer_invocations_in_order_across_retries() -> None:
    machine = _task_machine(
        Retry=[{"ErrorEquals": ["Flaky"], "IntervalSeconds": 2, "MaxAttempts": 3}]
    )
    config = _mock(
        {"0-1": {"Throw": {"Error": "Flaky", "Cause": "try again"}}, "2": {"Return": {"ok": 1}}}
    )
    result = run_local(
        machine,
        {},
        mock_config=config,
        test_case="Case",
        state_machine_name="sm",
        clock=lambda: START,
    )
    assert result.status == "SUCCEEDED"
    assert result.output == {"ok": 1}
    scheduled = [e.timestamp for e in result.events if e.type == "TaskScheduled"]
    assert [t - START for t in scheduled] == [
        timedelta(0),
        timedelta(seconds=2),
        timedelta(seconds=6),
    ]


def test_lambda_function_arn_mock_returns_the_payload() -> None:
    machine = {
        "StartAt": "L",
        "States": {
            "L": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:1:function:f", "End": True}
        },
    }
    config = {
        "StateMachines": {"sm": {"TestCases": {"Case": {"L": "R"}}}},
        "MockedResponses": {"R": {"0": {"Return": {"StatusCode": 200, "Payload": {"x": 2}}}}},
    }
    result = run_local(machine, {}, mock_config=config, test_case="Case", state_machine_name="sm")
    assert result.output == {"x": 2}
    assert [e.type for e in result.events][2:5] == [
        "LambdaFunctionScheduled",
        "LambdaFunctionStarted",
        "LambdaFunctionSucceeded",
    ]


def test_an_invocation_without_a_mocked_response_fails_the_task() -> None:
    result = run_local(
        _task_machine(),
        {},
        mock_config=_mock({"1": {"Return": {}}}),
        test_case="Case",
        state_machine_name="sm",
    )
    assert result.status == "FAILED"
    assert result.error == "States.TaskFailed"
    assert "invocation 0" in (result.cause or "")


@pytest.mark.parametrize(
    ("config", "test_case", "name", "message"),
    [
        ([], "Case", "sm", "must be a JSON object"),
        (_mock({"0": {"Return": {}}}), "Case", "other", "no state machine named 'other'"),
        (_mock({"0": {"Return": {}}}), "Nope", "sm", "no test case 'Nope'"),
        (_mock({"zero": {"Return": {}}}), "Case", "sm", "bad invocation key 'zero'"),
        (_mock({"0": {}}), "Case", "sm", "exactly one of Return or Throw"),
    ],
)
def test_malformed_mock_configs_are_rejected_with_the_reason(
    config: Any, test_case: str, name: str, message: str
) -> None:
    with pytest.raises(MockConfigError, match=message):
        run_local(
            _task_machine(), {}, mock_config=config, test_case=test_case, state_machine_name=name
        )


def test_a_task_that_never_answers_times_out_on_the_virtual_clock() -> None:
    result = run_local(
        _task_machine(TimeoutSeconds=300), {}, tasks=lambda r: NEVER, clock=lambda: START
    )
    assert result.status == "FAILED"
    assert result.error == "States.Timeout"
    timed_out = next(e for e in result.events if e.type == "TaskTimedOut")
    assert timed_out.timestamp - START == timedelta(seconds=300)


def test_a_missing_heartbeat_fails_with_heartbeat_timeout_and_can_be_retried() -> None:
    machine = _task_machine(
        TimeoutSeconds=100,
        HeartbeatSeconds=10,
        Retry=[
            {"ErrorEquals": ["States.HeartbeatTimeout"], "IntervalSeconds": 1, "MaxAttempts": 1}
        ],
    )
    attempts: list[int] = []

    def tasks(request: TaskRequest) -> Any:
        attempts.append(request.attempt)
        return NEVER if request.attempt == 0 else {"done": True}

    result = run_local(machine, {}, tasks=tasks, clock=lambda: START)
    assert attempts == [0, 1]
    assert result.status == "SUCCEEDED"
    assert [e.type for e in result.events].count("TaskTimedOut") == 1


def test_task_errors_raised_by_a_callable_reach_catch() -> None:
    machine = {
        "StartAt": "T",
        "States": {
            "T": {
                "Type": "Task",
                "Resource": TASK,
                "Catch": [
                    {"ErrorEquals": ["Payment.Declined"], "ResultPath": "$.err", "Next": "Handled"}
                ],
                "End": True,
            },
            "Handled": {"Type": "Succeed"},
        },
    }

    def tasks(request: TaskRequest) -> Any:
        raise TaskError("Payment.Declined", "card expired")

    result = run_local(machine, {"order": 1}, tasks=tasks)
    assert result.output == {
        "order": 1,
        "err": {"Error": "Payment.Declined", "Cause": "card expired"},
    }


def test_wait_for_task_token_passes_the_token_and_records_task_submitted() -> None:
    machine = _task_machine(
        Resource="arn:aws:states:::sqs:sendMessage.waitForTaskToken",
        Parameters={"MessageBody": {"token.$": "$$.Task.Token"}},
    )
    seen: list[TaskRequest] = []

    def tasks(request: TaskRequest) -> Any:
        seen.append(request)
        return {"approved": True}

    result = run_local(machine, {}, tasks=tasks)
    assert result.status == "SUCCEEDED"
    token = seen[0].parameters["MessageBody"]["token"]
    assert token == seen[0].task_token and len(token) >= 32
    assert "TaskSubmitted" in [e.type for e in result.events]


def test_execution_timeout_ends_a_long_wait_as_timed_out() -> None:
    machine = {
        "TimeoutSeconds": 60,
        "StartAt": "W",
        "States": {"W": {"Type": "Wait", "Seconds": 86400, "End": True}},
    }
    result = run_local(machine, {}, clock=lambda: START)
    assert result.status == "TIMED_OUT"
    assert result.error == "States.Timeout"
    assert result.events[-1].timestamp - START == timedelta(seconds=60)


def test_task_tokens_derive_from_the_token_key_not_the_seed() -> None:
    from statemachine import Execution, parse
    from statemachine.events import ScheduleTask, StartExecution

    machine = parse(
        _task_machine(Resource="arn:aws:states:::sqs:sendMessage.waitForTaskToken", Parameters={})
    )

    def token(seed: int, key: str) -> str:
        execution = Execution(machine)
        execution.handle(
            StartExecution(
                input={},
                timestamp=START,
                execution_arn="arn:aws:states:us-east-1:123456789012:execution:m:e",
                state_machine_arn="arn:aws:states:us-east-1:123456789012:stateMachine:m",
                seed=seed,
                token_key=key,
            )
        )
        found = [c.task_token for c in execution.commands if isinstance(c, ScheduleTask)]
        assert found and found[0]
        return str(found[0])

    key_a, key_b = "a" * 64, "b" * 64
    # The 256-bit key decides the token; the (62-bit) seed does not.
    assert token(1, key_a) == token(2, key_a)
    assert token(1, key_a) != token(1, key_b)
    # A history written before there were token keys keeps its seed-derived tokens.
    assert token(1, "") != token(2, "")
