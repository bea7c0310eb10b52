"""Application operations on the store, with AWS Step Functions' semantics.

The REST API, the AWS-compatible API, the CLI and the tests all go through these; each is one
transaction. Errors are ServiceError subclasses named after AWS's exceptions, so both APIs can
map them (REST status codes, awsJson ``__type``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hmac
import json
import re
import secrets
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from service.db import queries
from statemachine.events import Event
from statemachine.interpreter import MAX_PAYLOAD_BYTES
from statemachine.payload import payload_size, payload_text, text_size
from statemachine.validate import Diagnostic, validate

JSON = Any
ACCOUNT = "123456789012"
REGION = "us-east-1"
# AWS: 1-80 characters, none of whitespace, brackets, wildcards, punctuation or control characters.
_TOKEN = re.compile(r"^[0-9a-f]{64}$")  # the engine's tokens: SHA-256 of secret material
# AWS: letters, digits, '-', '_' and '.', at least one of them not a digit (a version).
_ALIAS = re.compile(r"^(?=.*[A-Za-z_.\-])[A-Za-z0-9_.\-]{1,80}$")
_NAME = re.compile(r"^[^\s<>{}\[\]?*\"#%\\^|~`$&,;:/\x00-\x1f\x7f-\x9f]{1,80}$")


class ServiceError(Exception):
    """Base of the errors the APIs report; the class name is AWS's exception name."""

    status = 400

    @property
    def code(self) -> str:
        """AWS's name for this error (``__type``)."""
        return type(self).__name__


class InvalidDefinition(ServiceError):
    """The definition has ERROR diagnostics; they are all attached."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = diagnostics
        first = diagnostics[0]
        super().__init__(
            f"Invalid State Machine Definition: '{first.code}: {first.message} at {first.location}'"
            + (f" (and {len(diagnostics) - 1} more)" if len(diagnostics) > 1 else "")
        )


class InvalidName(ServiceError):
    """A state machine or execution name breaks AWS's naming rules."""


class InvalidArn(ServiceError):
    """An ARN that does not name a Statewright resource."""


class InvalidExecutionInput(ServiceError):
    """The execution input is not JSON or is too large."""


class InvalidOutput(ServiceError):
    """A task output is not JSON or is too large."""


class StateMachineDoesNotExist(ServiceError):
    """No state machine has that name or ARN."""


class StateMachineDeleting(ServiceError):
    """The state machine was deleted; some of its executions still run."""


class StateMachineAlreadyExists(ServiceError):
    """A state machine of that name exists with another definition."""

    status = 409


class ExecutionDoesNotExist(ServiceError):
    """No execution has that ARN or id."""


class ResourceNotFound(ServiceError):
    """No resource (e.g. a state machine version) has that ARN."""


class ExecutionAlreadyExists(ServiceError):
    """An execution of that name exists with another input, or has closed."""

    status = 409


class TaskDoesNotExist(ServiceError):
    """No task has that token."""


class ValidationException(ServiceError):
    """A request member has a value outside what is allowed."""


class StateMachineTypeNotSupported(ServiceError):
    """The action needs a state machine of the other type (StartSyncExecution: EXPRESS)."""


class InvalidToken(ServiceError):
    """The text is not a task token."""


class TaskTimedOut(ServiceError):
    """The task's token has expired or the task has already closed."""


class InvalidEventId(ServiceError):
    """The event id is not one of the execution's history (1 to its number of events)."""


class ExecutionNotRunning(ServiceError):
    """The execution has already closed: there is nothing to stop."""


class HistoryNotReplayable(ServiceError):
    """The history does not replay against the definition it ran (a corrupt history)."""


@dataclass(frozen=True, slots=True)
class StateMachineInfo:
    """What DescribeStateMachine reports."""

    id: int
    name: str
    arn: str
    definition: str
    version: int
    role_arn: str
    type: str
    created_at: datetime
    updated_at: datetime  # when this version was published
    status: str = "ACTIVE"  # DELETING once deleted, while executions still run
    description: str = ""
    tags: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ExecutionSummary:
    """What DescribeExecution reports."""

    id: str
    arn: str
    name: str
    state_machine_arn: str
    status: str
    input: JSON
    output: JSON
    error: str | None
    cause: str | None
    started_at: datetime
    stopped_at: datetime | None
    events: int
    # AWS reports these when the execution was started through a version or an alias ARN.
    state_machine_version_arn: str | None = None
    state_machine_alias_arn: str | None = None
    redrive_count: int = 0  # ExecutionRedriven events so far (AWS: redriveCount)


def state_machine_arn(name: str) -> str:
    """The ARN AWS would give a state machine of this name."""
    return f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{name}"


def execution_arn(state_machine: str, name: str) -> str:
    """The ARN AWS would give an execution."""
    return f"arn:aws:states:{REGION}:{ACCOUNT}:execution:{state_machine}:{name}"


def name_from_arn(arn: str, kind: str) -> str:
    """The name in a ``stateMachine`` ARN (a version or alias suffix is dropped)."""
    parts = arn.split(":")
    if len(parts) < 7 or parts[0] != "arn" or parts[2] != "states" or parts[5] != kind:
        raise InvalidArn(f"Invalid Arn: '{arn}'")
    return parts[6]


def version_from_arn(arn: str) -> int | None:
    """The version number of a qualified ``stateMachine:NAME:N`` ARN (None when unqualified)."""
    version, alias = qualifier_from_arn(arn)
    if alias is not None:
        raise InvalidArn(f"Invalid Arn: '{arn}' (an alias ARN; this action takes a version's)")
    return version


def qualifier_from_arn(arn: str) -> tuple[int | None, str | None]:
    """(version, alias) of ``stateMachine:NAME:N`` or ``stateMachine:NAME:ALIAS`` (both None
    when unqualified)."""
    parts = arn.split(":")
    if len(parts) == 8 and parts[5] == "stateMachine":
        if parts[7].isdigit():
            return int(parts[7]), None
        if not _ALIAS.match(parts[7]):
            raise InvalidArn(f"Invalid Arn: '{arn}'")
        return None, parts[7]
    if len(parts) > 8:
        raise InvalidArn(f"Invalid Arn: '{arn}'")
    return None, None


