"""Static validation: a corpus of invalid definitions, the AWS-recorded valid ones, and fuzzing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from statemachine.local import TaskRequest, run_local
from statemachine.schema import json_schema
from statemachine.validate import STATE_TYPES, Diagnostic, result, validate

INVALID = Path(__file__).parent / "invalid"
CONFORMANCE = Path(__file__).resolve().parents[3] / "shared" / "conformance" / "cases"
SAMPLES = Path(__file__).resolve().parents[2] / "definitions"

INVALID_CASES = sorted(INVALID.glob("*.json"))
CONFORMANCE_CASES = (
    sorted(p for p in CONFORMANCE.rglob("*.json") if p.name != "_manifest.json")
    if CONFORMANCE.is_dir()
    else []
)


def _run(definition: Any) -> list[Diagnostic]:
    """Validate a corpus definition: JSON text as is, anything else as a decoded document."""
    if isinstance(definition, str | dict):
        return validate(definition)
    return validate(json.dumps(definition))


def _errors(diagnostics: list[Diagnostic]) -> set[tuple[str, str]]:
    return {(d.code, d.location) for d in diagnostics if d.severity == "ERROR"}


def test_invalid_corpus_is_large_enough() -> None:
    assert len(INVALID_CASES) >= 80


@pytest.mark.parametrize("path", INVALID_CASES, ids=lambda p: p.stem)
def test_invalid_definition(path: Path) -> None:
    case = json.loads(path.read_text())
    diagnostics = _run(case["definition"])
    found = {(d.severity, d.code, d.location) for d in diagnostics}
    expected = {(e["severity"], e["code"], e["location"]) for e in case["expected"]}
    assert expected <= found, f"{case['description']}: missing {expected - found}"
    unexpected = _errors(diagnostics) - {(code, at) for sev, code, at in expected if sev == "ERROR"}
    assert not unexpected, f"{case['description']}: unexpected errors {unexpected}"
    assert result(diagnostics) == ("FAIL" if any(s == "ERROR" for s, _, _ in expected) else "OK")


@pytest.mark.skipif(not CONFORMANCE_CASES, reason="conformance corpus not found")
@pytest.mark.parametrize(
    "path", CONFORMANCE_CASES, ids=lambda p: str(p.relative_to(CONFORMANCE).with_suffix(""))
)
def test_conformance_definition_has_no_error(path: Path) -> None:
    definition = json.loads(path.read_text())["definition"]
    diagnostics = validate(definition)
    assert result(diagnostics) == "OK", [d for d in diagnostics if d.severity == "ERROR"]
    # The same verdict from JSON text and from UTF-8 bytes.
    assert validate(json.dumps(definition)) == diagnostics
    assert validate(json.dumps(definition).encode()) == diagnostics
    # And the engine runs it without raising, whatever the tasks answer.
    _run_clean(definition)


@pytest.mark.parametrize(
    "definition",
    ["[]", "3", "null", "true", '"text"', '[{"StartAt": "A"}]'],
)
def test_non_object_json_is_a_schema_failure(definition: str) -> None:
    diagnostics = validate(definition)
    assert [(d.code, d.location) for d in diagnostics] == [("SCHEMA_VALIDATION_FAILED", "/")]


@pytest.mark.parametrize(
    "definition",
    [
        b"\xff\xfe{}",
        b'{"StartAt": "\xc3"}',
        "{",
        "{'StartAt': 'A'}",
        "nope",
        '{"a": 1} 2',
        "\ufeff{}",
    ],
)
def test_malformed_text_is_invalid_json(definition: str | bytes) -> None:
    diagnostics = validate(definition)
    assert [(d.code, d.location) for d in diagnostics] == [("INVALID_JSON_DESCRIPTION", "/")]


def test_malformed_json_message_has_line_and_column() -> None:
    (diagnostic,) = validate('{\n  "StartAt": "A",\n  "States": {,}\n}')
    assert "line 3 column 14" in diagnostic.message


def test_non_json_objects_are_refused() -> None:
    assert [d.code for d in validate({"StartAt": object()})] == ["SCHEMA_VALIDATION_FAILED"]
    assert [d.code for d in validate({"StartAt": float("nan")})] == ["SCHEMA_VALIDATION_FAILED"]


def test_definition_over_one_mebibyte() -> None:
    big = {"StartAt": "A", "States": {"A": {"Type": "Pass", "Result": "x" * 1_048_576}}}
    big["States"]["A"]["End"] = True
    for form in (big, json.dumps(big), json.dumps(big).encode()):
        assert [(d.code, d.location) for d in validate(form)] == [("DEFINITION_TOO_LARGE", "/")]


def test_deep_nesting_does_not_raise() -> None:
    deep: Any = 1
    for _ in range(5000):
        deep = [deep]
    assert [d.code for d in validate({"StartAt": "A", "States": {"A": deep}})] == [
        "TOO_DEEPLY_NESTED"
    ]
    text = '{"StartAt": "A", "States": ' + "[" * 100_000 + "]" * 100_000 + "}"
    assert [d.code for d in validate(text)] == ["TOO_DEEPLY_NESTED"]


def test_messages_and_locations_are_filled_in() -> None:
    diagnostics = validate({"StartAt": "B", "States": {"A": {"Type": "Pass"}}})
    assert diagnostics
    for d in diagnostics:
        assert d.severity in ("ERROR", "WARNING")
        assert d.code.isupper()
        assert d.message
        assert d.location.startswith("/")


def test_result_helper() -> None:
    assert result([]) == "OK"
    assert result([Diagnostic("WARNING", "NO_DOLLAR", "m", "/")]) == "OK"
    assert result([Diagnostic("ERROR", "MISSING_END_STATE", "m", "/States")]) == "FAIL"


def test_two_thousand_states_validate() -> None:
    states: dict[str, Any] = {}
    for i in range(2000):
        nxt = f"S{i + 1}" if i < 1999 else None
        state: dict[str, Any] = {"Type": "Pass", "Parameters": {"i": i, "x.$": "$.x"}}
        if i % 10 == 5:
            state = {
                "Type": "Choice",
                "Choices": [{"Variable": "$.x", "NumericGreaterThan": i, "Next": nxt}],
                "Default": nxt,
            }
        elif nxt:
            state["Next"] = nxt
        else:
            state["End"] = True
        states[f"S{i}"] = state
    definition = json.dumps({"StartAt": "S0", "States": states})
    # Its speed is measured by bench/validate.py, beside a baseline, not asserted here.
    assert result(validate(definition)) == "OK"


def test_json_schema_covers_every_state_type() -> None:
    schema = json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    json.dumps(schema)  # plain JSON, ready to serve to an editor
    for kind in STATE_TYPES:
        state = schema["$defs"][f"{kind}State"]
        assert state["properties"]["Type"] == {"const": kind}
    assert "Arguments" in schema["$defs"]["TaskState"]["properties"]
    assert "InputPath" in schema["$defs"]["TaskState"]["properties"]


# --- Property: mutated valid definitions never make validate() raise --------------------------


def _seeds() -> list[Any]:
    seeds: list[Any] = []
    for path in CONFORMANCE_CASES[::10]:
        seeds.append(json.loads(path.read_text())["definition"])
    for path in sorted(SAMPLES.glob("*.json")) if SAMPLES.is_dir() else []:
        document = json.loads(path.read_text())
        if isinstance(document, dict) and "States" in document:
            seeds.append(document)
    seeds.append(
        {
            "StartAt": "A",
            "States": {
                "A": {
                    "Type": "Choice",
                    "Choices": [
                        {"And": [{"Variable": "$.a", "IsNull": False}], "Next": "B"},
                        {"Not": {"Variable": "$$.x", "StringEquals": "y"}, "Next": "C"},
                    ],
                    "Default": "C",
                },
                "B": {
                    "Type": "Task",
                    "Resource": "arn:aws:states:::lambda:invoke",
                    "Parameters": {"p.$": "States.Format('{}', $.a)"},
                    "Retry": [{"ErrorEquals": ["States.ALL"], "MaxAttempts": 2}],
                    "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "C"}],
                    "Next": "C",
                },
                "C": {
                    "Type": "Map",
                    "ItemProcessor": {"StartAt": "D", "States": {"D": {"Type": "Succeed"}}},
                    "End": True,
                },
            },
        }
    )
    return seeds


SEEDS = _seeds()
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(
        ["$", "$.a", "$$.x", "$v", "$.a[*]", "States.UUID()", "States.Format(", "{%", "{% %}"]
    ),
    st.sampled_from(["{% $x %}", "Pass", "Task", "Choice", "Map", "End", "Next", "States.ALL"]),
    st.text(max_size=12),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)


def _containers(value: Any) -> list[Any]:
    found = []
    pending = [value]
    while pending:
        current = pending.pop()
        if isinstance(current, dict | list):
            found.append(current)
            pending.extend(current.values() if isinstance(current, dict) else current)
    return found


@st.composite
def mutated(draw: st.DrawFn) -> Any:
    document = json.loads(json.dumps(draw(st.sampled_from(SEEDS))))
    for _ in range(draw(st.integers(1, 6))):
        containers = _containers(document)
        target = draw(st.sampled_from(containers))
        action = draw(st.sampled_from(["delete", "replace", "insert", "rename", "retype"]))
        keys = list(target) if isinstance(target, dict) else list(range(len(target)))
        if action == "insert" or not keys:
            key = draw(
                st.sampled_from(["Next", "End", "Type", "Retry", "Catch", "ResultPath", "x.$"])
                | st.text(max_size=6)
            )
            if isinstance(target, dict):
                target[key] = draw(VALUES)
            else:
                target.append(draw(VALUES))
            continue
        key = draw(st.sampled_from(keys))
        if action == "delete":
            del target[key]
        elif action == "replace":
            target[key] = draw(VALUES)
        elif action == "rename" and isinstance(target, dict):
            target[draw(st.text(max_size=8))] = target.pop(key)
        else:
            value = target[key]
            target[key] = [value] if not isinstance(value, list) else {"k": value}
    return document


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_definitions_never_raise(document: Any) -> None:
    for form in (document, json.dumps(document)):
        diagnostics = validate(form)
        assert all(isinstance(d, Diagnostic) for d in diagnostics)
        assert all(d.severity in ("ERROR", "WARNING") for d in diagnostics)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64) | st.text(max_size=64).map(str.encode))
def test_garbage_bytes_never_raise(data: bytes) -> None:
    diagnostics = validate(data)
    assert all(isinstance(d, Diagnostic) for d in diagnostics)
    assert diagnostics


@settings(max_examples=200, deadline=None)
@given(VALUES)
def test_any_json_value_never_raises(value: Any) -> None:
    diagnostics = validate(json.dumps(value))
    assert all(isinstance(d, Diagnostic) for d in diagnostics)
    assert result(diagnostics) == "FAIL"


def _any_task(request: TaskRequest) -> Any:
    return {"echo": request.parameters, "attempt": request.attempt}


def _run_clean(document: Any) -> None:
    """A definition without ERRORs runs to an end; failures are ASL errors, never exceptions."""
    outcome = run_local(document, {"x": 1, "items": [1, 2]}, tasks=_any_task, max_events=400)
    assert outcome.status in ("SUCCEEDED", "FAILED", "TIMED_OUT")
    if outcome.status != "SUCCEEDED":
        assert outcome.error is None or isinstance(outcome.error, str)
        assert outcome.events[-1].type in ("ExecutionFailed", "ExecutionTimedOut")


@pytest.mark.parametrize("seed", range(len(SEEDS)))
def test_valid_seed_definitions_run_without_exceptions(seed: int) -> None:
    document = SEEDS[seed]
    assert result(validate(document)) == "OK"
    _run_clean(document)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_definitions_that_validate_never_make_the_engine_raise(document: Any) -> None:
    if result(validate(document)) == "OK":
        _run_clean(document)
