"""Redrive: a FAILED, TIMED_OUT or ABORTED execution continues from the state it stopped in."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import assume, given

from statemachine import Event, Execution, decide, parse, redrive_local, run_local
from statemachine.events import (
    RedriveExecution,
    Resume,
    ScheduleTask,
    StartExecution,
    StopExecution,
    TaskFailed,
    TaskStarted,
    TaskSucceeded,
    TimerFired,
)
from statemachine.local import TaskError
from tests.statemachine import test_replay_property as replay_property

START = datetime(2025, 1, 1, tzinfo=UTC)
ARN = "arn:aws:states:us-east-1:1:execution:m:e"
MACHINE_ARN = "arn:aws:states:us-east-1:1:stateMachine:m"
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


def _work(**extra: Any) -> dict[str, Any]:
    """A last Task state sending ``{"n": ...}``, retried once after 10 s on Service.Down."""
    return {
        "Type": "Task",
        "Resource": TASK,
        "Parameters": {"n.$": "$.n"},
        "Retry": RETRY_ONCE,
        "ResultSelector": {"done.$": "$.done"},
        "End": True,
        **extra,
    }


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
        {
            scope: (f.phase, f.state.name, f.aborted, f.output, dict(f.map_results), f.rerun)
            for scope, f in execution.frames.items()
        },
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


def test_the_tasks_and_timers_of_the_aborted_iterations_stay_dead() -> None:
    failed = _run(MAP, {"items": [1, 2, 3, 4, 5]}, failing={2, 4})
    old_tasks = [e.id for e in failed.events if e.type == "TaskScheduled"]
    old_timers = [e.meta["timer"] for e in failed.events if "timer" in e.meta]
    assert old_timers  # the retries of items 2 and 4
    execution = Execution(parse(MAP))
    execution.fold(failed.events)
    execution.handle(RedriveExecution(LATER))
    new_tasks = sorted(execution.tasks)
    assert len(new_tasks) == 2 and not set(new_tasks) & set(old_tasks)
    count = len(execution.events)
    for task_id in old_tasks:
        execution.handle(TaskSucceeded(task_id, {"done": -1}, LATER))
        execution.handle(TaskFailed(task_id, "Late", None, LATER))
    for timer_id in old_timers:
        execution.handle(TimerFired(timer_id, LATER))
    assert len(execution.events) == count and execution.status == "RUNNING"
    for task_id in new_tasks:
        execution.handle(TaskSucceeded(task_id, {"done": 0}, LATER))
    assert execution.status == "SUCCEEDED"
    assert execution.events[-1].details["output"] == [
        {"done": 10},
        {"done": 0},
        {"done": 30},
        {"done": 0},
        {"done": 50},
    ]


def test_rerun_iterations_keep_max_concurrency_and_tolerated_failures_count_again() -> None:
    definition = copy.deepcopy(MAP)
    each = definition["States"]["Each"]
    each["MaxConcurrency"] = 1
    each["ToleratedFailureCount"] = 1
    failed = _run(definition, {"items": [1, 2, 3, 4, 5]}, failing={1, 2})
    assert [e.details["index"] for e in failed.events if e.type == "MapIterationStarted"] == [0, 1]

    # Item 1 fails again: one failure of the rerun, tolerated as the first one was.
    result, calls = _redrive(definition, failed.events, failing={1})
    assert result.status == "SUCCEEDED"
    assert calls == [1, 1, 2, 3, 4, 5]
    assert result.output == [None] + [{"done": n * 10} for n in (2, 3, 4, 5)]
    new = _since_redrive(result.events)
    order = [
        (e.type, e.details["index"])
        for e in new
        if e.type.startswith("MapIteration") and e.type != "MapIterationSucceeded"
    ]
    # One at a time: each iteration ends before the next one starts.
    assert order == [
        ("MapIterationStarted", 0),
        ("MapIterationFailed", 0),
        ("MapIterationStarted", 1),
        ("MapIterationStarted", 2),
        ("MapIterationStarted", 3),
        ("MapIterationStarted", 4),
    ]
    running = 0
    for event in new:
        running += {"MapIterationStarted": 1}.get(event.type, 0)
        running -= event.type in ("MapIterationSucceeded", "MapIterationFailed")
        assert running <= 1


def test_a_stopped_parallel_reruns_the_branches_that_were_running() -> None:
    execution = Execution(parse(PARALLEL))
    execution.handle(StartExecution({}, START, ARN, MACHINE_ARN))
    first, second, third = sorted(execution.tasks)
    execution.handle(TaskSucceeded(second, {"done": 20}, START))
    execution.handle(StopExecution(START + timedelta(seconds=1), "Operator", "stop"))
    assert execution.status == "ABORTED"
    execution.handle(RedriveExecution(LATER))
    assert len(execution.tasks) == 2
    count = len(execution.events)
    for stopped in (first, third):  # the answers of the stopped tasks come too late
        execution.handle(TaskSucceeded(stopped, {"done": -1}, LATER))
    assert len(execution.events) == count
    for task_id in sorted(execution.tasks):
        assert execution.tasks[task_id].index in (0, 2)
        execution.handle(TaskSucceeded(task_id, {"done": 0}, LATER))
    assert execution.status == "SUCCEEDED"
    assert execution.events[-1].details["output"] == {
        "all": [{"done": 0}, {"done": 20}, {"done": 0}]
    }
    replayed = Execution(parse(PARALLEL))
    replayed.fold(execution.events)
    assert _snapshot(replayed) == _snapshot(execution)


def test_a_distributed_map_reruns_its_failed_children_after_map_run_redriven() -> None:
    definition = copy.deepcopy(MAP)
    definition["States"]["Each"]["ItemProcessor"]["ProcessorConfig"] = {
        "Mode": "DISTRIBUTED",
        "ExecutionType": "STANDARD",
    }
    failed = _run(definition, {"items": [1, 2, 3]}, failing={2})
    (run,) = [e for e in failed.events if e.type == "MapRunStarted"]
    assert "MapRunFailed" in [e.type for e in failed.events]

    result, calls = _redrive(definition, failed.events, failing=set())
    assert result.status == "SUCCEEDED"
    assert calls == [2]
    assert result.output == [{"done": 10}, {"done": 20}, {"done": 30}]
    new = _since_redrive(result.events)
    own = [e.type for e in new if not e.child]  # the parent execution's own history
    assert own == [
        "ExecutionRedriven",
        "MapRunRedriven",
        "MapRunSucceeded",
        "MapStateSucceeded",
        "MapStateExited",
        "ExecutionSucceeded",
    ]
    (redriven,) = [e for e in new if e.type == "MapRunRedriven"]
    assert redriven.details == {"mapRunArn": run.details["mapRunArn"], "redriveCount": 1}
    # The rerun child's events go on in the same child history.
    assert {e.child for e in new if e.child} == {f"{run.id - 1}.1"}


def test_a_distributed_map_reruns_its_failed_express_children_from_their_start() -> None:
    definition = copy.deepcopy(MAP)
    definition["States"]["Each"]["ItemProcessor"]["ProcessorConfig"] = {
        "Mode": "DISTRIBUTED",
        "ExecutionType": "EXPRESS",
    }
    failed = _run(definition, {"items": [1, 2, 3]}, failing={2})
    result, calls = _redrive(definition, failed.events, failing=set())
    assert result.status == "SUCCEEDED"
    assert calls == [2]
    assert result.output == [{"done": 10}, {"done": 20}, {"done": 30}]
    new = _since_redrive(result.events)
    (started,) = [e for e in new if e.type == "MapIterationStarted"]
    assert started.meta == {"rerun": True, "input": {"n": 2}}
    assert [e.details["name"] for e in new if e.type.endswith("StateEntered")] == [
        "Prepare",
        "Work",
    ]


def test_a_history_redriven_whole_before_partial_reruns_still_folds() -> None:
    """Histories recorded when a redrive ran the stopped state again whole (a new
    ParallelStateEntered and ParallelStateStarted) go on with the new branches only."""
    failed = _run(PARALLEL, {}, failing={2})
    at, n = LATER, len(failed.events)
    old_style = [
        *failed.events,
        Event(n + 1, "ExecutionRedriven", at, n, {"redriveCount": 1}),
        Event(n + 2, "ParallelStateEntered", at, n + 1, {"name": "All", "input": {}}),
        Event(n + 3, "ParallelStateStarted", at, n + 2, meta={"input": {}}),
    ]
    execution = Execution(parse(PARALLEL))
    execution.fold(old_style)
    execution.handle(Resume(at))
    entered = [e for e in execution.new_events if e.type == "TaskStateEntered"]
    assert [e.scope for e in entered] == [f"{n + 3}.{i}" for i in range(3)]
    assert len(execution.tasks) == 3


# ---------------------------------------------------------------------------- random machines


def _shifted(outcomes: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """Other answers for the redrive: each state's outcome table turned by one."""
    return {name: table[1:] + table[:1] for name, table in outcomes.items()}


