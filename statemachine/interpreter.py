"""The event-sourced interpreter.

``decide(definition, history, incoming)`` folds the history into the execution's state, lets
the incoming event act on it, and runs every pure step that follows (Pass, Choice, Succeed,
Fail, Parallel and Map bookkeeping) until each running frame waits for the world (a task
result, a timer). It returns the new events and the commands for the world.

The one rule that keeps replay exact: the execution's state changes only in ``_apply`` (the
fold). The handlers compute what happens next, record it as an event (with the decision in
``meta`` when AWS's event does not show it) and the event is applied at once. Replaying any
prefix of a history therefore rebuilds exactly the state the live run had at that point.
"""

from __future__ import annotations

import dataclasses
import hashlib
import heapq
import random
from collections import ChainMap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from statemachine import dataflow, paths, resources, waits
from statemachine.definition import STATE_TYPES, Catcher, State, StateMachine, parse
from statemachine.errors import HistoryError, InvalidExecutionInput, StatesFailure
from statemachine.events import (
    _EMPTY,
    CancelTask,
    CancelTimer,
    Command,
    Decision,
    Event,
    Incoming,
    RedriveExecution,
    Resume,
    ScheduleTask,
    StartExecution,
    StartTimer,
    StopExecution,
    TaskFailed,
    TaskHeartbeat,
    TaskStarted,
    TaskSubmitted,
    TaskSucceeded,
    TimerFired,
)
from statemachine.expressions import QUERY_EVALUATION_ERROR, QueryEvaluationError
from statemachine.payload import Scope, dumps, evaluate_template, payload_size, resolve

JSON = Any

MAX_PAYLOAD_BYTES = 262_144  # AWS: state and task payloads are at most 256 KiB
# The events that end a task's attempt with an error (the state's Retry and Catch decide).
TASK_FAILURE_EVENTS = (
    "TaskFailed",
    "TaskTimedOut",
    "TaskStartFailed",
    "TaskSubmitFailed",
    "LambdaFunctionFailed",
    "LambdaFunctionTimedOut",
    "LambdaFunctionScheduleFailed",
    "LambdaFunctionStartFailed",
    "ActivityFailed",
    "ActivityTimedOut",
)
MAX_HISTORY_EVENTS = 25_000
REDRIVABLE = frozenset({"FAILED", "TIMED_OUT", "ABORTED"})
MAX_VARIABLES_BYTES = 10 * 1024 * 1024  # AWS: all workflow variables of an execution
INLINE_MAP_CONCURRENCY = 40  # AWS runs at most 40 inline Map iterations at once, even with 0
RUNNING, SUCCEEDED, FAILED, TIMED_OUT, ABORTED = (
    "RUNNING",
    "SUCCEEDED",
    "FAILED",
    "TIMED_OUT",
    "ABORTED",
)

# Errors that States.ALL does not match (States Language spec, "Error names"; AWS error docs).
# The corpus (real AWS) shows States.DataLimitExceeded from a task result caught by States.ALL,
# and States.Runtime not caught even when named explicitly.
_UNCATCHABLE = frozenset({"States.Runtime"})
# Errors whose cause AWS prefixes with "An error occurred while executing the state ...".
_PREFIXED = frozenset({"States.Runtime", QUERY_EVALUATION_ERROR})


class _HistoryFull(Exception):
    """The next event would leave no room for the closing ExecutionFailed."""


_CLOSING = frozenset(
    {"ExecutionSucceeded", "ExecutionFailed", "ExecutionTimedOut", "ExecutionAborted"}
)


class Frame:
    """One running machine: the execution itself, a Parallel branch or a Map iteration.

    Fields a frame needs only as a Parallel or Map owner (children, results, concurrency)
    default to class-level values and are set when the state starts: a Map of 10,000
    iterations creates 10,000 frames, so creating one must be cheap.
    """

    phase = "enter"
    entered_id = 0
    entered_time: datetime | None = None
    output: JSON = None
    error: str | None = None
    cause: str | None = None
    result: JSON = None
    retry_counts: dict[int, int] = {}  # noqa: RUF012 - replaced when a state is entered
    task_id = 0
    timer_id = ""
    started_id = 0
    children: dict[int, Frame] = {}  # noqa: RUF012 - replaced when a Parallel/Map starts
    decision: dict[str, JSON] = {}  # noqa: RUF012 - how a failing Map ends (retry/catch/fail)
    finished: dict[int, None] = {}  # noqa: RUF012 - children done but not yet reported
    items: list[JSON] | None = None
    map_length = 0
    map_next = 0
    map_done = 0
    map_failed = 0
    map_results: dict[int, JSON] = {}  # noqa: RUF012
    rerun: list[int] = []  # noqa: RUF012 - a redriven Map's iterations still to start again
    run_redriven = False  # a redriven distributed Map still owes its MapRunRedriven event
    max_concurrency = 0
    tolerated_count: float | None = None
    tolerated_percentage: float | None = None
    aborted = False
    queued = False  # already in the run queue
    own_variables = False  # the frame has assigned variables of its own (copy on write)

    def __init__(
        self,
        scope: str,
        seq: int,
        machine: StateMachine,
        parent: Frame | None,
        index: int,
        raw_input: JSON,
        last_id: int,
        variables: ChainMap[str, JSON],
    ) -> None:
        self.scope = scope
        self.seq = seq
        self.machine = machine
        self.parent = parent
        self.index = index
        self.raw_input = raw_input
        self.last_id = last_id
        # A branch or iteration reads its parent's variables until it assigns its own.
        self.variables = variables
        self.state: State = machine.states[machine.start_at]
        # The distributed Map child execution this frame runs in ("" for the execution itself).
        self.child: str = parent.child if parent is not None else ""

    def assign(self, values: Mapping[str, JSON]) -> None:
        """Set variables in this frame's scope (never in an outer one)."""
        if not self.own_variables:
            self.variables = (
                self.variables.new_child() if self.parent is not None else self.variables
            )
            self.own_variables = True
        self.variables.update(values)


@dataclass(frozen=True, slots=True)
class ExecutionInfo:
    """Facts about the execution recorded in ExecutionStarted (the context object's source)."""

    execution_arn: str
    state_machine_arn: str
    role_arn: str
    start_time: datetime
    input: JSON
    seed: int
    redrive_count: int
    token_key: str = ""

    @property
    def name(self) -> str:
        return self.execution_arn.rsplit(":", 1)[-1]

    @property
    def state_machine_name(self) -> str:
        arn = self.state_machine_arn
        parts = arn.split(":")
        return parts[6] if len(parts) > 6 else arn


def iso(moment: datetime) -> str:
    """Context-object timestamps: ISO 8601 with milliseconds and Z, as AWS writes them."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def runtime_cause(frame: Frame, detail: str) -> str:
    """AWS's States.Runtime cause prefix naming the state and its entered event."""
    return (
        f"An error occurred while executing the state '{frame.state.name}' "
        f"(entered at the event id #{frame.entered_id}). {detail}"
    )


