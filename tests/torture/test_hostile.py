"""Hostile input: definitions and expressions built to break the validator, the engine or the
server. Every one is either accepted or rejected with a message that names the problem; none
may raise anything else, answer a 5xx, hang (each case has a time bound) or grow the server's
memory without bound.

* The engine (``statemachine.loads``/``validate``, ``run_local``): deep nesting (200 nested
  Parallels), 10,000 states, huge arrays, NaN/Infinity and numbers beyond float range in the
  JSON text, duplicate keys, lone surrogates, right-to-left and zero-width characters, and
  Hypothesis-drawn mixtures of them; JSONPath, intrinsic functions and JSONata with hostile
  arguments and data.
* The server (``statewright serve`` on SQLite, a real process): the same definitions through
  ``POST /api/v1/state-machines`` and the AWS API's CreateStateMachine (boto3), then its RSS.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from statemachine import DefinitionError, loads, run_local
from tests.service.server import Server

JSON = Any
PASS = {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}
CASE_SECONDS = 20  # no single hostile case may take longer (a shared, loaded machine)
HOSTILE = settings(
    max_examples=60,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# Characters that break naive code: lone surrogates, bidi overrides, zero-width, BOM, NUL,
# line/paragraph separators, a non-BMP emoji, combining marks.
NASTY = ["\ud800", "\udfff", "\u202e", "\u200f", "\u200b", "\u2060", "\ufeff", "\x00", "\u2028"]
NASTY += ["\U0001f600", "e\u0301", "\x7f", '"', "\\", "$", ".", "{%", "%}"]


def nested_parallels(depth: int) -> dict[str, JSON]:
    machine: dict[str, JSON] = {"StartAt": "L0", "States": {"L0": {"Type": "Pass", "End": True}}}
    for level in range(1, depth + 1):
        machine = {
            "StartAt": f"L{level}",
            "States": {f"L{level}": {"Type": "Parallel", "Branches": [machine], "End": True}},
        }
    return machine


def many_states(count: int) -> dict[str, JSON]:
    states = {f"S{i}": {"Type": "Pass", "Next": f"S{i + 1}"} for i in range(count - 1)}
    states[f"S{count - 1}"] = {"Type": "Pass", "End": True}
    return {"StartAt": "S0", "States": states}


def _pass_with(result_text: str) -> str:
    return '{"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true, "Result": ' + (
        result_text + "}}}"
    )


# (id, JSON text, None if it must be accepted else words the rejection must contain)
CASES: list[tuple[str, str, tuple[str, ...] | None]] = [
    ("200-nested-parallels", json.dumps(nested_parallels(200)), None),
    ("10000-states", json.dumps(many_states(10_000)), None),
    ("array-of-100000", _pass_with(json.dumps([0] * 100_000)), None),
    ("NaN", _pass_with("NaN"), ("NaN", "not a JSON value")),
    ("Infinity", _pass_with("Infinity"), ("Infinity", "not a JSON value")),
    ("-Infinity", _pass_with("-Infinity"), ("Infinity", "not a JSON value")),
    ("1e400", _pass_with("1e400"), ("float",)),
    ("-1e400", _pass_with("-1e400"), ("float",)),
    ("integer-of-5000-digits", _pass_with("1" * 5000), ("digits",)),
    (
        "duplicate-StartAt",
        '{"StartAt": "P", "StartAt": "Q", "States": {"P": {"Type": "Pass", "End": true}}}',
        ("StartAt 'Q'",),
    ),
    (
        "lone-surrogate-in-a-name",
        '{"StartAt": "P\\ud800", "States": {"P\\ud800": {"Type": "Pass", "End": true}}}',
        ("surrogate",),
    ),
    (
        "right-to-left-name",
        '{"StartAt": "\u202eP", "States": {"\u202eP": {"Type": "Pass", "End": true}}}',
        None,
    ),
    (
        "zero-width-mismatch",
        '{"StartAt": "P\u200b", "States": {"P": {"Type": "Pass", "End": true}}}',
        ("StartAt",),
    ),
]


# Where the server (which also runs the full validator) answers otherwise than the engine's
# loads(): what its rejection must say instead.
SERVER_WORDS: dict[str, tuple[str, ...] | None] = {
    # The validator's depth limit (250 levels: the REST serializer's own limit is 254).
    "200-nested-parallels": ("nested", "the limit is 250"),
    # REST parses the body first (1e400 becomes Infinity there); the AWS API hands the
    # definition text to the validator ("the number 1e400 is beyond the range of a double").
    "1e400": ("not valid JSON",),
    "-1e400": ("not valid JSON",),
    "duplicate-StartAt": ("'Q'",),
}
# REST: FastAPI itself refuses a body whose integer has more than 4300 digits, with
# "There was an error parsing the body" (a 400 that does not say why): only the status is
# checked there.
REST_STATUS_ONLY = {"integer-of-5000-digits"}


def _outcome(text: str) -> str | None:
    """None when the engine accepts ``text``, else its rejection (a DefinitionError)."""
    try:
        loads(text)
    except DefinitionError as error:
        return str(error)
    return None


@pytest.mark.parametrize(("text", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_engine_accepts_or_names_the_problem(text: str, words: tuple[str, ...] | None) -> None:
    began = time.monotonic()
    rejection = _outcome(text)
    assert time.monotonic() - began < CASE_SECONDS
    if words is None:
        assert rejection is None
    else:
        assert rejection is not None, "accepted"
        assert all(word in rejection for word in words), rejection


def test_200_nested_parallels_run() -> None:
    began = time.monotonic()
    result = run_local(nested_parallels(200), {"x": 1})
    assert time.monotonic() - began < CASE_SECONDS
    assert result.status == "SUCCEEDED"
    output: JSON = result.output
    for _ in range(200):
        output = output[0]
    assert output == {"x": 1}


# ---------------------------------------------------------------------------- Hypothesis


nasty_text = st.lists(st.sampled_from(NASTY) | st.text(max_size=5), max_size=8).map("".join)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | nasty_text
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(nasty_text, inner, max_size=5),
    max_leaves=30,
)
STATE_FIELDS = [
    "Type", "Next", "End", "Result", "ResultPath", "InputPath", "OutputPath", "Parameters",
    "Seconds", "SecondsPath", "Choices", "Default", "Branches", "ItemProcessor", "Retry", "Catch",
    "Resource", "Error", "Cause", "QueryLanguage", "Output", "Arguments", "Assign",
]  # fmt: skip
TYPES = ["Pass", "Task", "Choice", "Wait", "Succeed", "Fail", "Parallel", "Map", "Bogus", ""]


@st.composite
def hostile_definitions(draw: st.DrawFn) -> str:
    """A definition text: a plausible skeleton with hostile names, fields and values, some
    raw JSON-text hazards spliced in."""
    names = draw(st.lists(nasty_text | st.sampled_from(["A", "B"]), min_size=1, max_size=4))
    states: dict[str, JSON] = {}
    for name in names:
        state: dict[str, JSON] = {"Type": draw(st.sampled_from(TYPES))}
        for key in draw(st.lists(st.sampled_from(STATE_FIELDS), max_size=4)):
            state[key] = draw(json_values | st.sampled_from(names))
        if draw(st.booleans()):
            state["End"] = True
        states[name] = state
    document: dict[str, JSON] = {"StartAt": draw(st.sampled_from(names) | nasty_text)}
    document["States"] = states
    if draw(st.booleans()):
        document["QueryLanguage"] = draw(st.sampled_from(["JSONata", "JSONPath", "SQL"]))
    text = json.dumps(document, ensure_ascii=draw(st.booleans()))
    hazard = draw(st.sampled_from(["", "NaN", "Infinity", "1e999", "-0", '"\\ud83d"', "[" * 300]))
    if hazard and '"Result": ' not in text:
        text = text[:-1] + f', "Comment": {hazard}' + "]" * hazard.count("[") + "}"
    return text


@HOSTILE
@given(hostile_definitions())
def test_engine_never_raises_anything_but_a_definition_error(text: str) -> None:
    began = time.monotonic()
    rejection = _outcome(text)
    assert time.monotonic() - began < CASE_SECONDS
    if rejection is not None:
        location, _, message = rejection.partition(": ")
        assert location.startswith("/") and message.strip(), rejection


INTRINSICS = [
    "States.Format({}, {})",
    "States.StringToJson({})",
    "States.JsonToString({})",
    "States.Array({}, {})",
    "States.ArrayPartition({}, {})",
    "States.ArrayContains({}, {})",
    "States.ArrayRange({}, {}, {})",
    "States.ArrayGetItem({}, {})",
    "States.ArrayLength({})",
    "States.ArrayUnique({})",
    "States.Base64Encode({})",
    "States.Base64Decode({})",
    "States.Hash({}, {})",
    "States.JsonMerge({}, {}, false)",
    "States.MathRandom({}, {})",
    "States.MathAdd({}, {})",
    "States.StringSplit({}, {})",
    "States.UUID()",
]
ARGUMENTS = ["$.a", "$.b", "$.c", "$..*", "$.a[0]", "$.b[-1:]", "'x'", "'{}'", "1e300", "-1"]
ARGUMENTS += ["1000000000", "''", "'\\u202e'", "null", "$$.Execution.Id", "'SHA-512'"]


@HOSTILE
@given(
    st.sampled_from(INTRINSICS),
    st.lists(st.sampled_from(ARGUMENTS), min_size=3, max_size=3),
    json_values,
    json_values,
)
def test_intrinsics_and_jsonpath_with_hostile_arguments(
    call: str, arguments: list[str], a: JSON, b: JSON
) -> None:
    expression = call.format(*arguments[: call.count("{}")])
    definition = {
        "StartAt": "P",
        "States": {"P": {"Type": "Pass", "Parameters": {"v.$": expression}, "End": True}},
    }
    data = {"a": a, "b": b, "c": [a, b] * 50}
    began = time.monotonic()
    try:
        result = run_local(definition, data)
    except DefinitionError as error:  # an argument the validator refuses up front
        assert error.location.startswith("/States/P"), error
        return
    assert time.monotonic() - began < CASE_SECONDS
    if result.status == "FAILED":
        assert result.error in ("States.IntrinsicFailure", "States.Runtime"), result.error
        assert result.cause and "Traceback" not in result.cause
    else:
        assert result.status == "SUCCEEDED", (result.status, result.error, result.cause)


JSONATA = [
    "$states.input.a",
    "$string($states.input)",
    "$sort($states.input.c)",
    "$distinct($states.input.c)",
    "$reduce($states.input.c, function($x, $y){ [$x, $y] })",
    "$eval($states.input.a)",
    "$match($string($states.input.a), /(a+)+b/)",
    "$pad('x', 1e9)",
    "$join($map([1..1000000], function($v){ 'x' }))",
    "$count([1..1000000])",
    "($f := function($x){ $f($x) }; $f(1))",
    "$states.input.b.**",
    "$parse($string($states.input))",
    "$hash($string($states.input), 'SHA-256')",
    "$partition($states.input.c, 0)",
    "$range(0, 1e9)",
]


@HOSTILE
@given(st.sampled_from(JSONATA), json_values, json_values)
def test_jsonata_with_hostile_data_fails_cleanly_or_succeeds(
    expression: str, a: JSON, b: JSON
) -> None:
    definition = {
        "QueryLanguage": "JSONata",
        "StartAt": "P",
        "States": {"P": {"Type": "Pass", "Output": "{% " + expression + " %}", "End": True}},
    }
    began = time.monotonic()
    result = run_local(definition, {"a": a, "b": b, "c": [a, b] * 20})
    assert time.monotonic() - began < CASE_SECONDS, expression
    if result.status == "FAILED":
        assert result.error in ("States.QueryEvaluationError", "States.Runtime"), result.error
        assert result.cause and "Traceback" not in result.cause
    else:
        assert result.status == "SUCCEEDED", (result.status, result.error, result.cause)


# ---------------------------------------------------------------------------- the server


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _aws(server: Server) -> Any:
    return boto3.client(
        "stepfunctions",
        endpoint_url=server.base_url,
        region_name="us-east-1",
        aws_access_key_id=server.key_id,
        aws_secret_access_key=server.secret,
        config=Config(retries={"total_max_attempts": 1}, read_timeout=CASE_SECONDS),
    )


def test_server_accepts_or_names_the_problem_never_a_5xx(sqlite_api_server: Server) -> None:
    server = sqlite_api_server
    server.check_alive()
    before = _rss_kib(server.process.pid)
    sfn = _aws(server)
    problems = []
    with httpx.Client(timeout=CASE_SECONDS) as client:
        for round_ in range(3):  # the same batch thrice: memory must not keep growing
            for case, text, engine_words in CASES:
                words = SERVER_WORDS.get(case, engine_words)
                name = f"hostile-{case}-{round_}"[:80]
                raw = '{"name": "' + name + '", "definition": ' + text + "}"
                began = time.monotonic()
                response = client.post(
                    f"{server.base_url}/api/v1/state-machines",
                    content=raw.encode("utf-8", "surrogatepass"),
                    headers={**server.headers, "Content-Type": "application/json"},
                )
                took = time.monotonic() - began
                if response.status_code >= 500 or took > CASE_SECONDS:
                    problems.append(f"REST {case}: {response.status_code} in {took:.1f} s")
                elif words is None and response.status_code != 201:
                    problems.append(f"REST {case}: refused {response.text[:300]}")
                elif case in REST_STATUS_ONLY:
                    if response.status_code != 400:
                        problems.append(f"REST {case}: {response.status_code} {response.text}")
                elif words is not None and not all(w in response.text for w in words):
                    problems.append(f"REST {case}: {response.status_code} {response.text[:300]}")
                try:
                    sfn.create_state_machine(
                        name=name.replace("hostile", "aws"),
                        definition=text,
                        roleArn="arn:aws:iam::123456789012:role/hostile",
                    )
                    if words is not None:
                        problems.append(f"AWS {case}: accepted")
                except ClientError as error:
                    status = error.response["ResponseMetadata"]["HTTPStatusCode"]
                    message = error.response["Error"].get("Message", "")
                    if status >= 500 or words is None:
                        problems.append(f"AWS {case}: {status} {message[:300]}")
                    elif not all(w in message for w in words):
                        problems.append(f"AWS {case}: {message[:300]}")
    server.check_alive()
    grown_mib = (_rss_kib(server.process.pid) - before) / 1024
    assert not problems, "\n".join(problems) + "\n" + server.tail()
    # The 10,000-state and 100,000-item definitions are parsed thrice over; the server may
    # keep some of it cached, but not a copy per request.
    assert grown_mib < 300, f"the server grew by {grown_mib:.0f} MiB"
