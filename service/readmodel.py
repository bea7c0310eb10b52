"""Read models over one execution's history for the viewer: per-state aggregates (to colour
the graph), timeline spans (a Gantt chart) and the state at an event (time travel). All are
folds over the recorded events: nothing here is stored, and nothing decides anything again.

State paths name a state wherever it is nested, so the viewer can find the states inside
Parallel and Map groups:

* a top-level state: its name, ``Charge``;
* inside a Parallel branch: ``<Parallel path>/branch <i>/<name>``, ``Fanout/branch 0/Email``;
* inside a Map's item processor (ItemProcessor or the older Iterator): ``<Map path>/
  ItemProcessor/<name>``, ``EachOrder/ItemProcessor/Validate``, for every iteration at once:
  iterations are aggregated, never listed one by one.

Paths nest (``Outer/branch 1/Each/ItemProcessor/Inner``). A state name holding ``/`` keeps
it; the definition's structure, not the text, is the truth.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from statemachine import dataflow
from statemachine.definition import StateMachine
from statemachine.errors import StateMachineError, StatesFailure
from statemachine.events import Event
from statemachine.interpreter import TASK_FAILURE_EVENTS, Execution, replay

JSON = Any
PATH_SCHEME = (
    "Top-level states by name; inside a Parallel '<parallel path>/branch <i>/<name>'; inside "
    "a Map '<map path>/ItemProcessor/<name>' (all iterations aggregated)."
)
MAX_FAILED_INDEXES = 100
# Events that report a state's failure with the engine's decision in meta (retry, catch or
# neither): what a Task, Parallel or Map state does with an error.
_FAILURES = frozenset((*TASK_FAILURE_EVENTS, "ParallelStateFailed", "MapStateFailed"))
_CLOSING = {
    "ExecutionSucceeded": "SUCCEEDED",
    "ExecutionFailed": "FAILED",
    "ExecutionTimedOut": "TIMED_OUT",
    "ExecutionAborted": "ABORTED",
}
# For a state visited in several scopes (Map iterations, Parallel branches of a Map...): the
# most notable outcome wins. Within one scope, the last visit's outcome counts.
_PRECEDENCE = ("running", "failed", "caught", "retried", "succeeded")


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


@dataclass(slots=True)
class _Visit:
    """One entry into a state in one scope (frame), until it exits or its frame ends."""

    path: str
    name: str
    scope: str
    entered_id: int
    entered_at: datetime
    iteration: int | None
    outcome: str = "running"  # running, succeeded, retried, caught, failed
    retried: bool = False
    exited_at: datetime | None = None


@dataclass(slots=True)
class _Iterations:
    total: int = 0
    started: int = 0
    succeeded: int = 0
    failed: int = 0
    aborted: int = 0
    failed_indexes: list[int] = field(default_factory=list)


@dataclass(slots=True)
class _Aggregate:
    name: str
    type: str | None
    entered: int = 0
    exited: int = 0
    retries: int = 0
    caught: int = 0
    first_entered_at: datetime | None = None
    last_exited_at: datetime | None = None
    last_event_id: int | None = None
    error: str | None = None
    cause: str | None = None
    outcomes: dict[str, str] = field(default_factory=dict)  # scope -> its last visit's outcome
    iterations: _Iterations | None = None


def state_paths(machine: StateMachine, prefix: str = "") -> dict[str, tuple[str, str]]:
    """Every state of a definition by path: (name, type)."""
    out: dict[str, tuple[str, str]] = {}
    for name, state in machine.states.items():
        path = prefix + name
        out[path] = (name, state.type)
        for index, inner in enumerate(state.machines):
            segment = "ItemProcessor" if state.type == "Map" else f"branch {index}"
            out.update(state_paths(inner, f"{path}/{segment}/"))
    return out


def terminal_paths(machine: StateMachine, prefix: str = "") -> set[str]:
    """The paths of the states that end their (sub) state machine when they exit normally:
    ``"End": true`` or a Succeed state (a Fail state ends it by failing)."""
    out: set[str] = set()
    for name, state in machine.states.items():
        path = prefix + name
        if state.end or state.type == "Succeed":
            out.add(path)
        for index, inner in enumerate(state.machines):
            segment = "ItemProcessor" if state.type == "Map" else f"branch {index}"
            out |= terminal_paths(inner, f"{path}/{segment}/")
    return out


def _edge_end(prefix: str, end: str) -> str:
    # The graph's ids of a (sub) state machine's Start and End: "#start" at the top level,
    # "Fan/branch 0#start" inside a branch (the fold's prefixes end with "/").
    return prefix.removesuffix("/") + end


class HistoryFold:
    """One pass over a history, in event order: where each scope sits (its path prefix and
    Map iteration), each state's aggregate, each visit (for the timeline), and the
    transitions taken between states."""

    def __init__(self, machine: StateMachine | None, span_limit: int = 0) -> None:
        self.aggregates: dict[str, _Aggregate] = {}
        self.terminal: set[str] = set()
        if machine is not None:
            for path, (name, kind) in state_paths(machine).items():
                self.aggregates[path] = _Aggregate(name, kind)
            self.terminal = terminal_paths(machine)
        # (from, to, kind) -> times taken. A transition is a state's normal exit followed by
        # the next StateEntered in the same scope (one frame runs one state at a time), a
        # scope's first entry (from its Start), or a terminal exit (to its End).
        self.taken: dict[tuple[str, str, str], int] = {}
        self.exited: dict[str, _Visit] = {}  # scope -> the visit that just exited normally
        self.entered_scopes: set[str] = set()
        self.status = "RUNNING"
        self.prefix: dict[str, str] = {"": ""}
        self.iteration: dict[str, int | None] = {"": None}
        self.current: dict[str, _Visit] = {}  # open visits by scope
        self.owner: dict[int, tuple[str, str, str]] = {}  # started id -> (path, kind, scope)
        self.latest_started: dict[str, int] = {}  # scope -> its latest Parallel/Map start
        self.children: dict[int, list[str]] = {}  # started id -> scopes of its branches
        self.span_limit = span_limit
        self.spans: list[_Visit] = []
        self.visits = 0

    # ------------------------------------------------------------------ scopes

    def _scope(self, scope: str) -> str | None:
        """The path prefix of a scope (learnt from its Parallel/Map start); None if unknown."""
        known = self.prefix.get(scope)
        if known is not None:
            return known
        started, _, index = scope.rpartition(".")
        owner = self.owner.get(int(started)) if started.isdigit() and index.isdigit() else None
        if owner is None:
            return None
        path, kind, parent = owner
        segment = "ItemProcessor" if kind == "Map" else f"branch {index}"
        self.prefix[scope] = prefix = f"{path}/{segment}/"
        self.iteration[scope] = int(index) if kind == "Map" else self.iteration.get(parent)
        self.children.setdefault(int(started), []).append(scope)
        return prefix

    def _aggregate(self, path: str, name: str) -> _Aggregate:
        found = self.aggregates.get(path)
        if found is None:
            found = self.aggregates[path] = _Aggregate(name, None)
        return found

    # ------------------------------------------------------------------ visits

    def _take(self, source: str, target: str, kind: str) -> None:
        key = (source, target, kind)
        self.taken[key] = self.taken.get(key, 0) + 1

    def _close(self, visit: _Visit, outcome: str, event: Event) -> None:
        if self.current.get(visit.scope) is visit:
            del self.current[visit.scope]
        if outcome in ("succeeded", "retried", "caught"):
            self.exited[visit.scope] = visit
            if outcome != "caught" and visit.path in self.terminal:
                prefix = visit.path[: len(visit.path) - len(visit.name)]
                self._take(visit.path, _edge_end(prefix, "#end"), "next")
        else:
            self.exited.pop(visit.scope, None)  # a failed state leads nowhere (a redrive
            # enters it again: no transition)
        visit.outcome = outcome
        aggregate = self.aggregates[visit.path]
        aggregate.outcomes[visit.scope] = outcome
        aggregate.last_event_id = event.id
        if outcome in ("succeeded", "retried", "caught"):
            visit.exited_at = event.timestamp
            aggregate.exited += 1
            aggregate.last_exited_at = event.timestamp

    def _cut(self, scope: str, event: Event, error: str | None, cause: str | None) -> None:
        """A scope ended without its state finishing (its frame failed, was aborted or the
        execution closed): its open visit failed, and so did those of the branches and
        iterations it had started."""
        visit = self.current.get(scope)
        if visit is not None:
            aggregate = self.aggregates[visit.path]
            if error is not None and aggregate.error is None:
                aggregate.error, aggregate.cause = error, cause
            self._close(visit, "failed", event)
        started = self.latest_started.get(scope)
        if started is not None:
            for child in self.children.get(started, ()):
                if child in self.current or child in self.latest_started:
                    self._cut(child, event, error, cause)

    def _decision(self, visit: _Visit | None, meta: Mapping[str, JSON], event: Event) -> None:
        """A state failed; the engine's decision (in the event's meta) says what followed."""
        if visit is None:
            return
        aggregate = self.aggregates[visit.path]
        aggregate.error, aggregate.cause = meta.get("error"), meta.get("cause")
        aggregate.last_event_id = event.id
        if "retry" in meta:
            aggregate.retries += 1
            visit.retried = True
        elif "catch" in meta:
            aggregate.caught += 1
            visit.outcome = "caught"  # its StateExited (to the catcher's Next) follows
        else:
            self._close(visit, "failed", event)

    # ------------------------------------------------------------------ the fold

    def fold(self, events: Sequence[Event]) -> None:
        """Apply events in order."""
        for event in events:
            self.apply(event)

    def apply(self, event: Event) -> None:
        """Apply one event."""
        kind = event.type
        if kind in _CLOSING:
            self.status = _CLOSING[kind]
            error = event.details.get("error")
            if error is None and kind == "ExecutionTimedOut":
                error = "States.Timeout"
            for scope in list(self.current):
                visit = self.current.get(scope)
                if visit is not None:
                    self._cut(scope, event, error, event.details.get("cause"))
            for aggregate in self.aggregates.values():
                if aggregate.iterations is not None:
                    iterations = aggregate.iterations
                    iterations.started = iterations.succeeded + iterations.failed
                    iterations.started += iterations.aborted
            return
        if kind == "ExecutionRedriven":
            self.status = "RUNNING"
            return
        scope = event.scope
        prefix = self._scope(scope)
        if prefix is None:
            return  # ExecutionStarted, or an event of a scope this fold cannot place
        visit = self.current.get(scope)
        if kind.endswith("StateEntered"):
            if visit is not None:
                self._close(visit, "failed", event)  # entered again without leaving (redrive)
            name = event.details.get("name", "")
            path = prefix + name
            before = self.exited.pop(scope, None)
            if before is not None:
                self._take(before.path, path, "catch" if before.outcome == "caught" else "next")
            elif scope not in self.entered_scopes:
                self._take(_edge_end(prefix, "#start"), path, "next")
            self.entered_scopes.add(scope)
            if kind == "FailStateEntered":
                self._take(path, _edge_end(prefix, "#end"), "fail")
            aggregate = self._aggregate(path, name)
            aggregate.entered += 1
            aggregate.last_event_id = event.id
            if aggregate.first_entered_at is None:
                aggregate.first_entered_at = event.timestamp
            aggregate.outcomes[scope] = "running"
            visit = _Visit(path, name, scope, event.id, event.timestamp, self.iteration.get(scope))
            self.current[scope] = visit
            self.visits += 1
            if len(self.spans) < self.span_limit:
                self.spans.append(visit)
        elif visit is None:
            return
        elif kind.endswith("StateExited"):
            if visit.outcome == "caught":
                outcome = "caught"
            else:
                outcome = "retried" if visit.retried else "succeeded"
            self._close(visit, outcome, event)
        elif kind in _FAILURES:
            self._decision(visit, event.meta, event)
            if kind in ("ParallelStateFailed", "MapStateFailed"):
                started = self.latest_started.get(scope)
                for child in self.children.get(started, ()) if started is not None else ():
                    self._cut(child, event, event.meta.get("error"), event.meta.get("cause"))
        elif kind in ("ParallelStateStarted", "MapStateStarted"):
            state_kind = "Parallel" if kind == "ParallelStateStarted" else "Map"
            self.owner[event.id] = (visit.path, state_kind, scope)
            self.latest_started[scope] = event.id
            if state_kind == "Map":
                aggregate = self.aggregates[visit.path]
                iterations = aggregate.iterations = aggregate.iterations or _Iterations()
                iterations.total += int(
                    event.meta.get("iterations", event.details.get("length", 0))
                )
        elif kind.startswith("MapIteration"):
            self._iteration(event, visit, scope)
        else:
            self.aggregates[visit.path].last_event_id = event.id

    def _iteration(self, event: Event, visit: _Visit, scope: str) -> None:
        aggregate = self.aggregates[visit.path]
        iterations = aggregate.iterations = aggregate.iterations or _Iterations()
        index = int(event.details.get("index", 0))
        started = self.latest_started.get(scope)
        child = f"{started}.{index}"
        kind = event.type
        if kind == "MapIterationStarted":
            iterations.started += 1
            self._scope(child)
            return
        if kind == "MapIterationSucceeded":
            iterations.succeeded += 1
            return
        meta = event.meta
        if kind == "MapIterationAborted":
            iterations.aborted += 1
            self._cut(child, event, None, None)
            return
        iterations.failed += 1
        if len(iterations.failed_indexes) < MAX_FAILED_INDEXES:
            iterations.failed_indexes.append(index)
        self._cut(child, event, meta.get("error"), meta.get("cause"))
        if "state" in meta:  # the failure exceeded the tolerance and the Map retries
            self._decision(visit, meta["state"], event)

    # ------------------------------------------------------------------ answers

    def states(self) -> dict[str, dict[str, JSON]]:
        """Per-state aggregates by path."""
        out: dict[str, dict[str, JSON]] = {}
        for path, a in self.aggregates.items():
            status = "not_reached"
            if a.entered:
                seen = set(a.outcomes.values())
                status = next((s for s in _PRECEDENCE if s in seen), "succeeded")
            duration = None
            if a.first_entered_at is not None and a.last_exited_at is not None:
                duration = int((a.last_exited_at - a.first_entered_at).total_seconds() * 1000)
            entry: dict[str, JSON] = {
                "name": a.name,
                "type": a.type,
                "status": status,
                "entered": a.entered,
                "exited": a.exited,
                "retries": a.retries,
                "caught": a.caught,
                "first_entered_at": _iso(a.first_entered_at),
                "last_exited_at": _iso(a.last_exited_at),
                "duration_ms": duration,
                "last_event_id": a.last_event_id,
                "error": a.error,
                "cause": a.cause,
            }
            if a.iterations is not None or a.type == "Map":
                it = a.iterations or _Iterations()
                entry["iterations"] = {
                    "total": it.total,
                    "succeeded": it.succeeded,
                    "failed": it.failed,
                    "aborted": it.aborted,
                    "running": max(0, it.started - it.succeeded - it.failed - it.aborted),
                    "failed_indexes": it.failed_indexes,
                }
            out[path] = entry
        return out

    def transitions(self) -> list[dict[str, JSON]]:
        """The transitions taken: ``from`` and ``to`` are state paths or a (sub) state
        machine's ``<prefix>#start`` / ``<prefix>#end``; ``kind`` is next (Next, a Choice
        rule or Default, Start, End), catch (a Catch's Next) or fail (a Fail state)."""
        return [
            {"from": source, "to": target, "kind": kind, "count": count}
            for (source, target, kind), count in self.taken.items()
        ]

    def timeline(self) -> list[dict[str, JSON]]:
        """The first ``span_limit`` visits, in the order they were entered."""
        return [
            {
                "path": v.path,
                "name": v.name,
                "entered_at": v.entered_at.isoformat(),
                "exited_at": _iso(v.exited_at),
                "status": v.outcome,
                "iteration": v.iteration,
                "event_id": v.entered_id,
            }
            for v in self.spans
        ]


# ---------------------------------------------------------------------------- time travel


class ReplayFailed(Exception):
    """The history does not replay against its definition (a corrupt or foreign history)."""


def state_at(machine: StateMachine, events: Sequence[Event]) -> dict[str, JSON]:
    """The execution as it was right after the last of ``events`` (a prefix of its history,
    distributed Map children's events included): replayed by the engine, as a worker does.

    ``state`` is the path of the state the event belongs to (for StateEntered/Exited, the
    state entered or exited; for an execution-level event, null); ``input`` the state's
    effective input (after InputPath) while it is the frame's current state, its raw input
    once it has exited; ``output`` the last output recorded in the event's scope (a task
    result or a state's output) up to the event; ``variables`` the workflow variables seen
    at the top level and, for an event in a Parallel branch or Map iteration, in that frame
    (``scope``: null at the top level).
    """
    try:
        execution: Execution = replay(machine, events)
    except (StateMachineError, StatesFailure, KeyError, ValueError, TypeError) as exc:
        raise ReplayFailed(f"the history does not replay: {exc}") from None
    fold = HistoryFold(None)
    fold.fold(events)
    event = events[-1]
    frame = execution.frames.get(event.scope)
    root = execution.root
    visit = fold.current.get(event.scope)
    name: str | None = None
    if event.type.endswith(("StateEntered", "StateExited")):
        name = event.details.get("name")
    elif event.scope == "" and event.type.startswith("Execution"):
        name = None
    elif visit is not None:
        name = visit.name
    elif frame is not None and frame.entered_id:
        name = frame.state.name
    path = fold.prefix.get(event.scope, "") + name if name is not None else None
    state_input: JSON = None
    if frame is not None and name is not None and frame.state.name == name and frame.entered_id:
        try:
            state_input = dataflow.effective_input(execution, frame)
        except StatesFailure:
            state_input = frame.raw_input
    elif name is not None:
        entered_id = visit.entered_id if visit is not None and visit.name == name else None
        if entered_id is None:
            for earlier in reversed(events):
                if earlier.scope == event.scope and earlier.type.endswith("StateEntered"):
                    if earlier.details.get("name") == name:
                        entered_id = earlier.id
                        break
        if entered_id is not None:
            state_input = events[entered_id - 1].details.get("input")
    output: JSON = None
    for earlier in reversed(events):
        if earlier.scope == event.scope and "output" in earlier.details:
            output = earlier.details["output"]
            break
    top = dict(root.variables) if root is not None else {}
    scoped = dict(frame.variables) if frame is not None and event.scope != "" else None
    return {
        "event_id": event.id,
        "event_type": event.type,
        "state": path,
        "input": state_input,
        "output": output,
        "variables": {"top": top, "scope": scoped},
        "status": execution.status,
    }
