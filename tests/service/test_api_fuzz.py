"""Fuzzing both HTTP APIs in-process: no request may ever get a 5xx.

* The REST API (/api/v1): schemathesis generates valid and invalid requests for every operation
  of the app's OpenAPI document and calls the app over ASGI (schemathesis runs the app's lifespan,
  so ``app.state.engine`` is real). Only "not a server error" is checked: undocumented 4xx
  statuses are fine here.
* The AWS API (awsJson1_0 on POST /): Hypothesis sends every action random bodies (wrong member
  types, missing members, huge strings, nested garbage, non-object JSON, invalid UTF-8, empty
  bodies) and random X-Amz-Target values; errors must be 4xx with ``__type`` and ``message``.

Both run on a SQLite database in a temp dir, migrated with ``upgrade()``, with no worker lanes.
Hypothesis is derandomized so CI sees the same cases on every run.
"""

from __future__ import annotations

import atexit
import base64
import json
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio.from_thread
import httpx
import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.routing import APIRoute
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from service import control
from service.api import aws, rest, views
from service.app import create_app
from service.db.migrate import upgrade
from service.settings import Settings

JSON = Any
ACCOUNT_PREFIX = "arn:aws:states:us-east-1:123456789012"
AMZ_JSON = "application/x-amz-json-1.0"

FUZZ = settings(
    max_examples=30,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)


def _database_url(folder: Path) -> str:
    return f"sqlite:///{folder / 'statewright.db'}"


def _make_app(folder: Path, migrate: bool = True) -> FastAPI:
    url = _database_url(folder)
    if migrate:
        upgrade(url)
    # GetActivityTask long-polls for ACTIVITY_POLL_SECONDS: keep it short for the fuzzer.
    # No API keys: these tests fuzz what the handlers do with bodies and parameters (the
    # key checks are fuzzed on their own, test_hostile_authorization_is_refused_not_5xx).
    return create_app(Settings(database_url=url, workers=0, activity_poll_seconds=0.05, auth=False))


@pytest.fixture(scope="module", autouse=True)
def _restore_module_globals() -> Iterator[None]:
    # create_app() sets these module globals; leave them as other tests expect them.
    saved = (control.REGION, control.ACCOUNT, aws.ACTIVITY_POLL_SECONDS)
    yield
    control.REGION, control.ACCOUNT, aws.ACTIVITY_POLL_SECONDS = saved


# ============================================================================ REST (schemathesis)


# The schema must exist when the module is imported (@schema.parametrize; schemathesis'
# from_fixture() does not work with pytest 9), so this app's database lives in its own temp dir.
_REST_DIR = Path(tempfile.mkdtemp(prefix="statewright-fuzz-rest-"))
atexit.register(shutil.rmtree, _REST_DIR, ignore_errors=True)
_saved = (control.REGION, control.ACCOUNT, aws.ACTIVITY_POLL_SECONDS)
REST_APP = _make_app(_REST_DIR, migrate=False)
control.REGION, control.ACCOUNT, aws.ACTIVITY_POLL_SECONDS = _saved
# Loading the schema starts the app's lifespan (which creates app.state.engine); schemathesis
# ends it after each test and starts it again on the next request.
schema = schemathesis.openapi.from_asgi("/openapi.json", REST_APP)


@pytest.fixture(scope="module", autouse=True)
def _rest_database() -> None:
    upgrade(_database_url(_REST_DIR))


JSON_MEDIA = ("application/json",)


@schema.parametrize()
@FUZZ
def test_rest_operation_never_answers_5xx(case: Any) -> None:
    response = case.call()
    assert response.status_code < 500, (
        f"{case.operation.label} answered {response.status_code}: {response.text[:2000]}\n"
        f"repro: {case.as_curl_command()}"
    )


