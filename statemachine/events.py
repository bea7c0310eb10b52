"""History events, the commands a decision asks the world to carry out, and incoming events.

Events use AWS's names and detail fields (``HistoryEvent`` in the Step Functions API). Two
fields are ours: ``scope`` names the frame an event belongs to (the top level, a Parallel
branch, a Map iteration) and ``meta`` records what the engine decided but AWS does not show
(the Choice rule taken, the retrier used, an iteration's input), so that folding the history
never has to decide again.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any, NamedTuple

JSON = Any

# Detail payloads that AWS serialises to JSON text, and the size flag that goes with each.
_TEXT_FIELDS = {"input": "inputDetails", "output": "outputDetails", "parameters": None}
_NO_DETAILS = frozenset(
    {
        "LambdaFunctionStarted",
        "MapStateSucceeded",
        "MapStateFailed",
        "MapStateAborted",
        "ParallelStateStarted",
        "ParallelStateSucceeded",
        "ParallelStateFailed",
        "ParallelStateAborted",
        "MapRunSucceeded",
        "WaitStateAborted",
    }
)


def details_key(event_type: str) -> str | None:
    """The HistoryEvent member holding an event type's details (None when it has none)."""
    if event_type in _NO_DETAILS:
        return None
    if event_type.endswith("StateEntered"):
        return "stateEnteredEventDetails"
    if event_type.endswith("StateExited"):
        return "stateExitedEventDetails"
    return event_type[0].lower() + event_type[1:] + "EventDetails"


def to_text(value: JSON) -> str:
    """JSON text the way AWS writes payloads into the history (compact, UTF-8 kept)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


_EMPTY: Mapping[str, JSON] = MappingProxyType({})


class Event(NamedTuple):
    """One history event. ``details`` holds payloads as JSON values; to_aws() serialises them.

    A NamedTuple rather than a frozen dataclass: just as immutable, and four times cheaper to
    build, which matters when a decision appends thousands of events (a Map's iterations).
    """

    id: int
    type: str
    timestamp: datetime
    previous_event_id: int
    details: Mapping[str, JSON] = _EMPTY
    scope: str = ""
    meta: Mapping[str, JSON] = _EMPTY
    # Non-empty for events of a distributed Map's child execution: AWS shows them in the
    # child's own history, not the parent's.
    child: str = ""

    def to_aws(self) -> dict[str, JSON]:
        """The event as GetExecutionHistory returns it (timestamps left as datetimes)."""
        out: dict[str, JSON] = {
            "timestamp": self.timestamp,
            "type": self.type,
            "id": self.id,
            "previousEventId": self.previous_event_id,
        }
        key = details_key(self.type)
        if key is not None:
            details: dict[str, JSON] = {}
            for name, value in self.details.items():
                if name in _TEXT_FIELDS:
                    details[name] = to_text(value)
                    flag = _TEXT_FIELDS[name]
                    if flag:
                        details[flag] = {"truncated": False}
                elif name == "assignedVariables":
                    details[name] = {k: to_text(v) for k, v in value.items()}
                    details["assignedVariablesDetails"] = {"truncated": False}
                else:
                    details[name] = value
            out[key] = details
        return out


# Commands: what a decision asks the outside world to do. Imperative names.


@dataclass(frozen=True, slots=True)
class ScheduleTask:
    """Run a Task's resource with ``parameters``; answer with TaskStarted/Succeeded/Failed."""

    task_id: int  # the id of the TaskScheduled (or LambdaFunctionScheduled) event
    state_name: str
    resource: str
    parameters: JSON
    idempotency_key: str
    timeout_seconds: float | None = None
    heartbeat_seconds: float | None = None
    task_token: str | None = None


@dataclass(frozen=True, slots=True)
class StartTimer:
    """Fire TimerFired(timer_id) at ``fire_at``."""

    timer_id: str
    fire_at: datetime


@dataclass(frozen=True, slots=True)
class CancelTimer:
    """A timer is no longer needed (its firing would be ignored anyway)."""

    timer_id: str


@dataclass(frozen=True, slots=True)
class CancelTask:
    """A scheduled task's result is no longer wanted (its state was aborted)."""

    task_id: int


Command = ScheduleTask | StartTimer | CancelTimer | CancelTask


# Incoming events: what happened in the world, handed to decide().


@dataclass(frozen=True, slots=True)
class StartExecution:
    """Start the execution with ``input``."""

    input: JSON
    timestamp: datetime
    execution_arn: str
    state_machine_arn: str
    role_arn: str = "arn:aws:iam::000000000000:role/statewright"
    redrive_count: int = 0
    seed: int = 0  # of States.UUID/MathRandom and retry jitter; keep it secret
    # The secret of the execution's task tokens (at least 128 bits of randomness; "": tokens
    # derive from the seed, as histories written before it did).
    token_key: str = ""


@dataclass(frozen=True, slots=True)
class TaskStarted:
    """A runner began working on the task."""

    task_id: int
    timestamp: datetime


@dataclass(frozen=True, slots=True)
class TaskSubmitted:
    """A callback task was handed over (``.waitForTaskToken``); the result comes later."""

    task_id: int
    timestamp: datetime
    output: JSON = None


@dataclass(frozen=True, slots=True)
class TaskSucceeded:
    """The task returned ``output``."""

    task_id: int
    output: JSON
    timestamp: datetime


@dataclass(frozen=True, slots=True)
class TaskFailed:
    """The task failed with ``error`` and ``cause``."""

    task_id: int
    error: str | None
    cause: str | None
    timestamp: datetime


@dataclass(frozen=True, slots=True)
class TaskHeartbeat:
    """SendTaskHeartbeat: restart the heartbeat clock; writes no event."""

    task_id: int
    timestamp: datetime


@dataclass(frozen=True, slots=True)
class TimerFired:
    """A timer started by StartTimer is due."""

    timer_id: str
    timestamp: datetime


@dataclass(frozen=True, slots=True)
class StopExecution:
    """StopExecution: abort with an optional error and cause."""

    timestamp: datetime
    error: str | None = None
    cause: str | None = None


@dataclass(frozen=True, slots=True)
class Resume:
    """Continue from the end of the history (after a crash in the middle of a decision)."""

    timestamp: datetime


@dataclass(frozen=True, slots=True)
class RedriveExecution:
    """RedriveExecution: continue a FAILED, TIMED_OUT or ABORTED execution from where it stopped."""

    timestamp: datetime


Incoming = (
    StartExecution
    | RedriveExecution
    | TaskStarted
    | TaskSubmitted
    | TaskSucceeded
    | TaskFailed
    | TaskHeartbeat
    | TimerFired
    | StopExecution
    | Resume
)


@dataclass(frozen=True, slots=True)
class Decision:
    """What one call of decide() produced: new events to append and commands to carry out."""

    events: tuple[Event, ...]
    commands: tuple[Command, ...]
    status: str
