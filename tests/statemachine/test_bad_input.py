"""Malformed and hostile definitions and inputs: a DefinitionError with a location, or a correct
result, never a traceback, a RecursionError or a hang."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from statemachine import DefinitionError, InvalidExecutionInput, loads, run_local

START = datetime(2024, 1, 1, tzinfo=UTC)
PASS = {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}


def definition_error(document: Any) -> DefinitionError:
    """loads() of ``document``: JSON text (str/bytes) as is, anything else serialised."""
    with pytest.raises(DefinitionError) as info:
        loads(document if isinstance(document, str | bytes) else json.dumps(document))
    return info.value


@pytest.mark.parametrize("text", ["{", '{"StartAt": }', "", "nope", '{"a": 1} trailing'])
def test_malformed_json(text: str) -> None:
    error = definition_error(text)
    assert "The definition is not valid JSON" in error.message
    assert "line 1 column" in error.message


@pytest.mark.parametrize("document", [[PASS], "a string", 3, None, True])
def test_definition_not_an_object(document: Any) -> None:
    error = definition_error(json.dumps(document))
    assert error.message == "A state machine must be a JSON object"
    assert error.location == "/"


def test_definition_over_one_mebibyte() -> None:
    big = {**PASS, "Comment": "x" * 2_000_000}
    text = json.dumps(big)
    assert "larger than 1048576 bytes" in definition_error(text).message
    assert "the limit is 1048576" in definition_error(text.encode()).message


def test_invalid_utf8() -> None:
    error = definition_error(b'{"StartAt": "\xff\xfe"}')
    assert error.message == "The definition is not valid UTF-8 (byte 13)"


def test_definition_nested_10000_deep() -> None:
    text = (
        '{"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true, "Result": '
        + "[" * 10_000
        + "]" * 10_000
        + "}}}"
    )
    began = time.monotonic()
    try:
        machine = loads(text)
    except DefinitionError as error:
        assert "nested too deeply" in error.message
    else:
        assert machine.start_at == "P"
    assert time.monotonic() - began < 10


def test_input_nested_10000_deep_is_refused_at_start() -> None:
    data: Any = 0
    for _ in range(10_000):
        data = {"a": data}
    began = time.monotonic()
    with pytest.raises(InvalidExecutionInput, match="nested too deeply"):
        run_local(PASS, data, clock=lambda: START)
    assert time.monotonic() - began < 10


@pytest.mark.slow
def test_map_over_100000_items() -> None:
    definition = {
        "StartAt": "M",
        "States": {
            "M": {
                "Type": "Map",
                "ItemsPath": "$.items",
                "ItemProcessor": {"StartAt": "I", "States": {"I": {"Type": "Pass", "End": True}}},
                "End": True,
            }
        },
    }
    began = time.monotonic()
    # [0, 0, ...] keeps the input under the 256 KiB payload limit (list(range(...)) does not).
    result = run_local(definition, {"items": [0] * 100_000}, clock=lambda: START)
    assert time.monotonic() - began < 60
    # 100,000 iterations cannot fit AWS's 25,000-event history; the execution fails cleanly.
    assert result.status == "FAILED"
    assert result.error == "States.Runtime"
    assert "maximum number of history events (25000)" in (result.cause or "")
    assert len(result.events) == 25_000


@pytest.mark.parametrize(
    ("document", "message", "location"),
    [
        (
            {"StartAt": "P", "States": {"P": {"Type": "Bogus", "End": True}}},
            "Type must be one of Pass, Task, Choice, Wait, Succeed, Fail, Parallel, Map",
            "/States/P/Type",
        ),
        (
            {"States": {"P": {"Type": "Pass", "End": True}}},
            "StartAt is required and must be a string",
            "/StartAt",
        ),
        (
            {"StartAt": "P", "States": {"P": {"Type": "Pass", "Next": "Nowhere"}}},
            "Missing transition target 'Nowhere'",
            "/States/P/Next",
        ),
        (
            {
                "StartAt": "P",
                "States": {
                    "P": {
                        "Type": "Parallel",
                        "Branches": [
                            {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}
                        ],
                        "End": True,
                    }
                },
            },
            "State name 'P' is used more than once",
            "/States/P/Branches/0/States/P",
        ),
        (
            {"StartAt": "Q", "States": {"P": {"Type": "Pass", "End": True}}},
            "StartAt 'Q' is not a state of this machine",
            "/StartAt",
        ),
    ],
    ids=[
        "unknown-type",
        "missing-start-at",
        "missing-next-target",
        "duplicate-name",
        "start-at-unknown",
    ],
)
def test_definition_errors_have_a_location(document: Any, message: str, location: str) -> None:
    error = definition_error(document)
    assert error.message == message
    assert error.location == location
    assert str(error) == f"{location}: {message}"


def test_input_over_256_kib_is_refused_at_start() -> None:
    with pytest.raises(InvalidExecutionInput, match="limit is 262144 bytes"):
        run_local(PASS, {"items": list(range(100_000))}, clock=lambda: START)


def test_nan_in_a_task_result_fails_the_task_cleanly() -> None:
    definition = {
        "StartAt": "T",
        "States": {"T": {"Type": "Task", "Resource": "arn:aws:states:::http:invoke", "End": True}},
    }
    result = run_local(
        definition, {}, tasks=lambda request: {"x": float("nan")}, clock=lambda: START
    )
    assert result.status == "FAILED"
    assert result.error == "States.Runtime"
    assert "not valid JSON" in (result.cause or "")


@pytest.mark.parametrize(
    ("text", "code", "location"),
    [
        ('{"StartAt": "P\\ud800", "States": {}}', "U+D800", "/StartAt"),
        (
            '{"StartAt": "P", "States": {"P": {"Type": "Pass"}, "Q\\udfff": {"Type": "Pass"}}}',
            "U+DFFF",
            "/States/Q\\udfff",
        ),
        (
            '{"StartAt": "P", "States": {"P": {"Type": "Pass", "Result": [[1], {"a": "\\ud83d"}]}}}',
            "U+D83D",
            "/States/P/Result/1/a",
        ),
        ('"\\ud800"', "U+D800", "/"),
    ],
    ids=["value", "key", "nested", "whole-document"],
)
def test_lone_surrogate_is_named_with_its_location(text: str, code: str, location: str) -> None:
    error = definition_error(text)
    assert error.message == (
        f"The definition contains a lone surrogate ({code}), which is not Unicode text"
    )
    assert error.location == location
