"""Data access. Functions take an open connection and never commit: the caller's transaction does.

Payloads: a JSON text shorter than PAYLOAD_INLINE_LIMIT is stored inline; a longer one goes to
``payloads`` once (by SHA-256) and the row holds ``@<sha256>``. JSON text never starts with
``@``, so the two forms cannot be confused. Every stored payload records the executions that
reference it (``payload_owners``), so that purge_closed can delete those no execution uses.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, overload

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from service.db.tables import (
    PAYLOAD_INLINE_LIMIT,
    ActivityRow,
    EventRow,
    ExecutionRow,
    InboxRow,
    OutboxRow,
    PayloadOwnerRow,
    PayloadRow,
    StateMachineAliasRow,
    StateMachineRow,
    StateMachineVersionRow,
    TimerRow,
)
from statemachine.events import Event, ScheduleTask

JSON = Any
executions = ExecutionRow.__table__  # type: ignore[attr-defined]
events = EventRow.__table__  # type: ignore[attr-defined]
payloads = PayloadRow.__table__  # type: ignore[attr-defined]
payload_owners = PayloadOwnerRow.__table__  # type: ignore[attr-defined]
inbox = InboxRow.__table__  # type: ignore[attr-defined]
timers = TimerRow.__table__  # type: ignore[attr-defined]
outbox = OutboxRow.__table__  # type: ignore[attr-defined]
state_machines = StateMachineRow.__table__  # type: ignore[attr-defined]
versions = StateMachineVersionRow.__table__  # type: ignore[attr-defined]
activities = ActivityRow.__table__  # type: ignore[attr-defined]
aliases = StateMachineAliasRow.__table__  # type: ignore[attr-defined]

# Fields of event details and meta that hold state data (possibly large): stored by reference.
_PAYLOAD_FIELDS = ("input", "output", "parameters")
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
# Wake-ups for deciders carry the id of the one execution that became due, or "" when it was
# several (a worker whose own lane is deciding that execution need not wake another lane).
NOTIFY_CHANNEL = "statewright_wake"
# That payload, of the rows (with execution_id) a statement wrote: one execution's id, or "".
_WAKE_PAYLOAD = (
    "CASE WHEN count(DISTINCT execution_id) = 1 THEN min(execution_id) ELSE '' END AS payload"
)
# The payload prefix of a wake-up for runners (new outbox tasks), followed by their resource.
TASKS_NOTICE = "tasks:"


def _text(value: JSON) -> str:
    return _ENCODER.encode(value)


def is_postgres(conn: AsyncConnection | AsyncEngine) -> bool:
    """Whether the connection (or engine) is to Postgres (else SQLite)."""
    return conn.dialect.name == "postgresql"


async def now(conn: AsyncConnection) -> datetime:
    """The database's clock: every worker reads the same time, so their clocks may differ."""
    if is_postgres(conn):
        value = (await conn.execute(sa.text("SELECT clock_timestamp()"))).scalar_one()
        assert isinstance(value, datetime)
        return value
    return datetime.now(UTC)  # SQLite is embedded: one machine, one clock


def clock(conn: AsyncConnection) -> sa.ColumnElement[datetime]:
    """The database's clock as a column, to read the time in the same round trip as a query:
    the time the statement started (stable within it, so ``wake_at <= clock`` can bound an
    index scan, where the volatile clock_timestamp() made it filter every row)."""
    if is_postgres(conn):
        return sa.func.statement_timestamp()
    return sa.literal(datetime.now(UTC), sa.DateTime(timezone=True))


@overload
def aware(value: datetime) -> datetime: ...
@overload
def aware(value: None) -> None: ...
def aware(value: datetime | None) -> datetime | None:
    """A datetime with its time zone (SQLite hands back naive ones; everything here is UTC)."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


# ---------------------------------------------------------------------------- payloads


def payload_reference(value: JSON, text: str | None = None) -> tuple[str, str | None]:
    """The reference to ``value`` (inline JSON text or ``@sha256``), and the text to store
    under that hash (None: inline). ``text``: the value's JSON text, when the caller has
    written it already."""
    if text is None:
        text = _text(value)
    if len(text) < PAYLOAD_INLINE_LIMIT:
        return text, None
    return "@" + hashlib.sha256(text.encode()).hexdigest(), text


async def store_payload(
    conn: AsyncConnection, value: JSON, execution_id: str, text: str | None = None
) -> str:
    """A reference to ``value``, owned by ``execution_id`` (which must exist): its JSON text
    inline, or ``@sha256`` of a stored copy, which then stays until the last execution that
    references it is purged. ``text``: the value's JSON text, when the caller has it."""
    ref, text = payload_reference(value, text)
    if text is not None:
        await _store(conn, ref[1:], text, execution_id)
    return ref


async def _store(conn: AsyncConnection, digest: str, text: str, execution_id: str) -> None:
    row = {"sha256": digest, "body": text, "size": len(text), "execution_id": execution_id}
    if not is_postgres(conn):
        # One writer at a time (BEGIN IMMEDIATE): no purge runs in between.
        await conn.execute(payloads.insert().prefix_with("OR IGNORE"), row)
        await conn.execute(payload_owners.insert().prefix_with("OR IGNORE"), row)
        return
    # A payload found already stored may be deleted by a purge (its last owner purged) after
    # the insert saw it and before the owner row's foreign key check locks it, and that check
    # would then fail the whole transaction: a decision. So the statement locks what it found
    # (FOR KEY SHARE: stores of the same payload do not wait for each other, a delete waits
    # for them all) and writes the owner only if it holds the payload; when it holds nothing
    # (a purge deleted it first, or it was committed after the statement's snapshot) it is
    # run again, and inserts or finds it then.
    while not (await conn.execute(_STORE_POSTGRES, row)).scalar_one():
        pass


_STORE_POSTGRES = sa.text(
    """
    WITH stored AS (
        INSERT INTO payloads (sha256, body, size) VALUES (:sha256, :body, :size)
        ON CONFLICT (sha256) DO NOTHING
        RETURNING sha256
    ), found AS (
        SELECT sha256 FROM payloads WHERE sha256 = :sha256 FOR KEY SHARE
    ), held AS (
        SELECT sha256 FROM stored UNION ALL SELECT sha256 FROM found
    ), owned AS (
        INSERT INTO payload_owners (sha256, execution_id)
        SELECT :sha256, :execution_id WHERE EXISTS (SELECT FROM held)
        ON CONFLICT DO NOTHING
    )
    SELECT EXISTS (SELECT FROM held)
    """
)


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


