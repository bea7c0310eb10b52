"""Data access. Functions take an open connection and never commit: the caller's transaction does.

Payloads: a JSON text shorter than PAYLOAD_INLINE_LIMIT is stored inline; a longer one goes to
``payloads`` once (by SHA-256) and the row holds ``@<sha256>``. JSON text never starts with
``@``, so the two forms cannot be confused.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from service.db.tables import (
    PAYLOAD_INLINE_LIMIT,
    ActivityRow,
    EventRow,
    ExecutionRow,
    InboxRow,
    OutboxRow,
    PayloadRow,
    StateMachineRow,
    StateMachineVersionRow,
    TimerRow,
)
from statemachine.events import Event

JSON = Any
executions = ExecutionRow.__table__  # type: ignore[attr-defined]
events = EventRow.__table__  # type: ignore[attr-defined]
payloads = PayloadRow.__table__  # type: ignore[attr-defined]
inbox = InboxRow.__table__  # type: ignore[attr-defined]
timers = TimerRow.__table__  # type: ignore[attr-defined]
outbox = OutboxRow.__table__  # type: ignore[attr-defined]
state_machines = StateMachineRow.__table__  # type: ignore[attr-defined]
versions = StateMachineVersionRow.__table__  # type: ignore[attr-defined]
activities = ActivityRow.__table__  # type: ignore[attr-defined]

# Fields of event details and meta that hold state data (possibly large): stored by reference.
_PAYLOAD_FIELDS = ("input", "output", "parameters")
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
NOTIFY_CHANNEL = "statewright_wake"


def _text(value: JSON) -> str:
    return _ENCODER.encode(value)


def is_postgres(conn: AsyncConnection) -> bool:
    """Whether the connection is to Postgres (else SQLite)."""
    return conn.dialect.name == "postgresql"


async def now(conn: AsyncConnection) -> datetime:
    """The database's clock: every worker reads the same time, so their clocks may differ."""
    if is_postgres(conn):
        value = (await conn.execute(sa.text("SELECT clock_timestamp()"))).scalar_one()
        assert isinstance(value, datetime)
        return value
    return datetime.now(UTC)  # SQLite is embedded: one machine, one clock


