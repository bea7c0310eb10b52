"""The ``statewright`` command.

``statewright run FILE`` runs a definition locally in memory (the engine's run_local), with
task results from an AWS Step Functions Local mock config. Exit codes: 0 the execution
succeeded, 1 it ended otherwise (FAILED, TIMED_OUT, ...), 2 the command could not run
(bad definition, unreadable input or mock config).

``statewright plan DIR`` / ``apply DIR`` (service/apply.py): 0 applied or nothing to do, 1
invalid files, a conflict or a server error (nothing was changed when the files were
invalid), 2 usage; ``plan --detailed-exitcode`` exits 3 when changes are pending.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from service.db.engine import POOLERS, DatabaseURLError, is_postgres, normalize_url
from statemachine import (
    DefinitionError,
    InvalidExecutionInput,
    MockConfigError,
    loads,
    run_local,
)
from statemachine.payload import parse_json
from statemachine.schema import json_schema
from statemachine.teststate import test_state
from statemachine.validate import Diagnostic, validate
from statemachine.validate import result as validation_result

EXIT_SUCCEEDED, EXIT_NOT_SUCCEEDED, EXIT_USAGE = 0, 1, 2
EXIT_CHANGES_PENDING = 3  # plan --detailed-exitcode (2 is taken by usage errors)


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


def _input_value(option: str | None, name: str = "--input") -> Any:
    """An option taking JSON text, or ``@file`` to read it from a file; absent means {}."""
    if not option:
        return {}
    if option.startswith("@"):
        return _parse_json(_read_file(option[1:], f"{name} file"), f"{name} file '{option[1:]}'")
    return _parse_json(option, name)


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


def _format_diagnostic(path: str, diagnostic: Diagnostic) -> str:
    return f"{path}:{diagnostic.location}: {diagnostic.severity} {diagnostic.code} {diagnostic.message}"


def _checked_definition(path: str) -> Any:
    """Read and validate a definition; ERRORs stop the command (as AWS refuses to create it)."""
    text = _read_file(path, "definition")
    diagnostics = validate(text)
    errors = [d for d in diagnostics if d.severity == "ERROR"]
    if errors:
        lines = "\n".join(_format_diagnostic(path, d) for d in errors)
        raise UsageError(f"the definition has {len(errors)} error(s):\n{lines}")
    return loads(text)


def command_validate(args: argparse.Namespace) -> int:
    """Validate definitions and print every diagnostic like a compiler."""
    failed = False
    report: list[dict[str, Any]] = []
    for path in args.files:
        diagnostics = validate(_read_file(path, "definition"))
        if args.severity == "ERROR":
            diagnostics = [d for d in diagnostics if d.severity == "ERROR"]
        failed = failed or validation_result(diagnostics) == "FAIL"
        if args.json:
            report.append(
                {
                    "file": path,
                    "result": validation_result(diagnostics),
                    "diagnostics": [asdict(d) for d in diagnostics],
                }
            )
        else:
            for diagnostic in diagnostics:
                print(_format_diagnostic(path, diagnostic))
    if args.json:
        print(json.dumps(report, ensure_ascii=False, indent=2))
    elif not failed:
        print(f"{len(args.files)} definition(s) valid", file=sys.stderr)
    return EXIT_NOT_SUCCEEDED if failed else EXIT_SUCCEEDED


DATABASE_HELP = (
    "postgresql://user@host:port/db or sqlite:///path (default: $STATEWRIGHT_DATABASE_URL, "
    "else the embedded SQLite store in .statewright/)"
)
POOLER_HELP = (
    "what sits between Statewright and Postgres: 'transaction' for a pooler in transaction "
    "mode such as PgBouncer's pool_mode=transaction (no prepared statements kept, LISTEN "
    "only on --listen-database-url); 'session' or 'none' need nothing (default: "
    "$STATEWRIGHT_DATABASE_POOLER, else none)"
)
LISTEN_HELP = (
    "a direct postgresql:// URL (not through a transaction pooler) for the workers' LISTEN "
    "wake-ups (default: $STATEWRIGHT_LISTEN_DATABASE_URL; unset, the database URL, or "
    "polling behind a transaction pooler)"
)


MOCK_HELP = (
    "an AWS Step Functions Local mock config: executions started as '<arn>#<TestCase>' take "
    "their task results from it (default: $STATEWRIGHT_MOCK_CONFIG)"
)


def _mock_config(args: argparse.Namespace) -> str | None:
    path = getattr(args, "mock_config", None) or os.environ.get("STATEWRIGHT_MOCK_CONFIG") or None
    if path is not None and not Path(path).is_file():
        raise UsageError(f"cannot read mock config '{path}'")
    return path


def _database_url(args: argparse.Namespace) -> str | None:
    """The command's database URL (flag, else environment). The --database-pooler and
    --listen-database-url flags go to the environment, so that every engine this process
    makes (Alembic's too) and every Settings() sees them."""
    pooler = getattr(args, "database_pooler", None)
    if pooler:
        os.environ["STATEWRIGHT_DATABASE_POOLER"] = pooler
    listen = getattr(args, "listen_database_url", None)
    if listen:
        if not is_postgres(normalize_url(listen)):
            raise UsageError("--listen-database-url must be a postgresql:// URL")
        os.environ["STATEWRIGHT_LISTEN_DATABASE_URL"] = listen
    return args.database_url or os.environ.get("STATEWRIGHT_DATABASE_URL") or None


def _database_flags(parser: argparse.ArgumentParser, *, listen: bool = False) -> None:
    """--database-url and --database-pooler (and, for commands that run workers,
    --listen-database-url)."""
    parser.add_argument("--database-url", metavar="URL", help=DATABASE_HELP)
    parser.add_argument("--database-pooler", choices=POOLERS, help=POOLER_HELP)
    if listen:
        parser.add_argument("--listen-database-url", metavar="URL", help=LISTEN_HELP)


def command_db_upgrade(args: argparse.Namespace) -> int:
    """Migrate the schema to the latest version."""
    from service.db.engine import normalize_url
    from service.db.migrate import upgrade

    url = _database_url(args)
    normalize_url(url)  # a bad URL is a usage error, before Alembic runs
    upgrade(url)
    print("schema is up to date", file=sys.stderr)
    return EXIT_SUCCEEDED


def command_worker(args: argparse.Namespace) -> int:
    """Run a worker until SIGTERM."""
    from service import tracing
    from service.db.engine import normalize_url
    from service.settings import Settings
    from service.worker.loop import main as worker_main
    from service.worker.loop import settings_options

    url = _database_url(args)
    normalize_url(url)
    if args.lanes < 1:
        raise UsageError("--lanes must be at least 1")
    try:
        tracing.require(Settings().otlp_endpoint)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.metrics_port is not None:
        if not 0 < args.metrics_port < 65536:
            raise UsageError("--metrics-port must be a port number (1-65535)")
        from prometheus_client import start_http_server

        from service import metrics

        try:
            start_http_server(
                args.metrics_port, addr=args.metrics_address, registry=metrics.REGISTRY
            )
        except OSError as exc:
            raise UsageError(f"--metrics-port {args.metrics_port}: {exc.strerror}") from None
    _settle_heap()
    worker_main(
        url,
        lanes=args.lanes,
        mock_config=_mock_config(args),
        options=settings_options(Settings()),
    )
    return EXIT_SUCCEEDED


def command_serve(args: argparse.Namespace) -> int:
    """Run the API (and, for serve and dev, worker lanes in the same process)."""
    import uvicorn

    from service import logs, tracing
    from service.app import create_app
    from service.db.engine import normalize_url
    from service.db.migrate import upgrade
    from service.sealing import ServerKeyError
    from service.settings import Settings

    dev = args.command == "dev"
    url = _database_url(args)
    if dev and url is None:
        url = "sqlite:///.statewright/dev.db"
    normalize_url(url)
    upgrade(url)
    workers = 0 if args.command == "api" else max(1, getattr(args, "workers", 1))
    auth = not dev and not args.no_auth
    secret_key = Settings().secret_key or (_dev_secret_key() if dev else None)
    settings = Settings(
        secret_key=secret_key,
        database_url=url,
        host=args.host,
        port=args.port,
        workers=workers,
        mock_config=_mock_config(args) if workers else None,
        auth=auth,
        # The dev server's own demo endpoints and local services: loopback is allowed.
        http_allow=_dev_http_allow() if dev else Settings().http_allow,
        demo=dev,
    )
    try:
        logs.configure(Settings().log_format)
        tracing.require(Settings().otlp_endpoint)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    try:
        app = create_app(settings)  # a missing server key is reported here, before listening
    except ServerKeyError as exc:
        raise UsageError(f"{exc} (or run with --no-auth on a network you trust)") from None
    if not dev and not auth:
        print(
            "\n  WARNING: --no-auth: every request is accepted without an API key. Only on a "
            "network you trust.\n",
            file=sys.stderr,
        )
    if dev:
        _load_samples(url)
        print(
            "\n  Statewright dev server: no sign-in, embedded SQLite store "
            f"({url}).\n  Do not expose it: it listens on {args.host} only.\n"
            f"  Viewer: http://{args.host}:{args.port}/\n"
            f"  API:  http://{args.host}:{args.port}/  (AWS SDKs: endpoint_url=http://{args.host}:{args.port})\n"
            f"  REST: http://{args.host}:{args.port}/api/v1  docs: http://{args.host}:{args.port}/docs\n",
            file=sys.stderr,
        )
    _settle_heap()
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_config=None,  # logs.configure's, for uvicorn's lines too
        log_level="warning",
        loop="uvloop",
        http="httptools",
    )
    return EXIT_SUCCEEDED


