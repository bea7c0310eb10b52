"""Choice rules (States Language spec, "Choice Rules"). Placeholder: being written."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from statemachine.payload import Scope


def evaluate_rule(rule: Mapping[str, Any], scope: Scope) -> bool:
    """Whether a Choice rule (with Variable + operator, or And/Or/Not) matches."""
    raise NotImplementedError