def check_name(name: str, what: str) -> None:
    """Raise InvalidName unless ``name`` follows AWS's rules."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidName(
            f"Invalid Name: '{name}' (the {what} name must have 1-80 characters and no whitespace, "
            "brackets, wildcards, quotes or any of # % \\ ^ | ~ ` $ & , ; : /)"
        )


def _definition_text(definition: str | dict[str, JSON]) -> str:
    text = definition if isinstance(definition, str) else json.dumps(definition)
    errors = [d for d in validate(text) if d.severity == "ERROR"]
    if errors:
        raise InvalidDefinition(errors)
    return text


# ---------------------------------------------------------------------------- state machines


async def _state_machine_row(conn: AsyncConnection, name: str, deleting_ok: bool = False) -> Any:
    """A state machine's row. A deleted one is StateMachineDoesNotExist once none of its
    executions runs; before that it is DELETING: ``deleting_ok`` reads it (describe, list
    executions), anything else gets StateMachineDeleting."""
    sm = queries.state_machines
    row = (await conn.execute(sa.select(sm).where(sm.c.name == name))).first()
    if row is None or (row.deleted_at is not None and not await _running(conn, row.id)):
        raise StateMachineDoesNotExist(f"State Machine Does Not Exist: '{state_machine_arn(name)}'")
    if row.deleted_at is not None and not deleting_ok:
        raise StateMachineDeleting(f"State Machine is being deleted: '{row.arn}'")
    return row


async def state_machine_row(conn: AsyncConnection, name: str, deleting_ok: bool = False) -> Any:
    """The row of the state machine ``name``; StateMachineDoesNotExist (or Deleting, unless
    ``deleting_ok``)."""
    return await _state_machine_row(conn, name, deleting_ok)


async def _running(conn: AsyncConnection, state_machine_id: int) -> bool:
    e = queries.executions
    found = await conn.execute(
        sa.select(e.c.id)
        .where(e.c.state_machine_id == state_machine_id, e.c.status == "RUNNING")
        .limit(1)
    )
    return found.first() is not None


async def _latest_version(conn: AsyncConnection, state_machine_id: int) -> Any:
    v = queries.versions
    return (
        await conn.execute(
            sa.select(v)
            .where(v.c.state_machine_id == state_machine_id)
            .order_by(v.c.version.desc())
            .limit(1)
        )
    ).first()


async def create_state_machine(
    engine: AsyncEngine,
    name: str,
    definition: str | dict[str, JSON],
    role_arn: str = "",
    kind: str = "STANDARD",
) -> StateMachineInfo:
    """CreateStateMachine: idempotent for the same definition, else StateMachineAlreadyExists."""
    check_name(name, "state machine")
    if kind not in ("STANDARD", "EXPRESS"):
        raise ValidationException(f"Value '{kind}' at 'type' must be STANDARD or EXPRESS")
    text = _definition_text(definition)
    async with engine.begin() as conn:
        at = await queries.now(conn)
        sm = queries.state_machines
        found = (
            await conn.execute(sa.select(sm.c.id, sm.c.deleted_at).where(sm.c.name == name))
        ).first()
        existing = found[0] if found is not None else None
        if existing is None:
            await queries.create_state_machine(
                conn, name, state_machine_arn(name), text, role_arn, at, kind
            )
        elif found is not None and found[1] is not None:
            # Deleted: the name is free once its last execution has ended.
            if await _running(conn, existing):
                raise StateMachineDeleting(
                    f"State Machine is being deleted: '{state_machine_arn(name)}'"
                )
            await conn.execute(
                sm.update()
                .where(sm.c.id == existing)
                .values(deleted_at=None, type=kind, role_arn=role_arn, created_at=at)
            )
            await queries.publish_version(conn, existing, text, at)
        else:
            latest = await _latest_version(conn, existing)
            if latest is None or latest.definition != text:
                raise StateMachineAlreadyExists(
                    f"State Machine Already Exists: '{state_machine_arn(name)}'"
                )
    return await describe_state_machine(engine, name)


async def update_state_machine(
    engine: AsyncEngine, name: str, definition: str | dict[str, JSON]
) -> StateMachineInfo:
    """UpdateStateMachine: a changed definition becomes a new immutable version."""
    text = _definition_text(definition)
    async with engine.begin() as conn:
        row = await _state_machine_row(conn, name)
        latest = await _latest_version(conn, row.id)
        if latest is None or latest.definition != text:
            await queries.publish_version(conn, row.id, text, await queries.now(conn))
    return await describe_state_machine(engine, name)


def canonical_definition(text: str) -> str:
    """A definition as canonical JSON (sorted keys, no spaces): two texts of the same
    definition compare equal however they are laid out."""
    return json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


async def put_state_machine(
    engine: AsyncEngine,
    name: str,
    definition: str | dict[str, JSON],
    *,
    kind: str | None = None,
    description: str | None = None,
    tags: dict[str, str] | None = None,
) -> tuple[StateMachineInfo, bool]:
    """Make the state machine ``name`` have this definition (creating it if need be),
    publishing a new version only when the definition differs as JSON (not as text); set
    its description and tags when given. Returns the state machine and whether a version
    was published. The type of an existing state machine cannot change (as on AWS)."""
    check_name(name, "state machine")
    if description is not None and len(description) > 256:
        raise ValidationException("The description must have at most 256 characters")
    if tags is not None and not all(
        isinstance(k, str) and isinstance(v, str) and 0 < len(k) <= 128 and len(v) <= 256
        for k, v in tags.items()
    ):
        raise ValidationException("Tags must map keys of 1-128 to values of 0-256 characters")
    text = _definition_text(definition)
    try:
        before = await describe_state_machine(engine, name)
    except StateMachineDoesNotExist:
        before = None
    published = True
    if before is None or before.status == "DELETING":
        await create_state_machine(engine, name, text, kind=kind or "STANDARD")
    elif kind is not None and kind != before.type:
        raise ValidationException(
            f"State machine '{name}' is {before.type}; its type cannot change to {kind} "
            "(delete it and create it again)"
        )
    elif canonical_definition(before.definition) != canonical_definition(text):
        await update_state_machine(engine, name, text)
    else:
        published = False
    values: dict[str, str] = {}
    if description is not None:
        values["description"] = description
    if tags is not None:
        values["tags"] = json.dumps(tags, sort_keys=True)
    if values:
        sm = queries.state_machines
        async with engine.begin() as conn:
            await conn.execute(sm.update().where(sm.c.name == name).values(**values))
    return await describe_state_machine(engine, name), published


def _info(row: Any, version: Any) -> StateMachineInfo:
    return StateMachineInfo(
        status="DELETING" if row.deleted_at is not None else "ACTIVE",
        id=row.id,
        name=row.name,
        arn=row.arn,
        definition=version.definition,
        version=version.version,
        role_arn=row.role_arn,
        type=row.type,
        created_at=queries.aware(row.created_at),
        updated_at=queries.aware(version.created_at),
        description=row.description,
        tags=json.loads(row.tags),
    )


async def describe_state_machine(
    engine: AsyncEngine, name: str, version: int | None = None
) -> StateMachineInfo:
    """DescribeStateMachine: the latest version, or the given one."""
    async with engine.connect() as conn:
        row = await _state_machine_row(conn, name, deleting_ok=True)
        if version is None:
            return _info(row, await _latest_version(conn, row.id))
        return _info(row, await _version(conn, row, version))


async def _version(conn: AsyncConnection, row: Any, number: int) -> Any:
    v = queries.versions
    found = (
        await conn.execute(
            sa.select(v).where(v.c.state_machine_id == row.id, v.c.version == number)
        )
    ).first()
    if found is None:
        raise ResourceNotFound(f"State Machine Version Does Not Exist: '{row.arn}:{number}'")
    return found


async def list_versions(engine: AsyncEngine, name: str) -> list[StateMachineInfo]:
    """ListStateMachineVersions: newest first."""
    v = queries.versions
    async with engine.connect() as conn:
        row = await _state_machine_row(conn, name)
        found = (
            await conn.execute(
                sa.select(v).where(v.c.state_machine_id == row.id).order_by(v.c.version.desc())
            )
        ).all()
    return [_info(row, version) for version in found]


async def state_machine_for_execution(engine: AsyncEngine, ref: str) -> StateMachineInfo:
    """DescribeStateMachineForExecution: the version the execution runs, not the latest."""
    e, v, sm = queries.executions, queries.versions, queries.state_machines
    async with engine.connect() as conn:
        execution_id = await _execution_id(conn, ref)
        version = (
            await conn.execute(
                sa.select(v).join(e, e.c.version_id == v.c.id).where(e.c.id == execution_id)
            )
        ).first()
        if version is None:  # purged since it was found
            raise ExecutionDoesNotExist(f"Execution Does Not Exist: '{ref}'")
        row = (await conn.execute(sa.select(sm).where(sm.c.id == version.state_machine_id))).first()
    return _info(row, version)


async def delete_state_machine(engine: AsyncEngine, name: str) -> str:
    """DeleteStateMachine: its executions run to their end (the machine is DELETING until
    then), nothing new starts, and its name can be created again afterwards. Deleting what
    does not exist succeeds (as AWS's does). Returns the status: DELETING or DELETED."""
    sm = queries.state_machines
    async with engine.begin() as conn:
        row = (
            await conn.execute(sa.select(sm.c.id, sm.c.deleted_at).where(sm.c.name == name))
        ).first()
        if row is None:
            return "DELETED"
        if row[1] is None:
            at = await queries.now(conn)
            await conn.execute(sm.update().where(sm.c.id == row[0]).values(deleted_at=at))
        return "DELETING" if await _running(conn, row[0]) else "DELETED"


# ---------------------------------------------------------------------------- aliases


class ThrottlingException(ServiceError):
    """More requests than the service takes now: try again after ``retry_after`` seconds
    (AWS's name; boto3 and the AWS CLI retry it with back-off)."""

    status = 429
    retry_after = 1


class ConflictException(ServiceError):
    """The resource exists with another configuration."""


@dataclass(frozen=True, slots=True)
class AliasInfo:
    """What DescribeStateMachineAlias reports."""

    arn: str
    name: str
    description: str
    routing: list[tuple[int, int]]  # (version, weight)
    state_machine_arn: str
    created_at: datetime
    updated_at: datetime


def _check_alias(alias: str) -> None:
    if not isinstance(alias, str) or not _ALIAS.match(alias):
        raise ValidationException(
            f"Invalid alias name '{alias}': 1-80 letters, digits, '-', '_' or '.', not all digits"
        )


async def _check_routing(conn: AsyncConnection, sm_row: Any, routing: list[tuple[int, int]]) -> str:
    if not 1 <= len(routing) <= 2:
        raise ValidationException("routingConfiguration must have one or two entries")
    if len({version for version, _ in routing}) != len(routing):
        raise ValidationException("routingConfiguration names the same version twice")
    if any(not 0 <= weight <= 100 for _, weight in routing) or sum(w for _, w in routing) != 100:
        raise ValidationException("routingConfiguration weights must be 0-100 and add up to 100")
    for version, _ in routing:
        await _version(conn, sm_row, version)  # ResourceNotFound for a version that is not
    return json.dumps([{"version": v, "weight": w} for v, w in routing])


def _alias_info(sm_row: Any, row: Any) -> AliasInfo:
    return AliasInfo(
        arn=f"{sm_row.arn}:{row.name}",
        name=row.name,
        description=row.description,
        routing=[(r["version"], r["weight"]) for r in json.loads(row.routing)],
        state_machine_arn=sm_row.arn,
        created_at=queries.aware(row.created_at),
        updated_at=queries.aware(row.updated_at),
    )


async def _alias_row(conn: AsyncConnection, sm_row: Any, alias: str) -> Any:
    a = queries.aliases
    row = (
        await conn.execute(sa.select(a).where(a.c.state_machine_id == sm_row.id, a.c.name == alias))
    ).first()
    if row is None:
        raise ResourceNotFound(f"Resource not found: '{sm_row.arn}:{alias}'")
    return row


async def create_alias(
    engine: AsyncEngine,
    name: str,
    alias: str,
    routing: list[tuple[int, int]],
    description: str = "",
) -> AliasInfo:
    """CreateStateMachineAlias: idempotent for the same routing and description, else
    ConflictException."""
    _check_alias(alias)
    async with engine.begin() as conn:
        sm_row = await _state_machine_row(conn, name)
        text = await _check_routing(conn, sm_row, routing)
        a = queries.aliases
        existing = (
            await conn.execute(
                sa.select(a).where(a.c.state_machine_id == sm_row.id, a.c.name == alias)
            )
        ).first()
        if existing is not None:
            if existing.routing != text or existing.description != description:
                raise ConflictException(
                    f"Failed to create alias because an alias with the same name and a "
                    f"different routing configuration already exists: '{sm_row.arn}:{alias}'"
                )
            return _alias_info(sm_row, existing)
        at = await queries.now(conn)
        await conn.execute(
            a.insert().values(
                state_machine_id=sm_row.id,
                name=alias,
                description=description,
                routing=text,
                created_at=at,
                updated_at=at,
            )
        )
        return _alias_info(sm_row, await _alias_row(conn, sm_row, alias))


async def describe_alias(engine: AsyncEngine, name: str, alias: str) -> AliasInfo:
    """DescribeStateMachineAlias."""
    async with engine.connect() as conn:
        sm_row = await _state_machine_row(conn, name, deleting_ok=True)
        return _alias_info(sm_row, await _alias_row(conn, sm_row, alias))


async def update_alias(
    engine: AsyncEngine,
    name: str,
    alias: str,
    routing: list[tuple[int, int]] | None,
    description: str | None,
) -> AliasInfo:
    """UpdateStateMachineAlias: new routing and/or description."""
    async with engine.begin() as conn:
        sm_row = await _state_machine_row(conn, name)
        row = await _alias_row(conn, sm_row, alias)
        values: dict[str, Any] = {"updated_at": await queries.now(conn)}
        if routing is not None:
            values["routing"] = await _check_routing(conn, sm_row, routing)
        if description is not None:
            values["description"] = description
        await conn.execute(
            queries.aliases.update().where(queries.aliases.c.id == row.id).values(values)
        )
        return _alias_info(sm_row, await _alias_row(conn, sm_row, alias))


async def delete_alias(engine: AsyncEngine, name: str, alias: str) -> None:
    """DeleteStateMachineAlias (an alias that is not there: nothing to do)."""
    async with engine.begin() as conn:
        sm_row = await _state_machine_row(conn, name, deleting_ok=True)
        a = queries.aliases
        await conn.execute(a.delete().where(a.c.state_machine_id == sm_row.id, a.c.name == alias))


async def list_aliases(engine: AsyncEngine, name: str) -> list[AliasInfo]:
    """ListStateMachineAliases, by name."""
    async with engine.connect() as conn:
        sm_row = await _state_machine_row(conn, name, deleting_ok=True)
        a = queries.aliases
        rows = await conn.execute(
            sa.select(a).where(a.c.state_machine_id == sm_row.id).order_by(a.c.name)
        )
        return [_alias_info(sm_row, row) for row in rows]


def _route(routing: list[tuple[int, int]]) -> int:
    """A version drawn by weight."""
    draw = secrets.randbelow(100)
    for version, weight in routing:
        if draw < weight:
            return version
        draw -= weight
    return routing[-1][0]


async def alias_version(engine: AsyncEngine, name: str, alias: str) -> int:
    """The version an execution started through ``alias`` runs (drawn by the weights)."""
    return _route((await describe_alias(engine, name, alias)).routing)


async def list_state_machines(engine: AsyncEngine) -> list[StateMachineInfo]:
    """Every state machine, by name."""
    async with engine.connect() as conn:
        names = (
            (
                await conn.execute(
                    sa.select(queries.state_machines.c.name)
                    .where(queries.state_machines.c.deleted_at.is_(None))
                    .order_by(queries.state_machines.c.name)
                )
            )
            .scalars()
            .all()
        )
    return [await describe_state_machine(engine, name) for name in names]


# ---------------------------------------------------------------------------- executions


async def start_execution(
    engine: AsyncEngine,
    state_machine: str,
    input_value: JSON = None,
    name: str | None = None,
    test_case: str | None = None,
    version: int | None = None,
    alias: str | None = None,
) -> ExecutionSummary:
    """StartExecution (of the latest version, or of ``version``, drawn by ``alias``). The same name with the same input returns the running execution
    (AWS's idempotency); with another input, or once it has closed, ExecutionAlreadyExists."""
    input_value = {} if input_value is None else input_value
    try:
        # Written once: its size is checked here and the same text is stored.
        text = payload_text(input_value)
    except Exception as exc:
        raise InvalidExecutionInput(f"Invalid execution input: {exc}") from None
    size = text_size(text)
    if size > MAX_PAYLOAD_BYTES:
        raise InvalidExecutionInput(
            f"The execution input is {size} bytes; the limit is {MAX_PAYLOAD_BYTES} bytes"
        )
    if name is not None:
        check_name(name, "execution")
    execution_id = str(uuid.uuid4())
    request = _Start(
        execution_id,
        state_machine,
        name or execution_id,
        input_value,
        test_case,
        version,
        alias if alias is not None else (str(version) if version is not None else None),
        text,
    )
    outcome = await _starter(engine).submit(request)
    if isinstance(outcome, ExecutionSummary):
        return outcome
    return await describe_execution(engine, outcome)


async def start_execution_in(
    conn: AsyncConnection, state_machine: str, input_value: JSON, name: str
) -> ExecutionSummary | str | ServiceError:
    """Start an execution in the caller's transaction (schedules: the start and the schedule's
    advance commit together). Returns the summary, the id of the running execution of the
    same name and input (AWS's idempotent start), or the error, like the batched starts."""
    check_name(name, "execution")
    execution_id = str(uuid.uuid4())
    request = _Start(execution_id, state_machine, name, input_value, None, None, None)
    return (await _start_all_in(conn, [request]))[0]


@dataclass(frozen=True, slots=True)
class _Start:
    """One StartExecution, validated, waiting for its transaction."""

    execution_id: str
    state_machine: str
    name: str
    input_value: JSON
    test_case: str | None
    version: int | None
    qualifier: str | None  # the version number or alias it was started through
    input_text: str | None = None  # input_value's JSON text (payload.dumps)


class _Starter:
    """Group commit for StartExecution: the starts that arrive while a transaction commits go
    into the next one together (one BEGIN/COMMIT and one flush for many). Each start runs its
    own statements and gets its own answer or error; if the database refuses the shared
    transaction, each of its starts is tried again alone. A start is reported only after its
    transaction committed."""

    BATCH = 64
    # Starts waiting for a transaction beyond this are refused (ThrottlingException) rather
    # than queued: a burst beyond what the database commits gets a quick answer to retry,
    # and memory stays bounded. STATEWRIGHT_START_QUEUE_LIMIT sets it for a process.
    limit = 1024

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.queue: list[tuple[_Start, asyncio.Future[ExecutionSummary | str]]] = []
        self.drainer: asyncio.Task[None] | None = None

    async def submit(self, request: _Start) -> ExecutionSummary | str:
        """Queue a start; its summary (or the id of the same running start) once committed."""
        if len(self.queue) >= self.limit:
            raise ThrottlingException(
                f"Rate exceeded: {len(self.queue)} starts are waiting to be committed; "
                "retry with back-off"
            )
        future: asyncio.Future[ExecutionSummary | str] = asyncio.get_running_loop().create_future()
        self.queue.append((request, future))
        if self.drainer is None or self.drainer.done():
            self.drainer = asyncio.create_task(self._drain(self.engine))
        return await future

    def _take(self) -> list[tuple[_Start, asyncio.Future[ExecutionSummary | str]]]:
        batch, self.queue = self.queue[: self.BATCH], self.queue[self.BATCH :]
        return batch

    async def _drain(self, engine: AsyncEngine) -> None:
        if not queries.is_postgres(engine):
            while self.queue:
                await self._run(engine, self._take())
            return
        while self.queue:
            batch = self._take()
            try:
                # One connection while starts keep coming, and the batches' statement run on
                # its driver: a pool checkout (and setting autocommit), or SQLAlchemy's
                # execution, each cost more CPU than the statement itself.
                async with _start_connection(engine) as conn:
                    driver = await queries.driver_connection(conn)
                    try:
                        while batch:
                            requests = [request for request, _ in batch]
                            self._settle(batch, await _start_all_postgres(conn, requests, driver))
                            batch = self._take()  # those that came during the round trip
                    except Exception:
                        if driver.is_closed():  # not back into the pool
                            await conn.invalidate()
                        raise
            except Exception:
                for item in batch:  # each start again alone, to isolate the one refused
                    await self._run(engine, [item])

    async def _run(
        self,
        engine: AsyncEngine,
        batch: list[tuple[_Start, asyncio.Future[ExecutionSummary | str]]],
    ) -> None:
        outcomes: list[ExecutionSummary | str | Exception] = []
        try:
            async with _start_connection(engine) as conn:
                # Each start gets its own answer (or error); the others go on.
                outcomes.extend(await _start_all_in(conn, [request for request, _ in batch]))
        except Exception as exc:
            if len(batch) > 1:
                for item in batch:  # isolate the start the database refused
                    await self._run(engine, [item])
                return
            outcomes = [exc]
        self._settle(batch, outcomes)

    @staticmethod
    def _settle(
        batch: list[tuple[_Start, asyncio.Future[ExecutionSummary | str]]],
        outcomes: Sequence[ExecutionSummary | str | Exception],
    ) -> None:
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if future.done():
                continue
            if isinstance(outcome, Exception):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)