@replay_property.SETTINGS
@given(replay_property.scenarios())
def test_redriven_random_machines_replay_at_every_prefix(
    scenario: tuple[dict[str, Any], Any, dict[str, list[Any]]],
) -> None:
    definition, data, outcomes = scenario
    failed = run_local(
        definition, data, tasks=replay_property.provider_for(outcomes), clock=lambda: START
    )
    assume(failed.status == "FAILED")
    steps: list[Any] = []
    result = redrive_local(
        definition,
        failed.events,
        tasks=replay_property.provider_for(_shifted(outcomes)),
        clock=lambda: LATER,
        on_step=lambda *step: steps.append(step),
    )
    assert result.status in ("SUCCEEDED", "FAILED")
    _assert_replays(definition, result.events, steps)
    # Folding any prefix of the redriven part, then going on, gives the same history.
    machine = parse(definition)
    expected = replay_property.shape(result.events)
    for k in range(len(failed.events) + 1, len(result.events) + 1):
        producing = next(i for i, (_, before, after, _) in enumerate(steps) if before < k <= after)
        execution = Execution(machine)
        execution.fold(result.events[:k])
        execution.handle(Resume(result.events[k - 1].timestamp))
        for incoming, *_ in steps[producing + 1 :]:
            execution.handle(incoming)
        assert replay_property.shape(execution.events) == expected, f"prefix {k} diverged"