def _settle_heap() -> None:
    """Take what is alive now (the imported frameworks, the app: ~150,000 objects) out of the
    garbage collector's full collections, which a long-running process makes every few
    seconds under load, each a stall of its event loop: on bench/tasks.py's worker 130-230 ms
    before, 12-95 ms after (what remains is the executions' own objects)."""
    import gc

    gc.collect()
    gc.freeze()


def _dev_secret_key() -> str:
    """The dev server's own server key (for connections' secrets), kept beside its database."""
    from service.sealing import new_server_key

    path = Path(".statewright") / "dev-secret.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(new_server_key())
    return path.read_text().strip()


def _dev_http_allow() -> str:
    from service.settings import Settings

    given = Settings().http_allow
    return ",".join(x for x in ("127.0.0.0/8", "::1", "localhost", given) if x)


def _load_samples(url: str | None) -> None:
    """Create (or update) a state machine for every definition in definitions/."""
    import asyncio

    from service import control
    from service.db.engine import create_engine
    from service.shipped import shipped

    folder = shipped("definitions")

    async def load() -> None:
        engine = create_engine(url)
        for path in sorted(folder.glob("*.json")):
            if path.name.endswith(".meta.json"):
                continue  # a sidecar of `statewright apply`, not a definition
            try:
                await control.create_state_machine(engine, path.stem, path.read_text())
            except control.StateMachineAlreadyExists:
                await control.update_state_machine(engine, path.stem, path.read_text())
            print(f"  loaded {path.stem}", file=sys.stderr)
        await engine.dispose()

    asyncio.run(load())


