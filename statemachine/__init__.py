"""Statewright's ASL engine: a pure, event-sourced interpreter of Amazon States Language.

No I/O, no database, no network, no wall clock: time, randomness and task results come in
through the incoming events and the injected providers, so replay is deterministic.
"""

from __future__ import annotations

from statemachine.definition import State, StateMachine, loads, parse
from statemachine.errors import (
    DefinitionError,
    HistoryError,
    InvalidExecutionInput,
    StateMachineError,
    StatesFailure,
)
from statemachine.events import Command, Decision, Event, Incoming
from statemachine.interpreter import Execution, decide, replay
from statemachine.local import (
    LocalResult,
    MockConfigError,
    MockTasks,
    TaskError,
    TaskRequest,
    run_local,
)

__all__ = [
    "Command",
    "Decision",
    "DefinitionError",
    "Event",
    "Execution",
    "HistoryError",
    "Incoming",
    "InvalidExecutionInput",
    "LocalResult",
    "MockConfigError",
    "MockTasks",
    "State",
    "StateMachine",
    "StateMachineError",
    "StatesFailure",
    "TaskError",
    "TaskRequest",
    "decide",
    "loads",
    "parse",
    "replay",
    "run_local",
]
