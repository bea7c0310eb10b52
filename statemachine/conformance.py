"""The in-process entry point of the conformance runner (../shared/conformance, ``--python``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from statemachine.local import run_local

JSON = Any


def run_case(
    definition: Mapping[str, JSON],
    input: JSON,
    mock_config: Mapping[str, JSON] | None,
    test_case: str | None,
    name: str | None,
) -> dict[str, JSON]:
    """Run one conformance case and return the runner's result shape."""
    result = run_local(
        definition,
        input,
        mock_config=mock_config or None,
        test_case=test_case or None,
        state_machine_name=name or "StateMachine",
    )
    return result.to_json()