def _aware(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; everything here is UTC.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


# ---------------------------------------------------------------------------- payloads


async def store_payload(conn: AsyncConnection, value: JSON) -> str:
    """A reference to ``value``: its JSON text inline, or ``@sha256`` of a stored copy."""
    text = _text(value)
    if len(text) < PAYLOAD_INLINE_LIMIT:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()
    if is_postgres(conn):
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        statement = pg_insert(payloads).on_conflict_do_nothing(index_elements=["sha256"])
    else:
        statement = payloads.insert().prefix_with("OR IGNORE")
    await conn.execute(statement, {"sha256": digest, "body": text, "size": len(text)})
    return "@" + digest


async def load_payloads(conn: AsyncConnection, refs: Iterable[str]) -> dict[str, JSON]:
    """Resolve references (inline or ``@sha256``) to JSON values."""
    out: dict[str, JSON] = {}
    hashes = {ref[1:] for ref in refs if ref.startswith("@")}
    for ref in refs:
        if not ref.startswith("@"):
            out[ref] = json.loads(ref)
    if hashes:
        rows = await conn.execute(
            sa.select(payloads.c.sha256, payloads.c.body).where(payloads.c.sha256.in_(hashes))
        )
        for digest, body in rows:
            out["@" + digest] = json.loads(body)
    return out


# ---------------------------------------------------------------------------- state machines


@dataclass(frozen=True, slots=True)
class VersionRecord:
    """A state machine version as the worker needs it."""

    version_id: int
    state_machine_id: int
    name: str
    arn: str
    role_arn: str
    definition: str


async def create_state_machine(
    conn: AsyncConnection,
    name: str,
    arn: str,
    definition: str,
    role_arn: str,
    at: datetime,
    kind: str = "STANDARD",
) -> VersionRecord:
    """Insert a state machine (STANDARD or EXPRESS) with its first version."""
    sm_id = (
        await conn.execute(
            state_machines.insert()
            .values(name=name, arn=arn, role_arn=role_arn, created_at=at, type=kind)
            .returning(state_machines.c.id)
        )
    ).scalar_one()
    return await publish_version(conn, sm_id, definition, at)


async def publish_version(
    conn: AsyncConnection, state_machine_id: int, definition: str, at: datetime
) -> VersionRecord:
    """Add an immutable version (the next number); definitions are never changed in place."""
    latest = (
        await conn.execute(
            sa.select(sa.func.max(versions.c.version)).where(
                versions.c.state_machine_id == state_machine_id
            )
        )
    ).scalar_one()
    version_id = (
        await conn.execute(
            versions.insert()
            .values(
                state_machine_id=state_machine_id,
                version=(latest or 0) + 1,
                definition=definition,
                definition_sha256=hashlib.sha256(definition.encode()).hexdigest(),
                description="",
                created_at=at,
            )
            .returning(versions.c.id)
        )
    ).scalar_one()
    record = await load_version(conn, version_id)
    assert record is not None
    return record


async def load_version(conn: AsyncConnection, version_id: int) -> VersionRecord | None:
    """A version with its state machine's name and ARN."""
    row = (
        await conn.execute(
            sa.select(
                versions.c.id,
                versions.c.state_machine_id,
                state_machines.c.name,
                state_machines.c.arn,
                state_machines.c.role_arn,
                versions.c.definition,
            )
            .join(state_machines, state_machines.c.id == versions.c.state_machine_id)
            .where(versions.c.id == version_id)
        )
    ).first()
    return VersionRecord(*row) if row else None


# ---------------------------------------------------------------------------- executions


async def start_execution(
    conn: AsyncConnection,
    *,
    execution_id: str,
    arn: str,
    name: str,
    version: VersionRecord,
    input_value: JSON,
    seed: int,
    at: datetime,
    test_case: str | None = None,
) -> None:
    """Create an execution and queue its start; the next decision writes ExecutionStarted."""
    input_ref = await store_payload(conn, input_value)
    await conn.execute(
        executions.insert().values(
            id=execution_id,
            arn=arn,
            name=name,
            state_machine_id=version.state_machine_id,
            version_id=version.version_id,
            status="RUNNING",
            input_ref=input_ref,
            started_at=at,
            seed=seed,
            version=0,
            wake_at=at,
            test_case=test_case,
        )
    )
    await conn.execute(
        inbox.insert().values(
            execution_id=execution_id,
            kind="start",
            body=_text({"input_ref": input_ref}),
            created_at=at,
        )
    )
    await notify(conn, execution_id)


async def enqueue(
    conn: AsyncConnection, execution_id: str, kind: str, body: Mapping[str, JSON], at: datetime
) -> None:
    """Put an incoming event (task result, stop ...) in the inbox and wake the execution."""
    await conn.execute(
        inbox.insert().values(execution_id=execution_id, kind=kind, body=_text(body), created_at=at)
    )
    # Waits for a decision in progress (it holds the row): the wake-up is never lost.
    await conn.execute(
        executions.update()
        .where(executions.c.id == execution_id, executions.c.status == "RUNNING")
        .values(wake_at=at)
    )
    await notify(conn, execution_id)


async def notify(conn: AsyncConnection, payload: str = "") -> None:
    """Wake listening workers (Postgres LISTEN/NOTIFY; delivered at commit)."""
    if is_postgres(conn):
        await conn.execute(
            sa.text("SELECT pg_notify(:channel, :payload)"),
            {"channel": NOTIFY_CHANNEL, "payload": payload},
        )


@dataclass(slots=True)
class Claimed:
    """An execution locked for one decision."""

    id: str
    arn: str
    version_id: int
    version: int
    seed: int
    input_ref: str
    started_at: datetime


_CLAIM_COLUMNS = (
    executions.c.id,
    executions.c.arn,
    executions.c.version_id,
    executions.c.version,
    executions.c.seed,
    executions.c.input_ref,
    executions.c.started_at,
)


def _claimed(row: Any) -> Claimed:
    return Claimed(row[0], row[1], row[2], row[3], row[4], row[5], _aware(row[6]))  # type: ignore[arg-type]


async def claim_one(conn: AsyncConnection) -> tuple[datetime, Claimed | None]:
    """The database time, and one execution locked for a decision due by then (Postgres skips
    rows other workers hold). One round trip: the clock is read in the same statement."""
    clock = sa.func.clock_timestamp() if is_postgres(conn) else sa.literal(datetime.now(UTC))
    query = (
        sa.select(*_CLAIM_COLUMNS, clock)
        .where(executions.c.wake_at <= clock)
        .order_by(executions.c.wake_at)
        .limit(1)
    )
    if is_postgres(conn):
        query = query.with_for_update(skip_locked=True)
    row = (await conn.execute(query)).first()
    if row is None:
        return await now(conn), None
    at = _aware(row[7])
    assert at is not None
    return at, _claimed(row)


async def lock_execution(
    conn: AsyncConnection, execution_id: str, closed_too: bool = False
) -> Claimed | None:
    """Lock a given running execution (waiting for a decision in progress); None if closed
    (unless ``closed_too``)."""
    query = sa.select(*_CLAIM_COLUMNS).where(executions.c.id == execution_id)
    if not closed_too:
        query = query.where(executions.c.status == "RUNNING")
    if is_postgres(conn):
        query = query.with_for_update()
    row = (await conn.execute(query)).first()
    return _claimed(row) if row is not None else None


async def next_wake(conn: AsyncConnection) -> datetime | None:
    """When the earliest sleeping execution needs a decision."""
    value = (await conn.execute(sa.select(sa.func.min(executions.c.wake_at)))).scalar_one()
    return _aware(value)


# ---------------------------------------------------------------------------- history


def event_row(execution_id: str, event: Event, refs: Mapping[str, str]) -> dict[str, JSON]:
    """A row for the events table; ``refs`` maps payload fields to stored references."""
    return {
        "execution_id": execution_id,
        "seq": event.id,
        "type": event.type,
        "timestamp": event.timestamp,
        "previous_event_id": event.previous_event_id,
        "scope": event.scope,
        "child": event.child,
        "details": _text(_split(event.details, refs, "details")),
        "meta": _text(_split(event.meta, refs, "meta")),
    }


def _split(values: Mapping[str, JSON], refs: Mapping[str, str], part: str) -> dict[str, JSON]:
    inline = {k: v for k, v in values.items() if f"{part}.{k}" not in refs}
    by_ref = {k: refs[f"{part}.{k}"] for k in values if f"{part}.{k}" in refs}
    return {"v": inline, "r": by_ref} if by_ref else {"v": inline}


async def payload_refs(conn: AsyncConnection, event: Event) -> dict[str, str]:
    """Store the large payload fields of an event; return their references."""
    refs: dict[str, str] = {}
    for part, values in (("details", event.details), ("meta", event.meta)):
        for key in _PAYLOAD_FIELDS:
            if key in values:
                ref = await store_payload(conn, values[key])
                if ref.startswith("@"):
                    refs[f"{part}.{key}"] = ref
    return refs


async def append_events(conn: AsyncConnection, execution_id: str, new: Sequence[Event]) -> None:
    """Insert events; the (execution_id, seq) key makes a racing append fail, never fork."""
    if not new:
        return
    rows = []
    for event in new:
        rows.append(event_row(execution_id, event, await payload_refs(conn, event)))
    await conn.execute(events.insert(), rows)


async def load_events(conn: AsyncConnection, execution_id: str, after: int = 0) -> list[Event]:
    """The history from event ``after + 1`` on, as engine events."""
    rows = (
        await conn.execute(
            sa.select(
                events.c.seq,
                events.c.type,
                events.c.timestamp,
                events.c.previous_event_id,
                events.c.scope,
                events.c.child,
                events.c.details,
                events.c.meta,
            )
            .where(events.c.execution_id == execution_id, events.c.seq > after)
            .order_by(events.c.seq)
        )
    ).all()
    decoded = [(row, json.loads(row[6]), json.loads(row[7])) for row in rows]
    refs = [r for _, d, m in decoded for part in (d, m) for r in part.get("r", {}).values()]
    values = await load_payloads(conn, refs) if refs else {}
    out: list[Event] = []
    for row, details, meta in decoded:
        detail_values = {**details["v"], **{k: values[r] for k, r in details.get("r", {}).items()}}
        meta_values = {**meta["v"], **{k: values[r] for k, r in meta.get("r", {}).items()}}
        timestamp = _aware(row[2])
        assert timestamp is not None
        out.append(
            Event(row[0], row[1], timestamp, row[3], detail_values, row[4], meta_values, row[5])
        )
    return out


async def take_inbox(
    conn: AsyncConnection, execution_id: str
) -> list[tuple[int, str, JSON, datetime]]:
    """Remove and return the execution's waiting incoming events (id, kind, body, created_at),
    oldest first. Removed in the decision's own transaction: a rollback puts them back."""
    rows = await conn.execute(
        inbox.delete()
        .where(inbox.c.execution_id == execution_id)
        .returning(inbox.c.id, inbox.c.kind, inbox.c.body, inbox.c.created_at)
    )
    return sorted((row[0], row[1], json.loads(row[2]), _aware(row[3])) for row in rows)  # type: ignore[misc]


async def take_due_timers(
    conn: AsyncConnection, execution_id: str, at: datetime
) -> list[tuple[datetime, str]]:
    """Remove and return the execution's timers due at ``at`` as (fire_at, timer_id), earliest first."""
    rows = await conn.execute(
        timers.delete()
        .where(timers.c.execution_id == execution_id, timers.c.fire_at <= at)
        .returning(timers.c.timer_id, timers.c.fire_at)
    )
    # Ties in time fire in creation order, as the engine's own runner (run_local) fires them:
    # a timer id ends in the number of the event that started it.
    due = [(_aware(fire_at), _creation_order(timer_id), timer_id) for timer_id, fire_at in rows]
    return [(fire_at, timer_id) for fire_at, _, timer_id in sorted(due)]  # type: ignore[misc]


def _creation_order(timer_id: str) -> int:
    suffix = timer_id.rpartition(":")[2]
    return int(suffix) if suffix.isdigit() else 0


async def delete_timers(conn: AsyncConnection, execution_id: str, timer_ids: Iterable[str]) -> None:
    """Remove timers (fired, cancelled or replaced)."""
    ids = list(timer_ids)
    if ids:
        await conn.execute(
            timers.delete().where(timers.c.execution_id == execution_id, timers.c.timer_id.in_(ids))
        )


async def delete_all_timers(conn: AsyncConnection, execution_id: str) -> None:
    """Remove every timer of a closed execution."""
    await conn.execute(timers.delete().where(timers.c.execution_id == execution_id))


async def set_timer(
    conn: AsyncConnection, execution_id: str, timer_id: str, fire_at: datetime
) -> None:
    """Create or move a timer."""
    await delete_timers(conn, execution_id, [timer_id])
    await conn.execute(
        timers.insert().values(execution_id=execution_id, timer_id=timer_id, fire_at=fire_at)
    )


async def finish_decision(
    conn: AsyncConnection,
    execution_id: str,
    *,
    expected_version: int,
    new_version: int,
    status: str,
    closed: Mapping[str, JSON] | None,
) -> None:
    """Move the execution to ``new_version`` (fencing on ``expected_version``) and set wake_at."""
    wake: Any
    if status == "RUNNING":
        wake = (
            sa.select(sa.func.min(timers.c.fire_at))
            .where(timers.c.execution_id == execution_id)
            .scalar_subquery()
        )
    else:
        wake = sa.null()
    values: dict[str, JSON] = {"version": new_version, "status": status, "wake_at": wake}
    if closed is not None:
        values.update(closed)
    result = await conn.execute(
        executions.update()
        .where(executions.c.id == execution_id, executions.c.version == expected_version)
        .values(**values)
    )
    if result.rowcount != 1:
        raise StaleVersion(execution_id, expected_version)


class StaleVersion(Exception):
    """The execution moved on since it was read: this decision must not be appended."""

    def __init__(self, execution_id: str, version: int) -> None:
        super().__init__(f"execution {execution_id} is no longer at version {version}")


# ---------------------------------------------------------------------------- outbox


async def add_task(
    conn: AsyncConnection,
    execution_id: str,
    *,
    task_id: int,
    state_name: str,
    resource: str,
    parameters: JSON,
    idempotency_key: str,
    task_token: str | None,
    timeout_seconds: float | None,
    heartbeat_seconds: float | None,
    at: datetime,
) -> None:
    """Queue a task for the runners (the ScheduleTask command)."""
    await conn.execute(
        outbox.insert().values(
            execution_id=execution_id,
            task_id=task_id,
            state_name=state_name,
            resource=resource,
            parameters_ref=await store_payload(conn, parameters),
            idempotency_key=idempotency_key,
            task_token=task_token,
            timeout_seconds=timeout_seconds,
            heartbeat_seconds=heartbeat_seconds,
            status="PENDING",
            created_at=at,
        )
    )
    await notify(conn, execution_id)  # runners listen on the same channel


async def close_tasks(
    conn: AsyncConnection, execution_id: str, task_ids: Iterable[int], status: str = "DONE"
) -> None:
    """Close tasks that no longer wait for an answer (their outbox rows stay for the record)."""
    ids = list(task_ids)
    if ids:
        await conn.execute(
            outbox.update()
            .where(
                outbox.c.execution_id == execution_id,
                outbox.c.task_id.in_(ids),
                outbox.c.status.in_(("PENDING", "RUNNING")),
            )
            .values(status=status)
        )


async def cancel_tasks(conn: AsyncConnection, execution_id: str, task_ids: Iterable[int]) -> None:
    """Mark tasks whose result is no longer wanted."""
    ids = list(task_ids)
    if ids:
        await conn.execute(
            outbox.update()
            .where(outbox.c.execution_id == execution_id, outbox.c.task_id.in_(ids))
            .values(status="CANCELLED")
        )
