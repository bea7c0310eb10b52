"""HTTP tasks (arn:aws:states:::http:invoke) through a real server against real HTTP servers
the tests start on 127.0.0.1: the output shape, 4xx caught, 5xx retried, a timeout, a refused
connection, a callback the target makes later over HTTP, form encoding, and the outbound rules
(metadata and private addresses refused)."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from tests.service.server import Server
from tests.service.test_api_aws import ROLE, _client, unique, wait_status

HTTP = "arn:aws:states:::http:invoke"


@pytest.fixture
def aws(api_server: Server) -> Any:
    api_server.check_alive()
    return _client(api_server.base_url, api_server.key_id, api_server.secret)


@dataclass
class Seen:
    """One request the target received."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes


@dataclass
class Target:
    """A real HTTP server on 127.0.0.1 whose answers depend on the path."""

    base: str
    seen: list[Seen] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    callback_base: str = ""  # the Statewright server, for /callback
    lock: threading.Lock = field(default_factory=threading.Lock)
    failing: set[str] = field(default_factory=set)  # /item?n=... that answer 500 (late)
    in_flight: int = 0
    most: int = 0  # the most requests to /concurrent in flight at once

    def requests_to(self, path: str) -> list[Seen]:
        return [s for s in self.seen if s.path == path]


