"""The AWS CLI (v1, ``pip install awscli``) against the real server on the SQLite store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.service.server import Server

JSON = Any
AWS = Path(sys.executable).parent / "aws"
ROLE = "arn:aws:iam::123456789012:role/statewright-test"
DEFINITION = {
    "StartAt": "Greet",
    "States": {
        "Greet": {
            "Type": "Pass",
            "Parameters": {"greeting.$": "States.Format('Hello, {}!', $.name)"},
            "Next": "Done",
        },
        "Done": {"Type": "Succeed"},
    },
}

pytestmark = pytest.mark.skipif(
    not AWS.exists(), reason=f"the AWS CLI is not installed ({AWS}); pip install awscli"
)


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("aws-cli-home")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        {
            "AWS_ACCESS_KEY_ID": "x",
            "AWS_SECRET_ACCESS_KEY": "x",
            "AWS_MAX_ATTEMPTS": "1",
            # no user config or credentials files: the test sees only what it sets
            "AWS_CONFIG_FILE": str(home / "config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(home / "credentials"),
            "HOME": str(home),
        }
    )
    return env


def aws(
    server: Server, env: dict[str, str], *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    process = subprocess.run(
        [
            str(AWS),
            "stepfunctions",
            *args,
            "--endpoint-url",
            server.base_url,
            "--region",
            "us-east-1",
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**env, "AWS_ACCESS_KEY_ID": server.key_id, "AWS_SECRET_ACCESS_KEY": server.secret},
        check=False,
    )
    if check:
        assert process.returncode == 0, (
            f"aws {' '.join(args)} exited {process.returncode}: {process.stderr}\n"
            f"server log tail:\n{server.tail()}"
        )
    return process


def aws_json(server: Server, env: dict[str, str], *args: str) -> dict[str, JSON]:
    out: dict[str, JSON] = json.loads(aws(server, env, *args).stdout)
    return out


def test_cli_create_start_describe_and_history(
    sqlite_api_server: Server, cli_env: dict[str, str]
) -> None:
    server = sqlite_api_server
    name = f"cli-{uuid.uuid4().hex[:10]}"
    created = aws_json(
        server,
        cli_env,
        "create-state-machine",
        "--name",
        name,
        "--definition",
        json.dumps(DEFINITION),
        "--role-arn",
        ROLE,
    )
    machine = created["stateMachineArn"]
    assert machine == f"arn:aws:states:us-east-1:123456789012:stateMachine:{name}"

    started = aws_json(
        server,
        cli_env,
        "start-execution",
        "--state-machine-arn",
        machine,
        "--name",
        "first",
        "--input",
        '{"name": "CLI"}',
    )
    execution = started["executionArn"]
    assert execution == f"arn:aws:states:us-east-1:123456789012:execution:{name}:first"

    def succeeded() -> dict[str, JSON] | None:
        described = aws_json(server, cli_env, "describe-execution", "--execution-arn", execution)
        assert described["status"] in {"RUNNING", "SUCCEEDED"}, described
        return described if described["status"] == "SUCCEEDED" else None

    done = server.wait_for(succeeded, "the execution to succeed (via the CLI)", every=0.2)
    assert json.loads(done["output"]) == {"greeting": "Hello, CLI!"}
    assert done["name"] == "first"

    history = aws_json(server, cli_env, "get-execution-history", "--execution-arn", execution)
    types = [e["type"] for e in history["events"]]
    assert types == [
        "ExecutionStarted",
        "PassStateEntered",
        "PassStateExited",
        "SucceedStateEntered",
        "SucceedStateExited",
        "ExecutionSucceeded",
    ]
    # the CLI follows nextToken itself: small server pages give the same events
    paged = aws_json(
        server,
        cli_env,
        "get-execution-history",
        "--execution-arn",
        execution,
        "--page-size",
        "2",
    )
    assert [e["id"] for e in paged["events"]] == [e["id"] for e in history["events"]]
    reverse = aws_json(
        server,
        cli_env,
        "get-execution-history",
        "--execution-arn",
        execution,
        "--reverse-order",
    )
    assert [e["type"] for e in reverse["events"]] == types[::-1]


def test_cli_error_for_a_missing_execution(
    sqlite_api_server: Server, cli_env: dict[str, str]
) -> None:
    missing = "arn:aws:states:us-east-1:123456789012:execution:nothing-here:nope"
    process = aws(
        sqlite_api_server, cli_env, "describe-execution", "--execution-arn", missing, check=False
    )
    assert process.returncode == 255, (process.returncode, process.stdout, process.stderr)
    assert "ExecutionDoesNotExist" in process.stderr
    assert "DescribeExecution" in process.stderr
    assert process.stdout == ""