def command_keys(args: argparse.Namespace) -> int:
    """Create, list and revoke API keys (run against the database), or print a server key."""
    import asyncio

    from service import auth
    from service.db.engine import create_engine, normalize_url
    from service.db.migrate import upgrade
    from service.sealing import Sealer, new_server_key
    from service.settings import Settings

    if args.keys_command == "server-key":
        print(new_server_key())
        return EXIT_SUCCEEDED
    url = _database_url(args)
    normalize_url(url)
    upgrade(url)

    async def run() -> int:
        engine = create_engine(url)
        try:
            if args.keys_command == "create":
                sealer = Sealer(Settings().secret_key)
                key, secret = await auth.create_key(engine, args.name, sealer)
                if args.json:
                    print(json.dumps({"id": key.id, "secret": secret, "name": key.name}))
                else:
                    print(f"id:     {key.id}\nsecret: {secret}")
                    print(
                        "\nShown once. REST: 'Authorization: Bearer ID:SECRET'; AWS SDKs and "
                        "the AWS CLI: the id as access key id, the secret as secret access key.",
                        file=sys.stderr,
                    )
                return EXIT_SUCCEEDED
            if args.keys_command == "list":
                keys = await auth.list_keys(engine)
                if args.json:
                    print(
                        json.dumps(
                            [
                                {
                                    "id": k.id,
                                    "name": k.name,
                                    "created_at": k.created_at.isoformat(),
                                    "revoked_at": k.revoked_at.isoformat()
                                    if k.revoked_at
                                    else None,
                                }
                                for k in keys
                            ]
                        )
                    )
                else:
                    for k in keys:
                        state = f"revoked {k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else ""
                        print(f"{k.id}  {k.created_at:%Y-%m-%d %H:%M}  {k.name}  {state}".rstrip())
                return EXIT_SUCCEEDED
            if await auth.revoke_key(engine, args.id):
                print(f"revoked {args.id}", file=sys.stderr)
                return EXIT_SUCCEEDED
            raise UsageError(f"no key {args.id!r} to revoke (unknown, or revoked already)")
        finally:
            await engine.dispose()

    try:
        return asyncio.run(run())
    except ValueError as exc:  # a bad name, or the server key (ServerKeyError)
        raise UsageError(str(exc)) from None


