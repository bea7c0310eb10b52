"""Exceptions of the engine.

ASL failures (``States.TaskFailed``, custom ``Error`` names, ``States.Timeout``) are history
events, never exceptions leaving ``decide()``. Inside the engine a failing evaluation raises
``StatesFailure``; the interpreter turns it into events (Retry, Catch, or a failed execution).
"""

from __future__ import annotations


class StateMachineError(Exception):
    """Base class of the engine's exceptions."""


class DefinitionError(StateMachineError):
    """The definition is not a usable state machine."""

    def __init__(self, message: str, location: str = "/") -> None:
        super().__init__(f"{location}: {message}" if location else message)
        self.message = message
        self.location = location


class InvalidExecutionInput(StateMachineError):
    """The execution input cannot be accepted (too large, or not representable as JSON)."""


class HistoryError(StateMachineError):
    """The history does not fit the definition (a bug, like Temporal's nondeterminism error)."""


class StatesFailure(Exception):
    """An ASL error raised while evaluating a state: ``error`` and ``cause`` as AWS reports them."""

    def __init__(self, error: str, cause: str | None = None) -> None:
        super().__init__(f"{error}: {cause}")
        self.error = error
        self.cause = cause


class IntrinsicError(StatesFailure):
    """An intrinsic function failed (AWS reports it as States.Runtime with this cause)."""

    def __init__(self, cause: str) -> None:
        super().__init__("States.Runtime", cause)