def test_rest_schema_covers_every_route() -> None:
    # The fuzzer above only reaches what the OpenAPI document lists: every /api/v1 route.
    labels = {op.ok().label for op in schema.get_all_operations()}
    routes = {
        f"{method} {route.path}"
        for router in (rest.router, rest.callbacks, views.router)
        for route in router.routes
        if isinstance(route, APIRoute)
        for method in route.methods
    }
    assert "POST /api/v1/state-machines" in routes
    assert "GET /api/v1/executions/{execution_id}/states" in routes
    assert routes <= labels, sorted(routes - labels)


# ============================================================================ AWS (Hypothesis)


class AsgiClient:
    """POST / through httpx.ASGITransport, on an event loop in a thread, with the app's lifespan
    running (it creates ``app.state.engine``). App exceptions come back as 500 responses."""

    def __init__(self, app: FastAPI) -> None:
        self._stack = ExitStack()
        self.portal = self._stack.enter_context(anyio.from_thread.start_blocking_portal())
        self._stack.enter_context(
            self.portal.wrap_async_context_manager(app.router.lifespan_context(app))
        )
        assert app.state.engine is not None
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
            base_url="http://testserver",
            timeout=30,
        )

    def post(self, target: str | bytes | None, content: bytes) -> httpx.Response:
        """POST / with this X-Amz-Target (None: no header)."""
        headers: list[tuple[bytes, bytes]] = [(b"Content-Type", AMZ_JSON.encode())]
        if target is not None:
            raw = target if isinstance(target, bytes) else target.encode()
            headers.append((b"X-Amz-Target", raw))
        return self.raw_post("/", content, headers)

    def raw_post(self, path: str, content: bytes, headers: Any) -> httpx.Response:
        return self.portal.call(lambda: self.client.post(path, content=content, headers=headers))

    def call(self, action: str, body: JSON) -> httpx.Response:
        return self.post(f"AWSStepFunctions.{action}", encode(body))

    def ok(self, action: str, body: JSON) -> dict[str, JSON]:
        response = self.call(action, body)
        assert response.status_code == 200, response.text
        result: dict[str, JSON] = response.json()
        return result

    def close(self) -> None:
        try:
            self.portal.call(self.client.aclose)
        finally:
            self._stack.close()


PASS = json.dumps({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}})
CHOICE = json.dumps(
    {
        "StartAt": "C",
        "States": {
            "C": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.x", "NumericEquals": 1, "Next": "Yes"}],
                "Default": "No",
            },
            "Yes": {"Type": "Succeed"},
            "No": {"Type": "Fail", "Error": "E", "Cause": "c"},
        },
    }
)


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[AsgiClient, dict[str, str]]]:
    """The AWS client, plus resources that exist, so fuzzed bodies get past the lookups."""
    app = _make_app(tmp_path_factory.mktemp("fuzz-aws"))
    client = AsgiClient(app)
    try:
        arns = {
            "standard": client.ok("CreateStateMachine", {"name": "fuzz-std", "definition": PASS})[
                "stateMachineArn"
            ],
            "express": client.ok(
                "CreateStateMachine",
                {"name": "fuzz-express", "definition": CHOICE, "type": "EXPRESS"},
            )["stateMachineArn"],
            "activity": client.ok("CreateActivity", {"name": "fuzz-activity"})["activityArn"],
        }
        # No worker lanes: this execution stays RUNNING with its history started.
        arns["execution"] = client.ok(
            "StartExecution", {"stateMachineArn": arns["standard"], "input": '{"a": 1}'}
        )["executionArn"]
        yield client, arns
    finally:
        client.close()


@pytest.fixture(scope="module")
def aws_client(seeded: tuple[AsgiClient, dict[str, str]]) -> AsgiClient:
    return seeded[0]


@pytest.fixture(scope="module")
def arns(seeded: tuple[AsgiClient, dict[str, str]]) -> dict[str, str]:
    return seeded[1]


