"""API keys against a real server: SigV4 on the AWS API (boto3 signs; a wrong secret, an
unknown key, an unsigned or altered request are refused), bearer keys on the REST API,
callbacks by token alone, revocation, and `statewright keys`."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock

import boto3
import httpx
import pytest
from botocore import UNSIGNED
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.service.server import ROOT, SERVER_KEY, Server, create_key

TARGET = "AWSStepFunctions.ListStateMachines"


def _sfn(server: Server, key_id: str, secret: str, **config: Any) -> Any:
    return boto3.client(
        "stepfunctions",
        endpoint_url=server.base_url,
        region_name="us-east-1",
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        config=Config(retries={"total_max_attempts": 1}, inject_host_prefix=False, **config),
    )


def _error(excinfo: pytest.ExceptionInfo[ClientError]) -> tuple[str, int, str]:
    response = excinfo.value.response
    return (
        response["Error"]["Code"],
        response["ResponseMetadata"]["HTTPStatusCode"],
        response["Error"]["Message"],
    )


def _signed(
    server: Server, body: bytes, key: tuple[str, str], when: datetime | None = None
) -> dict[str, str]:
    request = AWSRequest(
        "POST",
        f"{server.base_url}/",
        data=body,
        headers={"Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": TARGET},
    )
    signer = SigV4Auth(Credentials(*key), "states", "us-east-1")
    if when is None:
        signer.add_auth(request)
    else:
        # botocore stamps the request with its clock: sign as if it were ``when``.
        with mock.patch("botocore.auth.get_current_datetime", return_value=when):
            signer.add_auth(request)
    return dict(request.headers.items())


# ---------------------------------------------------------------------------- AWS API


def test_boto3_with_the_right_key_is_served(sqlite_api_server: Server) -> None:
    server = sqlite_api_server
    listed = _sfn(server, server.key_id, server.secret).list_state_machines()
    assert listed["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_boto3_with_a_wrong_secret_is_refused(sqlite_api_server: Server) -> None:
    server = sqlite_api_server
    with pytest.raises(ClientError) as excinfo:
        # One character changed (a fixed replacement would be no change if it were already so).
        wrong = server.secret[:-1] + ("x" if server.secret[-1] != "x" else "y")
        _sfn(server, server.key_id, wrong).list_state_machines()
    code, status, message = _error(excinfo)
    assert (code, status) == ("InvalidSignatureException", 403)
    assert "signature we calculated does not match" in message


def test_boto3_with_an_unknown_key_is_refused(sqlite_api_server: Server) -> None:
    with pytest.raises(ClientError) as excinfo:
        _sfn(sqlite_api_server, "SWKNOSUCHKEY00000000", "x" * 40).list_state_machines()
    assert _error(excinfo)[:2] == ("UnrecognizedClientException", 403)


def test_an_unsigned_request_is_refused(sqlite_api_server: Server) -> None:
    with pytest.raises(ClientError) as excinfo:
        _sfn(sqlite_api_server, "x", "x", signature_version=UNSIGNED).list_state_machines()
    assert _error(excinfo)[:2] == ("MissingAuthenticationTokenException", 403)


def test_a_body_changed_after_signing_is_refused(sqlite_api_server: Server) -> None:
    server = sqlite_api_server
    headers = _signed(server, b"{}", (server.key_id, server.secret))
    ok = httpx.post(f"{server.base_url}/", headers=headers, content=b"{}")
    assert ok.status_code == 200, ok.text
    altered = httpx.post(f"{server.base_url}/", headers=headers, content=b'{"maxResults":1}')
    assert altered.status_code == 403
    assert altered.json()["__type"] == "InvalidSignatureException"


def test_a_signature_older_than_15_minutes_is_refused(sqlite_api_server: Server) -> None:
    server = sqlite_api_server
    key = (server.key_id, server.secret)
    recent = _signed(server, b"{}", key, datetime.now(UTC) - timedelta(minutes=10))
    assert httpx.post(f"{server.base_url}/", headers=recent, content=b"{}").status_code == 200
    stale = _signed(server, b"{}", key, datetime.now(UTC) - timedelta(minutes=20))
    refused = httpx.post(f"{server.base_url}/", headers=stale, content=b"{}")
    assert refused.status_code == 403
    assert refused.json()["__type"] == "InvalidSignatureException"
    assert refused.json()["message"].startswith("Signature expired:")


def test_a_revoked_key_stops_working(sqlite_api_server: Server) -> None:
    server = sqlite_api_server
    key_id, secret = create_key(server.database_url, "short-lived")
    client = _sfn(server, key_id, secret)
    client.list_state_machines()
    revoked = _keys_cli(server, "revoke", key_id)
    assert revoked.returncode == 0, revoked.stderr
    deadline = time.monotonic() + 15  # keys are cached for a few seconds
    while True:
        try:
            client.list_state_machines()
        except ClientError as exc:
            assert exc.response["Error"]["Code"] == "UnrecognizedClientException"
            break
        assert time.monotonic() < deadline, "the revoked key still works"
        time.sleep(0.2)
    listed = json.loads(_keys_cli(server, "list", "--json").stdout)
    mine = [k for k in listed if k["id"] == key_id]
    assert len(mine) == 1 and mine[0]["revoked_at"] is not None
    assert "secret" not in mine[0]


# ---------------------------------------------------------------------------- REST API


def test_rest_wants_a_key(sqlite_api_server: Server) -> None:
    url = f"{sqlite_api_server.base_url}/api/v1/state-machines"
    missing = httpx.get(url)
    assert missing.status_code == 401
    assert missing.json()["code"] == "MissingAuthenticationTokenException"
    assert missing.headers["www-authenticate"].startswith("Bearer")
    wrong = httpx.get(url, headers={"Authorization": f"Bearer {sqlite_api_server.key_id}:nope"})
    assert wrong.status_code == 401
    assert wrong.json()["code"] == "InvalidAuthorization"
    unknown = httpx.get(url, headers={"Authorization": "Bearer SWKNOSUCHKEY00000000:x"})
    assert unknown.status_code == 401
    assert unknown.json()["code"] == "UnrecognizedClientException"
    assert httpx.get(url, headers=sqlite_api_server.headers).status_code == 200


def test_rest_takes_basic_auth_too(sqlite_api_server: Server) -> None:
    server = sqlite_api_server
    url = f"{server.base_url}/api/v1/state-machines"
    assert httpx.get(url, auth=(server.key_id, server.secret)).status_code == 200
    assert httpx.get(url, auth=(server.key_id, "wrong")).status_code == 401


def test_health_and_docs_are_open_callbacks_need_only_their_token(
    sqlite_api_server: Server,
) -> None:
    base = sqlite_api_server.base_url
    assert httpx.get(f"{base}/healthz").status_code == 200
    assert httpx.get(f"{base}/openapi.json").status_code == 200
    # No key, an unknown token: the callback route answers about the token, not the key.
    answer = httpx.post(f"{base}/api/v1/callbacks/{'A' * 40}/heartbeat")
    assert answer.status_code == 400, answer.text
    assert answer.json()["code"] == "InvalidToken"


# What HTTP allows in a header value (RFC 9110: visible ASCII, space, tab, obs-text bytes).
HEADER_TEXT = st.text(
    alphabet=st.characters(codec="latin-1", exclude_categories=("Cc",)) | st.sampled_from(" \t"),
    max_size=300,
)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    authorization=st.one_of(
        HEADER_TEXT,
        st.builds(lambda s: "Bearer " + s, HEADER_TEXT),
        st.builds(lambda s: "Basic " + s, HEADER_TEXT),
        st.builds(
            lambda s: "AWS4-HMAC-SHA256 " + s,
            st.text(alphabet="Credential=SignedHeaders=Signature/;,= abc0123", max_size=200),
        ),
    ),
)
def test_hostile_authorization_is_refused_not_5xx(
    sqlite_api_server: Server, authorization: str
) -> None:
    header = authorization.strip(" \t").encode("latin-1") or b"-"
    base = sqlite_api_server.base_url
    with httpx.Client(timeout=10) as client:
        rest = client.get(f"{base}/api/v1/state-machines", headers=[(b"Authorization", header)])
        amz = client.post(
            f"{base}/",
            content=b"{}",
            headers=[
                (b"Authorization", header),
                (b"X-Amz-Target", TARGET.encode()),
                (b"X-Amz-Date", datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ").encode()),
            ],
        )
    assert rest.status_code in (400, 401), rest.text
    assert amz.status_code in (400, 403), amz.text
    assert amz.json()["__type"].endswith("Exception")


# ---------------------------------------------------------------------------- the CLI


def _keys_cli(server: Server, *args: str, key: str | None = SERVER_KEY) -> Any:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STATEWRIGHT_")}
    if key is not None:
        env["STATEWRIGHT_SECRET_KEY"] = key
    command = [sys.executable, "-m", "service.cli", "keys", *args]
    if args[0] != "server-key":
        command += ["--database-url", server.database_url]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def test_keys_create_prints_a_usable_key_and_needs_the_server_key(
    sqlite_api_server: Server,
) -> None:
    server = sqlite_api_server
    made = _keys_cli(server, "create", "--name", "reporting")
    assert made.returncode == 0, made.stderr
    key_id = made.stdout.split("id:")[1].split()[0]
    secret = made.stdout.split("secret:")[1].split()[0]
    assert len(key_id) == 20 and key_id.startswith("SWK")
    assert len(secret) == 40
    token = base64.b64encode(f"{key_id}:{secret}".encode()).decode()
    answer = httpx.get(
        f"{server.base_url}/api/v1/state-machines", headers={"Authorization": f"Basic {token}"}
    )
    assert answer.status_code == 200
    # The secret is not kept in plain text anywhere in the database file.
    database = server.database_url.removeprefix("sqlite:///")
    with open(database, "rb") as handle:
        assert secret.encode() not in handle.read()

    no_key = _keys_cli(server, "create", "--name", "x", key=None)
    assert no_key.returncode == 2
    assert "STATEWRIGHT_SECRET_KEY is not set" in no_key.stderr
    short = _keys_cli(server, "create", "--name", "x", key="short")
    assert short.returncode == 2
    assert "at least 32" in short.stderr
    wrong_server_key = _keys_cli(server, "create", "--name", "y" * 81)
    assert wrong_server_key.returncode == 2
    assert "1 to 80 characters" in wrong_server_key.stderr
    fresh = _keys_cli(server, "server-key", key=None)
    assert fresh.returncode == 0 and len(fresh.stdout.strip()) >= 32


def test_serve_without_a_server_key_says_what_to_set(tmp_path: Any) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STATEWRIGHT_")}
    done = subprocess.run(
        [
            *(sys.executable, "-m", "service.cli", "serve"),
            *("--database-url", f"sqlite:///{tmp_path / 'x.db'}", "--port", "1"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "STATEWRIGHT_SECRET_KEY is not set" in done.stderr
    assert "--no-auth" in done.stderr