@contextlib.asynccontextmanager
async def _start_connection(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """Where starts are written. Postgres: autocommit (a batch is one statement, atomic by
    itself: no BEGIN and COMMIT round trips); SQLite: a transaction."""
    if queries.is_postgres(engine):
        async with engine.connect() as conn:
            yield await conn.execution_options(isolation_level="AUTOCOMMIT")
    else:
        async with engine.begin() as conn:
            yield conn


def set_start_queue_limit(limit: int) -> None:
    """How many starts may wait for their transaction in this process (the rest are
    ThrottlingException)."""
    _Starter.limit = max(1, limit)


_STARTERS: dict[tuple[int, int], _Starter] = {}


def _starter(engine: AsyncEngine) -> _Starter:
    """The group-commit queue of ``engine`` in the running event loop."""
    key = (id(engine), id(asyncio.get_running_loop()))
    starter = _STARTERS.get(key)
    if starter is None:
        if len(_STARTERS) > 64:  # engines and loops of tests come and go
            _STARTERS.clear()
        starter = _STARTERS[key] = _Starter(engine)
    return starter


# The lookup of a start on SQLite, built once per kind (constructing it per start cost more
# than running it): the state machine and its latest version (or a given one). Postgres
# looks up and inserts in one statement (queries.start_all).
_START_LOOKUPS: dict[tuple[bool, bool], Any] = {}


def _start_lookup(conn: AsyncConnection, latest: bool) -> Any:
    sm, v = queries.state_machines, queries.versions
    chosen = sa.select(v.c.id).where(v.c.state_machine_id == sm.c.id)
    if latest:
        chosen = chosen.order_by(v.c.version.desc()).limit(1)
    else:
        chosen = chosen.where(v.c.version == sa.bindparam("number"))
    # Postgres reads its own clock; SQLite (one machine) takes the time as a parameter, so
    # that the statement, built once, does not keep the time it was built at.
    now = (
        sa.func.statement_timestamp()
        if queries.is_postgres(conn)
        else sa.bindparam("now", type_=sa.DateTime(timezone=True))
    )
    return sa.select(sm.c.id, sm.c.arn, chosen.scalar_subquery(), now).where(
        sm.c.name == sa.bindparam("machine"), sm.c.deleted_at.is_(None)
    )


async def _start_all_in(
    conn: AsyncConnection, requests: Sequence[_Start]
) -> list[ExecutionSummary | str | ServiceError]:
    """Start executions on ``conn``: for each, its summary, the id of the running execution
    of the same name and input (AWS's idempotent start), or its error. On Postgres all of
    them are one statement; on SQLite (one writer, in a transaction) one after another."""
    if queries.is_postgres(conn):
        return await _start_all_postgres(conn, requests)
    outcomes: list[ExecutionSummary | str | ServiceError] = []
    for request in requests:
        arn = execution_arn(request.state_machine, request.name)
        try:
            sm_id, sm_arn, version_id, at = await _start_target(conn, request)
            created = await queries.start_execution(
                conn,
                execution_id=request.execution_id,
                arn=arn,
                name=request.name,
                state_machine_id=sm_id,
                version_id=version_id,
                input_value=request.input_value,
                seed=secrets.randbits(62),
                at=at,
                test_case=request.test_case,
                qualifier=request.qualifier,
            )
            if created:
                outcomes.append(_started_summary(request, arn, sm_arn, at))
            else:
                outcomes.append(await _same_start(conn, sm_id, request, arn))
        except ServiceError as exc:
            outcomes.append(exc)
    return outcomes


async def _start_all_postgres(
    conn: AsyncConnection, requests: Sequence[_Start], driver: Any = None
) -> list[ExecutionSummary | str | ServiceError]:
    started = await queries.start_all(
        conn,
        [
            queries.StartRequest(
                id=request.execution_id,
                arn=execution_arn(request.state_machine, request.name),
                name=request.name,
                machine=request.state_machine,
                version=request.version,
                input_value=request.input_value,
                seed=secrets.randbits(62),
                test_case=request.test_case,
                qualifier=request.qualifier,
                input_text=request.input_text,
            )
            for request in requests
        ],
        driver,
    )
    outcomes: list[ExecutionSummary | str | ServiceError] = []
    for request in requests:
        arn = execution_arn(request.state_machine, request.name)
        found = started.get(request.execution_id)
        try:
            if found is None:  # no such state machine (or being deleted): say which
                await _state_machine_row(conn, request.state_machine)
                raise StateMachineDoesNotExist(
                    f"State Machine Does Not Exist: '{state_machine_arn(request.state_machine)}'"
                )
            if found.version_id is None:
                raise ResourceNotFound(
                    "State Machine Version Does Not Exist: "
                    f"'{found.state_machine_arn}:{request.version}'"
                )
            if found.created:
                outcomes.append(_started_summary(request, arn, found.state_machine_arn, found.at))
            else:
                outcomes.append(await _same_start(conn, found.state_machine_id, request, arn))
        except ServiceError as exc:
            outcomes.append(exc)
    return outcomes


def _started_summary(request: _Start, arn: str, sm_arn: str, at: datetime) -> ExecutionSummary:
    """What StartExecution reports of a start it made: all known without another query."""
    return ExecutionSummary(
        id=request.execution_id,
        arn=arn,
        name=request.name,
        state_machine_arn=sm_arn,
        status="RUNNING",
        input=request.input_value,
        output=None,
        error=None,
        cause=None,
        started_at=at,
        stopped_at=None,
        events=0,
    )


async def _start_target(conn: AsyncConnection, request: _Start) -> tuple[int, str, int, datetime]:
    """The state machine's id and ARN, the id of the version to run, and the time (one
    query)."""
    version = request.version
    lookup = _START_LOOKUPS.get((queries.is_postgres(conn), version is None))
    if lookup is None:
        lookup = _START_LOOKUPS[(queries.is_postgres(conn), version is None)] = _start_lookup(
            conn, version is None
        )
    params = {"machine": request.state_machine, "number": version or 0, "now": datetime.now(UTC)}
    found = (await conn.execute(lookup, params)).first()
    if found is None:
        await _state_machine_row(conn, request.state_machine)  # does not exist, or deleting
        raise StateMachineDoesNotExist(
            f"State Machine Does Not Exist: '{state_machine_arn(request.state_machine)}'"
        )
    sm_id, sm_arn, version_id, at = found
    if version_id is None:
        raise ResourceNotFound(f"State Machine Version Does Not Exist: '{sm_arn}:{version}'")
    return sm_id, sm_arn, version_id, queries.aware(at)


async def _same_start(conn: AsyncConnection, sm_id: int, request: _Start, arn: str) -> str:
    """The name is taken: the same input of a running execution is the same start (its id);
    anything else is ExecutionAlreadyExists."""
    e = queries.executions
    existing = (
        await conn.execute(
            sa.select(e.c.id, e.c.status, e.c.input_ref).where(
                e.c.state_machine_id == sm_id, e.c.name == request.name
            )
        )
    ).one()
    stored = (await queries.load_payloads(conn, [existing[2]]))[existing[2]]
    if existing[1] != "RUNNING" or stored != request.input_value:
        raise ExecutionAlreadyExists(f"Execution Already Exists: '{arn}'")
    found_id: str = existing[0]
    return found_id


async def start_sync_execution(
    engine: AsyncEngine,
    state_machine: str,
    input_value: JSON = None,
    name: str | None = None,
    timeout_seconds: float = 300.0,
) -> ExecutionSummary:
    """StartSyncExecution (EXPRESS state machines): start, decide at once in this process, and
    wait for the end. Past ``timeout_seconds`` (AWS: 5 minutes for Express) it is stopped and
    reported TIMED_OUT with States.Timeout."""
    from service.worker.decider import Decider  # the worker package imports this module

    info = await describe_state_machine(engine, state_machine)
    if info.type != "EXPRESS":
        raise StateMachineTypeNotSupported(
            f"This operation is not supported by this type of state machine: {info.arn} is STANDARD"
        )
    summary = await start_execution(engine, state_machine, input_value, name)
    await Decider(engine).decide_execution(summary.id)
    deadline = asyncio.get_running_loop().time() + timeout_seconds
    delay = 0.005
    while True:
        summary = await describe_execution(engine, summary.id)
        if summary.status != "RUNNING":
            return summary
        if asyncio.get_running_loop().time() > deadline:
            await stop_execution(engine, summary.id, "States.Timeout", "The execution timed out")
            stopped = await describe_execution(engine, summary.id)
            return dataclasses.replace(stopped, status="TIMED_OUT")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.2)


