"""Redrive: a FAILED, TIMED_OUT or ABORTED execution continues from the state it stopped in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from statemachine import Event, Execution, decide, parse, redrive_local, run_local
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


# ---------------------------------------------------------------------------- Map and Parallel
#
# A redriven Map or Parallel keeps what succeeded and reruns only the failed or aborted
# iterations and branches, each from the state inside it where it stopped. The failing tasks
# below retry once after 10 s, so every other task has answered before the state fails.

LATER = START + timedelta(hours=1)
RETRY_ONCE = [{"ErrorEquals": ["Service.Down"], "IntervalSeconds": 10, "MaxAttempts": 1}]


def _work(name: str = "Work", end: bool = True, **extra: Any) -> dict[str, Any]:
    state: dict[str, Any] = {
        "Type": "Task",
        "Resource": TASK,
        "Parameters": {"n.$": "$.n"},
        "Retry": RETRY_ONCE,
        "ResultSelector": {"done.$": "$.done"},
        **extra,
    }
    state.update({"End": True} if end else {})
    return state


MAP = {
    "StartAt": "Each",
    "States": {
        "Each": {
            "Type": "Map",
            "ItemsPath": "$.items",
            "ItemSelector": {"n.$": "$$.Map.Item.Value"},
            "ItemProcessor": {
                "StartAt": "Prepare",
                "States": {
                    "Prepare": {"Type": "Pass", "ResultPath": "$.prepared", "Next": "Work"},
                    "Work": _work(),
                },
            },
            "ResultPath": "$.results",
            "OutputPath": "$.results",
            "End": True,
        }
    },
}

PARALLEL = {
    "StartAt": "All",
    "States": {
        "All": {
            "Type": "Parallel",
            "Branches": [
                {"StartAt": f"B{i}", "States": {f"B{i}": _work(Parameters={"n": i + 1})}}
                for i in range(3)
            ],
            "ResultSelector": {"all.$": "$"},
            "End": True,
        }
    },
}


def _tasks(failing: set[int], calls: list[int] | None = None) -> Any:
    """Task answers: ``{"done": n * 10}``, or Service.Down for the ``n`` in ``failing``."""

    def tasks(request: Any) -> Any:
        n = request.parameters["n"]
        if calls is not None:
            calls.append(n)
        if n in failing:
            raise TaskError("Service.Down", f"{n} is down")
        return {"done": n * 10}

    return tasks


def _run(definition: Any, data: Any, failing: set[int]) -> Any:
    result = run_local(definition, data, tasks=_tasks(failing), clock=lambda: START)
    assert result.status == "FAILED", result
    return result


def _redrive(
    definition: Any, history: Any, failing: set[int], at: datetime = LATER
) -> tuple[Any, list[int]]:
    """redrive_local, checking that replay gives what the live redrive gave at every step.
    Returns the result and the ``n`` of each task call."""
    calls: list[int] = []
    steps: list[tuple[Any, int, int, tuple[Any, ...]]] = []
    result = redrive_local(
        definition,
        history,
        tasks=_tasks(failing, calls),
        clock=lambda: at,
        on_step=lambda *step: steps.append(step),
    )
    _assert_replays(definition, result.events, steps)
    return result, calls


def _snapshot(execution: Execution) -> Any:
    return (
        execution.status,
        sorted(execution.tasks),
        sorted(execution.timers),
        {s: (f.phase, f.state.name, f.aborted) for s, f in execution.frames.items()},
        execution.info.redrive_count if execution.info else None,
    )


def _assert_replays(definition: Any, events: list[Event], steps: list[Any]) -> None:
    """At each decision of the live run: decide() on the history before it gives the same
    events and commands, and folding the history after it gives the same state."""
    machine = parse(definition)
    for incoming, before, after, commands in steps:
        decision = decide(machine, events[:before], incoming)
        assert list(decision.events) == events[before:after]
        assert decision.commands == commands
        live = Execution(machine)
        live.fold(events[:before])
        live.handle(incoming)
        folded = Execution(machine)
        folded.fold(events[:after])
        assert _snapshot(folded) == _snapshot(live)


def _since_redrive(events: list[Event]) -> list[Event]:
    last = max(e.id for e in events if e.type == "ExecutionRedriven")
    return events[last - 1 :]


def test_a_redriven_map_reruns_only_the_failed_and_aborted_iterations() -> None:
    failed = _run(MAP, {"items": [1, 2, 3, 4, 5]}, failing={2, 4})
    types = [e.type for e in failed.events]
    assert types.count("MapIterationSucceeded") == 3
    assert types.count("MapIterationFailed") == 1 and types.count("MapIterationAborted") == 1

    result, calls = _redrive(MAP, failed.events, failing=set())
    assert result.status == "SUCCEEDED"
    assert result.output == [{"done": n * 10} for n in (1, 2, 3, 4, 5)]
    assert sorted(calls) == [2, 4]
    new = _since_redrive(result.events)
    types = [e.type for e in new]
    assert types[:3] == ["ExecutionRedriven", "MapIterationStarted", "MapIterationStarted"]
    assert [e.details["index"] for e in new if e.type == "MapIterationStarted"] == [1, 3]
    assert types.count("TaskScheduled") == 2
    assert "MapStateEntered" not in types and "MapStateStarted" not in types
    # Each rerun iteration continues at the state that failed: Prepare is not run again.
    assert "PassStateEntered" not in types
    assert types[-3:] == ["MapStateSucceeded", "MapStateExited", "ExecutionSucceeded"]


def test_a_redriven_parallel_reruns_only_the_failed_branch() -> None:
    failed = _run(PARALLEL, {}, failing={2})
    assert [e.type for e in failed.events].count("TaskSucceeded") == 2

    result, calls = _redrive(PARALLEL, failed.events, failing=set())
    assert result.status == "SUCCEEDED"
    assert result.output == {"all": [{"done": 10}, {"done": 20}, {"done": 30}]}
    assert calls == [2]
    types = [e.type for e in _since_redrive(result.events)]
    assert types == [
        "ExecutionRedriven",
        "TaskStateEntered",
        "TaskScheduled",
        "TaskStarted",
        "TaskSucceeded",
        "TaskStateExited",
        "ParallelStateSucceeded",
        "ParallelStateExited",
        "ExecutionSucceeded",
    ]


NESTED = {
    "StartAt": "Each",
    "States": {
        "Each": {
            "Type": "Map",
            "ItemsPath": "$.items",
            "MaxConcurrency": 1,
            "ItemProcessor": {
                "StartAt": "Both",
                "States": {
                    "Both": {
                        "Type": "Parallel",
                        "Branches": [
                            {"StartAt": "Left", "States": {"Left": _work()}},
                            {
                                "StartAt": "Right",
                                "States": {
                                    "Right": _work(Parameters={"n.$": "States.MathAdd($.n, 100)"})
                                },
                            },
                        ],
                        "End": True,
                    }
                },
            },
            "End": True,
        }
    },
}


def test_a_redriven_map_reruns_only_the_failed_branch_of_a_parallel_inside_an_iteration() -> None:
    items = {"items": [{"n": 1}, {"n": 2}, {"n": 3}]}
    failed = _run(NESTED, items, failing={102})
    started = [e.details["index"] for e in failed.events if e.type == "MapIterationStarted"]
    assert started == [0, 1]  # MaxConcurrency 1: the third item never started

    result, calls = _redrive(NESTED, failed.events, failing=set())
    assert result.status == "SUCCEEDED"
    assert result.output == [[{"done": n * 10}, {"done": (n + 100) * 10}] for n in (1, 2, 3)]
    assert calls == [102, 3, 103]  # item 1's right branch, then the item never started
    new = _since_redrive(result.events)
    assert [e.details["index"] for e in new if e.type == "MapIterationStarted"] == [1, 2]
    assert [e.meta.get("rerun", False) for e in new if e.type == "MapIterationStarted"] == [
        True,
        False,
    ]
    # The rerun iteration does not start its Parallel again; the new one does.
    assert [e.type for e in new].count("ParallelStateStarted") == 1


def test_redriving_twice() -> None:
    failed = _run(MAP, {"items": [1, 2, 3, 4, 5]}, failing={2, 4})
    again, calls = _redrive(MAP, failed.events, failing={4})
    assert again.status == "FAILED"
    assert sorted(calls) == [2, 4, 4]  # 4 fails, retries once and fails again
    done, calls = _redrive(MAP, again.events, failing=set(), at=LATER + timedelta(hours=1))
    assert done.status == "SUCCEEDED"
    assert calls == [4]
    assert done.output == [{"done": n * 10} for n in (1, 2, 3, 4, 5)]
    redriven = [e for e in done.events if e.type == "ExecutionRedriven"]
    assert [e.details["redriveCount"] for e in redriven] == [1, 2]
