"""Schedules: start an execution of a state machine, with a fixed input, at each fire time
of a rate, cron or at expression (service/schedule_expressions.py) in a time zone.

Exactly once per fire time, across worker crashes: ``next_fire_at`` is the next due start.
A worker claims due schedules (``FOR UPDATE SKIP LOCKED`` on Postgres; SQLite has one
writer), starts each one's execution and advances ``next_fire_at`` in the same
transaction: a worker that dies before the commit leaves both undone, and the next claim
does them again. The execution's name comes from the schedule and the fire time
(``NAME-20261126T120000``), so even a start repeated outside that transaction would be
AWS's idempotent start, never a second execution.

After a missed window (the workers were down, or busy), a schedule starts once, not once per
missed fire time: for its latest fire time at or before now (``catchup: once``, the
default), or only when that one is less than ``MISSED_AFTER`` late (``catchup: none``).
A paused (DISABLED) schedule starts nothing; on resuming it continues from the next fire
time after now.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from service import control
from service import schedule_expressions as expressions
from service.db import queries
from service.db.tables import ScheduleRow
from statemachine.interpreter import MAX_PAYLOAD_BYTES
from statemachine.payload import payload_size

JSON = Any
schedules = ScheduleRow.__table__  # type: ignore[attr-defined]
# AWS Scheduler's schedule names: 1-64 of letters, digits, '.', '-' and '_'. With the fire
# time (16 characters) an execution name stays within AWS's 80.
NAME = re.compile(r"^[\.\-_A-Za-z0-9]{1,64}$")
STATES = ("ENABLED", "DISABLED")
CATCHUPS = ("once", "none")
# catchup "none": a fire time later than this is a missed one, and is skipped.
MISSED_AFTER = timedelta(seconds=60)
# rate(N seconds): a dev and test setting (STATEWRIGHT_SCHEDULE_SECONDS); AWS's minimum is a
# minute. Set by create_app and the worker from the settings.
ALLOW_SECONDS = False


class ScheduleDoesNotExist(control.ServiceError):
    """No schedule has that name."""

    status = 404


class ScheduleAlreadyExists(control.ServiceError):
    """A schedule of that name exists."""

    status = 409


@dataclass(frozen=True, slots=True)
class ScheduleInfo:
    """A schedule as the API shows it."""

    name: str
    arn: str
    state_machine: str
    expression: str
    timezone: str
    input: JSON
    state: str
    catchup: str
    description: str
    tags: dict[str, str]
    created_at: datetime
    updated_at: datetime
    next_fire_at: datetime | None
    last_fire_at: datetime | None
    last_execution_arn: str | None
    last_error: str | None
    anchor_at: datetime

    def upcoming(self, count: int) -> list[datetime]:
        """The next ``count`` fire times, from ``next_fire_at`` (none while DISABLED)."""
        if self.state != "ENABLED" or self.next_fire_at is None or count < 1:
            return []
        expression = expressions.parse(self.expression, allow_seconds=True)
        zone = expressions.time_zone(self.timezone)
        rest = expressions.fire_times(
            expression, zone, self.next_fire_at, self.anchor_at, count - 1
        )
        return [self.next_fire_at, *rest]


def schedule_arn(name: str) -> str:
    """The ARN AWS Scheduler would give a schedule in the default group."""
    return f"arn:aws:scheduler:{control.REGION}:{control.ACCOUNT}:schedule/default/{name}"


def execution_name(schedule: str, fire_at: datetime) -> str:
    """The execution a fire time starts: the same for every retry of it."""
    return f"{schedule}-{fire_at:%Y%m%dT%H%M%S}"


def check(
    expression: str, timezone: str, *, allow_seconds: bool | None = None
) -> expressions.Expression:
    """Parse the expression and the time zone; ValidationException says what is wrong."""
    try:
        expressions.time_zone(timezone)
        return expressions.parse(
            expression, allow_seconds=ALLOW_SECONDS if allow_seconds is None else allow_seconds
        )
    except expressions.ScheduleExpressionError as exc:
        raise control.ValidationException(str(exc)) from None


def _check_fields(
    name: str | None, state: str | None, catchup: str | None, input_value: JSON, tags: JSON
) -> None:
    if name is not None and not NAME.match(name):
        raise control.ValidationException(
            f"Invalid schedule name '{name}': 1-64 letters, digits, '.', '-' or '_'"
        )
    if state is not None and state not in STATES:
        raise control.ValidationException(f"Value '{state}' at 'state' must be ENABLED or DISABLED")
    if catchup is not None and catchup not in CATCHUPS:
        raise control.ValidationException(f"Value '{catchup}' at 'catchup' must be once or none")
    if tags is not None and not (
        isinstance(tags, dict) and all(isinstance(v, str) for v in tags.values())
    ):
        raise control.ValidationException("Tags must be an object of strings")
    try:
        size = payload_size(input_value)
    except Exception as exc:
        raise control.InvalidExecutionInput(f"Invalid execution input: {exc}") from None
    if size > MAX_PAYLOAD_BYTES:
        raise control.InvalidExecutionInput(
            f"The input is {size} bytes; the limit is {MAX_PAYLOAD_BYTES} bytes"
        )


def _info(row: Any) -> ScheduleInfo:
    return ScheduleInfo(
        name=row.name,
        arn=schedule_arn(row.name),
        state_machine=row.state_machine,
        expression=row.expression,
        timezone=row.timezone,
        input=json.loads(row.input),
        state=row.state,
        catchup=row.catchup,
        description=row.description,
        tags=json.loads(row.tags),
        created_at=queries.aware(row.created_at),
        updated_at=queries.aware(row.updated_at),
        next_fire_at=queries.aware(row.next_fire_at),
        last_fire_at=queries.aware(row.last_fire_at),
        last_execution_arn=row.last_execution_arn,
        last_error=row.last_error,
        anchor_at=queries.aware(row.anchor_at),
    )


def _next(expression: str, timezone: str, after: datetime, anchor: datetime) -> datetime | None:
    parsed = expressions.parse(expression, allow_seconds=True)
    return expressions.next_fire(parsed, expressions.time_zone(timezone), after, anchor)


async def _exists(conn: AsyncConnection, state_machine: str) -> None:
    sm = queries.state_machines
    found = await conn.execute(
        sa.select(sm.c.id).where(sm.c.name == state_machine, sm.c.deleted_at.is_(None))
    )
    if found.first() is None:
        raise control.StateMachineDoesNotExist(
            f"State Machine Does Not Exist: '{control.state_machine_arn(state_machine)}'"
        )


async def create_schedule(
    engine: AsyncEngine,
    name: str,
    state_machine: str,
    expression: str,
    *,
    timezone: str = "UTC",
    input_value: JSON = None,
    state: str = "ENABLED",
    catchup: str = "once",
    description: str = "",
    tags: dict[str, str] | None = None,
) -> ScheduleInfo:
    """Create a schedule; its first fire time is the first after now."""
    input_value = {} if input_value is None else input_value
    _check_fields(name, state, catchup, input_value, tags)
    check(expression, timezone)
    async with engine.begin() as conn:
        await _exists(conn, state_machine)
        at = await queries.now(conn)
        try:
            await conn.execute(
                schedules.insert().values(
                    name=name,
                    state_machine=state_machine,
                    expression=expression.strip(),
                    timezone=timezone,
                    input=json.dumps(input_value),
                    state=state,
                    catchup=catchup,
                    description=description,
                    tags=json.dumps(tags or {}),
                    anchor_at=at,
                    next_fire_at=_next(expression, timezone, at, at),
                    created_at=at,
                    updated_at=at,
                )
            )
        except IntegrityError:
            raise ScheduleAlreadyExists(f"Schedule Already Exists: '{name}'") from None
    return await describe_schedule(engine, name)


async def _row(conn: AsyncConnection, name: str, lock: bool = False) -> Any:
    query = sa.select(schedules).where(schedules.c.name == name)
    if lock and queries.is_postgres(conn):
        query = query.with_for_update()
    row = (await conn.execute(query)).first()
    if row is None:
        raise ScheduleDoesNotExist(f"Schedule Does Not Exist: '{name}'")
    return row


async def describe_schedule(engine: AsyncEngine, name: str) -> ScheduleInfo:
    """One schedule."""
    async with engine.connect() as conn:
        return _info(await _row(conn, name))


async def list_schedules(
    engine: AsyncEngine, state_machine: str | None = None
) -> list[ScheduleInfo]:
    """Every schedule (of ``state_machine``), by name."""
    query = sa.select(schedules).order_by(schedules.c.name)
    if state_machine is not None:
        query = query.where(schedules.c.state_machine == state_machine)
    async with engine.connect() as conn:
        return [_info(row) for row in (await conn.execute(query)).all()]


async def update_schedule(
    engine: AsyncEngine,
    name: str,
    *,
    state_machine: str | None = None,
    expression: str | None = None,
    timezone: str | None = None,
    input_value: JSON = None,
    state: str | None = None,
    catchup: str | None = None,
    description: str | None = None,
    tags: dict[str, str] | None = None,
) -> ScheduleInfo:
    """Change what is given (None: unchanged). A new expression or time zone counts from now;
    resuming continues from the next fire time after now (what fell in the pause is not run)."""
    _check_fields(None, state, catchup, {} if input_value is None else input_value, tags)
    async with engine.begin() as conn:
        row = await _row(conn, name, lock=True)
        new_expression = row.expression if expression is None else expression.strip()
        new_timezone = row.timezone if timezone is None else timezone
        check(new_expression, new_timezone)
        if state_machine is not None:
            await _exists(conn, state_machine)
        at = await queries.now(conn)
        values: dict[str, Any] = {"updated_at": at}
        for column, value in (
            ("state_machine", state_machine),
            ("state", state),
            ("catchup", catchup),
            ("description", description),
        ):
            if value is not None:
                values[column] = value
        if input_value is not None:
            values["input"] = json.dumps(input_value)
        if tags is not None:
            values["tags"] = json.dumps(tags)
        anchor = queries.aware(row.anchor_at)
        timing = new_expression != row.expression or new_timezone != row.timezone
        if timing:
            anchor = at
            values.update(expression=new_expression, timezone=new_timezone, anchor_at=at)
        if timing or (state == "ENABLED" and row.state != "ENABLED"):
            values["next_fire_at"] = _next(new_expression, new_timezone, at, anchor)
        await conn.execute(schedules.update().where(schedules.c.id == row.id).values(**values))
    return await describe_schedule(engine, name)


async def delete_schedule(engine: AsyncEngine, name: str) -> None:
    """Delete a schedule (executions it started go on)."""
    async with engine.begin() as conn:
        deleted = await conn.execute(schedules.delete().where(schedules.c.name == name))
    if deleted.rowcount == 0:
        raise ScheduleDoesNotExist(f"Schedule Does Not Exist: '{name}'")


# ---------------------------------------------------------------------------- firing


async def fire_due(engine: AsyncEngine, *, now: datetime | None = None, limit: int = 16) -> int:
    """Start the executions of up to ``limit`` due schedules; each start and its schedule's
    next fire time commit together. Returns how many schedules were due. ``now`` replaces
    the database's clock (tests)."""
    async with engine.begin() as conn:
        at = now or await queries.now(conn)
        query = (
            sa.select(schedules)
            .where(schedules.c.state == "ENABLED", schedules.c.next_fire_at <= at)
            .order_by(schedules.c.next_fire_at)
            .limit(limit)
        )
        if queries.is_postgres(conn):
            query = query.with_for_update(skip_locked=True)
        rows = (await conn.execute(query)).all()
        for row in rows:
            await _fire(conn, row, at)
    return len(rows)


