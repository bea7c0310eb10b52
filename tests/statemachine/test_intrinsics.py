"""Intrinsic functions: exact outputs, error causes, and the conformance corpus recorded on AWS."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from statemachine import intrinsics, paths
from statemachine.errors import IntrinsicError, StatesFailure
from statemachine.payload import Scope, evaluate_template

DATA: dict[str, Any] = {
    "s": "HelloWorld",
    "empty": "",
    "n": 7,
    "f": 1.5,
    "t": True,
    "z": None,
    "arr": [1, 2, 3, 4, 5],
    "dup": [1, 1, "a", "a", None, None, [1], [1], {"k": 1, "j": 2}, {"j": 2, "k": 1}, 1.0, True],
    "obj": {"a": 1, "b": [True, None], "c": {"d": "x"}},
    "json": '{"k": [1, 2.5, "v"]}',
    "tmpl": "{} and {}",
    "names": ["Ann", "Bob"],
    "it's": "quoted",
}
VARIABLES = {"greeting": "Hi", "cfg": {"size": 2}}
CONTEXT = {
    "Execution": {"Id": "arn:aws:states:us-east-1:111111111111:execution:sm:ex", "Name": "ex"},
    "StateMachine": {"Id": "arn:aws:states:us-east-1:111111111111:stateMachine:sm", "Name": "sm"},
}


def run(expression: str, data: Any = None, seed: int = 0) -> Any:
    scope = Scope(DATA if data is None else data, CONTEXT, VARIABLES, random.Random(seed))
    return intrinsics.evaluate(expression, scope)


def same(actual: Any, expected: Any) -> bool:
    """Equal as values and as JSON text, so 1 != 1.0, True != 1 and key order counts."""
    return bool(actual == expected) and json.dumps(actual) == json.dumps(expected)


SUCCESS = [
    # States.Format: strings raw, other values like Java's toString
    ("States.Format('Hello {}', $.s)", "Hello HelloWorld"),
    ("States.Format('no placeholders')", "no placeholders"),
    ("States.Format('{}{}', $.empty, $.s)", "HelloWorld"),
    ("States.Format('{} {} {} {}', $.n, $.f, $.t, $.z)", "7 1.5 true null"),
    ("States.Format('{}', $.obj)", "{a=1, b=[true, null], c={d=x}}"),
    ("States.Format('{}', $.names)", "[Ann, Bob]"),
    ("States.Format('{}', $.json)", '{"k": [1, 2.5, "v"]}'),
    ("States.Format('{} {} {}', 1.0, 1e20, 0.0001)", "1.0 1.0E20 1.0E-4"),
    ("States.Format('{} {}', -12345678.5, 0.001)", "-1.23456785E7 0.001"),
    ("States.Format('{}', -0.0)", "-0.0"),
    (r"States.Format('\{\} is literal, {} is not', 'x')", "{} is literal, x is not"),
    (r"States.Format('it\'s a back\\slash {}', 1)", "it's a back\\slash 1"),
    ("States.Format('{ } {', )".replace(", )", ")"), "{ } {"),
    ("States.Format($.tmpl, 'a', 'b')", "a and b"),
    ("States.Format($greeting)", "Hi"),
    ("States.Format('{}-{}', $$.Execution.Name, $$.StateMachine.Name)", "ex-sm"),
    ("States.Format( 'spaced {}' ,  $.n )", "spaced 7"),
    ("States.Format('{}', States.Array(1, 'a'))", "[1, a]"),
    # States.StringToJson / States.JsonToString
    ("States.StringToJson($.json)", {"k": [1, 2.5, "v"]}),
    ("States.StringToJson('')", None),
    ("States.StringToJson(' \n ')", None),
    ("States.StringToJson('null')", None),
    ("States.StringToJson('-0')", 0),
    ("States.StringToJson('1.10')", 1.1),
    ("States.StringToJson('\"x\"')", "x"),
    ("States.StringToJson('[true]')", [True]),
    ("States.JsonToString($.obj)", '{"a":1,"b":[true,null],"c":{"d":"x"}}'),
    ("States.JsonToString($.s)", '"HelloWorld"'),
    ("States.JsonToString($.f)", "1.5"),
    ("States.JsonToString($.z)", "null"),
    ("States.JsonToString(States.Array('é', 1))", '["é",1]'),
    ("States.StringToJson(States.JsonToString($.obj))", DATA["obj"]),
    # States.Array
    ("States.Array()", []),
    ("States.Array(1, 2.5, 'x', true, false, null)", [1, 2.5, "x", True, False, None]),
    ("States.Array($.names, $cfg.size, States.Array())", [["Ann", "Bob"], 2, []]),
    # States.ArrayPartition
    ("States.ArrayPartition($.arr, 2)", [[1, 2], [3, 4], [5]]),
    ("States.ArrayPartition($.arr, 5)", [[1, 2, 3, 4, 5]]),
    ("States.ArrayPartition($.arr, 9)", [[1, 2, 3, 4, 5]]),
    ("States.ArrayPartition($.arr, 1.5)", [[1, 2], [3, 4], [5]]),
    ("States.ArrayPartition(States.Array(), 3)", []),
    # States.ArrayContains: Jackson equality, so types matter and key order does not
    ("States.ArrayContains($.arr, 3)", True),
    ("States.ArrayContains($.arr, 6)", False),
    ("States.ArrayContains($.arr, 3.0)", False),
    ("States.ArrayContains($.dup, true)", True),
    ("States.ArrayContains($.arr, true)", False),
    ("States.ArrayContains($.dup, null)", True),
    ('States.ArrayContains($.dup, States.StringToJson(\'{"j":2,"k":1}\'))', True),
    ("States.ArrayContains($.dup, States.Array(1))", True),
    ("States.ArrayContains(States.Array(), null)", False),
    # States.ArrayRange: end inclusive, decimals rounded
    ("States.ArrayRange(1, 9, 2)", [1, 3, 5, 7, 9]),
    ("States.ArrayRange(0, 3, 1)", [0, 1, 2, 3]),
    ("States.ArrayRange(0, 10, 3)", [0, 3, 6, 9]),
    ("States.ArrayRange(1, 9, 9)", [1]),
    ("States.ArrayRange(5, 1, -2)", [5, 3, 1]),
    ("States.ArrayRange(5, 1, 1)", []),
    ("States.ArrayRange(0.5, 2.4, 1)", [1, 2]),
    ("States.ArrayRange(1, 1000, 1)", list(range(1, 1001))),
    # States.ArrayGetItem / ArrayLength / ArrayUnique
    ("States.ArrayGetItem($.arr, 0)", 1),
    ("States.ArrayGetItem($.arr, 4)", 5),
    ("States.ArrayGetItem($.obj.b, 1)", None),
    ("States.ArrayGetItem($.names, States.MathAdd(States.ArrayLength($.names), -1))", "Bob"),
    ("States.ArrayLength($.arr)", 5),
    ("States.ArrayLength(States.Array())", 0),
    (
        "States.ArrayUnique($.dup)",
        [1, "a", None, [1], {"k": 1, "j": 2}, 1.0, True],
    ),
    ("States.ArrayUnique(States.Array(3, 1, 3, 2, 1))", [3, 1, 2]),
    # States.Base64Encode / Base64Decode (UTF-8)
    ("States.Base64Encode('Data to encode')", "RGF0YSB0byBlbmNvZGU="),
    ("States.Base64Encode('')", ""),
    ("States.Base64Encode('ü€')", "w7zigqw="),
    ("States.Base64Decode('RGF0YSB0byBlbmNvZGU=')", "Data to encode"),
    ("States.Base64Decode('RGF0YSB0byBlbmNvZGU')", "Data to encode"),
    ("States.Base64Decode('w7zigqw=')", "ü€"),
    ("States.Base64Decode('')", ""),
    ("States.Base64Decode(States.Base64Encode($.s))", "HelloWorld"),
    # States.Hash
    ("States.Hash('input data', 'MD5')", "812f45842bc6d66ee14572ce20db8e86"),
    ("States.Hash('input data', 'SHA-1')", "aaff4a450a104cd177d28d18d74485e8cae074b7"),
    (
        "States.Hash('input data', 'SHA-256')",
        "b4a697a057313163aee33cd8d40c66e9f0f177e00cac2de32475ffff6169c3e3",
    ),
    (
        "States.Hash('input data', 'SHA-384')",
        "d28a7d5cf25a74f11a50a18452b75e04bb3d70c9dd0510d6123aa008c756511b"
        "87525bdc835ebb27e1fb9e9374a15562",
    ),
    (
        "States.Hash('input data', 'SHA-512')",
        "6ce4adb348546d4f449c4d25aad9a7c9cb711d9e91982d3f0b29ca2f3f47d4ce"
        "2deba23bf2954f0f1d593fc50283731a533d30d425402d4f91316d871303aac4",
    ),
    ("States.Hash('', 'MD5')", "d41d8cd98f00b204e9800998ecf8427e"),
    # States.JsonMerge: shallow, the second object wins
    (
        'States.JsonMerge($.obj, States.StringToJson(\'{"c": {"e": 1}, "z": 0}\'), false)',
        {"a": 1, "b": [True, None], "c": {"e": 1}, "z": 0},
    ),
    (
        "States.JsonMerge($.obj, $cfg, false)",
        {"a": 1, "b": [True, None], "c": {"d": "x"}, "size": 2},
    ),
    # States.MathAdd: each argument rounded half up (Java Math.round), result an int
    ("States.MathAdd(-9, 3)", -6),
    ("States.MathAdd(1.49, 1.5)", 3),
    ("States.MathAdd(1.5, 1.51)", 4),
    ("States.MathAdd(-1.5, 0)", -1),
    ("States.MathAdd(-1.51, 0)", -2),
    ("States.MathAdd(-0.5, 0.5)", 1),
    ("States.MathAdd(-2.5, 0)", -2),
    ("States.MathAdd(2.5, 0)", 3),
    ("States.MathAdd(0.49999999999999994, 0)", 0),
    ("States.MathAdd($.n, $cfg.size)", 9),
    ("States.MathAdd(2147483647, 0)", 2147483647),
    ("States.MathAdd(-2147483648, 0)", -2147483648),
    ("States.MathAdd(1e3, 0)", 1000),
    # States.StringSplit: every delimiter character splits; empty pieces are dropped
    ("States.StringSplit('1,2,3', ',')", ["1", "2", "3"]),
    ("States.StringSplit(', , ,', ',')", [" ", " "]),
    ("States.StringSplit(',,,,', ',')", []),
    ("States.StringSplit(' ', ',')", [" "]),
    ("States.StringSplit('This.is+a,test=string', '.+,=')", ["This", "is", "a", "test", "string"]),
    ("States.StringSplit('a[b]c^d-e', '[]^-')", ["a", "b", "c", "d", "e"]),
    ("States.StringSplit('Hello\nWorld', '\n')", ["Hello", "World"]),
    ("States.StringSplit('abc', '')", ["abc"]),
    ("States.StringSplit('', ',')", []),
    # paths with brackets, quotes and filters as arguments
    ("States.ArrayLength($.arr[?(@ > 2)])", 3),
    ("States.Array($['obj']['c'].d, $.arr[0,1])", ["x", [1, 2]]),
    (r"States.Format('{}', $['it\'s'])", "quoted"),
    ("States.Format('{}', $)", "HelloWorld"),
]


@pytest.mark.parametrize(("expression", "expected"), SUCCESS)
def test_success(expression: str, expected: Any) -> None:
    data = "HelloWorld" if expression == "States.Format('{}', $)" else None
    assert same(run(expression, data), expected)


ERRORS = [
    # syntax
    ("States.Format('x'", "expected ',' or ')'"),
    ("States.Format('x)", "unterminated string literal"),
    ("States.Format('x') trailing", "unexpected text after the closing parenthesis"),
    ("States.Format", "expected '(' after States.Format"),
    ("States.Array(1,)", "expected a string, number, boolean, null, path"),
    ("States.Array(foo)", "expected a string, number, boolean, null, path"),
    ("States.Array(truex)", "expected a string, number, boolean, null, path"),
    ("States.Array(1 2)", "expected ',' or ')'"),
    ("States.Array(1e999)", "number out of range"),
    ("States.", "expected a function name"),
    ("States.Nope(1)", "Unknown intrinsic function 'States.Nope'"),
    ("States.Array(States.Nope())", "Unknown intrinsic function 'States.Nope'"),
    ("States.Array(" * 11 + ")" * 11, "more than 10 nested intrinsic functions"),
    # arity
    ("States.Format()", "States.Format takes at least 1 argument, but 0 were given"),
    ("States.UUID(1)", "States.UUID takes exactly 0 arguments, but 1 were given"),
    ("States.MathAdd(1)", "States.MathAdd takes exactly 2 arguments, but 1 were given"),
    ("States.MathRandom(1, 2, 3, 4)", "States.MathRandom takes 2 to 3 arguments, but 4 were given"),
    ("States.ArrayLength()", "States.ArrayLength takes exactly 1 argument, but 0 were given"),
    # paths
    ("States.Format('{}', $.missing)", "The JSONPath '$.missing' given to States.Format could not"),
    ("States.Format('{}', $.missing)", 'in the input \'{"s":"HelloWorld"'),
    ("States.Format('{}', $$.Nope)", "The JSONPath '$$.Nope' given to States.Format could not"),
    ("States.Format('{}', $nope)", "Variable 'nope' is not defined"),
    ("States.Format('{}', $cfg.nope)", "The variable path '$cfg.nope' given to States.Format"),
    ("States.Format('{}', $.a.)", "States.Format: Invalid path '$.a.': a name must follow"),
    ("States.Format('{}', $.a[)", "expected ',' or ')'"),
    # States.Format
    ("States.Format('{} {}', 1)", "the template has 2 placeholder(s) '{}' but 1 value(s)"),
    ("States.Format('x', 1)", "the template has 0 placeholder(s) '{}' but 1 value(s)"),
    ("States.Format($.n)", "States.Format: argument 1 must be a string, but it is the number 7"),
    # States.StringToJson / JsonToString
    ("States.StringToJson('{')", "States.StringToJson: the string is not valid JSON"),
    ("States.StringToJson('NaN')", "NaN is not a JSON value"),
    ("States.StringToJson('1 2')", "the string is not valid JSON"),
    ("States.StringToJson($.obj)", "argument 1 must be a string, but it is an object"),
    ("States.JsonToString()", "takes exactly 1 argument"),
    # arrays
    ("States.ArrayPartition($.arr, 0)", "the chunk size must be a positive integer, got 0"),
    ("States.ArrayPartition($.arr, -1)", "the chunk size must be a positive integer"),
    ("States.ArrayPartition($.obj, 1)", "argument 1 must be an array, but it is an object"),
    ("States.ArrayPartition($.arr, '2')", "argument 2 must be a number, but it is a string"),
    ("States.ArrayContains($.s, 1)", "argument 1 must be an array, but it is a string"),
    ("States.ArrayRange(1, 5, 0)", "States.ArrayRange: the step must not be 0"),
    ("States.ArrayRange(1, 1001, 1)", "the range has 1001 items, more than the maximum of 1000"),
    ("States.ArrayRange(1, true, 1)", "argument 2 must be a number, but it is a boolean"),
    ("States.ArrayRange(0, 2147483648, 1)", "argument 2 must be between -2147483648 and"),
    ("States.ArrayGetItem($.arr, 5)", "index 5 is out of bounds for an array of length 5"),
    ("States.ArrayGetItem($.arr, -1)", "index -1 is out of bounds"),
    (
        "States.ArrayGetItem($.arr, 1.0)",
        "argument 2 must be an integer index, but it is the number",
    ),
    ("States.ArrayGetItem($.arr, null)", "argument 2 must be an integer index, but it is null"),
    ("States.ArrayGetItem($.obj, 0)", "argument 1 must be an array"),
    ("States.ArrayLength($.s)", "States.ArrayLength: argument 1 must be an array"),
    ("States.ArrayUnique($.z)", "States.ArrayUnique: argument 1 must be an array, but it is null"),
    # encodings and hashes
    ("States.Base64Encode($.n)", "States.Base64Encode: argument 1 must be a string"),
    ("States.Base64Decode('***')", "States.Base64Decode: the string is not valid Base64"),
    ("States.Base64Decode('QQ=')", "the string is not valid Base64"),
    ("States.Base64Decode('QUJDR')", "the string is not valid Base64"),
    ("States.Hash('x', 'SHA-999')", "the algorithm 'SHA-999' is not supported; use one of MD5"),
    ("States.Hash('x', 'sha-256')", "the algorithm 'sha-256' is not supported"),
    ("States.Hash($.arr, 'MD5')", "States.Hash: argument 1 must be a string, but it is an array"),
    # States.JsonMerge
    ("States.JsonMerge($.obj, $.obj, true)", "only shallow merging is supported"),
    ("States.JsonMerge($.obj, $.obj, 'false')", "argument 3 must be a boolean (isDeepMerge)"),
    (
        "States.JsonMerge($.obj, $.arr, false)",
        "argument 2 must be a JSON object, but it is an array",
    ),
    # maths
    ("States.MathAdd('1', 2)", "States.MathAdd: argument 1 must be a number, but it is a string"),
    ("States.MathAdd(1, null)", "argument 2 must be a number, but it is null"),
    ("States.MathAdd(2147483648, 0)", "argument 1 must be between -2147483648 and 2147483647"),
    ("States.MathAdd(2147483647.5, 0)", "got 2147483648"),
    ("States.MathRandom(5, 5)", "the end (5) must be greater than the start (5)"),
    ("States.MathRandom(1, 5, 'seed')", "argument 3 must be a number, but it is a string"),
    # States.StringSplit
    ("States.StringSplit($.arr, ',')", "argument 1 must be a string, but it is an array"),
    ("States.StringSplit('a', 1)", "argument 2 must be a string, but it is the number 1"),
]


@pytest.mark.parametrize(("expression", "cause"), ERRORS)
def test_errors(expression: str, cause: str) -> None:
    with pytest.raises(IntrinsicError) as info:
        run(expression)
    assert info.value.error == "States.Runtime"
    assert info.value.cause is not None
    assert cause in info.value.cause


@pytest.mark.parametrize(
    ("function", "argument"),
    [("Base64Encode", "$.big"), ("Base64Decode", "$.big"), ("Hash", "$.big, 'MD5'")],
)
def test_string_length_limit(function: str, argument: str) -> None:
    expression = f"States.{function}({argument})"
    assert run(expression, {"big": "QUJD" * 2500})  # exactly 10,000 characters is allowed
    with pytest.raises(IntrinsicError, match="10001 characters, more than the maximum of 10000"):
        run(expression, {"big": "QUJD" * 2500 + "A"})


def test_non_finite_numbers_from_the_input() -> None:
    # Python's json module accepts NaN and Infinity in an execution input; JSON has no such values
    data = {"nan": float("nan"), "inf": float("inf"), "ninf": float("-inf")}
    assert run("States.Format('{} {} {}', $.nan, $.inf, $.ninf)", data) == "NaN Infinity -Infinity"
    with pytest.raises(IntrinsicError, match="argument 1 must be a finite number"):
        run("States.MathAdd($.inf, 1)", data)


def test_nesting_up_to_ten_is_allowed() -> None:
    expected: Any = []
    for _ in range(9):
        expected = [expected]
    assert run("States.Array(" * 10 + ")" * 10) == expected


def test_deeply_nested_data_is_an_intrinsic_error() -> None:
    deep: Any = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(IntrinsicError, match="nested too deeply"):
        run("States.Format('{}', $)", deep)


def test_math_random_range_and_determinism() -> None:
    values = {run("States.MathRandom(-3, 3)", seed=seed) for seed in range(200)}
    assert values == {-3, -2, -1, 0, 1, 2}  # the end is exclusive
    assert all(type(value) is int for value in values)
    assert run("States.MathRandom(12.5, 44.51)", seed=1) == run("States.MathRandom(13, 45)", seed=1)
    assert run("States.MathRandom(1, 2)") == 1


def test_math_random_with_seed_ignores_the_scope_generator() -> None:
    first = run("States.MathRandom(0, 1000000, 42)", seed=1)
    assert first == run("States.MathRandom(0, 1000000, 42)", seed=2)
    assert first == run("States.MathRandom(0, 1000000, 42.4)", seed=3)
    assert 0 <= first < 1000000


def test_uuid_is_v4_and_comes_from_the_scope_generator() -> None:
    scope = Scope({}, CONTEXT, {}, random.Random(7))
    first, second = (intrinsics.evaluate("States.UUID()", scope) for _ in range(2))
    assert first != second
    for value in (first, second):
        assert re.fullmatch(
            r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", value
        )
    replay = Scope({}, CONTEXT, {}, random.Random(7))
    assert intrinsics.evaluate("States.UUID()", replay) == first


def test_results_do_not_share_state_with_cached_parses() -> None:
    data = {"a": {"x": 1}, "b": {"y": 2}}
    merged = run("States.JsonMerge($.a, $.b, false)", data)
    merged["x"] = 99
    assert data == {"a": {"x": 1}, "b": {"y": 2}}
    array = run("States.Array(1, 2)")
    array.append(3)
    assert run("States.Array(1, 2)") == [1, 2]


def test_parse_is_cached() -> None:
    expression = "States.Format('cached {}', $.s)"
    assert intrinsics.parse(expression) is intrinsics.parse(expression)
    assert intrinsics.parse(expression) == intrinsics.Call(
        "States.Format",
        (intrinsics.Literal("cached {}", ("cached ", "")), intrinsics.PathArg("$.s")),
    )


_TOKENS = [
    "States.Format", "States.Array", "States.MathAdd", "States.ArrayGetItem", "States.Hash",
    "States.StringSplit", "States.JsonMerge", "States.StringToJson", "States.ArrayRange",
    "States.Nope", "(", ")", ",", " ", "'", "\\", "{}", "{", "}", "$", "$.", "s", "arr", "obj",
    "$$", "[", "]", "0", "-1", "2.5", "1e3", "true", "null", "'x'", "'{}'", "$.arr", "$.obj",
    "$cfg", "?(@", "'SHA-1'", "false",
]  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(_TOKENS), max_size=14))
def test_only_intrinsic_errors_escape(tokens: list[str]) -> None:
    expression = "".join(tokens)
    if not expression.startswith("States."):
        expression = "States.Array(" + expression
    try:
        run(expression)
    except IntrinsicError as exc:
        assert exc.cause


# --- conformance corpus recorded on AWS -------------------------------------------------------

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "conformance" / "cases"
_TOKEN = re.compile(r"<[^<>]+>|111111111111")
_WHOLE_VALUE_PLACEHOLDERS = {"timestamp", "datetime", "date"}


def _single_pass_intrinsic_cases() -> list[Any]:
    if not CORPUS.is_dir():
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"no corpus at {CORPUS}"))]
    cases = []
    for file in sorted(CORPUS.rglob("*.json")):
        if file.name.startswith("_"):
            continue
        case = json.loads(file.read_text(encoding="utf-8"))
        states = case["definition"]["States"]
        if len(states) != 1 or case["definition"].get("QueryLanguage") == "JSONata":
            continue
        state = next(iter(states.values()))
        if state["Type"] == "Pass" and "States." in json.dumps(state.get("Parameters", {})):
            cases.append(pytest.param(case, id=case["id"]))
    return cases


def _matches(expected: Any, actual: Any, words: set[str]) -> bool:
    """The corpus runner's comparison: placeholders are wildcards, numbers compare as JSON."""
    if isinstance(expected, str) and (expected in words or expected in _WHOLE_VALUE_PLACEHOLDERS):
        return True
    if isinstance(expected, dict):
        return (
            isinstance(actual, dict)
            and expected.keys() == actual.keys()
            and all(_matches(value, actual[key], words) for key, value in expected.items())
        )
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(expected) == len(actual)
            and all(_matches(e, a, words) for e, a in zip(expected, actual, strict=True))
        )
    if isinstance(expected, str):
        if not isinstance(actual, str):
            return False
        tokens = _TOKEN.pattern + "".join(f"|{re.escape(word)}" for word in words)
        pattern = ""
        last = 0
        for token in re.finditer(tokens, expected):
            pattern += re.escape(expected[last : token.start()])
            pattern += r"\d{12}" if token.group() == "111111111111" else ".*"
            last = token.end()
        pattern += re.escape(expected[last:])
        return re.fullmatch(pattern, actual, re.DOTALL) is not None
    if isinstance(expected, bool) or isinstance(actual, bool):
        return expected is actual
    return bool(expected == actual)