# Built once: constructing the statement per start cost more than running it.
_START_POSTGRES = sa.text(
    f"""
    WITH inserted AS (
        INSERT INTO executions (id, arn, name, state_machine_id, version_id, status, input_ref,
                                started_at, seed, version, wake_at, test_case, qualifier,
                                token_key)
        VALUES (:id, :arn, :name, :state_machine_id, :version_id, :status, :input_ref,
                :started_at, :seed, :version, :wake_at, :test_case, :qualifier, :token_key)
        ON CONFLICT (state_machine_id, name) DO NOTHING
        RETURNING id
    )
    SELECT pg_notify('{NOTIFY_CHANNEL}', id) FROM inserted
    """
).bindparams(
    sa.bindparam("started_at", type_=sa.DateTime(timezone=True)),
    sa.bindparam("wake_at", type_=sa.DateTime(timezone=True)),
    sa.bindparam("seed", type_=sa.BigInteger),
)


async def start_execution(
    conn: AsyncConnection,
    *,
    execution_id: str,
    arn: str,
    name: str,
    state_machine_id: int,
    version_id: int,
    input_value: JSON,
    seed: int,
    at: datetime,
    test_case: str | None = None,
    qualifier: str | None = None,
) -> bool:
    """Create an execution, due at once: its first decision writes ExecutionStarted (a row at
    version 0 is its own start request). False, and nothing written, if the state machine
    already has an execution of this name. In a transaction: a large input is stored (owned
    by the execution) after the row is written."""
    input_ref, text = payload_reference(input_value)
    row = {
        "id": execution_id,
        "arn": arn,
        "name": name,
        "state_machine_id": state_machine_id,
        "version_id": version_id,
        "status": "RUNNING",
        "input_ref": input_ref,
        "started_at": at,
        "seed": seed,
        "token_key": secrets.token_hex(32),
        "version": 0,
        "wake_at": at,
        "test_case": test_case,
        "qualifier": qualifier,
    }
    if is_postgres(conn):
        # One round trip: the insert and the wake-up of the workers (delivered at commit).
        created = (await conn.execute(_START_POSTGRES, row)).first() is not None
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        result = await conn.execute(
            sqlite_insert(executions)
            .values(row)
            .on_conflict_do_nothing(index_elements=["state_machine_id", "name"])
        )
        created = result.rowcount == 1
    if created and text is not None:
        await _store(conn, input_ref[1:], text, execution_id)
    return created


# In the driver's own parameter style ($1 ...): it runs on the asyncpg connection directly.
_START_ALL_INSERT = """
    WITH given AS (
        SELECT * FROM unnest(
            CAST($1 AS varchar[]), CAST($2 AS varchar[]), CAST($3 AS varchar[]),
            CAST($4 AS varchar[]), CAST($5 AS integer[]), CAST($6 AS text[]),
            CAST($7 AS bigint[]), CAST($8 AS varchar[]),
            CAST($9 AS varchar[]), CAST($10 AS varchar[])
        ) AS g(id, arn, name, machine, number, input_ref, seed, test_case, qualifier, token_key)
    ), target AS (
        SELECT g.*, sm.id AS sm_id, sm.arn AS sm_arn,
            (SELECT v.id FROM state_machine_versions AS v
             WHERE v.state_machine_id = sm.id AND (g.number IS NULL OR v.version = g.number)
             ORDER BY v.version DESC LIMIT 1) AS version_id
        FROM given AS g
        JOIN state_machines AS sm ON sm.name = g.machine AND sm.deleted_at IS NULL
    ), inserted AS (
        INSERT INTO executions (id, arn, name, state_machine_id, version_id, status, input_ref,
                                started_at, seed, version, wake_at, test_case, qualifier,
                                token_key)
        SELECT id, arn, name, sm_id, version_id, 'RUNNING', input_ref, statement_timestamp(),
               seed, 0, statement_timestamp(), test_case, qualifier, token_key
        FROM target WHERE version_id IS NOT NULL
        ON CONFLICT (state_machine_id, name) DO NOTHING
        RETURNING id, input_ref
    )"""
# Large inputs, stored in the same statement, only for the executions it inserted (a start
# refused for its name leaves no payload behind), each owned by its execution. The foreign
# key checks run at the end of the statement, after the executions exist.
_START_ALL_STORE = """, bodies AS (
        SELECT * FROM unnest(
            CAST($11 AS varchar[]), CAST($12 AS text[]), CAST($13 AS integer[])
        ) AS b(sha256, body, size)
    ), stored AS (
        INSERT INTO payloads (sha256, body, size)
        SELECT sha256, body, size FROM bodies
        WHERE '@' || sha256 IN (SELECT input_ref FROM inserted)
        ON CONFLICT (sha256) DO NOTHING
    ), owned AS (
        INSERT INTO payload_owners (sha256, execution_id)
        SELECT substr(input_ref, 2), id FROM inserted WHERE input_ref LIKE '@%'
    )"""
_START_ALL_ANSWER = f"""
    SELECT t.id, t.sm_id, t.sm_arn, t.version_id, statement_timestamp(), i.id IS NOT NULL,
           CASE WHEN i.id IS NOT NULL THEN pg_notify('{NOTIFY_CHANNEL}', t.id) END
    FROM target AS t LEFT JOIN inserted AS i ON i.id = t.id
    """
_START_ALL_POSTGRES = _START_ALL_INSERT + _START_ALL_ANSWER
_START_ALL_STORING_POSTGRES = _START_ALL_INSERT + _START_ALL_STORE + _START_ALL_ANSWER
# The foreign key of payload_owners to payloads (Postgres names it so): a start whose check
# fails found its payload deleted by a purge meanwhile (see start_all).
_PAYLOAD_OWNER_FK = "payload_owners_sha256_fkey"


@dataclass(frozen=True, slots=True)
class StartRequest:
    """An execution to start (start_all): the state machine by name, and the version to run
    (None: the latest)."""

    id: str
    arn: str
    name: str
    machine: str
    version: int | None
    input_value: JSON
    seed: int
    test_case: str | None = None
    qualifier: str | None = None
    input_text: str | None = None  # input_value's JSON text, when the caller has it


@dataclass(frozen=True, slots=True)
class Started:
    """What start_all did with a StartRequest."""

    state_machine_id: int
    state_machine_arn: str
    version_id: int | None  # None: the state machine has no such version (nothing written)
    at: datetime
    created: bool  # False: the state machine already has an execution of this name


