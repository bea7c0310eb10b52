"""Connections for HTTP tasks through a real server: BASIC, API_KEY and OAuth client
credentials reach the target, a missing connection is a clear task error, and the secrets
appear in no history, API answer, log or database file."""

from __future__ import annotations

import base64
import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from tests.service.server import Server
from tests.service.test_api_aws import ROLE, _client, wait_status

PASSWORD = "pw-" + uuid.uuid4().hex  # unique: found anywhere means leaked
API_KEY = "key-" + uuid.uuid4().hex
CLIENT_SECRET = "cs-" + uuid.uuid4().hex
TOKEN = "tok-" + uuid.uuid4().hex


class Target:
    def __init__(self) -> None:
        self.token_calls = 0
        target = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = self.rfile.read(length).decode()
                auth = self.headers.get("Authorization", "")
                if self.path == "/token":
                    target.token_calls += 1
                    expected = base64.b64encode(f"client-1:{CLIENT_SECRET}".encode()).decode()
                    if auth == f"Basic {expected}" and "grant_type=client_credentials" in form:
                        self._reply(200, {"access_token": TOKEN, "expires_in": 3600})
                    else:
                        self._reply(401, {"error": "invalid_client"})
                    return
                basic = base64.b64encode(f"ada:{PASSWORD}".encode()).decode()
                ok = {
                    "/basic": auth == f"Basic {basic}",
                    "/apikey": self.headers.get("X-Api-Key") == API_KEY,
                    "/oauth": auth == f"Bearer {TOKEN}",
                }.get(self.path, False)
                self._reply(200 if ok else 401, {"authorized": ok})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def target() -> Iterator[Target]:
    made = Target()
    yield made
    made.server.shutdown()
    made.server.server_close()


def _connection(server: Server, kind: str, parameters: dict[str, str]) -> str:
    name = f"conn-{uuid.uuid4().hex[:8]}"
    made = httpx.post(
        f"{server.base_url}/api/v1/connections",
        json={"name": name, "type": kind, "parameters": parameters},
        headers=server.headers,
    )
    assert made.status_code == 201, made.text
    arn: str = made.json()["arn"]
    return arn


def _call(server: Server, endpoint: str, connection: str, wanted: str = "SUCCEEDED") -> Any:
    sfn = _client(server.base_url, server.key_id, server.secret)
    definition = {
        "StartAt": "Call",
        "States": {
            "Call": {
                "Type": "Task",
                "Resource": "arn:aws:states:::http:invoke",
                "Parameters": {
                    "ApiEndpoint": endpoint,
                    "Method": "POST",
                    "Authentication": {"ConnectionArn": connection},
                    "RequestBody": {"hello": "there"},
                },
                "End": True,
            }
        },
    }
    arn = sfn.create_state_machine(
        name=f"conn-{uuid.uuid4().hex[:8]}", definition=json.dumps(definition), roleArn=ROLE
    )["stateMachineArn"]
    execution = sfn.start_execution(stateMachineArn=arn, input="{}")["executionArn"]
    done = wait_status(server, sfn, execution, wanted)
    history = sfn.get_execution_history(executionArn=execution, includeExecutionData=True)
    return done, history


def test_connections_authenticate_and_their_secrets_never_show(
    api_server: Server, target: Target
) -> None:
    basic = _connection(api_server, "BASIC", {"username": "ada", "password": PASSWORD})
    apikey = _connection(api_server, "API_KEY", {"name": "X-Api-Key", "value": API_KEY})
    oauth = _connection(
        api_server,
        "OAUTH_CLIENT_CREDENTIALS",
        {
            "tokenEndpoint": f"{target.base}/token",
            "clientId": "client-1",
            "clientSecret": CLIENT_SECRET,
            "scope": "orders",
        },
    )
    answers: list[str] = []
    token_calls = target.token_calls
    for endpoint, connection in (
        ("/basic", basic),
        ("/apikey", apikey),
        ("/oauth", oauth),
        ("/oauth", oauth),
    ):
        done, history = _call(api_server, target.base + endpoint, connection)
        assert json.loads(done["output"])["ResponseBody"] == {"authorized": True}
        answers.append(json.dumps(done, default=str) + json.dumps(history, default=str))
    assert target.token_calls == token_calls + 1  # the OAuth token is cached

    listed = httpx.get(f"{api_server.base_url}/api/v1/connections", headers=api_server.headers)
    assert listed.status_code == 200
    mine = {c["arn"]: c for c in listed.json()}
    assert mine[basic]["parameters"] == {"username": "ada"}
    assert mine[apikey]["parameters"] == {"name": "X-Api-Key"}
    assert "clientSecret" not in mine[oauth]["parameters"]
    answers.append(listed.text)

    everything = "\n".join(answers) + api_server.log_path.read_text(errors="replace")
    if api_server.backend == "sqlite":
        database = api_server.database_url.removeprefix("sqlite:///")
        with open(database, "rb") as handle:
            everything += handle.read().decode("latin-1")
    for secret in (PASSWORD, API_KEY, CLIENT_SECRET, TOKEN):
        assert secret not in everything


def test_a_missing_connection_fails_the_task_clearly(api_server: Server, target: Target) -> None:
    missing = "arn:aws:events:us-east-1:123456789012:connection/nobody-made-this"
    done, _ = _call(api_server, target.base + "/basic", missing, wanted="FAILED")
    assert done["error"] == "Events.ConnectionResource.NotFound"
    assert "nobody-made-this" in done["cause"]


def test_bad_connections_are_refused_with_a_reason(api_server: Server) -> None:
    url = f"{api_server.base_url}/api/v1/connections"
    for body, fragment in (
        ({"name": "x", "type": "DIGEST", "parameters": {}}, "type must be one of"),
        ({"name": "x", "type": "BASIC", "parameters": {"username": "a"}}, "'password'"),
        ({"name": "bad name", "type": "API_KEY", "parameters": {}}, "Invalid connection name"),
    ):
        refused = httpx.post(url, json=body, headers=api_server.headers)
        assert refused.status_code == 400, refused.text
        assert fragment in refused.json()["message"]
    name = f"dup-{uuid.uuid4().hex[:8]}"
    body = {"name": name, "type": "API_KEY", "parameters": {"name": "K", "value": "v"}}
    assert httpx.post(url, json=body, headers=api_server.headers).status_code == 201
    again = httpx.post(url, json=body, headers=api_server.headers)
    assert again.status_code == 409
    assert httpx.get(f"{url}/{name}", headers=api_server.headers).status_code == 200
    assert httpx.delete(f"{url}/{name}", headers=api_server.headers).status_code == 204
    assert httpx.get(f"{url}/{name}", headers=api_server.headers).status_code == 404