def test_every_aws_action_is_fuzzed() -> None:
    assert set(REQUIRED) == set(aws.ACTIONS)


# Each action's members that must be a non-null string.
REQUIRED: dict[str, tuple[str, ...]] = {
    "CreateActivity": ("name",),
    "DescribeActivity": ("activityArn",),
    "DeleteActivity": ("activityArn",),
    "GetActivityTask": ("activityArn",),
    "ListActivities": (),
    "CreateStateMachine": ("name", "definition"),
    "UpdateStateMachine": ("stateMachineArn",),
    "DescribeStateMachine": ("stateMachineArn",),
    "DeleteStateMachine": ("stateMachineArn",),
    "ListStateMachines": (),
    "PublishStateMachineVersion": ("stateMachineArn",),
    "ListStateMachineVersions": ("stateMachineArn",),
    "CreateStateMachineAlias": ("name", "routingConfiguration"),
    "DescribeStateMachineAlias": ("stateMachineAliasArn",),
    "UpdateStateMachineAlias": ("stateMachineAliasArn",),
    "DeleteStateMachineAlias": ("stateMachineAliasArn",),
    "ListStateMachineAliases": ("stateMachineArn",),
    "ValidateStateMachineDefinition": ("definition",),
    "StartExecution": ("stateMachineArn",),
    "StartSyncExecution": ("stateMachineArn",),
    "DescribeExecution": ("executionArn",),
    "StopExecution": ("executionArn",),
    "RedriveExecution": ("executionArn",),
    "ListExecutions": ("stateMachineArn",),
    "GetExecutionHistory": ("executionArn",),
    "DescribeStateMachineForExecution": ("executionArn",),
    "SendTaskSuccess": ("taskToken",),
    "SendTaskFailure": ("taskToken",),
    "SendTaskHeartbeat": ("taskToken",),
    "TestState": ("definition",),
}
ACTIONS = sorted(REQUIRED)
MEMBERS = sorted(
    {m for ms in REQUIRED.values() for m in ms}
    | {
        "roleArn",
        "type",
        "input",
        "output",
        "error",
        "cause",
        "maxResults",
        "nextToken",
        "statusFilter",
        "reverseOrder",
        "includeExecutionData",
        "severity",
        "mock",
        "variables",
        "stateName",
        "inspectionLevel",
        "workerName",
    }
)
HUGE = 150_000  # characters: big, yet under the 1.1 MB body limit even as \uXXXX escapes


@dataclass(frozen=True)
class Huge:
    """A string of HUGE copies of ``char``, expanded only when the request is encoded (so
    Hypothesis never prints, or warns about, huge reprs)."""

    char: str

    def __repr__(self) -> str:
        return f"Huge({self.char!r} * {HUGE})"

    def expand(self) -> str:
        return self.char * HUGE


def encode(body: JSON) -> bytes:
    def default(value: object) -> str:
        if isinstance(value, Huge):
            return value.expand()
        raise TypeError(repr(value))

    return json.dumps(body, default=default).encode()


scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()  # NaN and ±Infinity too: Python's json writes and reads them
    | st.text(max_size=30)
)
garbage = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
huge_strings = st.sampled_from(["a", "é", "\x00", "{", "arn:"]).map(Huge)


def member_values(arns: dict[str, str]) -> st.SearchStrategy[JSON]:
    """Plausible and implausible values for any member."""
    plausible = st.sampled_from(
        [
            *arns.values(),
            f"{arns['standard']}#SomeTestCase",
            f"{ACCOUNT_PREFIX}:stateMachine:missing",
            f"{ACCOUNT_PREFIX}:execution:missing:nope",
            f"{ACCOUNT_PREFIX}:activity:missing",
            "arn:aws:states:::::::",
            PASS,
            CHOICE,
            "{}",
            "[]",
            "null",
            '{"x": 1}',
            '{"StartAt": "Nope", "States": {}}',
            '{"Type": "Pass", "Result": 1, "End": true}',
            "not json",
            "0" * 64,
            "f" * 64,
            base64.urlsafe_b64encode(b"1").decode(),
            base64.urlsafe_b64encode(b"-5").decode(),
            base64.urlsafe_b64encode(b"\xff\xfe").decode(),
            "ERROR",
            "DEBUG",
            "TRACE",
            "RUNNING",
            "EXPRESS",
            "STANDARD",
            "fuzz-name",
        ]
    )
    json_text = garbage.map(lambda v: json.dumps(v))
    return st.one_of(plausible, garbage, json_text, huge_strings)