async def start_all(
    conn: AsyncConnection, requests: Sequence[StartRequest], driver: Any = None
) -> dict[str, Started]:
    """Start executions on Postgres in one statement (one round trip, atomic on its own):
    each is looked up (state machine, version), inserted due at once (a row at version 0 is
    its own start request) and announced to the workers. Requests whose state machine does
    not exist (or is being deleted) are missing from the answer.

    Large inputs are stored in the same statement. One that was stored already can be
    deleted by a purge (its last owner purged) between the statement's insert finding it and
    the owner row's foreign key check at the end, which then fails: the statement, atomic,
    wrote nothing, and is run again (in a savepoint when the caller has a transaction open),
    which stores the payload anew.

    ``driver``: ``conn``'s asyncpg connection (``driver_connection``), outside a transaction
    block, to run the statement on directly: SQLAlchemy's execution of it cost more than the
    driver's (control's batch of 16 bench/api.py starts: 1.6 ms of CPU through SQLAlchemy,
    1.0-1.2 ms on the driver)."""
    refs = [payload_reference(r.input_value, r.input_text) for r in requests]
    bodies = {ref[1:]: text for ref, text in refs if text is not None}
    parameters: tuple[list[Any], ...] = (
        [r.id for r in requests],
        [r.arn for r in requests],
        [r.name for r in requests],
        [r.machine for r in requests],
        [r.version for r in requests],
        [ref for ref, _ in refs],
        [r.seed for r in requests],
        [r.test_case for r in requests],
        [r.qualifier for r in requests],
        [secrets.token_hex(32) for _ in requests],
    )
    statement = _START_ALL_POSTGRES
    if bodies:
        statement = _START_ALL_STORING_POSTGRES
        parameters += (list(bodies), list(bodies.values()), [len(t) for t in bodies.values()])
    options = conn.sync_connection.get_execution_options() if conn.sync_connection else {}
    in_transaction = driver is None and options.get("isolation_level") != "AUTOCOMMIT"
    while True:
        try:
            if driver is not None:
                rows = await driver.fetch(statement, *parameters)
            else:
                async with (
                    conn.begin_nested() if bodies and in_transaction else contextlib.nullcontext()
                ):
                    rows = (await conn.exec_driver_sql(statement, parameters)).all()
            break
        except Exception as exc:  # asyncpg's own error on the driver, SQLAlchemy's else
            if not bodies or _PAYLOAD_OWNER_FK not in str(exc):
                raise
    return {row[0]: Started(row[1], row[2], row[3], aware(row[4]), bool(row[5])) for row in rows}


async def driver_connection(conn: AsyncConnection) -> Any:
    """The asyncpg connection under ``conn`` (Postgres)."""
    return (await conn.get_raw_connection()).driver_connection


async def enqueue(
    conn: AsyncConnection, execution_id: str, kind: str, body: Mapping[str, JSON], at: datetime
) -> None:
    """Put an incoming event (task result, stop ...) in the inbox and wake the workers. The
    inbox row itself makes a running execution due (claim_due looks at the inbox), so this
    never waits for a decision in progress on the execution's row, and no wake-up is lost:
    a row the decision did not take makes the execution due again when it commits."""
    await enqueue_many(conn, [(execution_id, kind, body)], at)


async def enqueue_many(
    conn: AsyncConnection, items: Sequence[tuple[str, str, Mapping[str, JSON]]], at: datetime
) -> None:
    """enqueue() for several (execution id, kind, body) at once: one INSERT, one NOTIFY."""
    if not items:
        return
    await conn.execute(
        inbox.insert(),
        [
            {"execution_id": execution_id, "kind": kind, "body": _text(body), "created_at": at}
            for execution_id, kind, body in items
        ],
    )
    ids = {execution_id for execution_id, _, _ in items}
    await notify(conn, ids.pop() if len(ids) == 1 else "")


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
    token_key: str  # "" for rows written before executions had one


_CLAIM_COLUMNS = (
    executions.c.id,
    executions.c.arn,
    executions.c.version_id,
    executions.c.version,
    executions.c.seed,
    executions.c.input_ref,
    executions.c.started_at,
    executions.c.token_key,
)


def _claimed(row: Any) -> Claimed:
    return Claimed(row[0], row[1], row[2], row[3], row[4], row[5], aware(row[6]), row[7] or "")


async def claim_due(conn: AsyncConnection, limit: int) -> tuple[datetime, list[Claimed]]:
    """The database time, and up to ``limit`` executions locked for a decision due by then,
    earliest first (Postgres skips rows other workers hold). One round trip: the clock is read
    in the same statement."""
    if is_postgres(conn):
        # The same query as below, written out once: building and compiling it cost more CPU
        # than the rest of an idle lane's turn.
        rows = (await conn.execute(_CLAIM_DUE_POSTGRES, {"limit": limit})).all()
    else:
        rows = (await conn.execute(_claim_due_query(conn, limit))).all()
    if not rows:
        return await now(conn), []
    at = aware(rows[0][len(_CLAIM_COLUMNS)])
    assert at is not None
    return at, [_claimed(row) for row in rows]


def _claim_due_query(conn: AsyncConnection, limit: int) -> sa.Select[Any]:
    now_ = clock(conn)
    # Candidates from two index scans (a single OR over both would scan every execution):
    # the earliest due wake_at, and running executions with something in their inbox.
    # More than ``limit`` of each, as other workers may hold some of them locked.
    due = (
        sa.select(executions.c.id)
        .where(executions.c.wake_at <= now_)
        .order_by(executions.c.wake_at)
        .limit(4 * limit)
        .subquery()
    )
    waiting = (
        sa.select(inbox.c.execution_id.label("id"))
        .join(executions, executions.c.id == inbox.c.execution_id)
        .where(executions.c.status == "RUNNING")
        .limit(4 * limit)
        .subquery()
    )
    candidates = sa.union(sa.select(due.c.id), sa.select(waiting.c.id))
    return (
        sa.select(*_CLAIM_COLUMNS, now_)
        .where(
            executions.c.id.in_(candidates),
            sa.or_(executions.c.wake_at <= now_, executions.c.status == "RUNNING"),
        )
        .order_by(executions.c.wake_at)
        .limit(limit)
    )


# FOR NO KEY UPDATE, not FOR UPDATE: a decision changes no key of the row, and the stronger
# lock would make every insert into the execution's inbox (a runner's result, a callback, a
# TaskStarted), whose foreign key check takes FOR KEY SHARE on the row, wait for the decision
# in progress to commit.
_CLAIM_DUE_POSTGRES = sa.text(
    """
    SELECT e.id, e.arn, e.version_id, e.version, e.seed, e.input_ref, e.started_at,
           e.token_key, statement_timestamp()
    FROM executions AS e
    WHERE e.id IN (
        SELECT due.id FROM (
            SELECT id FROM executions WHERE wake_at <= statement_timestamp()
            ORDER BY wake_at LIMIT 4 * :limit
        ) AS due
        UNION
        SELECT waiting.id FROM (
            SELECT i.execution_id AS id
            FROM inbox AS i JOIN executions AS x ON x.id = i.execution_id
            WHERE x.status = 'RUNNING'
            LIMIT 4 * :limit
        ) AS waiting
    )
    AND (e.wake_at <= statement_timestamp() OR e.status = 'RUNNING')
    ORDER BY e.wake_at
    LIMIT :limit
    FOR NO KEY UPDATE SKIP LOCKED
    """
)


