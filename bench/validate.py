"""Static validation time of a 2,000-state definition, beside json.loads of the same text.

Run from the repository root:

    python bench/validate.py [--states N] [--repeat N]

The definition mixes Pass (Parameters with paths and intrinsics), Task (Retry, Catch), Choice
(nested And/Not rules), Wait, and Map and Parallel states with inner machines; every state is
reachable and the definition is valid. The figures are medians of ``--repeat`` timed runs;
the baseline, ``json.loads`` of the same text, is measured in the same run so that the ratio
stays meaningful on a shared, noisy machine. The target is validate() < 0.5 s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from statemachine.validate import result, validate

TARGET_SECONDS = 0.5


def _state(i: int, count: int) -> dict[str, Any]:
    nxt = f"S{i + 1}"
    kind = i % 8
    if kind == 0:
        return {
            "Type": "Pass",
            "Parameters": {"i": i, "x.$": "$.x", "f.$": "States.Format('n{}', $.x)"},
            "ResultPath": "$.p",
            "Next": nxt,
        }
    if kind == 1:
        return {
            "Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {"FunctionName": "f", "Payload.$": "$"},
            "TimeoutSeconds": 30,
            "HeartbeatSeconds": 10,
            "Retry": [
                {"ErrorEquals": ["States.Timeout"], "MaxAttempts": 2},
                {"ErrorEquals": ["States.ALL"], "BackoffRate": 1.5},
            ],
            "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": nxt}],
            "Next": nxt,
        }
    if kind == 2:
        return {
            "Type": "Choice",
            "Choices": [
                {
                    "And": [
                        {"Variable": "$.x", "NumericGreaterThan": i},
                        {"Not": {"Variable": "$.s", "StringEquals": "stop"}},
                    ],
                    "Next": nxt,
                },
                {"Variable": "$.t", "TimestampLessThan": "2024-01-01T00:00:00Z", "Next": nxt},
            ],
            "Default": nxt,
        }
    if kind == 3:
        return {"Type": "Wait", "Seconds": 1, "Next": nxt}
    if kind == 4:
        return {
            "Type": "Map",
            "ItemsPath": "$.items",
            "MaxConcurrency": 5,
            "ItemProcessor": {
                "StartAt": f"M{i}a",
                "States": {
                    f"M{i}a": {"Type": "Pass", "Parameters": {"v.$": "$"}, "Next": f"M{i}b"},
                    f"M{i}b": {"Type": "Succeed"},
                },
            },
            "ResultPath": "$.mapped",
            "Next": nxt,
        }
    if kind == 5:
        return {
            "Type": "Parallel",
            "Branches": [
                {"StartAt": f"P{i}a", "States": {f"P{i}a": {"Type": "Pass", "End": True}}},
                {
                    "StartAt": f"P{i}b",
                    "States": {f"P{i}b": {"Type": "Wait", "Seconds": 1, "End": True}},
                },
            ],
            "ResultSelector": {"first.$": "$[0]"},
            "Next": nxt,
        }
    return {"Type": "Pass", "Assign": {f"v{i}.$": "$.x"}, "Next": nxt}


def build(count: int) -> str:
    """A valid definition with ``count`` top-level states (nested states come on top)."""
    states = {f"S{i}": _state(i, count) for i in range(count - 1)}
    states[f"S{count - 1}"] = {"Type": "Pass", "Parameters": {"vars.$": "$v6"}, "End": True}
    return json.dumps({"Comment": "bench", "StartAt": "S0", "States": states})


def _median(fn: Any, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--states", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    text = build(args.states)
    diagnostics = validate(text)  # warm-up (path and intrinsic caches), and a sanity check
    errors = [d for d in diagnostics if d.severity == "ERROR"]
    if errors:
        raise SystemExit(f"the benchmark definition is invalid: {errors[:3]}")
    baseline = _median(lambda: json.loads(text), args.repeat)
    measured = _median(lambda: validate(text), args.repeat)
    print(f"definition: {args.states} states, {len(text):,} bytes, result {result(diagnostics)}")
    print(f"json.loads (baseline): {baseline * 1000:8.1f} ms")
    print(
        f"validate():            {measured * 1000:8.1f} ms  ({measured / baseline:.1f}x baseline)"
    )
    verdict = "OK" if measured < TARGET_SECONDS else "TOO SLOW"
    print(f"target < {TARGET_SECONDS} s: {verdict}")


if __name__ == "__main__":
    main()
