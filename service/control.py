"""Application operations on the store: create state machines, start, stop, describe, history.

The API (Service API issue), the CLI and the tests all go through these; each is one
transaction. Definitions are validated here: an ERROR diagnostic refuses the definition.
"""

from __future__ import annotations

import json
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from service.db import queries
from statemachine.events import Event
from statemachine.validate import Diagnostic, validate

JSON = Any
ACCOUNT = "123456789012"
REGION = "us-east-1"


class InvalidDefinition(Exception):
    """The definition has ERROR diagnostics; they are all attached."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = diagnostics
        first = diagnostics[0]
        super().__init__(
            f"{first.code} at {first.location}: {first.message} ({len(diagnostics)} error(s))"
        )


class NotFound(Exception):
    """No such state machine or execution."""


@dataclass(frozen=True, slots=True)
class ExecutionSummary:
    """What DescribeExecution reports."""

    id: str
    arn: str
    name: str
    status: str
    input: JSON
    output: JSON
    error: str | None
    cause: str | None
    started_at: datetime
    stopped_at: datetime | None
    events: int


def state_machine_arn(name: str) -> str:
    """The ARN AWS would give a state machine of this name."""
    return f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{name}"


async def create_state_machine(
    engine: AsyncEngine, name: str, definition: str | dict[str, JSON]
) -> queries.VersionRecord:
    """Create a state machine, or publish a new version if the definition changed."""
    text = definition if isinstance(definition, str) else json.dumps(definition)
    errors = [d for d in validate(text) if d.severity == "ERROR"]
    if errors:
        raise InvalidDefinition(errors)
    async with engine.begin() as conn:
        at = await queries.now(conn)
        existing = (
            await conn.execute(
                sa.select(queries.state_machines.c.id).where(queries.state_machines.c.name == name)
            )
        ).scalar_one_or_none()
        if existing is None:
            return await queries.create_state_machine(
                conn, name, state_machine_arn(name), text, "", at
            )
        latest = (
            await conn.execute(
                sa.select(queries.versions.c.id, queries.versions.c.definition)
                .where(queries.versions.c.state_machine_id == existing)
                .order_by(queries.versions.c.version.desc())
                .limit(1)
            )
        ).first()
        if latest is not None and latest[1] == text:
            record = await queries.load_version(conn, latest[0])
            assert record is not None
            return record
        return await queries.publish_version(conn, existing, text, at)


async def start_execution(
    engine: AsyncEngine, state_machine: str, input_value: JSON = None, name: str | None = None
) -> str:
    """Start an execution of the state machine's latest version; returns the execution id."""
    async with engine.begin() as conn:
        row = (
            await conn.execute(
                sa.select(queries.versions.c.id)
                .join(
                    queries.state_machines,
                    queries.state_machines.c.id == queries.versions.c.state_machine_id,
                )
                .where(queries.state_machines.c.name == state_machine)
                .order_by(queries.versions.c.version.desc())
                .limit(1)
            )
        ).first()
        if row is None:
            raise NotFound(f"state machine {state_machine!r} does not exist")
        version = await queries.load_version(conn, row[0])
        assert version is not None
        execution_id = str(uuid.uuid4())
        name = name or execution_id
        at = await queries.now(conn)
        await queries.start_execution(
            conn,
            execution_id=execution_id,
            arn=f"arn:aws:states:{REGION}:{ACCOUNT}:execution:{state_machine}:{name}",
            name=name,
            version=version,
            input_value={} if input_value is None else input_value,
            seed=secrets.randbits(62),
            at=at,
        )
        return execution_id


async def stop_execution(
    engine: AsyncEngine, execution_id: str, error: str | None = None, cause: str | None = None
) -> None:
    """Ask the execution to stop (ExecutionAborted at its next decision)."""
    async with engine.begin() as conn:
        await queries.enqueue(
            conn, execution_id, "stop", {"error": error, "cause": cause}, await queries.now(conn)
        )


async def describe_execution(engine: AsyncEngine, execution_id: str) -> ExecutionSummary:
    """The execution's current summary."""
    e = queries.executions
    async with engine.connect() as conn:
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
                ).where(e.c.id == execution_id)
            )
        ).first()
        if row is None:
            raise NotFound(f"execution {execution_id!r} does not exist")
        refs = [r for r in (row[4], row[5]) if r is not None]
        values = await queries.load_payloads(conn, refs)
    return ExecutionSummary(
        id=row[0],
        arn=row[1],
        name=row[2],
        status=row[3],
        input=values[row[4]],
        output=values.get(row[5]) if row[5] is not None else None,
        error=row[6],
        cause=row[7],
        started_at=row[8],
        stopped_at=row[9],
        events=row[10],
    )


async def history(engine: AsyncEngine, execution_id: str) -> list[Event]:
    """The execution's whole history."""
    async with engine.connect() as conn:
        return await queries.load_events(conn, execution_id)