async def lock_execution(
    conn: AsyncConnection, execution_id: str, closed_too: bool = False
) -> Claimed | None:
    """Lock a given running execution (waiting for a decision in progress); None if closed
    (unless ``closed_too``)."""
    query = sa.select(*_CLAIM_COLUMNS).where(executions.c.id == execution_id)
    if not closed_too:
        query = query.where(executions.c.status == "RUNNING")
    if is_postgres(conn):
        query = query.with_for_update(key_share=True)  # FOR NO KEY UPDATE, as claim_due
    row = (await conn.execute(query)).first()
    return _claimed(row) if row is not None else None


async def seconds_to_next_wake(conn: AsyncConnection, after: datetime) -> float | None:
    """Seconds until the earliest execution that sleeps past ``after`` (the clock of a claim
    that found nothing to take) needs a decision, on the database's clock (0 if that is
    already now); None if none does. One round trip.

    What was due at ``after`` is not counted: a claim that took none of it found it locked by
    decisions in progress, whose lanes look again as soon as they commit (a decision that
    fails leaves its lane to retry; a worker that dies leaves it to the next poll). Counting
    it made an idle lane spin on another lane's execution, two queries a turn. What comes
    later (a start, a result, a callback) sends a notice that wakes a lane."""
    earliest, at = (
        await conn.execute(
            sa.select(sa.func.min(executions.c.wake_at), clock(conn)).where(
                executions.c.wake_at > after
            )
        )
    ).one()
    if earliest is None:
        return None
    seconds: float = (aware(earliest) - aware(at)).total_seconds()
    return max(seconds, 0.0)


# ---------------------------------------------------------------------------- history


async def event_rows(
    conn: AsyncConnection, execution_id: str, new: Sequence[Event]
) -> list[dict[str, JSON]]:
    """Rows for the events table. ``details`` and ``meta`` are JSON text ``{"v": inline}``, or
    ``{"v": inline, "r": {field: "@sha256"}}`` when a state-data field is stored once in
    ``payloads`` because it is large."""
    rows = []
    for event in new:
        details = _event_part(event.details)
        meta = _event_part(event.meta)
        if details is None or meta is None:
            details = await _event_part_by_ref(conn, execution_id, event.details)
            meta = await _event_part_by_ref(conn, execution_id, event.meta)
        rows.append(
            {
                "execution_id": execution_id,
                "seq": event.id,
                "type": event.type,
                "timestamp": event.timestamp,
                "previous_event_id": event.previous_event_id,
                "scope": event.scope,
                "child": event.child,
                "details": details,
                "meta": meta,
            }
        )
    return rows


def _event_part(values: Mapping[str, JSON]) -> str | None:
    """``{"v": values}`` as text, or None when it is long enough that a field may need storing
    by reference (a payload field can only be that large if the whole text is)."""
    if not values:
        return '{"v":{}}'
    text = _text(values if type(values) is dict else dict(values))
    if len(text) < PAYLOAD_INLINE_LIMIT:
        return '{"v":' + text + "}"
    return None


async def _event_part_by_ref(
    conn: AsyncConnection, execution_id: str, values: Mapping[str, JSON]
) -> str:
    inline = dict(values)
    by_ref: dict[str, str] = {}
    for key in _PAYLOAD_FIELDS:
        if key in values:
            ref = await store_payload(conn, values[key], execution_id)
            if ref.startswith("@"):
                by_ref[key] = ref
                del inline[key]
    return _text({"v": inline, "r": by_ref} if by_ref else {"v": inline})


async def append_events(conn: AsyncConnection, execution_id: str, new: Sequence[Event]) -> None:
    """Insert events; the (execution_id, seq) key makes a racing append fail, never fork."""
    if new:
        await insert_event_rows(conn, await event_rows(conn, execution_id, new))


EVENT_COLUMNS = (  # of the events table, in insert order
    "execution_id",
    "seq",
    "type",
    "timestamp",
    "previous_event_id",
    "scope",
    "child",
    "details",
    "meta",
)
_INSERT_EVENTS_POSTGRES = sa.text(
    """
    INSERT INTO events (execution_id, seq, type, timestamp, previous_event_id, scope, child,
                        details, meta)
    SELECT * FROM unnest(
        CAST(:execution_id AS varchar[]), CAST(:seq AS integer[]), CAST(:type AS varchar[]),
        CAST(:timestamp AS timestamptz[]), CAST(:previous_event_id AS integer[]),
        CAST(:scope AS varchar[]), CAST(:child AS varchar[]), CAST(:details AS text[]),
        CAST(:meta AS text[])
    )
    """
)


async def insert_event_rows(conn: AsyncConnection, rows: Sequence[Mapping[str, JSON]]) -> None:
    """Insert rows made by event_rows. On Postgres one statement whatever their number: the
    columns go as arrays (cheaper to encode and to parse than a row of parameters per event)."""
    if not rows:
        return
    if is_postgres(conn):
        columns = {name: [row[name] for row in rows] for name in EVENT_COLUMNS}
        await conn.execute(_INSERT_EVENTS_POSTGRES, columns)
    else:
        await conn.execute(events.insert(), rows)
    redriven: dict[str, int] = {}
    for row in rows:
        if row["type"] == "ExecutionRedriven":
            redriven[row["execution_id"]] = redriven.get(row["execution_id"], 0) + 1
    for execution_id, count in redriven.items():
        # The executions.redrive_count cache, in the transaction of the events it counts.
        await conn.execute(
            executions.update()
            .where(executions.c.id == execution_id)
            .values(redrive_count=executions.c.redrive_count + count)
        )


async def load_histories(
    conn: AsyncConnection, wanted: Mapping[str, int]
) -> dict[str, list[Event] | Exception]:
    """The histories of several executions, each from event ``wanted[id] + 1`` on, in one
    query. A history that cannot be decoded (corrupted rows) comes back as its exception, so
    one broken execution does not stop the others."""
    if not wanted:
        return {}
    condition = sa.or_(
        *(
            sa.and_(events.c.execution_id == execution_id, events.c.seq > after)
            for execution_id, after in wanted.items()
        )
    )
    rows = (
        await conn.execute(
            sa.select(
                events.c.execution_id,
                events.c.seq,
                events.c.type,
                events.c.timestamp,
                events.c.previous_event_id,
                events.c.scope,
                events.c.child,
                events.c.details,
                events.c.meta,
            )
            .where(condition)
            .order_by(events.c.execution_id, events.c.seq)
        )
    ).all()
    decoded: dict[str, list[tuple[Any, JSON, JSON]] | Exception] = {id_: [] for id_ in wanted}
    refs: list[str] = []
    for row in rows:
        into = decoded[row[0]]
        if isinstance(into, Exception):
            continue
        try:
            details, meta = json.loads(row[7]), json.loads(row[8])
            refs.extend(r for part in (details, meta) for r in part.get("r", {}).values())
        except Exception as exc:
            decoded[row[0]] = ValueError(f"event {row[1]} is not readable: {exc}")
            continue
        into.append((row, details, meta))
    values = await load_payloads(conn, refs) if refs else {}
    out: dict[str, list[Event] | Exception] = {}
    for execution_id, items in decoded.items():
        if isinstance(items, Exception):
            out[execution_id] = items
            continue
        try:
            out[execution_id] = [_event(row, details, meta, values) for row, details, meta in items]
        except Exception as exc:
            out[execution_id] = ValueError(f"the history is not readable: {exc!r}")
    return out