def bodies(arns: dict[str, str]) -> st.SearchStrategy[dict[str, JSON]]:
    values = member_values(arns)
    return st.dictionaries(st.sampled_from(MEMBERS) | st.text(max_size=10), values, max_size=6)


VALID_DEFINITIONS = (PASS, CHOICE, '{"Type": "Pass", "Result": 1, "End": true}')


def _json_or_none(value: JSON) -> JSON:
    try:
        return json.loads(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _error_body(response: httpx.Response) -> dict[str, JSON]:
    try:
        body = response.json()
    except ValueError:
        raise AssertionError(
            f"{response.status_code}: the error body is not JSON: {response.text[:500]}"
        ) from None
    assert isinstance(body, dict), body
    assert isinstance(body.get("__type"), str) and body["__type"], body
    assert isinstance(body.get("message"), str), body
    return body


def assert_not_5xx(response: httpx.Response, action: str, body: JSON) -> None:
    """Never a server error; every 4xx is AWS-shaped (``__type`` and ``message``)."""
    assert response.status_code < 500, (
        f"{action} answered {response.status_code} to {body!r:.500}: {response.text[:500]}"
    )
    if response.status_code >= 400:
        _error_body(response)


def assert_aws_error(response: httpx.Response, *codes: str) -> None:
    """A 4xx with an AWS-shaped body, whose ``__type`` is one of ``codes`` (any, if none)."""
    assert 400 <= response.status_code < 500, f"{response.status_code}: {response.text[:500]}"
    body = _error_body(response)
    if codes:
        assert body["__type"] in codes, f"expected {codes}, got {body}"


@FUZZ
@given(data=st.data())
def test_aws_random_bodies_never_5xx(
    aws_client: AsgiClient, arns: dict[str, str], data: Any
) -> None:
    action = data.draw(st.sampled_from(ACTIONS), label="action")
    body = data.draw(bodies(arns), label="body")
    assert_not_5xx(aws_client.call(action, body), action, body)


@pytest.mark.parametrize("action", ACTIONS)
@settings(FUZZ, max_examples=15)
@given(data=st.data())
def test_aws_each_action_random_bodies_never_5xx(
    aws_client: AsgiClient, arns: dict[str, str], action: str, data: Any
) -> None:
    body = data.draw(bodies(arns), label="body")
    # Give the required members plausible values half the time, to get past the first checks.
    for member in REQUIRED[action]:
        if data.draw(st.booleans(), label=f"set {member}"):
            body[member] = data.draw(member_values(arns), label=member)
    assert_not_5xx(aws_client.call(action, body), action, body)


@pytest.mark.parametrize("action", [a for a in ACTIONS if REQUIRED[a]])
@settings(FUZZ, max_examples=10)
@given(data=st.data())
def test_aws_missing_required_member_is_a_validation_error(
    aws_client: AsgiClient, arns: dict[str, str], action: str, data: Any
) -> None:
    body = data.draw(bodies(arns), label="body")
    missing = data.draw(st.sampled_from(REQUIRED[action]), label="missing")
    if data.draw(st.booleans(), label="explicit null"):
        body[missing] = None
    else:
        body.pop(missing, None)
    # The other required members are well-formed, so only the missing one can be blamed.
    for member in REQUIRED[action]:
        if member != missing:
            body[member] = "fuzz-name" if member == "name" else PASS
    assert_aws_error(aws_client.call(action, body), "ValidationException")


@pytest.mark.parametrize("action", [a for a in ACTIONS if REQUIRED[a]])
@settings(FUZZ, max_examples=10)
@given(data=st.data())
def test_aws_wrongly_typed_required_member_is_a_validation_error(
    aws_client: AsgiClient, arns: dict[str, str], action: str, data: Any
) -> None:
    body = data.draw(bodies(arns), label="body")
    for member in REQUIRED[action]:
        body[member] = data.draw(
            garbage.filter(lambda v: v is not None and not isinstance(v, str)), label=member
        )
    assert_aws_error(aws_client.call(action, body), "ValidationException")


NOT_AN_OBJECT = st.one_of(
    st.just(b"   "),
    st.just(b"\xef\xbb\xbf"),  # a lone UTF-8 byte order mark
    garbage.filter(lambda v: not isinstance(v, dict)).map(lambda v: json.dumps(v).encode()),
    st.binary(min_size=1, max_size=200).filter(lambda b: _not_json_object(b)),
    st.text(min_size=1, max_size=50).map(lambda s: ("{" + s).encode()),  # truncated objects
    st.binary(max_size=20).map(lambda b: b'{"name": "' + b"\xff\xfe" + b + b'"}'),  # bad UTF-8
    st.just(b'{"a": 1} {"b": 2}'),
)


def _not_json_object(raw: bytes) -> bool:
    try:
        return not isinstance(json.loads(raw), dict)
    except ValueError:
        return True


@FUZZ
@given(action=st.sampled_from(ACTIONS), raw=NOT_AN_OBJECT)
def test_aws_body_that_is_not_a_json_object_is_a_4xx(
    aws_client: AsgiClient, action: str, raw: bytes
) -> None:
    note(f"raw body: {raw!r}")
    response = aws_client.post(f"AWSStepFunctions.{action}", raw)
    assert_aws_error(response, "SerializationException", "ValidationException")


@pytest.mark.parametrize("action", ACTIONS)
def test_aws_empty_body_means_no_members(aws_client: AsgiClient, action: str) -> None:
    response = aws_client.post(f"AWSStepFunctions.{action}", b"")
    if REQUIRED[action]:
        assert_aws_error(response, "ValidationException")
    else:
        assert response.status_code == 200, response.text
        assert isinstance(response.json(), dict)


@FUZZ
@given(
    target=st.one_of(
        st.text(max_size=60),
        st.sampled_from(ACTIONS),  # no prefix
        st.sampled_from(ACTIONS).map(lambda a: f"AWSStepFunctions.{a.lower()}"),
        st.sampled_from(ACTIONS).map(lambda a: f"AmazonStates.{a}"),
        st.text(max_size=30).map(lambda a: f"AWSStepFunctions.{a}"),
    ).filter(lambda t: not t.startswith("AWSStepFunctions.") or t[17:] not in REQUIRED),
    body=st.binary(max_size=50),
)
def test_aws_unknown_target_is_unknown_operation(
    aws_client: AsgiClient, target: str, body: bytes
) -> None:
    # Raw UTF-8 bytes on the wire; line breaks and NULs cannot be in a header at all.
    wire = target.encode().translate(None, b"\r\n\x00")
    response = aws_client.post(wire, body)
    assert_aws_error(response, "UnknownOperationException")


def test_aws_missing_target_is_unknown_operation(aws_client: AsgiClient) -> None:
    assert_aws_error(aws_client.post(None, b"{}"), "UnknownOperationException")


@pytest.mark.parametrize("action", ["CreateStateMachine", "StartExecution", "ListStateMachines"])
def test_aws_body_over_the_size_limit_is_a_4xx(aws_client: AsgiClient, action: str) -> None:
    # Valid JSON that would otherwise be accepted, one byte past the limit.
    filler = "x" * aws.MAX_BODY_BYTES
    raw = json.dumps({"pad": filler}).encode()
    assert len(raw) > aws.MAX_BODY_BYTES
    assert_aws_error(aws_client.post(f"AWSStepFunctions.{action}", raw), "ValidationException")


def test_aws_body_at_the_size_limit_is_read(aws_client: AsgiClient) -> None:
    # The limit is not off by one: a body of exactly MAX_BODY_BYTES is parsed and served.
    head, tail = b'{"pad": "', b'"}'
    raw = head + b"x" * (aws.MAX_BODY_BYTES - len(head) - len(tail)) + tail
    assert len(raw) == aws.MAX_BODY_BYTES
    response = aws_client.post("AWSStepFunctions.ListStateMachines", raw)
    assert response.status_code == 200, response.text[:500]


@FUZZ
@given(action=st.sampled_from(["CreateStateMachine", "CreateActivity"]), text=huge_strings)
def test_aws_huge_names_are_invalid_names(aws_client: AsgiClient, action: str, text: Huge) -> None:
    body = {"name": text, "definition": PASS}
    assert_aws_error(aws_client.call(action, body), "InvalidName")


@FUZZ
@given(definition=huge_strings | garbage.map(json.dumps))
def test_aws_garbage_definitions_are_invalid_definitions(
    aws_client: AsgiClient, definition: str | Huge
) -> None:
    body = {"name": "fuzz-garbage", "definition": definition}
    assert_aws_error(aws_client.call("CreateStateMachine", body), "InvalidDefinition")
    checked = aws_client.ok("ValidateStateMachineDefinition", body)
    assert checked["result"] == "FAIL", checked


# ============================================================================ regressions
# Each test pins one 5xx the fuzzers found (all fixed).

DEEP_ARRAY = "[" * 100_000 + "]" * 100_000  # 200 kB, far under the body limit
DEEP_OBJECT = '{"a":' * 100_000 + "1" + "}" * 100_000


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/state-machines",
        "/api/v1/state-machines/fuzz-std/executions",
        "/api/v1/executions/nope/stop",
        f"/api/v1/callbacks/{'0' * 64}/failure",
    ],
)
@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
def test_rest_non_json_body_to_a_model_is_a_4xx(
    aws_client: AsgiClient, path: str, content_type: str
) -> None:
    response = aws_client.raw_post(path, b'{"name": "x"}', {"Content-Type": content_type})
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:500])
    assert response.json()["code"] == "ValidationException"


