"""Redrive: a FAILED, TIMED_OUT or ABORTED execution continues from the state it stopped in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from statemachine import Execution, parse, run_local
from statemachine.events import (
    RedriveExecution,
    ScheduleTask,
    StopExecution,
    TaskStarted,
    TaskSucceeded,
)
from statemachine.local import TaskError

START = datetime(2025, 1, 1, tzinfo=UTC)
TASK = "arn:aws:states:::http:invoke"
MACHINE = {
    "StartAt": "Prepare",
    "States": {
        "Prepare": {
            "Type": "Pass",
            "Result": {"ready": True},
            "ResultPath": "$.prep",
            "Next": "Call",
        },
        "Call": {"Type": "Task", "Resource": TASK, "ResultPath": "$.call", "Next": "Done"},
        "Done": {
            "Type": "Pass",
            "Parameters": {"count.$": "$$.Execution.RedriveCount", "call.$": "$.call"},
            "End": True,
        },
    },
}


def _failed_run() -> Any:
    def tasks(request: Any) -> Any:
        raise TaskError("Service.Down", "try later")

    result = run_local(MACHINE, {"order": 1}, tasks=tasks, clock=lambda: START)
    assert result.status == "FAILED"
    return result


def test_redrive_reruns_the_failed_state_not_the_ones_before_it() -> None:
    failed = _failed_run()
    execution = Execution(parse(MACHINE))
    execution.fold(failed.events)
    later = START + timedelta(minutes=5)
    execution.handle(RedriveExecution(later))
    new = execution.new_events
    assert [e.type for e in new] == ["ExecutionRedriven", "TaskStateEntered", "TaskScheduled"]
    assert new[0].details == {"redriveCount": 1}
    assert new[1].details["input"] == {"order": 1, "prep": {"ready": True}}  # the state's own input
    (task,) = [c for c in execution.commands if isinstance(c, ScheduleTask)]
    execution.handle(TaskStarted(task.task_id, later))
    execution.handle(TaskSucceeded(task.task_id, {"ok": True}, later))
    assert execution.status == "SUCCEEDED"
    assert execution.events[-1].details["output"] == {"count": 1, "call": {"ok": True}}
    types = [e.type for e in execution.events]
    assert types.count("PassStateEntered") == 2  # Prepare once (not rerun) and Done


def test_redriving_a_redriven_history_folds_to_the_same_state() -> None:
    failed = _failed_run()
    live = Execution(parse(MACHINE))
    live.fold(failed.events)
    live.handle(RedriveExecution(START + timedelta(minutes=1)))
    replayed = Execution(parse(MACHINE))
    replayed.fold(live.events)
    assert replayed.status == live.status == "RUNNING"
    assert set(replayed.tasks) == set(live.tasks)
    assert replayed.info is not None and replayed.info.redrive_count == 1


def test_an_aborted_execution_can_be_redriven_and_a_succeeded_one_cannot() -> None:
    waiting = {"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 60, "End": True}}}
    execution = Execution(parse(waiting))
    from statemachine.events import StartExecution

    execution.handle(
        StartExecution(
            {},
            START,
            "arn:aws:states:us-east-1:1:execution:w:e",
            "arn:aws:states:us-east-1:1:stateMachine:w",
        )
    )
    execution.handle(StopExecution(START + timedelta(seconds=1), "Operator", "stop"))
    assert execution.status == "ABORTED"
    execution.handle(RedriveExecution(START + timedelta(seconds=2)))
    assert execution.status == "RUNNING"
    assert [e.type for e in execution.events][-2:] == ["ExecutionRedriven", "WaitStateEntered"]

    done = run_local({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}, {})
    finished = Execution(parse({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}))
    finished.fold(done.events)
    finished.handle(RedriveExecution(START))
    assert finished.new_events == [] and finished.status == "SUCCEEDED"
