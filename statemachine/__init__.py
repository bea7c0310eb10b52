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
    NEVER,
    LocalResult,
    MockConfigError,
    MockTasks,
    TaskError,
    TaskRequest,
    redrive_local,
    run_local,
)
from statemachine.teststate import TestStateResult, test_state

__all__ = [
    "NEVER",
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
    "TestStateResult",
    "decide",
    "loads",
    "parse",
    "redrive_local",
    "replay",
    "run_local",
    "test_state",
]