async def decode_events(conn: AsyncConnection, rows: Sequence[Any]) -> list[Event]:
    """Engine events from rows of the events table (columns in the table's order), their
    large payloads read in one query."""
    parts = [(row, json.loads(row[7]), json.loads(row[8])) for row in rows]
    refs = [
        r
        for _, details, meta in parts
        for part in (details, meta)
        for r in part.get("r", {}).values()
    ]
    values = await load_payloads(conn, refs) if refs else {}
    return [_event(row, details, meta, values) for row, details, meta in parts]


def _event(row: Any, details: JSON, meta: JSON, values: Mapping[str, JSON]) -> Event:
    detail_values = details["v"]
    if "r" in details:
        detail_values = {**detail_values, **{k: values[r] for k, r in details["r"].items()}}
    meta_values = meta["v"]
    if "r" in meta:
        meta_values = {**meta_values, **{k: values[r] for k, r in meta["r"].items()}}
    timestamp = aware(row[3])
    assert timestamp is not None
    return Event(row[1], row[2], timestamp, row[4], detail_values, row[5], meta_values, row[6])


async def load_events(conn: AsyncConnection, execution_id: str, after: int = 0) -> list[Event]:
    """The history from event ``after + 1`` on, as engine events."""
    history = (await load_histories(conn, {execution_id: after}))[execution_id]
    if isinstance(history, Exception):
        raise history
    return history


async def take_inboxes(
    conn: AsyncConnection, execution_ids: Collection[str]
) -> dict[str, list[tuple[int, str, JSON, datetime]]]:
    """Remove and return the executions' waiting incoming events (id, kind, body, created_at),
    oldest first. Removed in the decision's own transaction: a rollback puts them back."""
    out: dict[str, list[tuple[int, str, JSON, datetime]]] = {id_: [] for id_ in execution_ids}
    if not execution_ids:
        return out
    rows = await conn.execute(
        inbox.delete()
        .where(inbox.c.execution_id.in_(execution_ids))
        .returning(inbox.c.execution_id, inbox.c.id, inbox.c.kind, inbox.c.body, inbox.c.created_at)
    )
    for execution_id, id_, kind, body, created_at in rows:
        out[execution_id].append((id_, kind, json.loads(body), aware(created_at)))
    for items in out.values():
        items.sort()
    return out


async def take_incoming(
    conn: AsyncConnection, execution_ids: Collection[str], at: datetime
) -> tuple[dict[str, list[tuple[int, str, JSON, datetime]]], dict[str, list[tuple[datetime, str]]]]:
    """take_inboxes and take_due_timers together: on Postgres in one round trip."""
    if not execution_ids or not is_postgres(conn):
        return await take_inboxes(conn, execution_ids), await take_due_timers(
            conn, execution_ids, at
        )
    inboxes: dict[str, list[tuple[int, str, JSON, datetime]]] = {id_: [] for id_ in execution_ids}
    due: dict[str, list[tuple[datetime, int, str]]] = {id_: [] for id_ in execution_ids}
    rows = await conn.execute(_TAKE_INCOMING_POSTGRES, {"ids": list(execution_ids), "at": at})
    for execution_id, id_, kind, body, created_at in rows:
        if id_ is None:  # a timer: kind is its id, created_at its fire_at
            due[execution_id].append((aware(created_at), _creation_order(kind), kind))
        else:
            inboxes[execution_id].append((id_, kind, json.loads(body), aware(created_at)))
    for items in inboxes.values():
        items.sort()
    return inboxes, {
        id_: [(fire_at, timer_id) for fire_at, _, timer_id in sorted(items)]
        for id_, items in due.items()
    }


_TAKE_INCOMING_POSTGRES = sa.text(
    """
    WITH taken AS (
        DELETE FROM inbox WHERE execution_id = ANY(CAST(:ids AS varchar[]))
        RETURNING execution_id, id, kind, body, created_at
    ), fired AS (
        DELETE FROM timers
        WHERE execution_id = ANY(CAST(:ids AS varchar[])) AND fire_at <= :at
        RETURNING execution_id, timer_id, fire_at
    )
    SELECT execution_id, id, kind, body, created_at FROM taken
    UNION ALL
    SELECT execution_id, NULL, timer_id, NULL, fire_at FROM fired
    """
)


async def take_due_timers(
    conn: AsyncConnection, execution_ids: Collection[str], at: datetime
) -> dict[str, list[tuple[datetime, str]]]:
    """Remove and return the executions' timers due at ``at`` as (fire_at, timer_id), earliest
    first."""
    due: dict[str, list[tuple[datetime, int, str]]] = {id_: [] for id_ in execution_ids}
    if execution_ids:
        rows = await conn.execute(
            timers.delete()
            .where(timers.c.execution_id.in_(execution_ids), timers.c.fire_at <= at)
            .returning(timers.c.execution_id, timers.c.timer_id, timers.c.fire_at)
        )
        # Ties in time fire in creation order, as the engine's own runner (run_local) fires
        # them: a timer id ends in the number of the event that started it.
        for execution_id, timer_id, fire_at in rows:
            due[execution_id].append((aware(fire_at), _creation_order(timer_id), timer_id))
    return {
        id_: [(fire_at, timer_id) for fire_at, _, timer_id in sorted(items)]
        for id_, items in due.items()
    }


def _creation_order(timer_id: str) -> int:
    suffix = timer_id.rpartition(":")[2]
    return int(suffix) if suffix.isdigit() else 0


async def replace_timers(
    conn: AsyncConnection,
    deleted: Collection[tuple[str, str]],
    created: Mapping[tuple[str, str], datetime],
) -> None:
    """Delete the timers ``deleted`` (execution id, timer id: fired, cancelled or replaced)
    and create ``created`` (replacing a timer of the same id)."""
    keys = set(deleted) | set(created)
    if keys:
        await conn.execute(
            timers.delete().where(sa.tuple_(timers.c.execution_id, timers.c.timer_id).in_(keys))
        )
    if created:
        await conn.execute(
            timers.insert(),
            [
                {"execution_id": execution_id, "timer_id": timer_id, "fire_at": fire_at}
                for (execution_id, timer_id), fire_at in created.items()
            ],
        )


