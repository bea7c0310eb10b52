"""Run an execution in memory to completion on a virtual clock (``run_local``).

Task results come from an AWS Step Functions Local mock config (``StateMachines`` /
``TestCases`` / ``MockedResponses``) or from a Python callable. Waits and retry back-offs
advance the virtual clock instead of sleeping, so a workflow with a one-day Wait runs in
milliseconds. The loop is the same protocol the service's workers follow: decide, carry out
the commands, feed the outcomes back as incoming events.
"""

from __future__ import annotations

import heapq
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from statemachine.definition import StateMachine, parse
from statemachine.events import (
    CancelTask,
    CancelTimer,
    Command,
    Event,
    Incoming,
    RedriveExecution,
    ScheduleTask,
    StartExecution,
    StartTimer,
    TaskFailed,
    TaskStarted,
    TaskSubmitted,
    TaskSucceeded,
    TimerFired,
)
from statemachine.interpreter import MAX_HISTORY_EVENTS, RUNNING, Execution
from statemachine.resources import parse_resource

JSON = Any
ACCOUNT = "123456789012"
REGION = "us-east-1"


@dataclass(frozen=True, slots=True)
class TaskRequest:
    """What a task provider is asked to run."""

    state_name: str
    resource: str
    parameters: JSON
    attempt: int
    task_token: str | None


@dataclass(frozen=True, slots=True)
class TaskError(Exception):
    """Raised (or returned) by a task provider to fail the task with ``error`` and ``cause``."""

    error: str
    cause: str | None = None


TaskProvider = Callable[[TaskRequest], JSON]


class _Never:
    def __repr__(self) -> str:
        return "NEVER"


# Returned by a task provider for a task that never answers: its TimeoutSeconds or
# HeartbeatSeconds timers then fire (States.Timeout, States.HeartbeatTimeout).
NEVER: Any = _Never()


@dataclass(slots=True)
class LocalResult:
    """The outcome of run_local: status, output or error/cause, and the whole history."""

    status: str
    output: JSON = None
    error: str | None = None
    cause: str | None = None
    events: list[Event] = field(default_factory=list)

    def to_json(self) -> dict[str, JSON]:
        """The shape of the conformance contract (output as JSON text, like DescribeExecution)."""
        return {
            "status": self.status,
            "output": None
            if self.output is None and self.status != "SUCCEEDED"
            else json.dumps(self.output, separators=(",", ":"), ensure_ascii=False),
            "error": self.error,
            "cause": self.cause,
            "events": [_event_json(event) for event in self.events if not event.child],
        }


def _event_json(event: Event) -> dict[str, JSON]:
    out = event.to_aws()
    out["timestamp"] = event.timestamp.isoformat()
    return out


class MockConfigError(ValueError):
    """The mock config file does not have the shape AWS Step Functions Local expects."""


_RANGE = re.compile(r"(\d+)(?:-(\d+))?")