async def _execution_id(conn: AsyncConnection, ref: str) -> str:
    e = queries.executions
    column = e.c.arn if ref.startswith("arn:") else e.c.id
    found = (await conn.execute(sa.select(e.c.id).where(column == ref))).scalar_one_or_none()
    if found is None:
        raise ExecutionDoesNotExist(f"Execution Does Not Exist: '{ref}'")
    return str(found)


async def execution_id(conn: AsyncConnection, ref: str) -> str:
    """The id of the execution ``ref`` (an id or an ARN); ExecutionDoesNotExist."""
    return await _execution_id(conn, ref)


async def describe_execution(engine: AsyncEngine, ref: str) -> ExecutionSummary:
    """DescribeExecution, by id or ARN."""
    e = queries.executions
    async with engine.connect() as conn:
        execution_id = await _execution_id(conn, ref)
        row = (
            await conn.execute(
                sa.select(
                    e.c.id,
                    e.c.arn,
                    e.c.name,
                    e.c.status,
                    e.c.input_ref,
                    e.c.output_ref,
                    e.c.error,
                    e.c.cause,
                    e.c.started_at,
                    e.c.stopped_at,
                    e.c.version,
                    queries.state_machines.c.arn,
                    e.c.qualifier,
                    queries.versions.c.version,
                    e.c.redrive_count,
                )
                .join(queries.state_machines, queries.state_machines.c.id == e.c.state_machine_id)
                .join(queries.versions, queries.versions.c.id == e.c.version_id)
                .where(e.c.id == execution_id)
            )
        ).first()
        if row is None:  # purged (EXPRESS retention, `statewright purge`) since it was found
            raise ExecutionDoesNotExist(f"Execution Does Not Exist: '{ref}'")
        refs = [r for r in (row[4], row[5]) if r is not None]
        values = await queries.load_payloads(conn, refs)
    return ExecutionSummary(
        id=row[0],
        arn=row[1],
        name=row[2],
        state_machine_arn=row[11],
        status=row[3],
        input=values[row[4]],
        output=values.get(row[5]) if row[5] is not None else None,
        error=row[6],
        cause=row[7],
        started_at=queries.aware(row[8]),
        stopped_at=queries.aware(row[9]),
        events=row[10],
        state_machine_version_arn=f"{row[11]}:{row[13]}" if row[12] else None,
        state_machine_alias_arn=(
            f"{row[11]}:{row[12]}" if row[12] and not row[12].isdigit() else None
        ),
        redrive_count=row[14],
    )


