"""Intrinsic functions (States Language spec, "Intrinsic Functions"). Placeholder: being written."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from statemachine.payload import Scope


def evaluate(expression: str, scope: Scope) -> Any:
    """Evaluate an intrinsic function call such as ``States.Format('{}', $.a)``."""
    raise NotImplementedError(expression)