class Execution:
    """The folded state of one execution plus the handlers that extend its history."""

    def __init__(self, definition: StateMachine, max_events: int = MAX_HISTORY_EVENTS) -> None:
        self.definition = definition
        self.max_events = max_events
        self.visible = 0  # events of the execution's own history (not of distributed children)
        # Intermediate values of the data flow, recorded only for TestState's inspection.
        self.trace: dict[str, JSON] | None = None
        self.events: list[Event] = []
        self.new_events: list[Event] = []
        self.commands: list[Command] = []
        self.status = "NOT_STARTED"
        self.info: ExecutionInfo | None = None
        self.root: Frame | None = None
        self.frames: dict[str, Frame] = {}
        self.tasks: dict[int, Frame] = {}  # pending task id -> frame
        self.timers: dict[str, Frame] = {}  # pending timer id -> frame
        self.runnable: list[tuple[int, Frame]] = []  # frames with work to do, by creation order
        self.now: datetime = datetime.min
        self.seq = 0
        self.folding = False

    # ------------------------------------------------------------------ the fold

    def fold(self, history: Sequence[Event]) -> None:
        """Rebuild the state from recorded events."""
        self.folding = True
        for event in history:
            if event.id != len(self.events) + 1:
                raise HistoryError(f"event {event.id} follows event {len(self.events)}")
            self.now = event.timestamp
            self.events.append(event)
            if not event.child:
                self.visible += 1
            self._apply(event)
        self.folding = False

    def _emit(
        self,
        frame: Frame | None,
        event_type: str,
        details: Mapping[str, JSON] = _EMPTY,
        meta: Mapping[str, JSON] = _EMPTY,
        previous: int | None = None,
    ) -> Event:
        """Append one event and fold it in at once (the only way the state changes)."""
        events = self.events
        count = len(events)
        # The cap counts the execution's own history, not its distributed Map children's.
        if self.visible >= self.max_events - 1 and event_type not in _CLOSING:
            raise _HistoryFull
        if frame is None:
            scope, child = "", ""
            if previous is None:
                previous = count
        else:
            scope, child = frame.scope, frame.child
            if previous is None:
                previous = frame.last_id
            if frame.state.distributed and event_type.startswith("MapIteration"):
                # A distributed Map's iterations belong to their child executions' histories.
                child = f"{frame.started_id}.{details['index']}"
        event = Event(count + 1, event_type, self.now, previous, details, scope, meta, child)
        events.append(event)
        if not child:
            self.visible += 1
        self.new_events.append(event)
        self._apply(event)
        return event

    def _mark(self, frame: Frame) -> None:
        if not frame.queued:
            frame.queued = True
            heapq.heappush(self.runnable, (frame.seq, frame))

    def _new_frame(
        self,
        parent: Frame | None,
        machine: StateMachine,
        scope: str,
        index: int,
        raw_input: JSON,
        last_id: int,
    ) -> Frame:
        variables: ChainMap[str, JSON] = parent.variables if parent is not None else ChainMap({})
        frame = Frame(scope, self.seq, machine, parent, index, raw_input, last_id, variables)
        self.seq += 1
        self.frames[scope] = frame
        self._mark(frame)
        return frame

    def _apply(self, event: Event) -> None:
        kind = event.type
        if kind == "ExecutionStarted":
            self._apply_started(event)
            return
        if kind == "ExecutionRedriven":
            self._apply_redriven(event)
            return
        if kind in _CLOSING:
            self.status = _CLOSED_STATUS[kind]
            self.tasks.clear()
            self.timers.clear()
            self.runnable.clear()
            return
        frame = self.frames.get(event.scope)
        if frame is None:
            raise HistoryError(
                f"event {event.id} ({kind}) belongs to unknown scope {event.scope!r}"
            )
        frame.last_id = event.id
        timer_id = frame.timer_id
        if timer_id and timer_id.startswith("retry:") and self.timers.get(timer_id) is frame:
            del self.timers[timer_id]  # the retry's first event: its timer has fired
        applier = _APPLIERS.get(kind)
        if applier is not None:
            applier(self, event, frame)
        # Anything else (TaskStarted, TaskSubmitted, MapRun*, *Aborted ...) changes nothing.

    def _apply_started(self, event: Event) -> None:
        meta = event.meta
        self.info = ExecutionInfo(
            execution_arn=meta["execution_arn"],
            state_machine_arn=meta["state_machine_arn"],
            role_arn=event.details.get("roleArn", ""),
            start_time=event.timestamp,
            input=event.details["input"],
            seed=meta.get("seed", 0),
            redrive_count=meta.get("redrive_count", 0),
            token_key=meta.get("token_key", ""),
        )
        self.status = RUNNING
        # AWS numbers the first StateEntered's previousEventId 0, not 1.
        self.root = self._new_frame(None, self.definition, "", 0, event.details["input"], 0)

    def _apply_redriven(self, event: Event) -> None:
        """Redrive: the execution continues from the state it stopped in (see ``_redrive``)."""
        assert self.info is not None and self.root is not None
        self.info = dataclasses.replace(self.info, redrive_count=event.details["redriveCount"])
        self.status = RUNNING
        # Whatever was pending stays dead: a late answer or timer finds nothing to act on.
        self.tasks.clear()
        self.timers.clear()
        for frame in self.frames.values():
            frame.aborted = True
        root = self.root
        if root.phase == "done":
            root.aborted = False
            self._mark(root)
            return
        self._redrive(root, event.id)

    def _redrive(self, frame: Frame, last_id: int) -> None:
        """Make ``frame`` continue from the state it stopped in (failed, or was running in).

        Successful steps are not run again (AWS, RedriveExecution). A Task, Wait, Pass ...
        state runs again from its own recorded input, with a new StateEntered. A Parallel or
        Map that had started its branches or iterations is not entered again: it keeps the
        results of those that succeeded and runs only the failed or aborted ones, and each of
        those continues from the state inside it where it stopped (recursively, so a Map in a
        Parallel in a Map reruns only what failed). Parallel branches run again at once;
        Map iterations start again with MapIterationStarted (meta ``rerun``) in index order,
        within MaxConcurrency, before the iterations never started; a distributed Map first
        records MapRunRedriven, and reruns its Express children from their start (AWS starts
        them anew). Every iteration that did not succeed reruns, tolerated failures included.
        The failure counts of ToleratedFailureCount/Percentage and the state's Retry counts
        start again from zero.
        Called from the fold only (ExecutionRedriven, a rerun MapIterationStarted).
        """
        frame.aborted = False
        frame.queued = False
        frame.last_id = last_id
        if frame.phase == "done":
            return
        frame.retry_counts = {}
        frame.children = {}
        frame.finished = {}
        state = frame.state
        if not self._started_children(frame):
            frame.phase = "enter"
        elif state.type == "Parallel":
            frame.phase = "children"
            frame.map_results = {}
            for index in range(len(state.machines)):
                branch = self.frames[f"{frame.started_id}.{index}"]
                if branch.phase == "done":
                    frame.map_results[index] = branch.output
                else:
                    self._redrive(branch, last_id)
                    frame.children[index] = branch
        else:
            frame.phase = "children"
            frame.rerun = [i for i in range(frame.map_next) if i not in frame.map_results]
            frame.map_done = len(frame.map_results)
            frame.map_failed = 0
            frame.run_redriven = state.distributed
        self._mark(frame)

    def _started_children(self, frame: Frame) -> bool:
        """Whether the Parallel or Map state ``frame`` is in started its branches/iterations."""
        if frame.state.type not in ("Parallel", "Map") or frame.started_id <= frame.entered_id:
            return False
        return not self.events[frame.started_id - 1].meta.get("broken")

    def _apply_entered(self, event: Event, frame: Frame) -> None:
        name = event.details["name"]
        state = frame.machine.states.get(name)
        if state is None:
            raise HistoryError(f"event {event.id} enters unknown state {name!r}")
        if frame.children:
            # Only in a history redriven before redrive kept what had succeeded: it entered the
            # stopped Parallel/Map again, so the branches the redrive took up are dropped.
            for child in frame.children.values():
                self._abort_frame(child)
            frame.children = {}
        frame.state = state
        frame.raw_input = event.details["input"]
        frame.entered_id = event.id
        frame.entered_time = event.timestamp
        frame.retry_counts = {}
        timer = event.meta.get("timer")
        if timer is not None:
            frame.phase = "wait"
            frame.timer_id = timer
            self.timers[timer] = frame
        else:
            frame.phase = "active"
            self._mark(frame)

    def _apply_exited(self, event: Event, frame: Frame) -> None:
        if frame.timer_id and self.timers.get(frame.timer_id) is frame:
            del self.timers[frame.timer_id]
        details = event.details
        assigned = details.get("assignedVariables")
        if assigned:
            frame.assign(assigned)
        nxt = event.meta.get("next", frame.state.next)
        if nxt is None:
            frame.phase = "done"
            frame.output = details["output"]
            parent = frame.parent
            if parent is not None:
                parent.finished[frame.index] = None
            self._mark(parent if parent is not None else frame)
        else:
            frame.phase = "enter"
            frame.state = frame.machine.states[nxt]
            frame.raw_input = details["output"]
            self._mark(frame)

    def _apply_scheduled(self, event: Event, frame: Frame) -> None:
        frame.phase = "task"
        frame.task_id = event.id
        self.tasks[event.id] = frame

    def _apply_task_succeeded(self, event: Event, frame: Frame) -> None:
        self.tasks.pop(frame.task_id, None)
        frame.phase = "result"
        frame.result = event.details.get("output")
        self._mark(frame)

    def _apply_task_failed(self, event: Event, frame: Frame) -> None:
        self.tasks.pop(frame.task_id, None)
        self._apply_failure(frame, event.meta)

    def _apply_children_failed(self, event: Event, frame: Frame) -> None:
        for child in frame.children.values():
            self._abort_frame(child)
        frame.children = {}
        self._apply_failure(frame, event.meta)

    def _apply_parallel_started(self, event: Event, frame: Frame) -> None:
        frame.phase = "children"
        frame.started_id = event.id
        frame.finished = {}
        frame.children = {
            index: self._new_frame(
                frame, machine, f"{event.id}.{index}", index, event.meta["input"], event.id
            )
            for index, machine in enumerate(frame.state.machines)
        }
        frame.map_length = len(frame.state.machines)
        frame.map_results = {}
        frame.map_done = 0

    def _apply_map_started(self, event: Event, frame: Frame) -> None:
        meta = event.meta
        frame.phase = "children"
        frame.started_id = event.id
        frame.children = {}
        frame.finished = {}
        frame.map_length = meta.get("iterations", event.details["length"])
        frame.map_next = 0
        frame.map_done = 0
        frame.map_failed = 0
        frame.map_results = {}
        frame.rerun = []
        frame.run_redriven = False
        frame.max_concurrency = meta.get("max_concurrency", 0)
        frame.tolerated_count = meta.get("tolerated_count")
        frame.tolerated_percentage = meta.get("tolerated_percentage")
        self._mark(frame)

    def _apply_iteration_started(self, event: Event, frame: Frame) -> None:
        index = event.details["index"]
        scope = f"{frame.started_id}.{index}"
        meta = event.meta
        if meta.get("rerun"):
            frame.rerun.remove(index)
        if meta.get("rerun") and "input" not in meta:
            # A redriven Map starts a failed or aborted iteration again where it stopped.
            again = self.frames[scope]
            self._redrive(again, event.id)
            frame.children[index] = again
            if again.phase == "done":  # it had finished when a sibling's failure aborted it
                frame.finished[index] = None
                self._mark(frame)
            return
        # A new iteration, or an Express child execution run again from its start.
        child = self._new_frame(
            frame, frame.state.machines[0], scope, index, event.meta["input"], event.id
        )
        if frame.state.distributed:
            child.child = scope
            child.variables = ChainMap({})  # a distributed Map's children see no outer variables
            child.own_variables = True
        frame.children[index] = child
        frame.map_next = max(frame.map_next, index + 1)

    def _apply_map_run_redriven(self, event: Event, frame: Frame) -> None:
        frame.run_redriven = False

    def _apply_iteration_ended(self, event: Event, frame: Frame) -> None:
        kind = event.type
        meta = event.meta
        index = event.details["index"]
        ended = frame.children.pop(index, None)
        frame.finished.pop(index, None)
        if ended is not None:
            if kind == "MapIterationAborted":
                self._abort_frame(ended)
            ended.aborted = True  # retired: its events are all in; it never runs again
        if kind == "MapIterationSucceeded":
            frame.map_results[index] = ended.output if ended is not None else None
        else:
            frame.map_failed += 1
        frame.map_done += 1
        if "state" in meta:
            for other in frame.children.values():
                self._abort_frame(other)
            frame.children = {}
            self._apply_failure(frame, meta["state"])
        elif "fatal" in meta:
            frame.phase = "map-failing"
            frame.decision = meta["fatal"]
            self._mark(frame)
        else:
            self._mark(frame)

    def _apply_children_succeeded(self, event: Event, frame: Frame) -> None:
        if event.type == "ParallelStateSucceeded":
            # After a redrive, the branches that had succeeded are already in map_results.
            frame.map_results.update({i: c.output for i, c in frame.children.items()})
        frame.result = [frame.map_results.get(i) for i in range(frame.map_length)]
        frame.children = {}
        frame.phase = "result"
        self._mark(frame)

    def _apply_failure(self, frame: Frame, meta: Mapping[str, JSON]) -> None:
        """The state failed; ``meta`` says whether it retries, is caught or fails the frame."""
        frame.error = meta.get("error")
        frame.cause = meta.get("cause")
        if "retry" in meta:
            retrier = meta["retry"]
            frame.retry_counts[retrier] = frame.retry_counts.get(retrier, 0) + 1
            frame.phase = "retry"
            frame.timer_id = meta["timer"]
            self.timers[frame.timer_id] = frame
        elif "catch" in meta:
            frame.phase = "caught"
            self._mark(frame)
        else:
            frame.phase = "failed"
            self._mark(frame)

    def _abort_frame(self, frame: Frame) -> None:
        frame.aborted = True
        if frame.phase == "done":
            return  # a finished branch keeps its output (a redrive does not run it again)
        frame.phase = "aborted"
        if frame.task_id and self.tasks.get(frame.task_id) is frame:
            del self.tasks[frame.task_id]
            if not self.folding:
                self.commands.append(CancelTask(frame.task_id))
        if frame.timer_id and self.timers.get(frame.timer_id) is frame:
            del self.timers[frame.timer_id]
            if not self.folding:
                self.commands.append(CancelTimer(frame.timer_id))
        for child in frame.children.values():
            self._abort_frame(child)

    # ------------------------------------------------------------------ incoming events

    def handle(self, incoming: Incoming) -> None:
        """Let one incoming event act on the folded state, then run until everything waits."""
        self.now = incoming.timestamp
        try:
            self._handle(incoming)
        except _HistoryFull:
            # AWS: event #25,000 is ExecutionFailed with this cause (Standard workflow quotas).
            self._close(
                "ExecutionFailed",
                {
                    "error": "States.Runtime",
                    "cause": f"The execution reached the maximum number of history events ({self.max_events}).",
                },
            )

    def _handle(self, incoming: Incoming) -> None:
        if isinstance(incoming, StartExecution):
            if self.status != "NOT_STARTED":
                raise HistoryError("the execution has already started")
            self._start(incoming)
        elif isinstance(incoming, RedriveExecution):
            if self.status not in REDRIVABLE:
                return  # nothing to redrive (the service refuses it before it gets here)
            assert self.info is not None
            self._emit(
                None,
                "ExecutionRedriven",
                {"redriveCount": self.info.redrive_count + 1},
                previous=len(self.events),
            )
        elif self.status != RUNNING:
            return  # late results and timers of a closed execution are ignored
        elif isinstance(incoming, StopExecution):
            self._close("ExecutionAborted", {"error": incoming.error, "cause": incoming.cause})
            return
        elif isinstance(incoming, TimerFired):
            self._timer_fired(incoming.timer_id)
        elif isinstance(incoming, TaskHeartbeat):
            frame = self.tasks.get(incoming.task_id)
            # The heartbeat interval was recorded when the task was scheduled.
            scheduled = self.events[incoming.task_id - 1] if frame is not None else None
            heartbeat = scheduled.details.get("heartbeatInSeconds") if scheduled else None
            if frame is not None and heartbeat is not None:
                self.commands.append(
                    StartTimer(
                        f"heartbeat:{incoming.task_id}", self.now + timedelta(seconds=heartbeat)
                    )
                )
        elif isinstance(incoming, TaskStarted | TaskSubmitted | TaskSucceeded | TaskFailed):
            frame = self.tasks.get(incoming.task_id)
            if frame is None:
                return  # a duplicate or late answer: the task is no longer pending
            self._task_event(frame, incoming)
        elif not isinstance(incoming, Resume):
            raise TypeError(f"not an incoming event: {incoming!r}")
        self._run()

    def _start(self, start: StartExecution) -> None:
        # Checked before anything is recorded: AWS rejects such input at StartExecution.
        try:
            size = payload_size(start.input)
        except StatesFailure as failure:
            raise InvalidExecutionInput(failure.cause or "") from None
        if size > MAX_PAYLOAD_BYTES:
            raise InvalidExecutionInput(
                f"The execution input is {size} bytes; the limit is {MAX_PAYLOAD_BYTES} bytes (256 KiB)"
            )
        details = {
            "input": start.input,
            "roleArn": start.role_arn,
            "stateMachineArn": start.state_machine_arn,
        }
        meta = {
            "execution_arn": start.execution_arn,
            "state_machine_arn": start.state_machine_arn,
            "seed": start.seed,
            "redrive_count": start.redrive_count,
        }
        if start.token_key:
            meta["token_key"] = start.token_key
        self._emit(None, "ExecutionStarted", details, meta, previous=0)
        if self.definition.timeout_seconds:
            self.commands.append(
                StartTimer(
                    "execution-timeout",
                    self.now + timedelta(seconds=self.definition.timeout_seconds),
                )
            )

    def _close(self, event_type: str, details: Mapping[str, JSON]) -> None:
        for frame in list(self.frames.values()):
            if frame.task_id and frame.task_id in self.tasks:
                self.commands.append(CancelTask(frame.task_id))
        for timer_id in self.timers:
            self.commands.append(CancelTimer(timer_id))
        details = {k: v for k, v in details.items() if v is not None}
        self._emit(None, event_type, details, previous=len(self.events))

    def _timer_fired(self, timer_id: str) -> None:
        if timer_id == "execution-timeout":
            self._close("ExecutionTimedOut", {"error": "States.Timeout", "cause": None})
            return
        kind, _, ident = timer_id.partition(":")
        if kind in ("timeout", "heartbeat"):
            frame = self.tasks.get(int(ident))
            if frame is None:
                return
            error = "States.Timeout" if kind == "timeout" else "States.HeartbeatTimeout"
            self._task_failed(frame, self._task_event_type(frame, "TimedOut"), error, None)
            return
        frame = self.timers.get(timer_id)
        if frame is None:
            return
        if frame.phase == "wait":
            try:
                output, assigned = dataflow.passthrough(self, frame)
                self._exit_state(frame, output, assigned=assigned)
            except StatesFailure as failure:
                self._failed(frame, failure)
        elif frame.phase == "retry":
            # The timer leaves self.timers when the retried attempt's first event is applied.
            frame.phase = "active"
            self._execute(frame)

    # ------------------------------------------------------------------ running

    def _run(self) -> None:
        while self.runnable and self.status == RUNNING:
            frame = heapq.heappop(self.runnable)[1]
            frame.queued = False
            if not frame.aborted:
                self._step(frame)

    def _step(self, frame: Frame) -> None:
        phase = frame.phase
        step = _STEPS.get(phase)
        if step is None:
            return  # waiting for the world (a task, a timer) or finished
        try:
            step(self, frame)
        except StatesFailure as failure:
            # A failure while catching (the catcher's ResultPath or Assign) is not caught again.
            self._failed(frame, failure, from_fail_state=phase == "caught")

    # ------------------------------------------------------------------ what dataflow uses

    def context(self, frame: Frame) -> dict[str, JSON]:
        """The context object (``$$``, ``$states.context``) of the state ``frame`` is in."""
        info = self.info
        assert info is not None
        context: dict[str, JSON] = {
            "Execution": {
                "Id": info.execution_arn,
                "Input": info.input,
                "Name": info.name,
                "RoleArn": info.role_arn,
                "StartTime": iso(info.start_time),
                "RedriveCount": info.redrive_count,
            },
            "State": {"EnteredTime": iso(frame.entered_time or self.now), "Name": frame.state.name},
            "StateMachine": {"Id": info.state_machine_arn, "Name": info.state_machine_name},
        }
        if frame.state.type == "Task":
            # RetryCount and Task.Token exist only while a Task state runs (corpus: context_object).
            context["State"]["RetryCount"] = sum(frame.retry_counts.values())
            context["Task"] = {"Token": self._task_token(frame)}
        return context

    def rng(self) -> Callable[[], random.Random]:
        """A factory of the random generator for this point of the history (replays alike)."""
        info = self.info
        assert info is not None
        seed = info.seed * 1_000_003 + len(self.events)
        return lambda: random.Random(seed)

    def scope(self, frame: Frame, data: JSON, extra: Mapping[str, JSON] | None = None) -> Scope:
        """What a JSONPath template or intrinsic sees: ``data`` as ``$``, context, variables."""

        def context() -> dict[str, JSON]:
            built = self.context(frame)
            if extra:
                built.update(extra)
            return built

        return Scope(data, context, frame.variables, self.rng())

    def read(self, frame: Frame, path: str, data: JSON) -> JSON:
        """A path read for InputPath, OutputPath, ItemsPath, *Path fields (AWS's failure text)."""
        try:
            if path.startswith("$$"):
                return paths.read("$" + path[2:], self.context(frame))
            return resolve(path, data, None, frame.variables)
        except paths.PathError as exc:
            raise StatesFailure(
                "States.Runtime", runtime_cause(frame, f"Invalid path '{path}' : {exc.message}")
            ) from None

    def template(
        self, frame: Frame, template: JSON, data: JSON, extra: Mapping[str, JSON] | None = None
    ) -> Any:
        """Expand a JSONPath payload template against ``data``."""
        return evaluate_template(template, self.scope(frame, data, extra))

    def _task_token(self, frame: Frame) -> str:
        assert self.info is not None
        # Unguessable: the execution's token key (256 random bits from the service) or, in a
        # history written before there was one, its 62-bit seed.
        secret = self.info.token_key or str(self.info.seed)
        material = f"{secret}:{self.info.execution_arn}:{frame.scope}:{frame.entered_id}:{len(self.events)}"
        return hashlib.sha256(material.encode()).hexdigest()

    # ------------------------------------------------------------------ states

    def _enter(self, frame: Frame) -> None:
        state = frame.state
        details = {"name": state.name, "input": frame.raw_input}
        if state.type == "Wait":
            entered_id = len(self.events) + 1
            frame.entered_id = entered_id
            frame.entered_time = self.now
            try:
                fire_at = self._wait_until(frame)
            except StatesFailure as failure:
                self._emit(frame, "WaitStateEntered", details)
                self._failed(frame, failure)
                return
            timer_id = f"wait:{entered_id}"
            self._emit(frame, "WaitStateEntered", details, {"timer": timer_id})
            self.commands.append(StartTimer(timer_id, fire_at))
            return
        self._emit(frame, f"{state.type}StateEntered", details)

    def _wait_until(self, frame: Frame) -> datetime:
        fields, data = dataflow.wait_fields(self, frame)
        return waits.fire_at(fields, data, self.scope(frame, None), self.now)

    def _execute(self, frame: Frame) -> None:
        """Run the body of the state ``frame`` has just entered."""
        state = frame.state
        try:
            kind = state.type
            if kind == "Pass":
                output, assigned = dataflow.pass_state(self, frame)
                self._exit_state(frame, output, assigned=assigned)
            elif kind == "Task":
                self._schedule_task(frame)
            elif kind == "Choice":
                self._choice(frame)
            elif kind == "Succeed":
                output, assigned = dataflow.passthrough(self, frame)
                self._exit_state(frame, output, assigned=assigned)
            elif kind == "Fail":
                error, cause = dataflow.fail_state(self, frame)
                self._state_failed(frame, error, cause, from_fail_state=True)
            elif kind == "Parallel":
                branch_input = dataflow.arguments(self, frame)
                self._emit(frame, "ParallelStateStarted", meta={"input": branch_input})
            elif kind == "Map":
                self._start_map(frame)
            elif kind == "Wait":
                # Entered without a timer: its delay failed; evaluating it again fails the same way.
                self._wait_until(frame)
                raise HistoryError(f"Wait state '{state.name}' was entered without a timer")
        except StatesFailure as failure:
            self._failed(frame, failure)

    def _exit_state(
        self,
        frame: Frame,
        output: JSON,
        next_state: str | None = None,
        assigned: Mapping[str, JSON] | None = None,
    ) -> None:
        meta = {"next": next_state} if next_state is not None else _EMPTY
        details: dict[str, JSON] = {"name": frame.state.name, "output": output}
        if assigned is not None:
            self._check_assigned(frame, assigned)
            details["assignedVariables"] = assigned
        # The state's own input was measured when it was produced; only new values need it.
        if output is not frame.raw_input and payload_size(output) > MAX_PAYLOAD_BYTES:
            raise StatesFailure(
                "States.DataLimitExceeded",
                f"The state/task '{frame.state.name}' returned a result with a size exceeding "
                "the maximum number of bytes service limit.",
            )
        self._emit(frame, f"{frame.state.type}StateExited", details, meta)

    def _choice(self, frame: Frame) -> None:
        nxt, output, assigned = dataflow.choice_state(self, frame)
        if nxt is None:
            raise StatesFailure(
                "States.NoChoiceMatched",
                runtime_cause(frame, "No Choice matched and no Default was specified"),
            )
        self._exit_state(frame, output, nxt, assigned)

    # ------------------------------------------------------------------ tasks

    def _task_event_type(self, frame: Frame, suffix: str) -> str:
        return resources.event_prefix(frame.state.get("Resource")) + suffix

    def _schedule_task(self, frame: Frame) -> None:
        state = frame.state
        resource = state.get("Resource")
        timeout, heartbeat = dataflow.task_timeouts(self, frame)
        parameters = dataflow.arguments(self, frame)
        # Callbacks and activities are answered by token (SendTaskSuccess/Failure/Heartbeat).
        answered_by_token = resources.parse_resource(resource).pattern == "callback"
        token = self._task_token(frame) if answered_by_token else None
        event_type = self._task_event_type(frame, "Scheduled")
        details = resources.scheduled_details(resource, parameters, timeout, heartbeat)
        event = self._emit(
            frame, event_type, details, {"attempt": sum(frame.retry_counts.values())}
        )
        assert self.info is not None
        self.commands.append(
            ScheduleTask(
                task_id=event.id,
                state_name=state.name,
                resource=resource,
                parameters=parameters,
                idempotency_key=f"{self.info.execution_arn}:{event.id}",
                timeout_seconds=timeout,
                heartbeat_seconds=heartbeat,
                task_token=token,
            )
        )
        if timeout is not None:
            self.commands.append(
                StartTimer(f"timeout:{event.id}", self.now + timedelta(seconds=timeout))
            )
        # An activity's heartbeat clock starts when a worker takes it (ActivityStarted): before
        # that nobody holds the token to beat with, and only TimeoutSeconds runs.
        if heartbeat is not None and resources.parse_resource(resource).kind != "activity":
            self.commands.append(
                StartTimer(f"heartbeat:{event.id}", self.now + timedelta(seconds=heartbeat))
            )

    def _task_event(
        self, frame: Frame, incoming: TaskStarted | TaskSubmitted | TaskSucceeded | TaskFailed
    ) -> None:
        details = resources.task_details(frame.state.get("Resource"))
        if isinstance(incoming, TaskStarted):
            self._emit(frame, self._task_event_type(frame, "Started"), details)
            resource = frame.state.get("Resource")
            if resources.parse_resource(resource).kind == "activity":
                scheduled = self.events[incoming.task_id - 1]
                heartbeat = scheduled.details.get("heartbeatInSeconds")
                if heartbeat is not None:
                    self.commands.append(
                        StartTimer(
                            f"heartbeat:{incoming.task_id}",
                            self.now + timedelta(seconds=heartbeat),
                        )
                    )
        elif isinstance(incoming, TaskSubmitted):
            self._emit(frame, "TaskSubmitted", {**details, "output": incoming.output})
        elif isinstance(incoming, TaskSucceeded):
            self._cancel_task_timers(frame)
            output = incoming.output
            try:
                size = payload_size(output)
            except StatesFailure as failure:
                failed = self._task_event_type(frame, "Failed")
                self._task_failed(frame, failed, failure.error, failure.cause)
                return
            if size > MAX_PAYLOAD_BYTES:
                self._task_failed(
                    frame,
                    self._task_event_type(frame, "Failed"),
                    "States.DataLimitExceeded",
                    f"The state/task '{frame.state.name}' returned a result with a size exceeding "
                    "the maximum number of bytes service limit.",
                )
                return
            self._emit(
                frame, self._task_event_type(frame, "Succeeded"), {**details, "output": output}
            )
        else:
            self._task_failed(
                frame, self._task_event_type(frame, "Failed"), incoming.error, incoming.cause
            )

    def _cancel_task_timers(self, frame: Frame) -> None:
        timeout, heartbeat = frame.state.get("TimeoutSeconds"), frame.state.get("HeartbeatSeconds")
        if timeout is not None or frame.state.get("TimeoutSecondsPath") is not None:
            self.commands.append(CancelTimer(f"timeout:{frame.task_id}"))
        if heartbeat is not None or frame.state.get("HeartbeatSecondsPath") is not None:
            self.commands.append(CancelTimer(f"heartbeat:{frame.task_id}"))

    def _task_failed(
        self, frame: Frame, event_type: str, error: str | None, cause: str | None
    ) -> None:
        self._cancel_task_timers(frame)
        details = resources.task_details(frame.state.get("Resource"))
        details = {**details, "error": error, "cause": cause}
        details = {k: v for k, v in details.items() if v is not None}
        meta = self.failure_decision(frame, error, cause)
        self._emit(frame, event_type, details, meta)
        if "retry" in meta:
            self.commands.append(StartTimer(meta["timer"], datetime.fromisoformat(meta["fire_at"])))

    def _finish_result(self, frame: Frame) -> None:
        """A Task, Parallel or Map produced its result: compute the state's output."""
        try:
            output, assigned = dataflow.result_state(self, frame, frame.result)
            self._exit_state(frame, output, assigned=assigned)
        except StatesFailure as failure:
            self._failed(frame, failure)

    def failure_decision(
        self, frame: Frame, error: str | None, cause: str | None
    ) -> dict[str, JSON]:
        """Decide between retry, catch and failing the frame; the answer goes into the event's meta."""
        meta: dict[str, JSON] = {"error": error, "cause": cause}
        state = frame.state
        name = error or ""
        for index, retrier in enumerate(state.retry):
            if not _matches(retrier.error_equals, name):
                continue
            attempts = frame.retry_counts.get(index, 0)
            if attempts >= retrier.max_attempts:
                break
            delay = retrier.interval_seconds * (retrier.backoff_rate**attempts)
            if retrier.max_delay_seconds is not None:
                delay = min(delay, retrier.max_delay_seconds)
            if retrier.jitter_strategy == "FULL":
                assert self.info is not None
                delay = random.Random(self.info.seed + len(self.events)).uniform(0, delay)
            timer = f"retry:{len(self.events) + 1}"
            meta.update(
                retry=index, timer=timer, fire_at=(self.now + timedelta(seconds=delay)).isoformat()
            )
            return meta
        for index, catcher in enumerate(state.catch):
            if _matches(catcher.error_equals, name):
                meta["catch"] = index
                return meta
        return meta

    def _failed(self, frame: Frame, failure: StatesFailure, from_fail_state: bool = False) -> None:
        """A state failed while evaluating: record a JSONata failure, then catch or fail."""
        cause = failure.cause
        if (
            failure.error in _PREFIXED
            and cause is not None
            and not cause.startswith("An error occurred")
        ):
            cause = runtime_cause(frame, cause)
        if isinstance(failure, QueryEvaluationError):
            details = {
                "state": frame.state.name,
                "location": failure.location,
                "error": failure.error,
                "cause": cause,
            }
            self._emit(frame, "EvaluationFailed", details)
        self._state_failed(frame, failure.error, cause, from_fail_state)

    def _state_failed(
        self, frame: Frame, error: str | None, cause: str | None, from_fail_state: bool = False
    ) -> None:
        """A failure raised while running a state (not reported by a task): catch it or fail the frame."""
        state = frame.state
        if state.type in ("Task", "Parallel", "Map") and not from_fail_state:
            decision = self.failure_decision(frame, error, cause)
            if state.type != "Task" and error not in _UNCATCHABLE:
                # A Parallel or Map failing by itself (not through a branch) reports it.
                self._emit(frame, f"{state.type}StateFailed", meta=decision)
                if "retry" in decision:
                    self.commands.append(
                        StartTimer(decision["timer"], datetime.fromisoformat(decision["fire_at"]))
                    )
                return
            if "catch" in decision:
                frame.error, frame.cause = error, cause
                self._caught(frame, decision["catch"])
                return
        frame.error, frame.cause = error, cause
        self._propagate_failure(frame)

    def _caught(self, frame: Frame, catch_index: int | None = None) -> None:
        state = frame.state
        if catch_index is None:
            event = self.events[frame.last_id - 1]
            catch_index = event.meta["catch"]
        catcher: Catcher = state.catch[catch_index]
        error_output: dict[str, JSON] = {"Error": frame.error}
        if frame.cause is not None:
            error_output["Cause"] = frame.cause
        output, assigned = dataflow.caught(self, frame, catcher, error_output)
        details: dict[str, JSON] = {"name": state.name, "output": output}
        if assigned is not None:
            self._check_assigned(frame, assigned)
            details["assignedVariables"] = assigned
        self._emit(frame, f"{state.type}StateExited", details, {"next": catcher.next})

    def _check_assigned(self, frame: Frame, assigned: Mapping[str, JSON]) -> None:
        """AWS's variable quotas: 256 KiB per variable and per Assign, 10 MiB in all."""
        if payload_size(assigned) > MAX_PAYLOAD_BYTES:
            for name, value in assigned.items():
                if payload_size(value) > MAX_PAYLOAD_BYTES:
                    raise StatesFailure(
                        "States.Runtime",
                        f"The value assigned to the variable '{name}' is larger than "
                        f"{MAX_PAYLOAD_BYTES} bytes (256 KiB).",
                    )
            raise StatesFailure(
                "States.Runtime",
                f"The Assign field of state '{frame.state.name}' is larger than "
                f"{MAX_PAYLOAD_BYTES} bytes (256 KiB).",
            )
        total = payload_size({**frame.variables, **assigned})
        if total > MAX_VARIABLES_BYTES:
            raise StatesFailure(
                "States.Runtime",
                f"The workflow variables would take {total} bytes; the limit is "
                f"{MAX_VARIABLES_BYTES} bytes (10 MiB) per execution.",
            )

    def _propagate_failure(self, frame: Frame) -> None:
        """The frame failed: the execution fails, or the owning Parallel/Map state does."""
        parent = frame.parent
        error, cause = frame.error, frame.cause
        if parent is None:
            self._close("ExecutionFailed", {"error": error, "cause": cause})
            return
        if parent.state.type == "Parallel":
            meta = self.failure_decision(parent, error, cause)
            self._emit(parent, "ParallelStateFailed", meta=meta, previous=len(self.events))
            if "retry" in meta:
                self.commands.append(
                    StartTimer(meta["timer"], datetime.fromisoformat(meta["fire_at"]))
                )
            return
        self._map_iteration_failed(parent, frame.index, error, cause)

    def _map_iteration_failed(
        self, frame: Frame, index: int, error: str | None, cause: str | None
    ) -> None:
        """An iteration failed: tolerate it, or fail (retry, catch) the Map state."""
        details = {"index": index, "name": frame.state.name}
        previous = len(self.events)
        failed = frame.map_failed + 1
        count, percentage = frame.tolerated_count, frame.tolerated_percentage
        if count is None and percentage is None:
            exceeded = True
        else:
            exceeded = (count is not None and failed > count) or (
                percentage is not None and failed * 100 > percentage * frame.map_length
            )
        if not exceeded:
            self._emit(
                frame,
                "MapIterationFailed",
                details,
                {"error": error, "cause": cause},
                previous=previous,
            )
            return
        if count is not None or percentage is not None:
            error = "States.ExceedToleratedFailureThreshold"
            cause = "The specified tolerated failure threshold was exceeded"
        decision = self.failure_decision(frame, error, cause)
        # The decision goes into MapIterationFailed's meta, so that a fold stopping right
        # after it knows the Map is failing. AWS shows a Map retry as a new MapStateStarted,
        # with no MapStateFailed before it.
        key = "state" if "retry" in decision else "fatal"
        meta = {"error": error, "cause": cause, key: decision}
        self._emit(frame, "MapIterationFailed", details, meta, previous=previous)
        if "retry" in decision:
            self.commands.append(
                StartTimer(decision["timer"], datetime.fromisoformat(decision["fire_at"]))
            )

    def _map_failing(self, frame: Frame) -> None:
        """Finish failing a Map: abort the running iterations, then MapStateFailed."""
        for other in sorted(frame.children):
            self._emit(
                frame,
                "MapIterationAborted",
                {"index": other, "name": frame.state.name},
                previous=len(self.events),
            )
        decision = frame.decision
        if frame.state.distributed:
            details = {"error": decision.get("error"), "cause": decision.get("cause")}
            details = {k: v for k, v in details.items() if v is not None}
            self._emit(frame, "MapRunFailed", details, previous=len(self.events))
        self._emit(frame, "MapStateFailed", meta=decision, previous=len(self.events))

    # ------------------------------------------------------------------ Parallel and Map

    def _start_map(self, frame: Frame) -> None:
        state = frame.state
        items = dataflow.map_items(self, frame)
        try:
            concurrency, tolerated_count, tolerated_percentage = dataflow.map_settings(self, frame)
        except StatesFailure:
            # AWS reports a bad concurrency or tolerance after MapStateStarted.
            self._emit(frame, "MapStateStarted", {"length": len(items)}, {"broken": True})
            raise
        frame.items = self._batches(frame, items) if "ItemBatcher" in state.raw else items
        self._emit(
            frame,
            "MapStateStarted",
            {"length": len(items)},
            {
                "iterations": len(frame.items),
                "max_concurrency": concurrency,
                "tolerated_count": tolerated_count,
                "tolerated_percentage": tolerated_percentage,
            },
        )
        if state.distributed:
            self._emit(frame, "MapRunStarted", {"mapRunArn": self._map_run_arn(frame)})

    def _map_run_arn(self, frame: Frame) -> str:
        assert self.info is not None
        state = frame.state
        return (
            self.info.execution_arn.replace(":execution:", ":mapRun:", 1)
            + f"/{state.get('Label', state.name)}:{frame.started_id}"
        )

    def _map_items(self, frame: Frame) -> list[JSON]:
        """The items (or ItemBatcher batches) the Map iterates, derived from its input."""
        if frame.items is None:
            items = dataflow.map_items(self, frame)
            frame.items = self._batches(frame, items) if "ItemBatcher" in frame.state.raw else items
        return frame.items

    def _batches(self, frame: Frame, items: list[JSON]) -> list[JSON]:
        """Group items for a distributed Map's ItemBatcher: each batch is a list of (index, item)."""
        batcher = frame.state.get("ItemBatcher")
        effective = dataflow.effective_input(self, frame)
        max_items, max_bytes = waits.batch_limits(batcher, lambda p: self.read(frame, p, effective))
        batches: list[JSON] = []
        current: list[tuple[int, JSON]] = []
        size = 2  # the brackets of the Items array
        for index, item in enumerate(items):
            item_size = len(dumps(item).encode()) + 1 if max_bytes else 0
            full = (max_items and len(current) >= max_items) or (
                max_bytes and current and size + item_size > max_bytes
            )
            if full:
                batches.append(current)
                current, size = [], 2
            current.append((index, item))
            size += item_size
        if current:
            batches.append(current)
        return batches

    def _children_progress(self, frame: Frame) -> None:
        state = frame.state
        if state.type == "Parallel":
            if all(child.phase == "done" for child in frame.children.values()):
                self._emit(frame, "ParallelStateSucceeded", previous=len(self.events))
            return
        # Map: report finished iterations, then start new ones as concurrency allows.
        for index in list(frame.finished):
            self._emit(
                frame,
                "MapIterationSucceeded",
                {"index": index, "name": state.name},
                previous=len(self.events),
            )
        if frame.phase != "children":
            return
        if frame.run_redriven:
            assert self.info is not None
            details = {
                "mapRunArn": self._map_run_arn(frame),
                "redriveCount": self.info.redrive_count,
            }
            self._emit(frame, "MapRunRedriven", details, previous=len(self.events))
        limit = frame.max_concurrency or (
            frame.map_length if state.distributed else INLINE_MAP_CONCURRENCY
        )
        # AWS reruns a distributed Map's Express children as new executions (StartExecution),
        # from their start; Standard children and inline iterations go on where they stopped.
        restart = state.distributed and _processor_config(state).get("ExecutionType") == "EXPRESS"
        items = self._map_items(frame) if frame.map_next < frame.map_length or restart else []
        while frame.rerun and len(frame.children) < limit:
            # A redriven Map first starts again the iterations that failed or were aborted.
            index = frame.rerun[0]
            meta: dict[str, JSON] = {"rerun": True}
            if restart:
                try:
                    meta["input"] = self._item_input(frame, index, items[index])
                except StatesFailure as failure:
                    self._failed(frame, failure)
                    return
            self._emit(
                frame,
                "MapIterationStarted",
                {"index": index, "name": state.name},
                meta,
                previous=len(self.events),
            )
        while frame.map_next < frame.map_length and len(frame.children) < limit:
            index = frame.map_next
            try:
                item_input = self._item_input(frame, index, items[index])
            except StatesFailure as failure:
                self._failed(frame, failure)
                return
            self._emit(
                frame,
                "MapIterationStarted",
                {"index": index, "name": state.name},
                {"input": item_input},
                previous=len(self.events),
            )
        if frame.map_done == frame.map_length and not frame.children:
            if state.distributed:
                self._emit(frame, "MapRunSucceeded", previous=len(self.events))
            self._emit(frame, "MapStateSucceeded", previous=len(self.events))

    def _item_input(self, frame: Frame, index: int, item: JSON) -> JSON:
        batcher = frame.state.get("ItemBatcher")
        if batcher is None:
            return dataflow.item_input(self, frame, index, item)
        # A batch: {"BatchInput": ..., "Items": [each item after ItemSelector]}.
        batch: dict[str, JSON] = {}
        if "BatchInput" in batcher:
            batch["BatchInput"] = dataflow.batch_input(self, frame, batcher)
        batch["Items"] = [dataflow.item_input(self, frame, i, value) for i, value in item]
        return batch

    def _frame_done(self, frame: Frame) -> None:
        if frame.parent is None:
            self._close("ExecutionSucceeded", {"output": frame.output})