async def list_executions(
    engine: AsyncEngine,
    state_machine: str | None = None,
    status: str | None = None,
    name_prefix: str | None = None,
    limit: int = 100,
    before: tuple[datetime, str] | None = None,
) -> list[ExecutionSummary]:
    """Executions newest first, filtered; ``before`` is the (started_at, id) cursor."""
    e = queries.executions
    query = sa.select(e.c.id).order_by(e.c.started_at.desc(), e.c.id.desc()).limit(limit)
    async with engine.connect() as conn:
        if state_machine is not None:
            query = query.where(
                e.c.state_machine_id
                == (await _state_machine_row(conn, state_machine, deleting_ok=True)).id
            )
        if status is not None:
            query = query.where(e.c.status == status)
        if name_prefix:
            query = query.where(e.c.name.startswith(name_prefix, autoescape=True))
        if before is not None:
            query = query.where(
                sa.tuple_(e.c.started_at, e.c.id)
                < sa.tuple_(sa.literal(before[0]), sa.literal(before[1]))
            )
        ids = (await conn.execute(query)).scalars().all()
    return [await describe_execution(engine, i) for i in ids]


async def stop_execution(
    engine: AsyncEngine, ref: str, error: str | None = None, cause: str | None = None
) -> datetime:
    """StopExecution: ABORTED when this returns, as on AWS (the decision is made right here,
    under the execution's row lock, like any worker's). Returns the stop date."""
    from service.worker.decider import Decider  # the worker package imports this module

    async with engine.begin() as conn:
        execution_id = await _execution_id(conn, ref)
        status, stopped_at = (
            await conn.execute(
                sa.select(queries.executions.c.status, queries.executions.c.stopped_at).where(
                    queries.executions.c.id == execution_id
                )
            )
        ).one()
        if status != "RUNNING":
            return queries.aware(stopped_at) or await queries.now(conn)  # nothing left to stop
        at = await queries.now(conn)
        await queries.enqueue(conn, execution_id, "stop", {"error": error, "cause": cause}, at)
    await Decider(engine).decide_execution(execution_id)
    summary = await describe_execution(engine, execution_id)
    return summary.stopped_at or at