def _handler(target: Target) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _answer(self, status: int, body: bytes, kind: str = "application/json") -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("X-Target", "yes")
                self.end_headers()
                self.wfile.write(body)
            except OSError:  # the caller gave up (the timeout test)
                self.close_connection = True

        def _handle(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            target.seen.append(
                Seen(
                    self.command,
                    url.path,
                    urllib.parse.parse_qs(url.query),
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                )
            )
            count = target.counts[url.path] = target.counts.get(url.path, 0) + 1
            if url.path == "/ok":
                reply = {"hello": "world", "method": self.command}
                self._answer(200, json.dumps(reply).encode())
            elif url.path == "/item":
                n = urllib.parse.parse_qs(url.query)["n"][0]
                if n in target.failing:
                    time.sleep(0.5)  # the items that succeed have answered by then
                    self._answer(500, b'{"message": "not now"}')
                else:
                    self._answer(200, json.dumps({"n": int(n)}).encode())
            elif url.path == "/text":
                self._answer(200, b"plain words", "text/plain")
            elif url.path == "/missing":
                self._answer(404, b'{"message": "no such thing"}')
            elif url.path == "/flaky":
                if count <= 2:
                    self._answer(503, b'{"message": "busy"}')
                else:
                    self._answer(200, json.dumps({"attempt": count}).encode())
            elif url.path == "/concurrent":
                with target.lock:
                    target.in_flight += 1
                    target.most = max(target.most, target.in_flight)
                time.sleep(0.3)
                with target.lock:
                    target.in_flight -= 1
                self._answer(200, b'{"ok": true}')
            elif url.path == "/slow":
                time.sleep(3)
                self._answer(200, b"{}")
            elif url.path == "/callback":
                token = json.loads(body)["token"]
                self._answer(202, b'{"accepted": true}')

                def later() -> None:  # the external system answers a little later
                    time.sleep(0.3)
                    httpx.post(
                        f"{target.callback_base}/api/v1/callbacks/{token}/success",
                        json={"approved": True},
                        timeout=10,
                    )

                threading.Thread(target=later, daemon=True).start()
            else:
                self._answer(500, b"unexpected path")

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

    return Handler


@pytest.fixture(scope="module")
def target() -> Iterator[Target]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    made = Target(f"http://127.0.0.1:{server.server_address[1]}")
    server.RequestHandlerClass = _handler(made)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield made
    server.shutdown()
    server.server_close()


def _run(
    server: Server,
    aws: Any,
    definition: dict[str, Any],
    data: Any = None,
    wanted: str = "SUCCEEDED",
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    arn = aws.create_state_machine(
        name=unique("http"), definition=json.dumps(definition), roleArn=ROLE
    )["stateMachineArn"]
    execution = aws.start_execution(stateMachineArn=arn, input=json.dumps(data or {}))[
        "executionArn"
    ]
    done = wait_status(server, aws, execution, wanted)
    history = aws.get_execution_history(executionArn=execution)["events"]
    return done, history


def _task(parameters: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "StartAt": "Call",
        "States": {
            "Call": {
                "Type": "Task",
                "Resource": HTTP,
                "Parameters": parameters,
                "End": True,
                **extra,
            }
        },
    }


def test_a_json_response_becomes_the_task_output(
    api_server: Server, aws: Any, target: Target
) -> None:
    done, history = _run(
        api_server,
        aws,
        _task(
            {
                "ApiEndpoint": f"{target.base}/ok",
                "Method": "POST",
                "Headers": {"X-Custom": "yes"},
                "QueryParameters": {"q": "a b", "many": ["1", "2"]},
                "RequestBody": {"order.$": "$.order"},
            }
        ),
        {"order": {"id": 7}},
    )
    output = json.loads(done["output"])
    assert output["StatusCode"] == 200
    assert output["StatusText"] == "OK"
    assert output["ResponseBody"] == {"hello": "world", "method": "POST"}
    assert output["Headers"]["x-target"] == ["yes"]
    types = [e["type"] for e in history]
    assert types[types.index("TaskScheduled") :][:3] == [
        "TaskScheduled",
        "TaskStarted",
        "TaskSucceeded",
    ]
    seen = target.requests_to("/ok")[-1]
    assert seen.method == "POST"
    assert json.loads(seen.body) == {"order": {"id": 7}}
    assert seen.headers["content-type"].startswith("application/json")
    assert seen.headers["x-custom"] == "yes"
    assert seen.query == {"q": ["a b"], "many": ["1", "2"]}
    # The idempotency key: the execution and the TaskScheduled event, stable for the attempt.
    scheduled = next(e for e in history if e["type"] == "TaskScheduled")
    assert seen.headers["idempotency-key"] == f"{done['executionArn']}:{scheduled['id']}"


def test_a_text_response_and_form_encoding(api_server: Server, aws: Any, target: Target) -> None:
    done, _ = _run(
        api_server,
        aws,
        _task(
            {
                "ApiEndpoint": f"{target.base}/text",
                "Method": "PUT",
                "RequestBody": {"name": "Ada", "tags": ["x", "y"]},
                "Transform": {
                    "RequestBodyEncoding": "URL_ENCODED",
                    "RequestEncodingOptions": {"ArrayFormat": "BRACKETS"},
                },
            }
        ),
    )
    assert json.loads(done["output"])["ResponseBody"] == "plain words"
    seen = target.requests_to("/text")[-1]
    assert seen.headers["content-type"] == "application/x-www-form-urlencoded"
    assert urllib.parse.parse_qsl(seen.body.decode()) == [
        ("name", "Ada"),
        ("tags[]", "x"),
        ("tags[]", "y"),
    ]


def test_a_404_is_caught_by_its_status_code_error(
    api_server: Server, aws: Any, target: Target
) -> None:
    definition = _task(
        {"ApiEndpoint": f"{target.base}/missing", "Method": "GET"},
        Catch=[
            {
                "ErrorEquals": ["States.Http.StatusCode.404"],
                "ResultPath": "$.error",
                "Next": "Handled",
            }
        ],
    )
    definition["States"]["Call"].pop("End")
    definition["States"]["Call"]["Next"] = "Done"
    definition["States"]["Done"] = {"Type": "Succeed"}
    definition["States"]["Handled"] = {"Type": "Pass", "End": True}
    done, history = _run(api_server, aws, definition)
    error = json.loads(done["output"])["error"]
    assert error["Error"] == "States.Http.StatusCode.404"
    cause = json.loads(error["Cause"])
    assert cause["StatusCode"] == 404
    assert cause["ResponseBody"] == {"message": "no such thing"}
    assert any(e["type"] == "TaskFailed" for e in history)


def test_a_503_is_retried_until_it_succeeds(api_server: Server, aws: Any, target: Target) -> None:
    target.counts["/flaky"] = 0
    done, history = _run(
        api_server,
        aws,
        _task(
            {"ApiEndpoint": f"{target.base}/flaky", "Method": "GET"},
            Retry=[
                {
                    "ErrorEquals": ["States.Http.StatusCode.503"],
                    "IntervalSeconds": 1,
                    "MaxAttempts": 3,
                    "BackoffRate": 1,
                }
            ],
        ),
    )
    assert json.loads(done["output"])["ResponseBody"] == {"attempt": 3}
    assert [e["type"] for e in history].count("TaskFailed") == 2
    # Each attempt is its own task: its own idempotency key.
    keys = [s.headers["idempotency-key"] for s in target.requests_to("/flaky")[-3:]]
    assert len(set(keys)) == 3


@pytest.mark.parametrize(
    ("endpoint", "error"),
    [
        ("/slow", "States.Http.Socket"),  # the test servers time out requests after 1.5 s
        ("http://127.0.0.1:{closed}/x", "States.Http.Connection"),
        ("http://169.254.169.254/latest/meta-data/", "States.Http.DestinationNotAllowed"),
        ("http://10.20.30.40/internal", "States.Http.DestinationNotAllowed"),
        ("ftp://127.0.0.1/file", "States.Runtime"),
    ],
)
def test_transport_failures_have_their_own_errors(
    api_server: Server, aws: Any, target: Target, endpoint: str, error: str
) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    url = endpoint.format(closed=closed)
    url = target.base + url if url.startswith("/") else url
    started = time.monotonic()
    done, history = _run(
        api_server, aws, _task({"ApiEndpoint": url, "Method": "GET"}), wanted="FAILED"
    )
    assert done["error"] == error, done
    assert done["cause"]
    if error == "States.Http.DestinationNotAllowed":
        assert "STATEWRIGHT_HTTP_ALLOW" in done["cause"]
        assert time.monotonic() - started < 10  # refused, not tried until a timeout
    failed = next(e for e in history if e["type"] == "TaskFailed")
    assert failed["taskFailedEventDetails"]["error"] == error


def test_wait_for_task_token_gets_the_callback_the_target_makes_later(
    api_server: Server, aws: Any, target: Target
) -> None:
    target.callback_base = api_server.base_url
    done, history = _run_callback(api_server, aws, target)
    assert json.loads(done["output"]) == {"approved": True}
    types = [e["type"] for e in history]
    assert types.index("TaskSubmitted") < types.index("TaskSucceeded")


def _run_callback(
    server: Server, aws: Any, target: Target
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    definition = _task(
        {
            "ApiEndpoint": f"{target.base}/callback",
            "Method": "POST",
            "RequestBody": {"token.$": "$$.Task.Token"},
        }
    )
    definition["States"]["Call"]["Resource"] = HTTP + ".waitForTaskToken"
    return _run(server, aws, definition)


def test_requests_to_one_host_are_limited(api_server: Server, aws: Any, target: Target) -> None:
    target.most = 0
    definition = {
        "StartAt": "Fan",
        "States": {
            "Fan": {
                "Type": "Map",
                "ItemsPath": "$.items",
                "MaxConcurrency": 12,
                "ItemProcessor": {
                    "StartAt": "Call",
                    "States": {
                        "Call": {
                            "Type": "Task",
                            "Resource": HTTP,
                            "Parameters": {
                                "ApiEndpoint": f"{target.base}/concurrent",
                                "Method": "POST",
                                "RequestBody.$": "$",
                            },
                            "End": True,
                        }
                    },
                },
                "End": True,
            }
        },
    }
    done, _ = _run(api_server, aws, definition, {"items": list(range(12))})
    assert len(json.loads(done["output"])) == 12
    # The test servers allow 4 requests in flight per host (STATEWRIGHT_HTTP_PER_HOST).
    assert 2 <= target.most <= 4, target.most


def test_a_redriven_map_calls_again_only_the_items_that_failed(
    api_server: Server, aws: Any, target: Target
) -> None:
    definition = {
        "StartAt": "Each",
        "States": {
            "Each": {
                "Type": "Map",
                "ItemProcessor": {
                    "StartAt": "Call",
                    "States": {
                        "Call": {
                            "Type": "Task",
                            "Resource": HTTP,
                            "Parameters": {
                                "ApiEndpoint": f"{target.base}/item",
                                "Method": "GET",
                                "QueryParameters": {"n.$": "States.Format('{}', $)"},
                            },
                            "ResultSelector": {"n.$": "$.ResponseBody.n"},
                            "End": True,
                        }
                    },
                },
                "End": True,
            }
        },
    }
    before = len(target.requests_to("/item"))
    target.failing = {"101", "103"}
    arn = aws.create_state_machine(
        name=unique("redrive"), definition=json.dumps(definition), roleArn=ROLE
    )["stateMachineArn"]
    execution = aws.start_execution(stateMachineArn=arn, input=json.dumps([100, 101, 102, 103]))[
        "executionArn"
    ]
    wait_status(api_server, aws, execution, "FAILED")
    target.failing = set()
    aws.redrive_execution(executionArn=execution)
    done = wait_status(api_server, aws, execution, "SUCCEEDED")
    assert json.loads(done["output"]) == [{"n": 100}, {"n": 101}, {"n": 102}, {"n": 103}]
    calls = [s.query["n"][0] for s in target.requests_to("/item")[before:]]
    # The items that succeeded were not called again; the failed and the aborted ones were.
    assert sorted(calls) == ["100", "101", "101", "102", "103", "103"]
    assert done["redriveCount"] == 1