@pytest.mark.parametrize("case", _single_pass_intrinsic_cases())
def test_conformance_corpus(case: dict[str, Any]) -> None:
    state_name, state = next(iter(case["definition"]["States"].items()))
    raw_input = case["input"]
    context = {
        "Execution": {
            "Id": "arn:aws:states:us-east-1:111111111111:execution:sm:ex",
            "Name": "ex",
            "StartTime": "2024-01-01T00:00:00.000Z",
            "Input": raw_input,
            "RoleArn": "arn:aws:iam::111111111111:role/sfn",
        },
        "State": {"Name": state_name, "EnteredTime": "2024-01-01T00:00:00.000Z", "RetryCount": 0},
        "StateMachine": {
            "Id": "arn:aws:states:us-east-1:111111111111:stateMachine:sm",
            "Name": "sm",
        },
    }
    data = raw_input
    if "InputPath" in state:
        data = {} if state["InputPath"] is None else paths.read(state["InputPath"], raw_input)
    scope = Scope(data, context, {}, random.Random(0))
    expected = case["expected"]
    if expected["status"] != "SUCCEEDED":
        with pytest.raises(StatesFailure) as info:
            evaluate_template(state["Parameters"], scope)
        assert (info.value.error, info.value.cause) == (expected["error"], expected["cause"])
        return
    output = evaluate_template(state["Parameters"], scope)
    if "ResultPath" in state:
        result_path = state["ResultPath"]
        output = raw_input if result_path is None else paths.write(result_path, raw_input, output)
    if state.get("OutputPath", "$") is not None:
        output = paths.read(state.get("OutputPath", "$"), output)
    else:
        output = {}
    assert _matches(expected["output"], output, set(case.get("placeholders", []))), output