@pytest.mark.parametrize("token", [1, ["x"], {"a": 1}, True])
@pytest.mark.parametrize("action", ["ListExecutions", "GetExecutionHistory"])
def test_aws_non_string_next_token_is_a_validation_error(
    aws_client: AsgiClient, arns: dict[str, str], action: str, token: JSON
) -> None:
    body: dict[str, JSON] = {"nextToken": token}
    if action == "ListExecutions":
        body["stateMachineArn"] = arns["standard"]
    else:
        body["executionArn"] = arns["execution"]
    assert_aws_error(aws_client.call(action, body), "ValidationException")


@pytest.mark.parametrize(
    ("definition", "state_name"),
    [
        ("{}", None),
        ("[]", None),
        ("42", None),
        ('{"StartAt": "Nope", "States": {}}', None),
        (PASS, "Nope"),
        ('{"Type": "Pass", "End": true}', 5),
    ],
)
def test_aws_test_state_invalid_definition_is_a_4xx(
    aws_client: AsgiClient, definition: str, state_name: JSON
) -> None:
    body = {"definition": definition, "stateName": state_name}
    assert_aws_error(aws_client.call("TestState", body))


@pytest.mark.parametrize("mock", [5, True, {"errorOutput": "x"}, {"errorOutput": [1]}])
def test_aws_test_state_malformed_mock_is_a_validation_error(
    aws_client: AsgiClient, mock: JSON
) -> None:
    body = {"definition": '{"Type": "Pass", "End": true}', "mock": mock}
    assert_aws_error(aws_client.call("TestState", body), "ValidationException")