async def history(engine: AsyncEngine, ref: str, after: int = 0) -> list[Event]:
    """The execution's history from event ``after + 1`` (its own events, not distributed children's)."""
    async with engine.connect() as conn:
        execution_id = await _execution_id(conn, ref)
        return [
            e for e in await queries.load_events(conn, execution_id, after=after) if not e.child
        ]


# ---------------------------------------------------------------------------- callbacks


async def _task_by_token(conn: AsyncConnection, token: str) -> Any:
    o = queries.outbox
    if not isinstance(token, str) or not _TOKEN.match(token):
        raise InvalidToken(f"Invalid Token: '{token}'")
    # A split look-up: the index finds candidates by the first 64 bits (the part a timing
    # side channel of the index search could reveal), and the whole token is compared in
    # constant time; knowing the selector of a real token gets nobody closer to its rest.
    selector = token[:16]
    candidates = await conn.execute(
        sa.select(o).where(o.c.task_token >= selector, o.c.task_token < selector + "g")
    )
    row = None
    for candidate in candidates:
        if hmac.compare_digest(candidate.task_token.encode(), token.encode()):
            row = candidate
    if row is None:
        raise TaskDoesNotExist("Task Does Not Exist")
    if row.status not in ("PENDING", "RUNNING"):
        raise TaskTimedOut(
            "Task Timed Out: the task token has expired or the task has already closed"
        )
    return row