# What a runnable frame does next, by its phase.
_STEPS: dict[str, Callable[[Execution, Frame], None]] = {
    "enter": Execution._enter,
    "active": Execution._execute,
    "result": Execution._finish_result,
    "caught": lambda ex, frame: ex._caught(frame),
    "failed": Execution._propagate_failure,
    "done": Execution._frame_done,
    "children": Execution._children_progress,
    "map-failing": Execution._map_failing,
}

_CLOSED_STATUS = {
    "ExecutionSucceeded": SUCCEEDED,
    "ExecutionFailed": FAILED,
    "ExecutionTimedOut": TIMED_OUT,
    "ExecutionAborted": ABORTED,
}

# How each event type changes the folded state (the fold's dispatch table).
_APPLIERS: dict[str, Callable[[Execution, Event, Frame], None]] = {
    **{f"{t}StateEntered": Execution._apply_entered for t in STATE_TYPES},
    **{f"{t}StateExited": Execution._apply_exited for t in STATE_TYPES},
    **dict.fromkeys(
        ("TaskScheduled", "LambdaFunctionScheduled", "ActivityScheduled"),
        Execution._apply_scheduled,
    ),
    **dict.fromkeys(
        ("TaskSucceeded", "LambdaFunctionSucceeded", "ActivitySucceeded"),
        Execution._apply_task_succeeded,
    ),
    **dict.fromkeys(TASK_FAILURE_EVENTS, Execution._apply_task_failed),
    "ParallelStateFailed": Execution._apply_children_failed,
    "MapStateFailed": Execution._apply_children_failed,
    "ParallelStateStarted": Execution._apply_parallel_started,
    "MapStateStarted": Execution._apply_map_started,
    "MapRunRedriven": Execution._apply_map_run_redriven,
    "MapIterationStarted": Execution._apply_iteration_started,
    **dict.fromkeys(
        ("MapIterationSucceeded", "MapIterationFailed", "MapIterationAborted"),
        Execution._apply_iteration_ended,
    ),
    "ParallelStateSucceeded": Execution._apply_children_succeeded,
    "MapStateSucceeded": Execution._apply_children_succeeded,
}


