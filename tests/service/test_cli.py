"""The ``statewright`` console script, run for real in subprocesses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HELLO = "definitions/hello-world.json"
ORDER = "definitions/order-fulfilment.json"
ORDER_INPUT = "@definitions/examples/order-fulfilment.input.json"
ORDER_MOCK = "definitions/examples/order-fulfilment.mock.json"
EXIT_OK, EXIT_NOT_SUCCEEDED, EXIT_USAGE = 0, 1, 2


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def usage_error(process: subprocess.CompletedProcess[str]) -> str:
    """Assert a clean exit-2 failure and return its stderr."""
    assert process.returncode == EXIT_USAGE, (process.stdout, process.stderr)
    assert process.stdout == ""
    assert process.stderr.startswith("statewright: ")
    assert "Traceback" not in process.stderr
    return process.stderr


def order(test_case: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return cli(
        "run",
        ORDER,
        "--input",
        ORDER_INPUT,
        "--mock-config",
        ORDER_MOCK,
        "--test-case",
        test_case,
        *extra,
    )


# ---------------------------------------------------------------------------- run


def test_run_hello_world_readable() -> None:
    process = cli("run", HELLO, "--input", '{"name": "Ann", "excited": true}')
    assert process.returncode == EXIT_OK, process.stderr
    assert process.stderr == ""
    lines = process.stdout.splitlines()
    assert lines[0] == "status: SUCCEEDED"
    assert '"message": "Hello, Ann! Great to see you."' in process.stdout
    assert "states: Greet -> Pause -> HowExcited -> Cheer" in lines
    assert lines[-1] == "events: 10"


def test_run_hello_world_default_branch() -> None:
    process = cli("run", HELLO, "--input", '{"name": "Bo", "excited": false}')
    assert process.returncode == EXIT_OK
    assert 'output: "Hello, Bo!"' in process.stdout
    assert "states: Greet -> Pause -> HowExcited -> Done" in process.stdout


def test_run_json() -> None:
    process = cli("run", HELLO, "--input", '{"name": "Ann", "excited": false}', "--json")
    assert process.returncode == EXIT_OK
    assert process.stderr == ""
    assert len(process.stdout.strip().splitlines()) == 1
    document = json.loads(process.stdout)
    assert set(document) == {"status", "output", "error", "cause", "events"}
    assert document["status"] == "SUCCEEDED"
    assert isinstance(document["output"], str)
    assert json.loads(document["output"]) == "Hello, Ann!"
    assert (document["error"], document["cause"]) == (None, None)
    kinds = [event["type"] for event in document["events"]]
    assert kinds[0] == "ExecutionStarted"
    assert kinds[-1] == "ExecutionSucceeded"
    assert "WaitStateExited" in kinds
    assert [event["id"] for event in document["events"]] == list(range(1, len(kinds) + 1))
    started = document["events"][0]["executionStartedEventDetails"]
    assert json.loads(started["input"]) == {"name": "Ann", "excited": False}


def test_run_failing_execution_exits_1() -> None:
    process = cli("run", HELLO)  # input {} has no $.name
    assert process.returncode == EXIT_NOT_SUCCEEDED
    assert process.stdout.startswith("status: FAILED\n")
    assert "error:  States.Runtime" in process.stdout
    assert "Traceback" not in process.stdout + process.stderr


def test_run_mock_config_happy_path() -> None:
    process = order("HappyPath")
    assert process.returncode == EXIT_OK, process.stdout + process.stderr
    assert process.stdout.startswith("status: SUCCEEDED\n")
    assert process.stdout.count('"tracking": "TRK-1"') == 3


def test_run_mock_config_happy_path_json() -> None:
    process = order("HappyPath", "--json")
    document = json.loads(process.stdout)
    assert document["status"] == "SUCCEEDED"
    assert json.loads(document["output"]) == [{"tracking": "TRK-1"}] * 3


def test_run_mock_config_flaky_payments_retries() -> None:
    document = json.loads(order("FlakyPayments", "--json").stdout)
    assert document["status"] == "SUCCEEDED"
    kinds = [event["type"] for event in document["events"]]
    assert kinds.count("TaskFailed") == 2  # two 503s, then the third attempt succeeds


def test_run_mock_config_warehouse_down() -> None:
    process = order("WarehouseDown")
    assert process.returncode == EXIT_NOT_SUCCEEDED
    assert "status: FAILED" in process.stdout
    assert "error:  Order.ShippingFailed" in process.stdout
    assert "cause:  Bad Gateway" in process.stdout
    document = json.loads(order("WarehouseDown", "--json").stdout)
    assert (document["status"], document["error"], document["cause"]) == (
        "FAILED",
        "Order.ShippingFailed",
        "Bad Gateway",
    )
    assert document["output"] is None


def test_run_empty_option_values_mean_none() -> None:
    process = cli(
        "run",
        HELLO,
        "--mock-config",
        "",
        "--test-case",
        "",
        "--name",
        "",
        "--input",
        '{"name": "x", "excited": true}',
        "--json",
    )
    assert process.returncode == EXIT_OK, process.stderr
    document = json.loads(process.stdout)
    assert document["status"] == "SUCCEEDED"
    # An empty --name falls back to the file's stem.
    started = document["events"][0]["executionStartedEventDetails"]
    assert started["stateMachineArn"].endswith(":stateMachine:hello-world")


def test_run_empty_input_means_empty_object(tmp_path: Path) -> None:
    definition = tmp_path / "echo.json"
    definition.write_text('{"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}}')
    process = cli("run", str(definition), "--input", "", "--json")
    assert process.returncode == EXIT_OK, process.stderr
    assert json.loads(json.loads(process.stdout)["output"]) == {}


def test_run_input_file(tmp_path: Path) -> None:
    definition = tmp_path / "echo.json"
    definition.write_text('{"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}}')
    data = tmp_path / "input.json"
    data.write_text('{"k": [1, 2, {"n": null}]}')
    process = cli("run", str(definition), "--input", f"@{data}", "--json")
    assert process.returncode == EXIT_OK
    assert json.loads(json.loads(process.stdout)["output"]) == {"k": [1, 2, {"n": None}]}


# ---------------------------------------------------------------------------- bad inputs


def _write(tmp_path: Path, name: str, content: str | bytes) -> str:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return str(path)


def test_missing_definition_file(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.json")
    err = usage_error(cli("run", missing))
    assert missing in err
    assert "No such file" in err


def test_definition_is_a_directory(tmp_path: Path) -> None:
    err = usage_error(cli("run", str(tmp_path)))
    assert "cannot read definition" in err


def test_malformed_json_definition(tmp_path: Path) -> None:
    err = usage_error(cli("run", _write(tmp_path, "bad.json", '{"StartAt": ')))
    assert "definition" in err
    assert "not valid JSON" in err


def test_definition_not_utf8(tmp_path: Path) -> None:
    err = usage_error(cli("run", _write(tmp_path, "latin.json", b'{"StartAt": "\xff"}')))
    assert "UTF-8" in err


@pytest.mark.parametrize("content", ["[1, 2]", '"text"', "3", "null"])
def test_definition_not_an_object(tmp_path: Path, content: str) -> None:
    err = usage_error(cli("run", _write(tmp_path, "x.json", content)))
    assert "must be a JSON object" in err


def test_definition_invalid_asl(tmp_path: Path) -> None:
    err = usage_error(cli("run", _write(tmp_path, "x.json", '{"States": {}}')))
    assert "StartAt" in err


@pytest.mark.parametrize(
    ("value", "phrase"),
    [
        ("{bad", "--input is not valid JSON"),
        ('{"a": 1', "--input is not valid JSON"),
        ("NaN", "NaN"),
        ('{"a": [NaN]}', "NaN"),
        ("Infinity", "Infinity"),
        ("1 2", "--input is not valid JSON"),
    ],
)
def test_invalid_input_json(value: str, phrase: str) -> None:
    err = usage_error(cli("run", HELLO, "--input", value))
    assert phrase in err


def test_input_file_missing(tmp_path: Path) -> None:
    missing = tmp_path / "missing.json"
    err = usage_error(cli("run", HELLO, "--input", f"@{missing}"))
    assert "input file" in err
    assert str(missing) in err


def test_input_file_malformed(tmp_path: Path) -> None:
    err = usage_error(cli("run", HELLO, "--input", "@" + _write(tmp_path, "in.json", "[1,")))
    assert "not valid JSON" in err


def test_input_too_large(tmp_path: Path) -> None:
    big = _write(tmp_path, "big.json", json.dumps({"s": "x" * 300_000}))
    err = usage_error(cli("run", HELLO, "--input", f"@{big}"))
    assert "limit" in err
    assert "262144" in err


def test_input_nested_too_deeply(tmp_path: Path) -> None:
    deep = _write(tmp_path, "deep.json", "[" * 100_000 + "]" * 100_000)
    err = usage_error(cli("run", HELLO, "--input", f"@{deep}"))
    assert "nested too deeply" in err


def test_mock_config_without_test_case() -> None:
    err = usage_error(cli("run", ORDER, "--mock-config", ORDER_MOCK))
    assert "--test-case" in err


def test_mock_config_unknown_test_case() -> None:
    err = usage_error(cli("run", ORDER, "--mock-config", ORDER_MOCK, "--test-case", "Nope"))
    assert "Nope" in err
    assert "test case" in err


def test_mock_config_unknown_state_machine_name() -> None:
    err = usage_error(
        cli(
            "run", ORDER, "--mock-config", ORDER_MOCK, "--test-case", "HappyPath", "--name", "other"
        )
    )
    assert "other" in err


def test_mock_config_missing_file(tmp_path: Path) -> None:
    err = usage_error(
        cli("run", ORDER, "--mock-config", str(tmp_path / "m.json"), "--test-case", "X")
    )
    assert "mock config" in err


@pytest.mark.parametrize(
    ("content", "phrase"), [("[1,", "not valid JSON"), ("[]", "must be a JSON object")]
)
def test_mock_config_bad_content(tmp_path: Path, content: str, phrase: str) -> None:
    mock = _write(tmp_path, "m.json", content)
    err = usage_error(cli("run", ORDER, "--mock-config", mock, "--test-case", "X"))
    assert phrase in err


def test_no_command_prints_usage_and_exits_2() -> None:
    process = cli()
    assert process.returncode == EXIT_USAGE
    assert "usage: statewright" in process.stdout + process.stderr


def test_unknown_option_exits_2() -> None:
    process = cli("run", HELLO, "--bogus")
    assert process.returncode == EXIT_USAGE
    assert "--bogus" in process.stderr
    assert "Traceback" not in process.stderr


# ---------------------------------------------------------------------------- help


def test_help_lists_commands() -> None:
    process = cli("--help")
    assert process.returncode == EXIT_OK
    assert "run" in process.stdout
    assert "test-state" in process.stdout
    assert "usage: statewright" in process.stdout


@pytest.mark.parametrize("command", ["run", "test-state"])
def test_subcommand_help(command: str) -> None:
    process = cli(command, "--help")
    assert process.returncode == EXIT_OK
    assert f"usage: statewright {command}" in process.stdout


# ---------------------------------------------------------------------------- test-state

PASS_STATE = '{"Type": "Pass", "Parameters": {"x.$": "$.a"}, "Next": "N"}'


def test_test_state_success(tmp_path: Path) -> None:
    state = _write(tmp_path, "s.json", PASS_STATE)
    process = cli("test-state", state, "--input", '{"a": 1}', "--compact")
    assert process.returncode == EXIT_OK, process.stderr
    assert len(process.stdout.strip().splitlines()) == 1
    document = json.loads(process.stdout)
    assert document["status"] == "SUCCEEDED"
    assert document["output"] == {"x": 1}
    assert document["nextState"] == "N"
    assert document["inspectionData"]["afterParameters"] == {"x": 1}


def test_test_state_pretty_by_default(tmp_path: Path) -> None:
    state = _write(tmp_path, "s.json", PASS_STATE)
    process = cli("test-state", state, "--input", '{"a": 1}')
    assert process.returncode == EXIT_OK
    assert len(process.stdout.splitlines()) > 1
    assert json.loads(process.stdout)["output"] == {"x": 1}


def test_test_state_runtime_failure_exits_1(tmp_path: Path) -> None:
    state = _write(tmp_path, "s.json", PASS_STATE)
    process = cli("test-state", state, "--input", '{"b": 1}')
    assert process.returncode == EXIT_NOT_SUCCEEDED
    document = json.loads(process.stdout)
    assert document["status"] == "FAILED"
    assert document["error"] == "States.Runtime"
    assert document["cause"].startswith("An error occurred while executing the state 'State'")
    assert "output" not in document


def test_test_state_named_state_with_mock_result() -> None:
    process = cli(
        "test-state",
        ORDER,
        "ChargeCard",
        "--input",
        ORDER_INPUT,
        "--mock-result",
        '{"ResponseBody": {"id": "ch_9"}}',
    )
    assert process.returncode == EXIT_OK, process.stderr
    document = json.loads(process.stdout)
    assert document["status"] == "SUCCEEDED"
    assert document["nextState"] == "ShipItems"
    assert document["output"]["charge"] == {"chargeId": "ch_9"}
    assert document["inspectionData"]["afterResultSelector"] == {"chargeId": "ch_9"}


def test_test_state_retriable_exits_1() -> None:
    process = cli(
        "test-state",
        ORDER,
        "ChargeCard",
        "--input",
        ORDER_INPUT,
        "--mock-error",
        "States.Http.StatusCode.503",
        "--mock-cause",
        "busy",
        "--retry-count",
        "1",
    )
    assert process.returncode == EXIT_NOT_SUCCEEDED
    document = json.loads(process.stdout)
    assert document["status"] == "RETRIABLE"
    assert document["error"] == "States.Http.StatusCode.503"
    assert document["cause"] == "busy"
    assert document["inspectionData"]["errorDetails"] == {
        "retryIndex": 0,
        "retryBackoffIntervalSeconds": 2,
    }


def test_test_state_caught_error_exits_0() -> None:
    process = cli(
        "test-state", ORDER, "ChargeCard", "--input", ORDER_INPUT, "--mock-error", "Card.Declined"
    )
    assert process.returncode == EXIT_OK
    document = json.loads(process.stdout)
    assert document["status"] == "CAUGHT_ERROR"
    assert document["nextState"] == "PaymentFailed"
    assert document["output"]["error"] == {"Error": "Card.Declined"}


def test_test_state_task_without_mock_exits_1() -> None:
    process = cli("test-state", ORDER, "ChargeCard", "--input", ORDER_INPUT)
    assert process.returncode == EXIT_NOT_SUCCEEDED
    document = json.loads(process.stdout)
    assert document["status"] == "FAILED"
    assert "mocked result or error" in document["cause"]


def test_test_state_fail_state_exits_1() -> None:
    process = cli(
        "test-state", ORDER, "PaymentFailed", "--input", '{"error": {"Cause": "declined"}}'
    )
    assert process.returncode == EXIT_NOT_SUCCEEDED
    document = json.loads(process.stdout)
    assert (document["status"], document["error"], document["cause"]) == (
        "FAILED",
        "Order.PaymentFailed",
        "declined",
    )


def test_test_state_variables(tmp_path: Path) -> None:
    state = _write(
        tmp_path,
        "s.json",
        json.dumps(
            {
                "Type": "Pass",
                "QueryLanguage": "JSONata",
                "Output": "{% $x + 1 %}",
                "Assign": {"y": "{% $x * 2 %}"},
                "End": True,
            }
        ),
    )
    process = cli("test-state", state, "--variables", '{"x": 4}')
    assert process.returncode == EXIT_OK, process.stderr
    document = json.loads(process.stdout)
    assert document["output"] == 5
    assert document["inspectionData"]["variables"] == {"x": 4, "y": 8}


def test_test_state_unknown_state_exits_2() -> None:
    err = usage_error(cli("test-state", ORDER, "Nope"))
    assert "Nope" in err


def test_test_state_variables_not_object(tmp_path: Path) -> None:
    state = _write(tmp_path, "s.json", PASS_STATE)
    err = usage_error(cli("test-state", state, "--variables", "[1]"))
    assert "--variables must be a JSON object" in err


def test_test_state_malformed_definition(tmp_path: Path) -> None:
    err = usage_error(cli("test-state", _write(tmp_path, "s.json", "{")))
    assert "not valid JSON" in err


def test_test_state_missing_file(tmp_path: Path) -> None:
    err = usage_error(cli("test-state", str(tmp_path / "none.json")))
    assert "cannot read definition" in err


@pytest.mark.parametrize("option", ["--mock-result", "--variables"])
def test_test_state_bad_option_json_names_the_option(tmp_path: Path, option: str) -> None:
    state = _write(tmp_path, "s.json", PASS_STATE)
    err = usage_error(cli("test-state", state, option, "{x"))
    assert f"{option} is not valid JSON" in err


def test_test_state_bad_retry_count(tmp_path: Path) -> None:
    state = _write(tmp_path, "s.json", PASS_STATE)
    process = cli("test-state", state, "--retry-count", "abc")
    assert process.returncode == EXIT_USAGE
    assert "--retry-count" in process.stderr
    assert "Traceback" not in process.stderr