async def send_task_success(engine: AsyncEngine, token: str, output: JSON) -> None:
    """SendTaskSuccess: the waiting task succeeds with ``output``."""
    try:
        size = payload_size(output)
    except Exception as exc:
        raise InvalidOutput(f"Invalid output: {exc}") from None
    if size > MAX_PAYLOAD_BYTES:
        raise InvalidOutput(f"The output is {size} bytes; the limit is {MAX_PAYLOAD_BYTES} bytes")
    await _answer(engine, token, "task_succeeded", {"output": output}, close=True)


async def send_task_failure(
    engine: AsyncEngine, token: str, error: str | None, cause: str | None
) -> None:
    """SendTaskFailure: the waiting task fails with ``error`` and ``cause``."""
    await _answer(engine, token, "task_failed", {"error": error, "cause": cause}, close=True)


async def send_task_heartbeat(engine: AsyncEngine, token: str) -> None:
    """SendTaskHeartbeat: restart the task's heartbeat clock."""
    await _answer(engine, token, "task_heartbeat", {}, close=False)


async def _answer(
    engine: AsyncEngine, token: str, kind: str, body: dict[str, JSON], close: bool
) -> None:
    async with engine.begin() as conn:
        row = await _task_by_token(conn, token)
        at = await queries.now(conn)
        if close:
            # Closing the row makes a second answer for this token a TaskTimedOut.
            await conn.execute(
                queries.outbox.update().where(queries.outbox.c.id == row.id).values(status="DONE")
            )
        await queries.enqueue(conn, row.execution_id, kind, {"task_id": row.task_id, **body}, at)