@pytest.mark.parametrize("variables", ["[1]", '"text"', "5", "[[1, 2, 3]]"])
def test_aws_test_state_non_object_variables_is_a_validation_error(
    aws_client: AsgiClient, variables: str
) -> None:
    body = {"definition": '{"Type": "Pass", "End": true}', "variables": variables}
    assert_aws_error(aws_client.call("TestState", body), "ValidationException")


@pytest.mark.parametrize("role_arn", [{"a": 1}, ["arn"]])
def test_aws_non_string_role_arn_is_a_validation_error(
    aws_client: AsgiClient, role_arn: JSON
) -> None:
    name = f"fuzz-role-{type(role_arn).__name__}"
    body = {"name": name, "definition": PASS, "roleArn": role_arn}
    assert_aws_error(aws_client.call("CreateStateMachine", body), "ValidationException")


@pytest.mark.parametrize("deep", [DEEP_ARRAY, DEEP_OBJECT], ids=["array", "object"])
@pytest.mark.parametrize(
    "where", ["body", "StartExecution.input", "SendTaskSuccess.output", "TestState.input"]
)
def test_aws_deeply_nested_json_is_a_4xx(
    aws_client: AsgiClient, arns: dict[str, str], deep: str, where: str
) -> None:
    if where == "body":
        response = aws_client.post("AWSStepFunctions.ListStateMachines", deep.encode())
    else:
        action, member = where.split(".")
        body = {
            "StartExecution": {"stateMachineArn": arns["standard"]},
            "SendTaskSuccess": {"taskToken": "0" * 64},
            "TestState": {"definition": PASS},
        }[action]
        response = aws_client.call(action, {**body, member: deep})
    assert_aws_error(response)