async def delete_all_timers(conn: AsyncConnection, execution_ids: Collection[str]) -> None:
    """Remove every timer of closed executions."""
    if execution_ids:
        await conn.execute(timers.delete().where(timers.c.execution_id.in_(execution_ids)))


@dataclass(frozen=True, slots=True)
class Decision:
    """What a decision changes in an execution's row."""

    execution_id: str
    expected_version: int
    new_version: int
    status: str
    stopped_at: datetime | None = None
    error: str | None = None
    cause: str | None = None
    output_ref: str | None = None


# One execution's row after a decision (built once; the values are parameters).
_FINISH_ONE = (
    executions.update()
    .where(
        executions.c.id == sa.bindparam("b_id"),
        executions.c.version == sa.bindparam("b_expected"),
    )
    .values(
        version=sa.bindparam("b_version"),
        status=sa.bindparam("b_status"),
        wake_at=sa.case(
            (
                sa.bindparam("b_status") == "RUNNING",
                sa.select(sa.func.min(timers.c.fire_at))
                .where(timers.c.execution_id == executions.c.id)
                .scalar_subquery(),
            ),
            else_=sa.null(),
        ),
        stopped_at=sa.bindparam("b_stopped_at"),
        error=sa.bindparam("b_error"),
        cause=sa.bindparam("b_cause"),
        output_ref=sa.bindparam("b_output_ref"),
    )
    .returning(executions.c.id)
)


async def finish_decisions(conn: AsyncConnection, decisions: Sequence[Decision]) -> None:
    """Move each execution to its new version (fencing on the version it was read at) and
    status; a running execution sleeps until its earliest timer. A closed execution's row
    gets its close time, error, cause and output; a running one has none (a redriven one
    loses what its last close recorded). Raises StaleVersion if any execution moved on."""
    if not decisions:
        return
    moved: set[str] = set()
    if is_postgres(conn) and len(decisions) > 1:
        moved.update(await _finish_many_postgres(conn, decisions))
    else:
        # RETURNING tells which rows moved, so a stale version is caught.
        for d in decisions:
            row = {
                "b_id": d.execution_id,
                "b_expected": d.expected_version,
                "b_version": d.new_version,
                "b_status": d.status,
                "b_stopped_at": d.stopped_at,
                "b_error": d.error,
                "b_cause": d.cause,
                "b_output_ref": d.output_ref,
            }
            moved.update(r[0] for r in await conn.execute(_FINISH_ONE, row))
    for decision in decisions:
        if decision.execution_id not in moved:
            raise StaleVersion(decision.execution_id, decision.expected_version)


_FINISH_MANY_POSTGRES = sa.text(
    """
    UPDATE executions AS e SET
        version = given.version,
        status = given.status,
        wake_at = CASE WHEN given.status = 'RUNNING' THEN
            (SELECT min(t.fire_at) FROM timers AS t WHERE t.execution_id = e.id) END,
        stopped_at = given.stopped_at,
        error = given.error,
        cause = given.cause,
        output_ref = given.output_ref
    FROM unnest(
        CAST(:ids AS varchar[]), CAST(:expected AS integer[]), CAST(:versions AS integer[]),
        CAST(:statuses AS varchar[]), CAST(:stopped_at AS timestamptz[]),
        CAST(:errors AS varchar[]), CAST(:causes AS text[]), CAST(:outputs AS text[])
    ) AS given(id, expected, version, status, stopped_at, error, cause, output_ref)
    WHERE e.id = given.id AND e.version = given.expected
    RETURNING e.id
    """
)


async def _finish_many_postgres(conn: AsyncConnection, decisions: Sequence[Decision]) -> list[str]:
    """finish_decisions in one statement: UPDATE ... FROM unnest(arrays) RETURNING."""
    result = await conn.execute(
        _FINISH_MANY_POSTGRES,
        {
            "ids": [d.execution_id for d in decisions],
            "expected": [d.expected_version for d in decisions],
            "versions": [d.new_version for d in decisions],
            "statuses": [d.status for d in decisions],
            "stopped_at": [d.stopped_at for d in decisions],
            "errors": [d.error for d in decisions],
            "causes": [d.cause for d in decisions],
            "outputs": [d.output_ref for d in decisions],
        },
    )
    return [row[0] for row in result]


@dataclass(frozen=True, slots=True)
class ClaimedTask:
    """An outbox task a runner took (claim_tasks), with its Parameters read."""

    outbox_id: int
    execution_id: str
    task_id: int
    resource: str
    parameters: JSON
    idempotency_key: str
    new: bool  # it was PENDING: no runner took this attempt before


async def claim_tasks(
    conn: AsyncConnection, resources: Sequence[str], worker_id: str, lease: float, limit: int
) -> list[ClaimedTask]:
    """Take up to ``limit`` tasks of ``resources`` for a runner: pending ones, and running ones
    whose lease ran out (their runner died), marked RUNNING with a lease of ``lease`` seconds;
    TaskStarted is queued for those no runner took before. Executions run with a mock config
    test case are left to it. The Parameters are read here: a task in flight holds no
    connection. On Postgres the claim is one statement (see one_statement: the caller may run
    it outside a transaction block); large Parameters are read after it, from payloads,
    which never change."""
    if is_postgres(conn):
        result = await conn.execute(
            _CLAIM_TASKS_POSTGRES,
            {
                "resources": list(resources),
                "worker_id": worker_id,
                "lease": float(lease),
                "limit": limit,
                "channel": NOTIFY_CHANNEL,
            },
        )
        rows: Sequence[Any] = sorted(result.all(), key=lambda row: int(row[0]))
    else:
        rows = await _claim_tasks_sqlite(conn, resources, worker_id, lease, limit)
    if not rows:
        return []
    values = await load_payloads(conn, [row[4] for row in rows])
    return [
        ClaimedTask(r[0], r[1], r[2], r[3], values[r[4]], r[5], r[6] == "PENDING") for r in rows
    ]