def _processor_config(state: State) -> Mapping[str, JSON]:
    processor = state.raw.get("ItemProcessor")
    config = processor.get("ProcessorConfig") if isinstance(processor, Mapping) else None
    return config if isinstance(config, Mapping) else {}


def _matches(error_equals: Sequence[str], error: str) -> bool:
    """Whether a Retry/Catch ErrorEquals list matches ``error`` (States Language spec, "Errors")."""
    if error in _UNCATCHABLE:
        return False
    for name in error_equals:
        if name == error:
            return True
        if name == "States.ALL":
            return True
        if name == "States.TaskFailed" and error != "States.Timeout":
            return True
    return False


def replay(
    definition: StateMachine | Mapping[str, JSON],
    history: Sequence[Event],
    max_events: int = MAX_HISTORY_EVENTS,
) -> Execution:
    """Fold a history into an Execution (the state at its last event)."""
    machine = definition if isinstance(definition, StateMachine) else parse(definition)
    execution = Execution(machine, max_events)
    execution.fold(history)
    return execution


def decide(
    definition: StateMachine | Mapping[str, JSON], history: Sequence[Event], incoming: Incoming
) -> Decision:
    """The engine's core: fold ``history``, apply ``incoming``, return new events and commands."""
    execution = replay(definition, history)
    execution.handle(incoming)
    return Decision(tuple(execution.new_events), tuple(execution.commands), execution.status)
