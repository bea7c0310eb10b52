"""The ``statewright`` command.

``statewright run FILE`` runs a definition locally in memory (the engine's run_local), with
task results from an AWS Step Functions Local mock config. Exit codes: 0 the execution
succeeded, 1 it ended otherwise (FAILED, TIMED_OUT, ...), 2 the command could not run
(bad definition, unreadable input or mock config).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from statemachine import (
    DefinitionError,
    InvalidExecutionInput,
    MockConfigError,
    loads,
    run_local,
)
from statemachine.payload import parse_json
from statemachine.teststate import test_state

EXIT_SUCCEEDED, EXIT_NOT_SUCCEEDED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """The command line or a file it names is wrong; the message says what to fix."""


def _read_file(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {what} '{path}': {exc.strerror}") from None


def _parse_json(text: str | bytes, what: str) -> Any:
    try:
        return parse_json(text)
    except UnicodeDecodeError as exc:
        raise UsageError(f"{what} is not valid UTF-8 (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"{what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise UsageError(f"{what} is nested too deeply") from None
    except ValueError as exc:
        raise UsageError(f"{what} is not valid JSON: {exc}") from None


def _input_value(option: str | None) -> Any:
    """``--input`` takes JSON text, or ``@file`` to read it from a file; absent means {}."""
    if not option:
        return {}
    if option.startswith("@"):
        return _parse_json(_read_file(option[1:], "input file"), f"input file '{option[1:]}'")
    return _parse_json(option, "--input")


def _print_human(result: Any) -> None:
    states = [
        e.details["name"] for e in result.events if e.type.endswith("StateEntered") and not e.child
    ]
    print(f"status: {result.status}")
    if result.status == "SUCCEEDED":
        print(f"output: {json.dumps(result.output, indent=2, ensure_ascii=False)}")
    else:
        print(f"error:  {result.error}")
        print(f"cause:  {result.cause}")
    path = " -> ".join(states)
    print(f"states: {path}" if path else "states: (none)")
    print(f"events: {len(result.events)}")


def command_run(args: argparse.Namespace) -> int:
    """Run a definition in memory and print the result."""
    definition = loads(_read_file(args.file, "definition"))
    input_value = _input_value(args.input)
    mock_config = None
    if args.mock_config:
        mock_config = _parse_json(
            _read_file(args.mock_config, "mock config"), f"mock config '{args.mock_config}'"
        )
        if not args.test_case:
            raise UsageError("--mock-config needs --test-case NAME")
    name = args.name or Path(args.file).stem
    result = run_local(
        definition,
        input_value,
        mock_config=mock_config,
        test_case=args.test_case or None,
        state_machine_name=name,
    )
    if args.json:
        print(json.dumps(result.to_json(), ensure_ascii=False, default=str))
    else:
        _print_human(result)
    return EXIT_SUCCEEDED if result.status == "SUCCEEDED" else EXIT_NOT_SUCCEEDED


def command_test_state(args: argparse.Namespace) -> int:
    """Evaluate one state (AWS TestState) and print the result as JSON."""
    document = _parse_json(_read_file(args.file, "definition"), f"definition '{args.file}'")
    mock: dict[str, Any] = {}
    if args.mock_result is not None:
        mock["result"] = _input_value(args.mock_result)
    if args.mock_error is not None:
        mock["error"] = args.mock_error
        mock["cause"] = args.mock_cause
    variables = _input_value(args.variables) if args.variables else None
    if variables is not None and not isinstance(variables, dict):
        raise UsageError("--variables must be a JSON object")
    result = test_state(
        document,
        args.state or None,
        _input_value(args.input),
        variables=variables,
        retry_count=args.retry_count,
        **mock,
    )
    print(json.dumps(result.to_json(), ensure_ascii=False, indent=None if args.compact else 2))
    return EXIT_SUCCEEDED if result.status in ("SUCCEEDED", "CAUGHT_ERROR") else EXIT_NOT_SUCCEEDED


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="statewright",
        description="Statewright: a durable, self-hosted AWS Step Functions compatible workflow service.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = commands.add_parser(
        "run",
        help="run a state machine definition locally, in memory, to completion",
        description="Run an ASL definition in memory on a virtual clock (Waits do not sleep). "
        "Exit code 0 when the execution succeeds, 1 when it fails, 2 on bad input.",
    )
    run.add_argument("file", metavar="FILE", help="the ASL definition (JSON)")
    run.add_argument(
        "--input", metavar="JSON|@FILE", help="execution input: JSON text or @file (default {})"
    )
    run.add_argument(
        "--mock-config", metavar="FILE", help="AWS Step Functions Local mock config (empty: none)"
    )
    run.add_argument("--test-case", metavar="NAME", help="the mock config test case to use")
    run.add_argument(
        "--name", metavar="SM_NAME", help="state machine name (selects the mock config entry)"
    )
    run.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object: status, output, error, cause, events",
    )
    run.set_defaults(handler=command_run)

    test = commands.add_parser(
        "test-state",
        help="evaluate one state on its own (like AWS TestState), with a mocked task result",
        description="Evaluate one state of a definition against an input and print status, output, "
        "next state, error and the value after each data-flow step. Task, Parallel and Map "
        "states need --mock-result or --mock-error. Exit code 0 when the state succeeds or "
        "its error is caught, 1 when it fails or would retry, 2 on bad input.",
    )
    test.add_argument("file", metavar="FILE", help="a definition, or a single state object (JSON)")
    test.add_argument(
        "state", metavar="STATE", nargs="?", help="the state to test (default: StartAt)"
    )
    test.add_argument("--input", metavar="JSON|@FILE", help="the state input (default {})")
    test.add_argument(
        "--mock-result", metavar="JSON|@FILE", help="the task's (or Map/Parallel's) result"
    )
    test.add_argument("--mock-error", metavar="ERROR", help="fail the task with this error name")
    test.add_argument("--mock-cause", metavar="CAUSE", help="the cause that goes with --mock-error")
    test.add_argument("--variables", metavar="JSON|@FILE", help="workflow variables, a JSON object")
    test.add_argument("--retry-count", type=int, default=0, help="retries already made (default 0)")
    test.add_argument("--compact", action="store_true", help="print the JSON on one line")
    test.set_defaults(handler=command_test_state)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``statewright`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        code: int = args.handler(args)
    except (UsageError, MockConfigError, InvalidExecutionInput) as exc:
        print(f"statewright: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except DefinitionError as exc:
        print(f"statewright: invalid definition: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return code


if __name__ == "__main__":
    sys.exit(main())