# claim_tasks in one round trip: lock the due rows (SKIP LOCKED), lease them, queue TaskStarted
# for those no runner took before, and wake the deciders (NOTIFY is delivered at commit). The
# clock is the statement's, read once, as the separate statements read it once before.
_CLAIM_TASKS_POSTGRES = sa.text(
    """
    WITH taken AS (
        SELECT o.id, o.status AS was
        FROM outbox AS o JOIN executions AS e ON e.id = o.execution_id
        WHERE o.resource = ANY(CAST(:resources AS varchar[]))
          AND (o.status = 'PENDING'
               OR (o.status = 'RUNNING' AND o.claim_expires_at < statement_timestamp()))
          AND e.test_case IS NULL
        ORDER BY o.id
        LIMIT :limit
        FOR UPDATE OF o SKIP LOCKED
    ), claimed AS (
        UPDATE outbox AS o
        SET status = 'RUNNING', claimed_by = :worker_id,
            claim_expires_at = statement_timestamp()
                + CAST(:lease AS double precision) * interval '1 second'
        FROM taken
        WHERE o.id = taken.id
        RETURNING o.id, o.execution_id, o.task_id, o.resource, o.parameters_ref,
                  o.idempotency_key, taken.was
    ), started AS (
        INSERT INTO inbox (execution_id, kind, body, created_at)
        SELECT execution_id, 'task_started', '{"task_id":' || task_id || '}',
               statement_timestamp()
        FROM claimed WHERE was = 'PENDING' ORDER BY id
        RETURNING execution_id
    )
    SELECT claimed.*,
           (SELECT count(pg_notify(:channel, s.payload))
            FROM (SELECT """
    + _WAKE_PAYLOAD
    + """ FROM started HAVING count(*) > 0) AS s) AS notified
    FROM claimed
    """
)


async def _claim_tasks_sqlite(
    conn: AsyncConnection, resources: Sequence[str], worker_id: str, lease: float, limit: int
) -> Sequence[Any]:
    o, e = outbox, executions
    at = await now(conn)
    due = sa.or_(
        o.c.status == "PENDING",
        sa.and_(o.c.status == "RUNNING", o.c.claim_expires_at < at),
    )
    query = (
        sa.select(
            o.c.id,
            o.c.execution_id,
            o.c.task_id,
            o.c.resource,
            o.c.parameters_ref,
            o.c.idempotency_key,
            o.c.status,
        )
        .join(e, e.c.id == o.c.execution_id)
        .where(o.c.resource.in_(resources), due, e.c.test_case.is_(None))
        .order_by(o.c.id)
        .limit(limit)
    )
    rows = (await conn.execute(query)).all()
    if not rows:
        return []
    await conn.execute(
        o.update()
        .where(o.c.id.in_([row[0] for row in rows]))
        .values(
            status="RUNNING",
            claimed_by=worker_id,
            claim_expires_at=at + timedelta(seconds=lease),
        )
    )
    await enqueue_many(
        conn,
        [(row[1], "task_started", {"task_id": row[2]}) for row in rows if row[6] == "PENDING"],
        at,
    )
    return rows


@dataclass(frozen=True, slots=True)
class TaskResult:
    """What a runner learned of a task it holds: its answers (inbox kind and body, in order),
    and whether the task goes on waiting (for its callback) afterwards."""

    outbox_id: int
    execution_id: str
    answers: Sequence[tuple[str, Mapping[str, JSON]]]
    waiting: bool = False


async def record_results(
    conn: AsyncConnection, worker_id: str, results: Sequence[TaskResult]
) -> None:
    """Record the results of tasks ``worker_id`` holds: each closes its outbox row (a waiting
    one stays RUNNING, claimed by nobody, until its callback or a timeout closes it) and
    queues its answers, only if the row is still the worker's and RUNNING (a task that timed
    out, was stopped or re-claimed meanwhile keeps its ending); then wakes the deciders. On
    Postgres one statement (see one_statement)."""
    if not results:
        return
    if is_postgres(conn):
        answers = [
            (r.outbox_id, r.execution_id, k, _text(b)) for r in results for k, b in r.answers
        ]
        await conn.execute(
            _RECORD_RESULTS_POSTGRES,
            {
                "worker_id": worker_id,
                "ids": [r.outbox_id for r in results],
                "waiting": [r.waiting for r in results],
                "a_ids": [a[0] for a in answers],
                "a_executions": [a[1] for a in answers],
                "a_kinds": [a[2] for a in answers],
                "a_bodies": [a[3] for a in answers],
                "channel": NOTIFY_CHANNEL,
            },
        )
        return
    o = outbox
    at = await now(conn)
    owned: set[int] = set()
    for waiting in (False, True):
        ids = [r.outbox_id for r in results if r.waiting == waiting]
        if not ids:
            continue
        result = await conn.execute(
            o.update()
            .where(o.c.id.in_(ids), o.c.status == "RUNNING", o.c.claimed_by == worker_id)
            .values(status="RUNNING" if waiting else "DONE", claimed_by=None, claim_expires_at=None)
            .returning(o.c.id)
        )
        owned.update(row[0] for row in result)
    await enqueue_many(
        conn,
        [(r.execution_id, k, b) for r in results if r.outbox_id in owned for k, b in r.answers],
        at,
    )


# record_results in one round trip; the answers go into the inbox in the order given (its ids
# order an execution's incoming events).
_RECORD_RESULTS_POSTGRES = sa.text(
    """
    WITH closed AS (
        UPDATE outbox AS o
        SET status = CASE WHEN given.waiting THEN 'RUNNING' ELSE 'DONE' END,
            claimed_by = NULL, claim_expires_at = NULL
        FROM unnest(CAST(:ids AS bigint[]), CAST(:waiting AS boolean[]))
             AS given(id, waiting)
        WHERE o.id = given.id AND o.status = 'RUNNING' AND o.claimed_by = :worker_id
        RETURNING o.id
    ), answered AS (
        INSERT INTO inbox (execution_id, kind, body, created_at)
        SELECT a.execution_id, a.kind, a.body, statement_timestamp()
        FROM unnest(
            CAST(:a_ids AS bigint[]), CAST(:a_executions AS varchar[]),
            CAST(:a_kinds AS varchar[]), CAST(:a_bodies AS text[])
        ) WITH ORDINALITY AS a(outbox_id, execution_id, kind, body, n)
        WHERE a.outbox_id IN (SELECT id FROM closed)
        ORDER BY a.n
        RETURNING execution_id
    )
    SELECT count(pg_notify(:channel, s.payload))
    FROM (SELECT """
    + _WAKE_PAYLOAD
    + """ FROM answered HAVING count(*) > 0) AS s
    """
)


class StaleVersion(Exception):
    """The execution moved on since it was read: this decision must not be appended."""

    def __init__(self, execution_id: str, version: int) -> None:
        super().__init__(f"execution {execution_id} is no longer at version {version}")


# ---------------------------------------------------------------------------- outbox