async def _fire(conn: AsyncConnection, row: Any, at: datetime) -> None:
    try:
        expression = expressions.parse(row.expression, allow_seconds=True)
        zone = expressions.time_zone(row.timezone)
    except expressions.ScheduleExpressionError as exc:
        # Stored before a rule got stricter, or a time zone the system no longer knows:
        # stop this schedule (and say why) rather than fail every claim of the others.
        await conn.execute(
            schedules.update()
            .where(schedules.c.id == row.id)
            .values(next_fire_at=None, last_error=f"ValidationException: {exc}")
        )
        return
    anchor = queries.aware(row.anchor_at)
    due = queries.aware(row.next_fire_at)
    fire_at = expressions.latest_fire(expression, zone, due, at, anchor)
    values: dict[str, Any] = {"next_fire_at": expressions.next_fire(expression, zone, at, anchor)}
    if row.catchup == "once" or at - fire_at <= MISSED_AFTER:
        name = execution_name(row.name, fire_at)
        outcome = await control.start_execution_in(
            conn, row.state_machine, json.loads(row.input), name
        )
        error: str | None = None
        if isinstance(outcome, control.ExecutionAlreadyExists):
            outcome = name  # started by an earlier fire of the same time: nothing to do
        if isinstance(outcome, control.ServiceError):
            error = f"{outcome.code}: {outcome}"
        values.update(
            last_fire_at=fire_at,
            last_error=error,
            last_execution_arn=None if error else control.execution_arn(row.state_machine, name),
        )
    await conn.execute(schedules.update().where(schedules.c.id == row.id).values(**values))


async def seconds_to_next_fire(conn: AsyncConnection) -> float | None:
    """Seconds until the earliest enabled schedule is due (0 if one is), None if none is."""
    earliest, at = (
        await conn.execute(
            sa.select(sa.func.min(schedules.c.next_fire_at), queries.clock(conn)).where(
                schedules.c.state == "ENABLED"
            )
        )
    ).one()
    if earliest is None:
        return None
    seconds: float = (queries.aware(earliest) - queries.aware(at)).total_seconds()
    return max(seconds, 0.0)