_DURATION = re.compile(r"^(\d+)([dhms])$")
_UNIT_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1}


def parse_duration(text: str) -> float:
    """Seconds in ``30d``, ``12h``, ``45m`` or ``90s``."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise UsageError(
            f"--older-than wants a number and a unit (30d, 12h, 45m, 90s), not {text!r}"
        )
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def command_purge(args: argparse.Namespace) -> int:
    """Delete closed executions older than a while, with their histories, in batches."""
    import asyncio
    from datetime import timedelta

    import sqlalchemy as sa

    from service.db import queries
    from service.db.engine import create_engine, normalize_url

    seconds = parse_duration(args.older_than)
    if args.batch < 1:
        raise UsageError("--batch must be at least 1")
    url = _database_url(args)
    normalize_url(url)

    async def run() -> int:
        engine = create_engine(url)
        purged = 0
        try:
            async with engine.connect() as conn:
                before = await queries.now(conn) - timedelta(seconds=seconds)
            if args.dry_run:
                e = queries.executions
                async with engine.connect() as conn:
                    count = (
                        await conn.execute(
                            sa.select(sa.func.count()).where(
                                e.c.status != "RUNNING", e.c.stopped_at < before
                            )
                        )
                    ).scalar()
                print(f"would purge {count} execution(s) closed before {before:%Y-%m-%d %H:%M:%S}Z")
                return EXIT_SUCCEEDED
            while True:
                # One transaction per batch: locks are short, and live executions are skipped.
                async with engine.begin() as conn:
                    done = await queries.purge_closed(
                        conn, kind=None, before=before, limit=args.batch
                    )
                purged += done
                if done < args.batch:
                    break
        finally:
            await engine.dispose()
        print(f"purged {purged} execution(s) closed before {before:%Y-%m-%d %H:%M:%S}Z")
        return EXIT_SUCCEEDED

    return asyncio.run(run())


def command_plan_apply(args: argparse.Namespace) -> int:
    """Show (plan) or make (apply) the changes that make the server match a folder."""
    from service import apply

    folder = Path(args.folder)
    if not folder.is_dir():
        raise UsageError(f"'{args.folder}' is not a folder")
    api_key = args.api_key or os.environ.get("STATEWRIGHT_API_KEY") or None
    try:
        machines = apply.read_folder(folder, args.owner)
    except apply.ApplyError as exc:
        for line in exc.lines:
            print(line, file=sys.stderr)
        print(f"statewright: {len(exc.lines)} error(s); nothing was changed", file=sys.stderr)
        return EXIT_NOT_SUCCEEDED
    client = apply.Client(args.endpoint, api_key)
    try:
        changes, conflicts = apply.plan(client, machines, args.owner, args.prune)
        for line in apply.render(changes):
            print(line)
        if conflicts:
            for line in conflicts:
                print(line, file=sys.stderr)
            print("statewright: nothing was changed", file=sys.stderr)
            return EXIT_NOT_SUCCEEDED
        if args.command == "plan":
            if args.detailed_exitcode and apply.pending(changes):
                return EXIT_CHANGES_PENDING
            return EXIT_SUCCEEDED
        if not apply.pending(changes):
            return EXIT_SUCCEEDED
        if not args.yes:
            if not sys.stdin.isatty():
                raise UsageError("apply asks for confirmation: run it with --yes")
            if input("Apply these changes? [y/N] ").strip().lower() not in ("y", "yes"):
                print("statewright: nothing was changed", file=sys.stderr)
                return EXIT_NOT_SUCCEEDED
        for line in apply.execute(client, changes):
            print(line)
        return EXIT_SUCCEEDED
    except apply.ApplyError as exc:
        for line in exc.lines:
            print(f"statewright: {line}", file=sys.stderr)
        return EXIT_NOT_SUCCEEDED
    finally:
        client.close()


def command_schema(args: argparse.Namespace) -> int:
    """Print the JSON Schema of ASL definitions."""
    print(json.dumps(json_schema(), indent=2))
    return EXIT_SUCCEEDED


def command_run(args: argparse.Namespace) -> int:
    """Run a definition in memory and print the result."""
    definition = _checked_definition(args.file)
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
    if not (isinstance(document, dict) and "Type" in document and "States" not in document):
        document = _checked_definition(args.file)
    mock: dict[str, Any] = {}
    if args.mock_result is not None:
        mock["result"] = _input_value(args.mock_result, "--mock-result")
    if args.mock_error is not None:
        mock["error"] = args.mock_error
        mock["cause"] = args.mock_cause
    variables = _input_value(args.variables, "--variables") if args.variables else None
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

    check = commands.add_parser(
        "validate",
        help="check definitions and print every problem with its location",
        description="Validate ASL definitions (like AWS ValidateStateMachineDefinition, more "
        "thoroughly): one line per diagnostic, 'file:location: SEVERITY CODE message'. "
        "Exit code 1 when any definition has an ERROR; WARNINGs never fail.",
    )
    check.add_argument("files", metavar="FILE", nargs="+", help="definitions (JSON)")
    check.add_argument("--json", action="store_true", help="print a JSON report for tools")
    check.add_argument(
        "--severity", choices=["ERROR", "WARNING"], default="WARNING", help="lowest severity shown"
    )
    check.set_defaults(handler=command_validate)

    purge = commands.add_parser(
        "purge",
        help="delete closed executions older than a while (histories included)",
        description="Delete executions that closed (SUCCEEDED, FAILED, TIMED_OUT, ABORTED) "
        "before now minus --older-than, with their histories, in batches of one transaction "
        "each; running executions are never touched, and rows in use are skipped.",
    )
    purge.add_argument("--older-than", required=True, metavar="AGE", help="30d, 12h, 45m or 90s")
    purge.add_argument("--batch", type=int, default=500, help="executions per transaction")
    purge.add_argument("--dry-run", action="store_true", help="count, delete nothing")
    _database_flags(purge)
    purge.set_defaults(handler=command_purge)

    db = commands.add_parser("db", help="database schema commands")
    db_commands = db.add_subparsers(dest="db_command", metavar="COMMAND")
    db_upgrade = db_commands.add_parser(
        "upgrade", help="create or migrate the schema to the latest version (Alembic)"
    )
    _database_flags(db_upgrade)
    db_upgrade.set_defaults(handler=command_db_upgrade)

    worker = commands.add_parser(
        "worker",
        help="run a worker: decide executions durably until SIGTERM",
        description="Claim executions that need a decision, run the engine, and append the "
        "result in one transaction. Run any number of workers against one database.",
    )
    _database_flags(worker, listen=True)
    worker.add_argument("--lanes", type=int, default=2, help="concurrent decisions (default 2)")
    worker.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="serve this worker's Prometheus metrics on PORT at /metrics (default: off)",
    )
    worker.add_argument(
        "--metrics-address",
        default="127.0.0.1",
        metavar="ADDRESS",
        help="the address of --metrics-port (default 127.0.0.1; 0.0.0.0 in a container)",
    )
    worker.add_argument("--mock-config", metavar="FILE", help=MOCK_HELP)
    worker.set_defaults(handler=command_worker)

    for command, summary in (
        (
            "dev",
            "run the API and a worker on the embedded store, with the sample definitions loaded",
        ),
        ("serve", "run the API and worker lanes in one process"),
        ("api", "run the API only (workers run as separate `statewright worker` processes)"),
    ):
        server = commands.add_parser(command, help=summary, description=summary)
        _database_flags(server, listen=command != "api")
        server.add_argument(
            "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"
        )
        server.add_argument("--port", type=int, default=8080, help="port (default 8080)")
        if command != "api":
            server.add_argument(
                "--workers", type=int, default=2, help="worker lanes in this process (default 2)"
            )
            server.add_argument("--mock-config", metavar="FILE", help=MOCK_HELP)
        if command != "dev":
            server.add_argument(
                "--no-auth",
                action="store_true",
                help="accept requests without an API key (by default the REST API wants a "
                "bearer key and the AWS API a SigV4 signature; the server key comes from "
                "STATEWRIGHT_SECRET_KEY)",
            )
        server.set_defaults(handler=command_serve, no_auth=False)

    keys = commands.add_parser(
        "keys",
        help="API keys: create, list, revoke (against the database)",
        description="API keys for the REST API (Authorization: Bearer ID:SECRET) and the AWS "
        "API (the id as AWS access key id, the secret as secret access key; requests signed "
        "with SigV4). Secrets are stored sealed with STATEWRIGHT_SECRET_KEY, which create "
        "and the servers need.",
    )
    keys_commands = keys.add_subparsers(dest="keys_command", metavar="COMMAND", required=True)
    keys_create = keys_commands.add_parser("create", help="create a key; prints id and secret")
    keys_create.add_argument("--name", required=True, help="what the key is for (1-80 chars)")
    keys_create.add_argument("--json", action="store_true", help='print {"id", "secret"}')
    keys_list = keys_commands.add_parser("list", help="list keys (never their secrets)")
    keys_list.add_argument("--json", action="store_true", help="print JSON")
    keys_revoke = keys_commands.add_parser("revoke", help="revoke a key for good")
    keys_revoke.add_argument("id", help="the key id (SWK...)")
    for sub in (keys_create, keys_list, keys_revoke):
        _database_flags(sub)
    keys_commands.add_parser(
        "server-key", help="print a new random server key for STATEWRIGHT_SECRET_KEY"
    )
    keys.set_defaults(handler=command_keys)

    for command, summary in (
        (
            "plan",
            "show what apply would create, change (with a diff) or delete on a server",
        ),
        ("apply", "make a server's state machines and schedules match a folder"),
    ):
        sub = commands.add_parser(
            command,
            help=summary,
            description=f"{summary[0].upper()}{summary[1:]}. The folder holds NAME.asl.json "
            "(or NAME.json) definitions, each with an optional NAME.meta.json sidecar (name, "
            "type, description, tags, schedules). Everything is validated before anything "
            "changes. Exit codes: 0 done or no changes, 1 errors, 2 usage"
            + (
                "; with --detailed-exitcode 3 when changes are pending."
                if command == "plan"
                else "."
            ),
        )
        sub.add_argument("folder", metavar="DIR", help="the folder of definitions")
        sub.add_argument(
            "--endpoint",
            default=os.environ.get("STATEWRIGHT_ENDPOINT", "http://127.0.0.1:8080"),
            help="the server (default: $STATEWRIGHT_ENDPOINT, else http://127.0.0.1:8080)",
        )
        sub.add_argument(
            "--api-key", metavar="ID:SECRET", help="an API key (default: $STATEWRIGHT_API_KEY)"
        )
        sub.add_argument(
            "--prune",
            action="store_true",
            help="also delete state machines and schedules apply made (tagged "
            "statewright:managed-by=OWNER) that the folder no longer has",
        )
        sub.add_argument(
            "--owner",
            default="apply",
            help="the managed-by tag value: folders applied with different owners do not "
            "prune each other (default: apply)",
        )
        if command == "plan":
            sub.add_argument(
                "--detailed-exitcode",
                action="store_true",
                help="exit 3 when there are changes to apply (0 when none)",
            )
        else:
            sub.add_argument("--yes", action="store_true", help="apply without asking")
        sub.set_defaults(handler=command_plan_apply)

    schema = commands.add_parser(
        "schema", help="print a JSON Schema of ASL, for editors to validate while typing"
    )
    schema.set_defaults(handler=command_schema)
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
    except (UsageError, MockConfigError, InvalidExecutionInput, DatabaseURLError) as exc:
        print(f"statewright: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except DefinitionError as exc:
        print(f"statewright: invalid definition: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return code


if __name__ == "__main__":
    sys.exit(main())
