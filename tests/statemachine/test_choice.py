"""Choice rule evaluation, checked against tables and the conformance corpus recorded on AWS."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from statemachine.choice import OPERATORS, choose, evaluate_rule, parse_timestamp
from statemachine.errors import DefinitionError, StatesFailure
from statemachine.payload import Scope

CASES = Path(__file__).resolve().parents[3] / "shared" / "conformance" / "cases"

T1 = "2012-10-09T19:00:55Z"
T2 = "2012-10-09T19:00:56Z"


def scope(data: Any, context: Any = None, variables: dict[str, Any] | None = None) -> Scope:
    return Scope(data, context or {}, variables or {}, random.Random(0))


def check(operator: str, value: Any, operand: Any) -> bool:
    return evaluate_rule({"Variable": "$.v", operator: operand}, scope({"v": value}))


# (operator, Variable value, operand, expected): true, false and type-mismatch rows.
COMPARISONS: list[tuple[str, Any, Any, bool]] = [
    ("StringEquals", "Hello", "Hello", True),
    ("StringEquals", "\t\n", "\t\r\n", False),
    ("StringEquals", " ", "     ", False),
    ("StringEquals", 1, "1", False),
    ("StringEquals", None, "null", False),
    ("StringLessThan", "A", "AB", True),
    ("StringLessThan", "", "", False),
    ("StringLessThan", "B", "AB", False),
    ("StringLessThan", 1, "2", False),
    ("StringGreaterThan", "AB", "A", True),
    ("StringGreaterThan", "A", "A ", False),
    ("StringGreaterThan", "a", "B", True),
    ("StringGreaterThan", ["b"], "a", False),
    ("StringLessThanEquals", "", "", True),
    ("StringLessThanEquals", "AB", "A", False),
    ("StringLessThanEquals", True, "true", False),
    ("StringGreaterThanEquals", "AB", "A", True),
    ("StringGreaterThanEquals", "A", "AB", False),
    ("StringGreaterThanEquals", {}, "", False),
    # Java compares UTF-16 code units: U+1F600 (surrogates D83D DE00) sorts before U+FFFD.
    ("StringLessThan", "\U0001f600", "\ufffd", True),
    ("StringGreaterThan", "\U0001f600", "\ufffd", False),
    ("NumericEquals", 1, 1.0, True),
    ("NumericEquals", 2.22, 2.22, True),
    ("NumericEquals", 1.1, 1, False),
    ("NumericEquals", "1", 1, False),
    ("NumericEquals", True, 1, False),
    ("NumericEquals", False, 0, False),
    ("NumericEquals", None, 0, False),
    ("NumericEquals", [1], 1, False),
    ("NumericEquals", 1, True, False),
    ("NumericEquals", 10**20, 10**20, True),
    ("NumericLessThan", 0, 1, True),
    ("NumericLessThan", 1, 1.0, False),
    ("NumericLessThan", -0.5, 0, True),
    ("NumericLessThan", "0", 1, False),
    ("NumericGreaterThan", 1, 0, True),
    ("NumericGreaterThan", 0.0, 0, False),
    ("NumericGreaterThan", True, 0, False),
    ("NumericLessThanEquals", 1, 1.0, True),
    ("NumericLessThanEquals", 1, 0, False),
    ("NumericLessThanEquals", {}, 1, False),
    ("NumericGreaterThanEquals", 22, 20, True),
    ("NumericGreaterThanEquals", 1.5, 2, False),
    ("NumericGreaterThanEquals", "3", 2, False),
    ("BooleanEquals", True, True, True),
    ("BooleanEquals", False, False, True),
    ("BooleanEquals", False, True, False),
    ("BooleanEquals", 1, True, False),
    ("BooleanEquals", 0, False, False),
    ("BooleanEquals", "true", True, False),
    ("TimestampEquals", T1, T1, True),
    ("TimestampEquals", "2012-10-09T20:00:55+01:00", T1, True),
    ("TimestampEquals", "2012-10-09T19:00:55.000Z", T1, True),
    ("TimestampEquals", T2, T1, False),
    ("TimestampEquals", "2023-02-24 12:15:56.832957", T1, False),
    ("TimestampEquals", "", T1, False),
    ("TimestampEquals", 0, T1, False),
    ("TimestampEquals", T1, "not a timestamp", False),
    ("TimestampLessThan", T1, T2, True),
    ("TimestampLessThan", T1, T1, False),
    ("TimestampLessThan", "2012-10-09T19:00:55.5Z", "2012-10-09T19:00:55.500000001Z", True),
    ("TimestampLessThan", None, T2, False),
    ("TimestampGreaterThan", T2, T1, True),
    ("TimestampGreaterThan", T1, T2, False),
    ("TimestampGreaterThan", "2012-10-09T19:00:55-00:01", T1, True),
    ("TimestampGreaterThan", [T2], T1, False),
    ("TimestampLessThanEquals", T1, T1, True),
    ("TimestampLessThanEquals", T2, T1, False),
    ("TimestampLessThanEquals", "2012-10-09", T2, False),
    ("TimestampGreaterThanEquals", T2, T1, True),
    ("TimestampGreaterThanEquals", T1, T2, False),
    ("TimestampGreaterThanEquals", True, T1, False),
]

TYPE_TESTS: list[tuple[str, Any, bool]] = [  # (operator, value, IsX true matches?)
    ("IsNull", None, True),
    ("IsNull", 0, False),
    ("IsNull", "", False),
    ("IsNull", [], False),
    ("IsNumeric", 0, True),
    ("IsNumeric", 1.1, True),
    ("IsNumeric", True, False),
    ("IsNumeric", "1", False),
    ("IsNumeric", None, False),
    ("IsString", "", True),
    ("IsString", "2023-02-24", True),
    ("IsString", 0, False),
    ("IsString", [""], False),
    ("IsBoolean", True, True),
    ("IsBoolean", False, True),
    ("IsBoolean", 0, False),
    ("IsBoolean", "true", False),
    ("IsTimestamp", T1, True),
    ("IsTimestamp", "2012-10-09T19:00:55+01:00", True),
    ("IsTimestamp", "2012-10-09T19:00:55", False),
    ("IsTimestamp", "2023-02-24", False),
    ("IsTimestamp", 1349809255, False),
    ("IsPresent", None, True),
    ("IsPresent", False, True),
]


@pytest.mark.parametrize(("operator", "value", "operand", "expected"), COMPARISONS)
def test_comparison(operator: str, value: Any, operand: Any, expected: bool) -> None:
    assert check(operator, value, operand) is expected


@pytest.mark.parametrize(("operator", "value", "operand", "expected"), COMPARISONS)
def test_comparison_path_variant(operator: str, value: Any, operand: Any, expected: bool) -> None:
    rule = {"Variable": "$.v", operator + "Path": "$.other"}
    assert evaluate_rule(rule, scope({"v": value, "other": operand})) is expected


@pytest.mark.parametrize(("operator", "value", "expected"), TYPE_TESTS)
def test_type_tests(operator: str, value: Any, expected: bool) -> None:
    assert check(operator, value, True) is expected
    assert check(operator, value, False) is not expected


def test_every_operator_is_covered() -> None:
    covered = {row[0] for row in COMPARISONS} | {row[0] for row in TYPE_TESTS} | {"StringMatches"}
    assert covered == set(OPERATORS)


@pytest.mark.parametrize("operator", sorted(set(OPERATORS) - {"IsPresent"}))
def test_missing_variable_is_a_runtime_error(operator: str) -> None:
    with pytest.raises(StatesFailure) as info:
        evaluate_rule({"Variable": "$.x", operator: True}, scope({"v": 1}))
    assert info.value.error == "States.Runtime"
    assert info.value.cause == "Invalid path '$.x' : No results for path: $['x']"


def test_missing_variable_deeper_names_the_first_missing_step() -> None:
    with pytest.raises(StatesFailure) as info:
        evaluate_rule({"Variable": "$.a.b", "IsNull": True}, scope({}))
    assert info.value.cause == "Invalid path '$.a.b' : Missing property in path $['a']"


@pytest.mark.parametrize(
    "operator", ["StringEqualsPath", "NumericLessThanPath", "BooleanEqualsPath"]
)
def test_missing_comparison_path_is_a_runtime_error(operator: str) -> None:
    with pytest.raises(StatesFailure) as info:
        evaluate_rule({"Variable": "$.v", operator: "$.nope"}, scope({"v": 1}))
    assert info.value.error == "States.Runtime"
    assert info.value.cause == "Invalid path '$.nope' : No results for path: $['nope']"


@pytest.mark.parametrize(
    ("variable", "data", "variables", "expected"),
    [
        ("$.x", {"x": None}, {}, True),
        ("$.x", {}, {}, False),
        ("$.a.b", {"a": 1}, {}, False),
        ("$", {}, {}, True),
        ("$.items[*].id", {"items": [{"n": 1}]}, {}, False),
        ("$.items[*].id", {"items": [{"id": 1}]}, {}, True),
        ("$$.Execution.Id", {}, {}, True),
        ("$$.Execution.Nope", {}, {}, False),
        ("$counter", {}, {"counter": 0}, True),
        ("$undefined", {}, {}, False),
    ],
)
def test_is_present(variable: str, data: Any, variables: dict[str, Any], expected: bool) -> None:
    context = {"Execution": {"Id": "arn:exec"}}
    rule = {"Variable": variable, "IsPresent": True}
    assert evaluate_rule(rule, scope(data, context, variables)) is expected
    assert (
        evaluate_rule({**rule, "IsPresent": False}, scope(data, context, variables)) is not expected
    )


def test_context_and_variable_paths() -> None:
    s = scope({"n": 3}, {"Execution": {"Name": "run-1"}}, {"limit": {"max": 3}, "who": "ann"})
    assert evaluate_rule({"Variable": "$$.Execution.Name", "StringMatches": "run-*"}, s)
    assert evaluate_rule({"Variable": "$limit.max", "NumericEqualsPath": "$.n"}, s)
    assert evaluate_rule({"Variable": "$.n", "NumericEqualsPath": "$limit.max"}, s)
    assert evaluate_rule({"Variable": "$who", "StringEquals": "ann"}, s)
    with pytest.raises(StatesFailure, match="Variable 'nobody' is not defined"):
        evaluate_rule({"Variable": "$nobody", "StringEquals": "x"}, s)


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("log-*.txt", "log-2024.txt", True),
        ("log-*.txt", "log-.txt", True),
        ("log-*.txt", "log-1.txt.bak", False),
        ("*", "", True),
        ("*", "any\nthing", True),
        ("a*b*c", "aXXbYYc", True),
        ("a*b*c", "acb", False),
        ("Hello", "hello", False),
        ("a.c", "abc", False),  # only * is special, not regex characters
        ("[ab]+", "[ab]+", True),
        ("a\\*", "a*", True),  # \* is a literal star
        ("a\\*", "abc", False),
        ("a\\\\*", "a\\xyz", True),  # \\ is a literal backslash, then a wildcard
        ("a\\\\*", "axyz", False),
        ("a\\b", "a\\b", True),  # any other backslash stands for itself
        ("", "", True),
        ("*", 5, False),
        ("*", None, False),
    ],
)
def test_string_matches(pattern: str, value: Any, expected: bool) -> None:
    assert check("StringMatches", value, pattern) is expected


def test_string_matches_has_no_path_variant() -> None:
    with pytest.raises(DefinitionError):
        evaluate_rule({"Variable": "$.v", "StringMatchesPath": "$.p"}, scope({"v": "", "p": "*"}))


@pytest.mark.parametrize(
    ("text", "valid"),
    [
        ("2012-10-09T19:00:55Z", True),
        ("2012-10-09T19:00:55.1Z", True),
        ("2012-10-09T19:00:55.123456789Z", True),
        ("2012-10-09T19:00:55+01:00", True),
        ("2012-10-09T19:00:55-05:30", True),
        ("2012-10-09T19:00:55.25-00:00", True),
        ("2016-02-29T00:00:00Z", True),
        ("2012-10-09t19:00:55Z", False),  # uppercase T required
        ("2012-10-09T19:00:55z", False),  # uppercase Z required
        ("2012-10-09 19:00:55Z", False),
        ("2012-10-09T19:00:55", False),  # an offset is required
        ("2012-10-09T19:00Z", False),  # seconds are required
        ("2012-10-09", False),
        ("2012-10-09T19:00:55.Z", False),
        ("2012-10-09T19:00:55.1234567890Z", False),
        ("2012-10-09T19:00:55+0100", False),
        ("2012-10-09T19:00:55+01", False),
        ("2015-02-29T00:00:00Z", False),
        ("2012-13-09T19:00:55Z", False),
        ("2012-10-09T24:00:00Z", False),
        ("2012-10-09T19:00:60Z", False),
        ("2012-10-09T19:00:55+24:00", False),
        (" 2012-10-09T19:00:55Z", False),
        ("２０１２-10-09T19:00:55Z", False),  # fullwidth digits
        ("", False),
    ],
)
def test_timestamp_format(text: str, valid: bool) -> None:
    assert (parse_timestamp(text) is not None) is valid
    assert check("IsTimestamp", text, True) is valid


def test_timestamps_compare_as_instants() -> None:
    assert parse_timestamp("1970-01-01T00:00:00Z") == 0
    assert parse_timestamp("1970-01-01T01:00:00.5+01:00") == 500_000_000
    assert parse_timestamp("1969-12-31T23:59:59.999999999Z") == -1


BOOLEAN_DATA = {"type": "Private", "value": 22, "done": True}


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ({"Not": {"Variable": "$.type", "StringEquals": "Private"}}, False),
        ({"Not": {"Not": {"Variable": "$.type", "StringEquals": "Private"}}}, True),
        (
            {
                "And": [
                    {"Variable": "$.value", "NumericGreaterThanEquals": 20},
                    {"Variable": "$.value", "NumericLessThan": 30},
                ]
            },
            True,
        ),
        (
            {
                "And": [
                    {"Variable": "$.value", "NumericGreaterThanEquals": 20},
                    {"Variable": "$.value", "NumericLessThan": 22},
                ]
            },
            False,
        ),
        (
            {
                "Or": [
                    {"Variable": "$.type", "StringEquals": "Public"},
                    {"Variable": "$.done", "BooleanEquals": True},
                ]
            },
            True,
        ),
        ({"Or": [{"Variable": "$.type", "StringEquals": "Public"}]}, False),
        (
            {
                "Or": [
                    {"Not": {"Variable": "$.done", "BooleanEquals": True}},
                    {
                        "And": [
                            {"Variable": "$.type", "IsString": True},
                            {"Not": {"Variable": "$.value", "IsNull": True}},
                        ]
                    },
                ]
            },
            True,
        ),
        # Short-circuit: a guard placed first keeps a missing path from failing the state.
        (
            {
                "And": [
                    {"Variable": "$.missing", "IsPresent": True},
                    {"Variable": "$.missing", "NumericEquals": 1},
                ]
            },
            False,
        ),
        (
            {
                "Or": [
                    {"Variable": "$.done", "BooleanEquals": True},
                    {"Variable": "$.missing", "NumericEquals": 1},
                ]
            },
            True,
        ),
    ],
)
def test_boolean_combinations(rule: dict[str, Any], expected: bool) -> None:
    assert evaluate_rule(rule, scope(BOOLEAN_DATA)) is expected


def test_nested_rule_errors_propagate() -> None:
    rule = {"Not": {"And": [{"Variable": "$.missing", "StringEquals": "x"}]}}
    with pytest.raises(StatesFailure, match=r"Invalid path '\$\.missing'"):
        evaluate_rule(rule, scope(BOOLEAN_DATA))


def test_choose_returns_first_match() -> None:
    choices = [
        {"Variable": "$.value", "NumericLessThan": 0, "Next": "A"},
        {"Variable": "$.value", "NumericGreaterThan": 10, "Next": "B"},
        {"Variable": "$.value", "IsNumeric": True, "Next": "C"},
    ]
    assert choose(choices, scope({"value": 22})) == 1
    assert choose(choices, scope({"value": 5})) == 2
    assert choose(choices, scope({"value": "5"})) is None
    assert choose([], scope({})) is None


def test_rule_without_operator_is_rejected() -> None:
    with pytest.raises(DefinitionError):
        evaluate_rule({"Variable": "$.v", "Next": "X"}, scope({"v": 1}))


# --- conformance corpus (recorded on AWS) -------------------------------------------------


def _operator_cases() -> list[Path]:
    return sorted((CASES / "choice_operators").glob("*.json")) if CASES.is_dir() else []


@pytest.mark.skipif(not CASES.is_dir(), reason="conformance corpus not available")
@pytest.mark.parametrize("case_file", _operator_cases(), ids=lambda p: p.stem)
def test_corpus_choice_operators(case_file: Path) -> None:
    case = json.loads(case_file.read_text())
    states = case["definition"]["States"]
    choice = states[case["definition"]["StartAt"]]
    assert choice["Type"] == "Choice"
    index = choose(choice["Choices"], scope(case["input"]))
    target = choice["Default"] if index is None else choice["Choices"][index]["Next"]
    assert case["expected"]["status"] == "SUCCEEDED"
    assert states[target]["Result"] == case["expected"]["output"]


# Choice cases from other groups, with the rule the recorded history/output implies.
SCENARIOS: list[tuple[str, str | None, Any, int | None]] = [
    # (case id, state name or None for the start state, input override, expected index)
    ("scenarios/choice_aws_docs_scenario__CHOICE_STATE_AWS_SCENARIO", None, None, 2),
    (
        "scenarios/choice_unsorted_parameters_negative__CHOICE_STATE_UNSORTED_CHOICE_PARAMETERS",
        None,
        None,
        1,
    ),
    (
        "scenarios/choice_unsorted_parameters_positive__CHOICE_STATE_UNSORTED_CHOICE_PARAMETERS",
        None,
        None,
        0,
    ),
    # "42" is a string: NumericEquals 42 does not match, the Default assigns INCORRECT.
    ("assign/assign_in_choice_state__CORRECT", None, None, None),
    ("assign/assign_in_choice_state__INCORRECT", None, None, None),
    ("comments/comments_as_per_docs", "IsComplete", {"status": "incomplete"}, None),
    ("comments/comments_as_per_docs", "IsComplete", {"status": "complete"}, 0),
    ("scenarios/map_state_legacy_reentrant", "CheckIteration", {"Iterations": 0}, 0),
    ("scenarios/map_state_legacy_reentrant", "CheckIteration", {"Iterations": 2}, None),
]


def _find_state(definition: Any, name: str) -> Any:
    if isinstance(definition, dict):
        if name in definition.get("States", {}):
            return definition["States"][name]
        for value in definition.values():
            found = _find_state(value, name)
            if found is not None:
                return found
    return None


@pytest.mark.skipif(not CASES.is_dir(), reason="conformance corpus not available")
@pytest.mark.parametrize(("case_id", "state", "data", "expected"), SCENARIOS)
def test_corpus_scenarios(case_id: str, state: str | None, data: Any, expected: int | None) -> None:
    case = json.loads((CASES / f"{case_id}.json").read_text())
    choice = _find_state(case["definition"], state or case["definition"]["StartAt"])
    assert choice["Type"] == "Choice"
    assert choose(choice["Choices"], scope(case["input"] if data is None else data)) == expected


@pytest.mark.skipif(not CASES.is_dir(), reason="conformance corpus not available")
def test_corpus_map_break_condition() -> None:
    # Map items [1, "Hello", {}, 3.3, 3, ...]: the guarded rule first matches on 3 (the Fail).
    case = json.loads((CASES / "scenarios/map_state_break_condition.json").read_text())
    choices = _find_state(case["definition"], "Equals3")["Choices"]
    items = case["definition"]["States"]["StartState"]["Result"]
    assert [choose(choices, scope(item)) for item in items[:5]] == [None, None, None, None, 0]
    assert case["expected"]["error"] == "SomeFailure"