class MockTasks:
    """A task provider answering from an AWS Step Functions Local mock config test case."""

    def __init__(self, config: Mapping[str, JSON], state_machine_name: str, test_case: str) -> None:
        if not isinstance(config, Mapping):
            raise MockConfigError("The mock config must be a JSON object")
        machines = config.get("StateMachines")
        if not isinstance(machines, Mapping) or state_machine_name not in machines:
            raise MockConfigError(
                f"The mock config has no state machine named '{state_machine_name}'"
            )
        cases = machines[state_machine_name].get("TestCases")
        if not isinstance(cases, Mapping) or test_case not in cases:
            raise MockConfigError(
                f"State machine '{state_machine_name}' has no test case '{test_case}'"
            )
        responses = config.get("MockedResponses")
        if not isinstance(responses, Mapping):
            raise MockConfigError("The mock config has no MockedResponses object")
        self.mapping: Mapping[str, str] = cases[test_case]
        self.responses: dict[str, list[tuple[int, int, Mapping[str, JSON]]]] = {}
        for name, table in responses.items():
            if not isinstance(table, Mapping):
                raise MockConfigError(f"MockedResponses.{name} must be an object")
            entries = []
            for key, response in table.items():
                match = _RANGE.fullmatch(key)
                if match is None or not isinstance(response, Mapping):
                    raise MockConfigError(f"MockedResponses.{name}: bad invocation key '{key}'")
                if ("Return" in response) == ("Throw" in response):
                    raise MockConfigError(
                        f"MockedResponses.{name}.{key} needs exactly one of Return or Throw"
                    )
                low = int(match.group(1))
                entries.append((low, int(match.group(2) or low), response))
            self.responses[name] = entries
        for state, response_name in self.mapping.items():
            if response_name not in self.responses:
                raise MockConfigError(
                    f"Test case '{test_case}' maps '{state}' to unknown response '{response_name}'"
                )
        self.invocations: dict[str, int] = {}

    def __call__(self, request: TaskRequest) -> JSON:
        count = self.invocations.get(request.state_name, 0)
        self.invocations[request.state_name] = count + 1
        return self.respond(request.state_name, request.resource, count)

    def respond(self, state_name: str, resource: str, invocation: int) -> JSON:
        """The mocked result of a state's ``invocation``-th call (0-based); TaskError for Throw."""
        name = self.mapping.get(state_name)
        if name is None:
            raise TaskError("States.TaskFailed", f"No mocked response for state '{state_name}'")
        for low, high, response in self.responses[name]:
            if low <= invocation <= high:
                if "Throw" in response:
                    throw = response["Throw"]
                    raise TaskError(throw.get("Error", "States.TaskFailed"), throw.get("Cause"))
                result = response["Return"]
                if parse_resource(resource).kind == "lambda-function" and isinstance(
                    result, Mapping
                ):
                    # A Lambda function ARN task returns the Invoke response's Payload.
                    return result.get("Payload")
                return result
        raise TaskError(
            "States.TaskFailed",
            f"No mocked response for invocation {invocation} of state '{state_name}'",
        )


def _no_tasks(request: TaskRequest) -> JSON:
    raise TaskError(
        "States.TaskFailed",
        f"No task provider: state '{request.state_name}' calls {request.resource} (use a mock config)",
    )


def _utc_now() -> datetime:
    return datetime.now(UTC)


def run_local(
    definition: StateMachine | Mapping[str, JSON],
    input: JSON = None,
    *,
    tasks: TaskProvider | None = None,
    mock_config: Mapping[str, JSON] | None = None,
    test_case: str | None = None,
    state_machine_name: str = "StateMachine",
    execution_name: str = "local",
    clock: Callable[[], datetime] = _utc_now,
    seed: int = 0,
    max_events: int = MAX_HISTORY_EVENTS,
    on_step: Callable[[Incoming, int, int, tuple[Command, ...]], None] | None = None,
) -> LocalResult:
    """Run an execution to completion in memory; Waits and retries use a virtual clock.

    Args:
        definition: the ASL definition (a dict) or a parsed StateMachine.
        input: the execution input.
        tasks: called for each Task invocation; returns the result or raises TaskError.
        mock_config: a Step Functions Local mock config; used with ``test_case``.
        clock: gives the virtual clock's starting time (injected: the engine reads no clock).
        seed: the seed of States.UUID, States.MathRandom and retry jitter.
        max_events: AWS's 25,000-event history cap.
        on_step: called after each incoming event is handled, with the event, the history length
            before and after, and the commands it produced (replay tests record runs with it).
    """
    machine = parse(definition)
    if mock_config is not None:
        if not test_case:
            raise MockConfigError("A mock config needs a test case name")
        tasks = MockTasks(mock_config, state_machine_name, test_case)
    provider = tasks or _no_tasks
    start = clock()
    sm_arn = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{state_machine_name}"
    first = StartExecution(
        input=input,
        timestamp=start,
        execution_arn=f"arn:aws:states:{REGION}:{ACCOUNT}:execution:{state_machine_name}:{execution_name}",
        state_machine_arn=sm_arn,
        seed=seed,
    )
    return _drive(Execution(machine, max_events), first, provider, on_step)


