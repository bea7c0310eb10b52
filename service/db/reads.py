"""Read queries of the history viewer: execution search and counts, per-machine counts, pages
of a history. Like queries.py, functions take an open connection and never commit.

Executions are listed newest first by (started_at, id), a total order, so a page ends at a
keyset cursor and the next page starts strictly after it whatever is inserted meanwhile.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from service.db import queries
from statemachine.events import Event

JSON = Any
STATUSES = ("RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED", "PENDING_REDRIVE")
# Outbox rows still waiting for their answer: not taken yet, or taken (a runner works on it,
# an activity worker holds it, a callback waits for its token).
OPEN_TASK_STATUSES = ("PENDING", "RUNNING")


@dataclass(frozen=True, slots=True)
class ExecutionFilter:
    """What GET /executions and /executions/count select; None: no condition."""

    state_machine_id: int | None = None
    status: str | None = None
    name_prefix: str | None = None
    started_after: datetime | None = None  # aware UTC, inclusive
    started_before: datetime | None = None  # aware UTC, exclusive
    redrive_count: int | None = None  # redriven at least this many times
    q: str | None = None  # substring of the input or output JSON text, any case
    stuck_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class ExecutionListed:
    """One execution of a listing, with its payloads read."""

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
    redrive_count: int


def _like_pattern(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


# Large payloads matching a search are named one by one (each an index lookup); past this
# many, the search reads them through a subquery instead (a scan, of a common text).
MAX_SEARCH_REFS = 100


async def _search(conn: AsyncConnection, text: str) -> sa.ColumnElement[bool]:
    """The input or output JSON text of the execution holds ``text``, in any case (ILIKE;
    SQLite folds ASCII letters only). Inline values are matched in the row, larger ones in
    the payloads table: their references are read first, so that each arm of the OR is an
    index condition (pg_trgm's GIN indexes also answer equality) and Postgres combines them
    in a bitmap scan."""
    e, p = queries.executions, queries.payloads
    pattern = _like_pattern(text)
    stored = sa.select(sa.literal("@") + p.c.sha256).where(p.c.body.ilike(pattern, escape="\\"))
    refs = (await conn.execute(stored.limit(MAX_SEARCH_REFS + 1))).scalars().all()
    arms: list[sa.ColumnElement[bool]] = []
    for column in (e.c.input_ref, e.c.output_ref):
        # An inline value never starts with "@": such text is a reference, not the value.
        arms.append(sa.and_(column.ilike(pattern, escape="\\"), ~column.startswith("@")))
        if len(refs) > MAX_SEARCH_REFS:
            arms.append(column.in_(stored))
        else:
            arms.extend(column == ref for ref in refs)
    return sa.or_(*arms)


async def conditions(conn: AsyncConnection, f: ExecutionFilter) -> list[sa.ColumnElement[bool]]:
    """The WHERE conditions of a filter."""
    e, o = queries.executions, queries.outbox
    out: list[sa.ColumnElement[bool]] = []
    if f.state_machine_id is not None:
        out.append(e.c.state_machine_id == f.state_machine_id)
    if f.status is not None:
        out.append(e.c.status == f.status)
    if f.name_prefix:
        out.append(e.c.name.startswith(f.name_prefix, autoescape=True))
    if f.started_after is not None:
        out.append(e.c.started_at >= sa.literal(f.started_after, sa.DateTime(timezone=True)))
    if f.started_before is not None:
        out.append(e.c.started_at < sa.literal(f.started_before, sa.DateTime(timezone=True)))
    if f.redrive_count is not None and f.redrive_count > 0:
        out.append(e.c.redrive_count >= f.redrive_count)
    if f.q:
        out.append(await _search(conn, f.q))
    if f.stuck_seconds is not None:
        # Stuck: running, with a task scheduled more than N seconds ago that has had no
        # answer yet (an outbox row still PENDING or RUNNING: an HTTP or container task in
        # flight or never taken, an activity not taken or not finished, a callback waiting for
        # its token). The outbox row is written with TaskScheduled, so created_at is when the
        # task was scheduled (attempt by attempt: a retry schedules a new row).
        cutoff = await queries.now(conn) - timedelta(seconds=f.stuck_seconds)
        waiting = sa.select(o.c.execution_id).where(
            o.c.status.in_(OPEN_TASK_STATUSES),
            o.c.created_at < sa.literal(cutoff, sa.DateTime(timezone=True)),
        )
        out.append(sa.and_(e.c.status == "RUNNING", e.c.id.in_(waiting)))
    return out


async def list_executions(
    conn: AsyncConnection,
    f: ExecutionFilter,
    limit: int,
    after: tuple[datetime, str] | None = None,
) -> list[ExecutionListed]:
    """Up to ``limit`` executions matching ``f``, newest first, strictly after the keyset
    cursor ``after`` (started_at, id) of the previous page. Two queries: the rows (with their
    state machine's ARN) and their stored payloads."""
    e, sm = queries.executions, queries.state_machines
    query = (
        sa.select(
            e.c.id,
            e.c.arn,
            e.c.name,
            sm.c.arn,
            e.c.status,
            e.c.input_ref,
            e.c.output_ref,
            e.c.error,
            e.c.cause,
            e.c.started_at,
            e.c.stopped_at,
            e.c.version,
            e.c.redrive_count,
        )
        .join(sm, sm.c.id == e.c.state_machine_id)
        .where(*await conditions(conn, f))
        .order_by(e.c.started_at.desc(), e.c.id.desc())
        .limit(limit)
    )
    if after is not None:
        query = query.where(
            sa.tuple_(e.c.started_at, e.c.id)
            < sa.tuple_(sa.literal(after[0], sa.DateTime(timezone=True)), sa.literal(after[1]))
        )
    rows = (await conn.execute(query)).all()
    refs = [ref for row in rows for ref in (row[5], row[6]) if ref is not None]
    values = await queries.load_payloads(conn, refs)
    return [
        ExecutionListed(
            id=row[0],
            arn=row[1],
            name=row[2],
            state_machine_arn=row[3],
            status=row[4],
            input=values[row[5]],
            output=values[row[6]] if row[6] is not None else None,
            error=row[7],
            cause=row[8],
            started_at=queries.aware(row[9]),
            stopped_at=queries.aware(row[10]),
            events=row[11],
            redrive_count=row[12],
        )
        for row in rows
    ]


async def count_executions(conn: AsyncConnection, f: ExecutionFilter, cap: int) -> tuple[int, bool]:
    """How many executions match ``f``, counting no further than ``cap`` (an exact count of a
    large table is a full scan); returns (count, capped)."""
    e = queries.executions
    limited = sa.select(e.c.id).where(*await conditions(conn, f)).limit(cap + 1).subquery()
    count = int((await conn.execute(sa.select(sa.func.count()).select_from(limited))).scalar_one())
    return min(count, cap), count > cap


@dataclass(frozen=True, slots=True)
class MachineSummary:
    """A state machine, its latest version, and its executions counted by status."""

    name: str
    arn: str
    version: int
    description: str
    created_at: datetime
    status: str
    counts: dict[str, int]


async def machine_summaries(conn: AsyncConnection) -> list[MachineSummary]:
    """Every state machine (a deleted one while executions of it still run, as DELETING)
    with its latest version and its executions counted by status: two queries, one of them a
    single GROUP BY over the executions."""
    e, sm, v = queries.executions, queries.state_machines, queries.versions
    counted: dict[int, dict[str, int]] = {}
    grouped = sa.select(e.c.state_machine_id, e.c.status, sa.func.count()).group_by(
        e.c.state_machine_id, e.c.status
    )
    for machine_id, status, count in await conn.execute(grouped):
        counted.setdefault(machine_id, {})[status] = int(count)
    latest = (
        sa.select(sa.func.max(v.c.version)).where(v.c.state_machine_id == sm.c.id).scalar_subquery()
    )
    rows = await conn.execute(
        sa.select(
            sm.c.id, sm.c.name, sm.c.arn, latest, sm.c.description, sm.c.created_at, sm.c.deleted_at
        ).order_by(sm.c.name)
    )
    out = []
    for machine_id, name, arn, version, description, created_at, deleted_at in rows:
        counts = {status: counted.get(machine_id, {}).get(status, 0) for status in STATUSES}
        if deleted_at is not None and not counts["RUNNING"]:
            continue  # deleted, and nothing of it runs any more
        out.append(
            MachineSummary(
                name=name,
                arn=arn,
                version=int(version or 0),
                description=description,
                created_at=queries.aware(created_at),
                status="DELETING" if deleted_at is not None else "ACTIVE",
                counts=counts,
            )
        )
    return out


_EVENT_COLUMNS = tuple(queries.events.c[name] for name in queries.EVENT_COLUMNS)


async def history_page(
    conn: AsyncConnection,
    execution_id: str,
    *,
    after: int = 0,
    before: int | None = None,
    limit: int = 1000,
    reverse: bool = False,
) -> list[Event]:
    """Up to ``limit`` events of the execution's own history (not its distributed Map
    children's) with ``after < id < before``, ascending or (``reverse``) descending: one
    range scan of the events' primary key."""
    ev = queries.events
    query = sa.select(*_EVENT_COLUMNS).where(
        ev.c.execution_id == execution_id, ev.c.seq > after, ev.c.child == ""
    )
    if before is not None:
        query = query.where(ev.c.seq < before)
    query = query.order_by(ev.c.seq.desc() if reverse else ev.c.seq).limit(limit)
    return await queries.decode_events(conn, (await conn.execute(query)).all())


async def full_history(
    conn: AsyncConnection, execution_id: str, upto: int | None = None
) -> list[Event]:
    """Every event of the execution (distributed Map children's too: a replay needs them),
    up to and including ``upto``."""
    ev = queries.events
    query = sa.select(*_EVENT_COLUMNS).where(ev.c.execution_id == execution_id)
    if upto is not None:
        query = query.where(ev.c.seq <= upto)
    return await queries.decode_events(conn, (await conn.execute(query.order_by(ev.c.seq))).all())


async def execution_head(conn: AsyncConnection, execution_id: str) -> tuple[str, int] | None:
    """(status, number of events) of an execution, or None."""
    e = queries.executions
    row = (
        await conn.execute(sa.select(e.c.status, e.c.version).where(e.c.id == execution_id))
    ).first()
    return (row[0], int(row[1])) if row is not None else None