@pytest.mark.parametrize(
    "where",
    [
        "CreateActivity.name",
        "CreateStateMachine.name",
        "StartExecution.input",
        "DescribeExecution.executionArn",
        "REST upload name",
    ],
)
def test_lone_surrogate_in_a_string_is_a_4xx(
    aws_client: AsgiClient, arns: dict[str, str], where: str
) -> None:
    if where == "REST upload name":
        raw = '{"name": "rest\\ud800", "definition": ' + PASS + "}"
        response = aws_client.raw_post(
            "/api/v1/state-machines", raw.encode(), {"Content-Type": "application/json"}
        )
        assert 400 <= response.status_code < 500, (response.status_code, response.text[:500])
        return
    action, member = where.split(".")
    body = {
        "CreateActivity": {"name": "act\ud800"},
        "CreateStateMachine": {"name": "sm\ud800", "definition": PASS},
        "StartExecution": {"stateMachineArn": arns["standard"], "input": '{"k": "\\ud800"}'},
        "DescribeExecution": {"executionArn": f"{arns['execution']}\ud800"},
    }[action]
    assert member in body
    assert_aws_error(aws_client.call(action, body))


@pytest.mark.parametrize(
    "raw",
    [
        '{"name": "act\ud800"}'.encode("utf-8", "surrogatepass"),  # the surrogate's own bytes
        '{"name": "act\ud800"}'.encode("utf-16-le", "surrogatepass"),  # JSON may be UTF-16
        b'{"name": "act\\\\\\ud800"}',  # an escaped backslash, then the escape
    ],
    ids=["utf-8", "utf-16", "after-backslash"],
)
def test_lone_surrogate_in_any_encoding_is_a_4xx(aws_client: AsgiClient, raw: bytes) -> None:
    # The AWS endpoint looks for lone surrogates only in bodies that can hold one: these can.
    assert_aws_error(aws_client.post("AWSStepFunctions.CreateActivity", raw))