def redrive_local(
    definition: StateMachine | Mapping[str, JSON],
    history: Sequence[Event],
    *,
    tasks: TaskProvider | None = None,
    clock: Callable[[], datetime] = _utc_now,
    max_events: int = MAX_HISTORY_EVENTS,
    on_step: Callable[[Incoming, int, int, tuple[Command, ...]], None] | None = None,
) -> LocalResult:
    """Redrive a FAILED, TIMED_OUT or ABORTED execution (e.g. a run_local result's events) to
    completion in memory: the history is folded, RedriveExecution is handled at ``clock()``
    and the run goes on on the virtual clock, as in run_local. The result holds the whole
    history, the redriven part after the recorded one."""
    execution = Execution(parse(definition), max_events)
    execution.fold(history)
    return _drive(execution, RedriveExecution(clock()), tasks or _no_tasks, on_step)


def _drive(
    execution: Execution,
    first: Incoming,
    provider: TaskProvider,
    on_step: Callable[[Incoming, int, int, tuple[Command, ...]], None] | None,
) -> LocalResult:
    """Handle ``first``, then carry out the commands and feed their outcomes back until done."""
    queue: list[tuple[datetime, int, Incoming]] = []
    cancelled_timers: set[str] = set()
    cancelled_tasks: set[int] = set()
    counter = 0

    def push(when: datetime, incoming: Incoming) -> None:
        nonlocal counter
        counter += 1
        heapq.heappush(queue, (when, counter, incoming))

    push(first.timestamp, first)
    while queue and (execution.status in (RUNNING, "NOT_STARTED") or queue[0][2] is first):
        when, _, incoming = heapq.heappop(queue)
        if isinstance(incoming, TimerFired) and incoming.timer_id in cancelled_timers:
            cancelled_timers.discard(incoming.timer_id)
            continue
        if (
            isinstance(incoming, TaskSucceeded | TaskFailed | TaskStarted)
            and incoming.task_id in cancelled_tasks
        ):
            continue
        execution.commands.clear()
        before = len(execution.events)
        execution.handle(incoming)
        if on_step is not None:
            on_step(incoming, before, len(execution.events), tuple(execution.commands))
        for command in list(execution.commands):
            if isinstance(command, ScheduleTask):
                _run_task(command, provider, when, push, execution)
            elif isinstance(command, StartTimer):
                cancelled_timers.discard(command.timer_id)
                push(
                    max(command.fire_at, when),
                    TimerFired(command.timer_id, max(command.fire_at, when)),
                )
            elif isinstance(command, CancelTimer):
                cancelled_timers.add(command.timer_id)
            elif isinstance(command, CancelTask):
                cancelled_tasks.add(command.task_id)
    return _result(execution)


def _run_task(
    command: ScheduleTask,
    provider: TaskProvider,
    when: datetime,
    push: Callable[[datetime, Incoming], None],
    execution: Execution,
) -> None:
    frame = execution.tasks.get(command.task_id)
    attempt = sum(frame.retry_counts.values()) if frame is not None else 0
    request = TaskRequest(
        command.state_name, command.resource, command.parameters, attempt, command.task_token
    )
    push(when, TaskStarted(command.task_id, when))
    if parse_resource(command.resource).pattern in ("callback", "sync"):
        push(when, TaskSubmitted(command.task_id, when))
    try:
        result = provider(request)
    except TaskError as failure:
        push(when, TaskFailed(command.task_id, failure.error, failure.cause, when))
        return
    if isinstance(result, TaskError):
        push(when, TaskFailed(command.task_id, result.error, result.cause, when))
        return
    if result is NEVER:
        return
    push(when, TaskSucceeded(command.task_id, result, when))


def _result(execution: Execution) -> LocalResult:
    events = list(execution.events)
    last = events[-1] if events else None
    result = LocalResult(
        status=execution.status if execution.status != "NOT_STARTED" else "FAILED", events=events
    )
    if last is None:
        return result
    if last.type == "ExecutionSucceeded":
        result.output = last.details.get("output")
    elif last.type in ("ExecutionFailed", "ExecutionTimedOut", "ExecutionAborted"):
        result.error = last.details.get("error")
        result.cause = last.details.get("cause")
    elif execution.status == RUNNING:
        # Nothing is left to happen (e.g. a callback nobody answers): report where it stopped.
        result.status = RUNNING
    return result