# ---------------------------------------------------------------------------- activities


class ActivityDoesNotExist(ServiceError):
    """No activity has that ARN."""


@dataclass(frozen=True, slots=True)
class ActivityInfo:
    """An activity."""

    name: str
    arn: str
    created_at: datetime


def activity_arn(name: str) -> str:
    """The ARN AWS would give an activity."""
    return f"arn:aws:states:{REGION}:{ACCOUNT}:activity:{name}"


async def create_activity(engine: AsyncEngine, name: str) -> ActivityInfo:
    """CreateActivity (idempotent for an existing name, as on AWS)."""
    check_name(name, "activity")
    a = queries.activities
    async with engine.begin() as conn:
        row = (await conn.execute(sa.select(a).where(a.c.name == name))).first()
        if row is None:
            at = await queries.now(conn)
            await conn.execute(a.insert().values(name=name, arn=activity_arn(name), created_at=at))
            return ActivityInfo(name, activity_arn(name), at)
    return ActivityInfo(row.name, row.arn, queries.aware(row.created_at))


async def describe_activity(engine: AsyncEngine, arn: str) -> ActivityInfo:
    """DescribeActivity."""
    a = queries.activities
    async with engine.connect() as conn:
        row = (await conn.execute(sa.select(a).where(a.c.arn == arn))).first()
    if row is None:
        raise ActivityDoesNotExist(f"Activity Does Not Exist: '{arn}'")
    return ActivityInfo(row.name, row.arn, queries.aware(row.created_at))


async def list_activities(engine: AsyncEngine) -> list[ActivityInfo]:
    """ListActivities, by name."""
    a = queries.activities
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(a).order_by(a.c.name))).all()
    return [ActivityInfo(r.name, r.arn, queries.aware(r.created_at)) for r in rows]


async def delete_activity(engine: AsyncEngine, arn: str) -> None:
    """DeleteActivity (tasks already scheduled for it stay until they time out)."""
    async with engine.begin() as conn:
        await conn.execute(queries.activities.delete().where(queries.activities.c.arn == arn))


async def take_activity_task(
    engine: AsyncEngine, arn: str, worker: str | None
) -> tuple[str, JSON] | None:
    """Hand one waiting task of the activity to a worker: its token and input, or None."""
    o = queries.outbox
    async with engine.begin() as conn:
        exists = (
            await conn.execute(
                sa.select(queries.activities.c.id).where(queries.activities.c.arn == arn)
            )
        ).first()
        if exists is None:
            raise ActivityDoesNotExist(f"Activity Does Not Exist: '{arn}'")
        query = (
            sa.select(o.c.id, o.c.execution_id, o.c.task_id, o.c.task_token, o.c.parameters_ref)
            .where(o.c.resource == arn, o.c.status == "PENDING")
            .order_by(o.c.id)
            .limit(1)
        )
        if queries.is_postgres(conn):
            query = query.with_for_update(skip_locked=True)
        row = (await conn.execute(query)).first()
        if row is None:
            return None
        outbox_id, execution_id, task_id, token, ref = row
        at = await queries.now(conn)
        await conn.execute(
            o.update()
            .where(o.c.id == outbox_id)
            .values(status="RUNNING", claimed_by=(worker or "")[:128])
        )
        await queries.enqueue(conn, execution_id, "task_started", {"task_id": task_id}, at)
        value = (await queries.load_payloads(conn, [ref]))[ref]
    return token, value


async def get_activity_task(
    engine: AsyncEngine, arn: str, worker: str | None, wait_seconds: float = 60.0
) -> tuple[str, JSON] | None:
    """GetActivityTask: long-poll up to ``wait_seconds`` for a task of the activity."""
    deadline = asyncio.get_running_loop().time() + wait_seconds
    delay = 0.05
    while True:
        taken = await take_activity_task(engine, arn, worker)
        if taken is not None or asyncio.get_running_loop().time() >= deadline:
            return taken
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.5)


# ---------------------------------------------------------------------------- redrive


class ExecutionNotRedrivable(ServiceError):
    """Only FAILED, TIMED_OUT and ABORTED executions can be redriven."""


async def redrive_execution(engine: AsyncEngine, ref: str) -> datetime:
    """RedriveExecution: continue from the state the execution stopped in. Returns the date."""
    from service.worker.decider import Decider  # the worker package imports this module

    e = queries.executions
    async with engine.begin() as conn:
        execution_id = await _execution_id(conn, ref)
        status = (
            await conn.execute(sa.select(e.c.status).where(e.c.id == execution_id))
        ).scalar_one()
        if status not in ("FAILED", "TIMED_OUT", "ABORTED"):
            raise ExecutionNotRedrivable(
                f"Execution is {status}: only FAILED, TIMED_OUT and ABORTED executions can be redriven"
            )
        at = await queries.now(conn)
        await conn.execute(
            queries.inbox.insert().values(
                execution_id=execution_id, kind="redrive", body="{}", created_at=at
            )
        )
        await conn.execute(e.update().where(e.c.id == execution_id).values(wake_at=at))
        await queries.notify(conn, execution_id)
    await Decider(engine).decide_execution(execution_id, closed_too=True)
    return at


async def redrive_info(engine: AsyncEngine, ref: str) -> tuple[int, datetime | None]:
    """How many times the execution was redriven, and when last."""
    ev = queries.events
    async with engine.connect() as conn:
        execution_id = await _execution_id(conn, ref)
        count, last = (
            await conn.execute(
                sa.select(sa.func.count(), sa.func.max(ev.c.timestamp)).where(
                    ev.c.execution_id == execution_id, ev.c.type == "ExecutionRedriven"
                )
            )
        ).one()
    return int(count), queries.aware(last)
