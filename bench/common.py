"""Helpers the benchmark scripts share (run them as ``python bench/<name>.py``)."""

from __future__ import annotations

import statistics
from typing import Any

JSON = Any


def say(text: str = "") -> None:
    """Print at once (benchmarks run for minutes)."""
    print(text, flush=True)


def verdict(ok: bool) -> str:
    """How a goal is reported: honestly."""
    return "MET" if ok else "NOT MET"


def median(values: list[float]) -> float:
    """The median, or NaN for no values."""
    return statistics.median(values) if values else float("nan")


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def pass_chain(length: int) -> dict[str, JSON]:
    """``length`` Pass states, each with a path and an intrinsic."""
    states: dict[str, JSON] = {}
    for i in range(1, length + 1):
        state: dict[str, JSON] = {
            "Type": "Pass",
            "Parameters": {
                "step": i,
                "prev.$": "$.last.step",
                "n.$": "States.MathAdd($.last.n, 1)",
            },
            "ResultPath": "$.last",
        }
        state.update({"Next": f"Step{i + 1}"} if i < length else {"End": True})
        states[f"Step{i}"] = state
    return {"StartAt": "Step1", "States": states}