async def add_tasks(
    conn: AsyncConnection, scheduled: Sequence[tuple[str, ScheduleTask]], at: datetime
) -> None:
    """Queue tasks for the runners (ScheduleTask commands of executions), and wake them: one
    notice per resource, so only the runners of those resources look."""
    if not scheduled:
        return
    rows = [
        {
            "execution_id": execution_id,
            "task_id": command.task_id,
            "state_name": command.state_name,
            "resource": command.resource,
            "parameters_ref": await store_payload(conn, command.parameters, execution_id),
            "idempotency_key": command.idempotency_key,
            "task_token": command.task_token,
            "timeout_seconds": command.timeout_seconds,
            "heartbeat_seconds": command.heartbeat_seconds,
            "status": "PENDING",
            "created_at": at,
        }
        for execution_id, command in scheduled
    ]
    if is_postgres(conn):
        # One round trip: the rows as arrays, the NOTIFY in the same statement.
        await conn.execute(
            _ADD_TASKS_POSTGRES,
            {
                **{name: [row[name] for row in rows] for name in _TASK_COLUMNS},
                "channel": NOTIFY_CHANNEL,
                "notice": TASKS_NOTICE,
            },
        )
        return
    await conn.execute(outbox.insert(), rows)
    for resource in dict.fromkeys(command.resource for _, command in scheduled):
        await notify(conn, TASKS_NOTICE + resource)  # for the runners, not the deciders


_TASK_COLUMNS = (
    "execution_id",
    "task_id",
    "state_name",
    "resource",
    "parameters_ref",
    "idempotency_key",
    "task_token",
    "timeout_seconds",
    "heartbeat_seconds",
    "status",
    "created_at",
)
_ADD_TASKS_POSTGRES = sa.text(
    """
    WITH added AS (
        INSERT INTO outbox (execution_id, task_id, state_name, resource, parameters_ref,
                            idempotency_key, task_token, timeout_seconds, heartbeat_seconds,
                            status, created_at)
        SELECT * FROM unnest(
            CAST(:execution_id AS varchar[]), CAST(:task_id AS integer[]),
            CAST(:state_name AS varchar[]), CAST(:resource AS varchar[]),
            CAST(:parameters_ref AS text[]), CAST(:idempotency_key AS varchar[]),
            CAST(:task_token AS varchar[]), CAST(:timeout_seconds AS double precision[]),
            CAST(:heartbeat_seconds AS double precision[]), CAST(:status AS varchar[]),
            CAST(:created_at AS timestamptz[])
        )
        RETURNING 1
    )
    SELECT count(pg_notify(:channel, CAST(:notice AS text) || r)),
           (SELECT count(*) FROM added)
    FROM (SELECT DISTINCT r FROM unnest(CAST(:resource AS varchar[])) AS given(r)) AS named
    """
)


async def close_tasks(
    conn: AsyncConnection, execution_id: str, task_ids: Iterable[int], status: str = "DONE"
) -> None:
    """Close tasks that no longer wait for an answer (their outbox rows stay for the record)."""
    ids = list(task_ids)
    if ids and is_postgres(conn):
        # Written out once: building the statement (an IN list of every task a decision
        # closed) cost more CPU than running it.
        await conn.execute(
            _CLOSE_TASKS_POSTGRES, {"execution_id": execution_id, "ids": ids, "status": status}
        )
    elif ids:
        await conn.execute(
            outbox.update()
            .where(
                outbox.c.execution_id == execution_id,
                outbox.c.task_id.in_(ids),
                outbox.c.status.in_(("PENDING", "RUNNING")),
            )
            .values(status=status)
        )


_CLOSE_TASKS_POSTGRES = sa.text(
    """
    UPDATE outbox SET status = :status
    WHERE execution_id = :execution_id AND task_id = ANY(CAST(:ids AS integer[]))
      AND status IN ('PENDING', 'RUNNING')
    """
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


# ---------------------------------------------------------------------------- retention


async def purge_closed(
    conn: AsyncConnection, *, kind: str | None, before: datetime, limit: int = 500
) -> int:
    """Delete up to ``limit`` closed executions (of ``kind`` state machines, or all) that
    ended before ``before``, with their events, inbox, timers, outbox rows and webhook
    deliveries, and the payloads no other execution references. Rows another transaction
    holds (a redrive taking one up) are skipped, so a purge never waits for, or blocks, live
    work. Returns how many went; run it until it returns 0, one transaction per call."""
    query = sa.select(executions.c.id).where(
        executions.c.status != "RUNNING", executions.c.stopped_at < before
    )
    if kind is not None:
        query = query.join(
            state_machines, state_machines.c.id == executions.c.state_machine_id
        ).where(state_machines.c.type == kind)
    query = query.limit(limit)
    if is_postgres(conn):
        query = query.with_for_update(of=executions, skip_locked=True)
    ids = (await conn.execute(query)).scalars().all()
    if ids:
        owned = await conn.execute(
            payload_owners.delete()
            .where(payload_owners.c.execution_id.in_(ids))
            .returning(payload_owners.c.sha256)
        )
        hashes = set(owned.scalars())
        deliveries = sa.table("webhook_deliveries", sa.column("execution_id"))
        for table in (events, inbox, timers, outbox, deliveries):
            await conn.execute(table.delete().where(table.c.execution_id.in_(ids)))
        await conn.execute(executions.delete().where(executions.c.id.in_(ids)))
        if hashes:
            await _collect_payloads(conn, sorted(hashes))
    return len(ids)


# The transaction-level advisory lock that makes purges collect payloads one at a time.
_PAYLOAD_COLLECTION_LOCK = 0x5357_5047  # "SWPG"


async def _collect_payloads(conn: AsyncConnection, hashes: Sequence[str]) -> None:
    """Delete the payloads of ``hashes`` that no execution owns any more.

    On Postgres, in three steps:

    * purges take turns (an advisory lock until their commit): two purges whose executions
      shared a payload would each see the other's owner row, deleted but not committed, and
      neither would delete it. The next one's statements see the previous one's deletes.
    * lock the candidates FOR UPDATE, skipping rows another transaction holds: a store of the
      same payload for a live execution (store_payload holds it FOR KEY SHARE, as does the
      foreign key check of a new owner row) goes on, and the purge never waits for live work,
      so it cannot deadlock with it. A skipped payload is in use; if that store is rolled
      back instead, the payload stays with no owner (it is never collected: rare, and only
      space).
    * delete those still without an owner, in a new statement: its snapshot sees every owner
      committed before the lock was taken, and none can be added while the purge holds it,
      so the foreign key check of the delete never fails.

    SQLite has one writer at a time: a plain delete."""
    unowned = ~sa.exists().where(payload_owners.c.sha256 == payloads.c.sha256)
    if not is_postgres(conn):
        await conn.execute(payloads.delete().where(payloads.c.sha256.in_(hashes), unowned))
        return
    await conn.execute(
        sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PAYLOAD_COLLECTION_LOCK}
    )
    locked = (
        (
            await conn.execute(
                sa.select(payloads.c.sha256)
                .where(payloads.c.sha256.in_(hashes), unowned)
                .order_by(payloads.c.sha256)
                .with_for_update(of=payloads, skip_locked=True)
            )
        )
        .scalars()
        .all()
    )
    if locked:
        await conn.execute(payloads.delete().where(payloads.c.sha256.in_(locked), unowned))
