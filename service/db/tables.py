"""The schema: SQLModel tables. Alembic migrations (alembic/versions) are the only way it changes.

* ``state_machines`` and their immutable ``state_machine_versions`` (a definition is never
  changed in place; an update publishes a new version);
* ``executions``: one row per execution, with the columns derived from its history (status,
  output) written in the same transaction as the events, and the fencing ``version`` (the
  number of events); it needs a decision when ``wake_at`` is due (its start, its next timer,
  a redrive) or while its inbox holds something. A decider holds the row locked for the whole decision
  (``SELECT ... FOR UPDATE SKIP LOCKED``), so the lock is the lease: it ends with the
  transaction, also when the worker dies, and no clock decides who owns what;
* ``events``: the append-only history, primary key (execution_id, seq);
* ``payloads``: large JSON values stored once by their SHA-256 and referenced from events,
  inputs and outputs (a state's output is the next state's input: one copy, not two);
* ``payload_owners``: which executions reference each payload, so that a purge can delete
  the payloads only the purged executions used;
* ``inbox``: incoming events waiting for a decision (task results, callbacks, stop); writing
  one never touches the execution's row, so it never waits for a decision in progress;
* ``timers``: durable timers (Wait, Retry back-off, task timeouts and heartbeats, execution
  timeout); a due timer becomes a TimerFired in the next decision;
* ``outbox``: tasks for runners (ScheduleTask commands), with their task token;
* ``schedules``: cron/rate/at expressions that start executions; ``next_fire_at`` is the
  next due start, claimed and advanced in the transaction that starts it.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

# Payload text at or above this size goes to the payloads table, referenced by hash.
PAYLOAD_INLINE_LIMIT = 1024


def _now_column() -> sa.Column[datetime]:
    return sa.Column(sa.DateTime(timezone=True), nullable=False)


class StateMachineRow(SQLModel, table=True):
    """A state machine: a name and its versions."""

    __tablename__ = "state_machines"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=80, unique=True)
    arn: str = Field(max_length=256, unique=True)
    type: str = Field(default="STANDARD", max_length=16)
    role_arn: str = Field(default="", max_length=256)
    created_at: datetime = Field(sa_column=_now_column())
    # DeleteStateMachine: its executions run on (the machine is DELETING until none runs);
    # creating the name again brings the row back with a new version.
    deleted_at: datetime | None = Field(
        default=None, sa_column=sa.Column(sa.DateTime(timezone=True), nullable=True)
    )
    description: str = Field(
        default="", sa_column=sa.Column(sa.String(256), nullable=False, server_default="")
    )
    # JSON object of string tags (AWS TagResource); `statewright apply` marks what it owns.
    tags: str = Field(
        default="{}", sa_column=sa.Column(sa.Text, nullable=False, server_default="{}")
    )


class StateMachineVersionRow(SQLModel, table=True):
    """One immutable definition of a state machine."""

    __tablename__ = "state_machine_versions"
    __table_args__ = (sa.UniqueConstraint("state_machine_id", "version"),)

    id: int | None = Field(default=None, primary_key=True)
    state_machine_id: int = Field(foreign_key="state_machines.id", index=True)
    version: int
    definition: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    definition_sha256: str = Field(max_length=64)
    description: str = Field(default="", max_length=256)
    created_at: datetime = Field(sa_column=_now_column())


class ExecutionRow(SQLModel, table=True):
    """An execution: what its history says, summarised, plus its lease."""

    __tablename__ = "executions"
    __table_args__ = (
        sa.UniqueConstraint("state_machine_id", "name"),
        sa.Index("ix_executions_wake_at", "wake_at"),
        sa.Index("ix_executions_status_started", "status", "started_at"),
        # The viewer's lists: newest first, overall and per state machine (keyset pages).
        sa.Index("ix_executions_started", "started_at", "id"),
        sa.Index("ix_executions_machine_started", "state_machine_id", "started_at", "id"),
    )

    id: str = Field(primary_key=True, max_length=36)
    arn: str = Field(max_length=512, unique=True)
    name: str = Field(max_length=80)
    state_machine_id: int = Field(foreign_key="state_machines.id")
    version_id: int = Field(foreign_key="state_machine_versions.id")
    status: str = Field(max_length=16)
    input_ref: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    output_ref: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    error: str | None = Field(default=None, max_length=256)
    cause: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    started_at: datetime = Field(sa_column=_now_column())
    stopped_at: datetime | None = Field(
        default=None, sa_column=sa.Column(sa.DateTime(timezone=True), nullable=True)
    )
    seed: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    # The secret of its task tokens (hex of 256 random bits); None in rows written before.
    token_key: str | None = Field(default=None, max_length=64)
    # An AWS Step Functions Local mock config test case (StartExecution with "arn#TestCase"):
    # its tasks are answered from the mock config instead of being run.
    test_case: str | None = Field(default=None, max_length=80)
    # Started through a version ARN (its number) or an alias ARN (its name); None: unqualified.
    qualifier: str | None = Field(default=None, max_length=80)
    # Fencing: the number of events in the history; an append names the version it extends.
    version: int = 0
    # How many ExecutionRedriven events the history has (written with them).
    redrive_count: int = Field(
        default=0, sa_column=sa.Column(sa.Integer, nullable=False, server_default="0")
    )
    wake_at: datetime | None = Field(
        default=None, sa_column=sa.Column(sa.DateTime(timezone=True), nullable=True)
    )


class EventRow(SQLModel, table=True):
    """One history event; ``details`` and ``meta`` are JSON text with large values by reference."""

    __tablename__ = "events"

    execution_id: str = Field(foreign_key="executions.id", primary_key=True, max_length=36)
    seq: int = Field(primary_key=True)
    type: str = Field(max_length=64)
    timestamp: datetime = Field(sa_column=_now_column())
    previous_event_id: int
    scope: str = Field(default="", max_length=256)
    child: str = Field(default="", max_length=256)
    details: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    meta: str = Field(sa_column=sa.Column(sa.Text, nullable=False))


class PayloadRow(SQLModel, table=True):
    """A JSON value stored once, by the SHA-256 of its text."""

    __tablename__ = "payloads"

    sha256: str = Field(primary_key=True, max_length=64)
    body: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    size: int


class PayloadOwnerRow(SQLModel, table=True):
    """An execution that references a payload (its input or output, an event field, a task's
    Parameters). Written with every reference, in its transaction; a purge deletes the owner
    rows of the executions it deletes, then the payloads left with none. The foreign keys
    make an owner of a deleted payload impossible, also when a purge races a store of the
    same payload (see queries.store_payload, start_all and purge_closed)."""

    __tablename__ = "payload_owners"

    sha256: str = Field(foreign_key="payloads.sha256", primary_key=True, max_length=64)
    execution_id: str = Field(
        foreign_key="executions.id", primary_key=True, max_length=36, index=True
    )


class InboxRow(SQLModel, table=True):
    """An incoming event waiting for the execution's next decision."""

    __tablename__ = "inbox"

    id: int | None = Field(default=None, primary_key=True)
    execution_id: str = Field(foreign_key="executions.id", index=True, max_length=36)
    kind: str = Field(max_length=32)
    body: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    created_at: datetime = Field(sa_column=_now_column())


class TimerRow(SQLModel, table=True):
    """A durable timer; ``fire_at`` in the past means due."""

    __tablename__ = "timers"
    __table_args__ = (sa.Index("ix_timers_execution_fire_at", "execution_id", "fire_at"),)

    execution_id: str = Field(foreign_key="executions.id", primary_key=True, max_length=36)
    timer_id: str = Field(primary_key=True, max_length=128)
    fire_at: datetime = Field(sa_column=_now_column())


class OutboxRow(SQLModel, table=True):
    """A task for a runner: run ``resource`` with ``parameters``, answer into the inbox."""

    __tablename__ = "outbox"
    __table_args__ = (sa.UniqueConstraint("execution_id", "task_id"),)

    id: int | None = Field(default=None, primary_key=True)
    execution_id: str = Field(foreign_key="executions.id", index=True, max_length=36)
    task_id: int
    state_name: str = Field(max_length=80)
    resource: str = Field(max_length=2048)
    parameters_ref: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    idempotency_key: str = Field(max_length=600, unique=True)
    task_token: str | None = Field(default=None, max_length=128, unique=True)
    timeout_seconds: float | None = None
    heartbeat_seconds: float | None = None
    status: str = Field(default="PENDING", max_length=16, index=True)
    created_at: datetime = Field(sa_column=_now_column())
    claimed_by: str | None = Field(default=None, max_length=128)
    claim_expires_at: datetime | None = Field(
        default=None, sa_column=sa.Column(sa.DateTime(timezone=True), nullable=True)
    )


class ActivityRow(SQLModel, table=True):
    """An activity: tasks that external workers take with GetActivityTask."""

    __tablename__ = "activities"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=80, unique=True)
    arn: str = Field(max_length=256, unique=True)
    created_at: datetime = Field(sa_column=_now_column())


class ApiKeyRow(SQLModel, table=True):
    """An API key: the SHA-256 of its secret, and the secret sealed with the server key (a
    SigV4 check recomputes an HMAC keyed by the secret itself). See service/auth.py."""

    __tablename__ = "api_keys"

    id: str = Field(primary_key=True, max_length=32)
    name: str = Field(max_length=80)
    secret_sha256: str = Field(max_length=64)
    secret_sealed: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    created_at: datetime = Field(sa_column=_now_column())
    revoked_at: datetime | None = Field(
        default=None, sa_column=sa.Column(sa.DateTime(timezone=True), nullable=True)
    )


class StateMachineAliasRow(SQLModel, table=True):
    """An alias: a name that routes executions to one or two versions by weight."""

    __tablename__ = "state_machine_aliases"
    __table_args__ = (sa.UniqueConstraint("state_machine_id", "name"),)

    id: int | None = Field(default=None, primary_key=True)
    state_machine_id: int = Field(foreign_key="state_machines.id", index=True)
    name: str = Field(max_length=80)
    description: str = Field(default="", max_length=256)
    # JSON: [{"version": N, "weight": W}, ...], one or two entries, weights summing to 100.
    routing: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    created_at: datetime = Field(sa_column=_now_column())
    updated_at: datetime = Field(sa_column=_now_column())


class ConnectionRow(SQLModel, table=True):
    """A connection for HTTP tasks (AWS: an EventBridge connection): how to authenticate to
    an API. ``parameters`` holds what is not secret (JSON); ``secret_sealed`` the secret,
    sealed with the server key (service/sealing.py). Tasks name it by ARN; the secret never
    enters a history."""

    __tablename__ = "connections"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=64, unique=True)
    arn: str = Field(max_length=256, unique=True)
    type: str = Field(max_length=32)  # BASIC, API_KEY, OAUTH_CLIENT_CREDENTIALS
    parameters: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    secret_sealed: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    created_at: datetime = Field(sa_column=_now_column())


class WebhookRow(SQLModel, table=True):
    """A status webhook: every status change of the executions it covers (one state machine
    or all; some statuses or all) is delivered to ``url``, signed with the secret, which the
    database keeps sealed with the server key."""

    __tablename__ = "webhooks"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=64, unique=True)
    url: str = Field(max_length=2048)
    secret_sealed: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    state_machine: str | None = Field(default=None, max_length=80)  # its name; None: all
    statuses: str = Field(default="", max_length=128)  # comma-separated; "": all
    enabled: bool = True
    created_at: datetime = Field(sa_column=_now_column())


class WebhookDeliveryRow(SQLModel, table=True):
    """One status change event for one webhook: written in the transaction of the status
    change (the durable outbox of deliveries), then sent until the receiver accepts it or its
    retries run out (``DEAD``). Per webhook and execution, deliveries go out in ``id`` order."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        sa.Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
        sa.Index("ix_webhook_deliveries_order", "webhook_id", "execution_id", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    webhook_id: int = Field(foreign_key="webhooks.id")
    execution_id: str = Field(max_length=36)
    body: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    status: str = Field(default="PENDING", max_length=16)  # PENDING RUNNING DELIVERED DEAD
    attempts: int = 0
    next_attempt_at: datetime = Field(sa_column=_now_column())
    created_at: datetime = Field(sa_column=_now_column())
    delivered_at: datetime | None = Field(
        default=None, sa_column=sa.Column(sa.DateTime(timezone=True), nullable=True)
    )
    last_status_code: int | None = None
    last_error: str | None = Field(default=None, max_length=512)
    claimed_by: str | None = Field(default=None, max_length=128)
    claim_expires_at: datetime | None = Field(
        default=None, sa_column=sa.Column(sa.DateTime(timezone=True), nullable=True)
    )


class ScheduleRow(SQLModel, table=True):
    """A schedule: starts an execution of a state machine with a fixed input at each fire
    time of ``expression`` (service/schedule_expressions.py) in ``timezone``."""

    __tablename__ = "schedules"
    __table_args__ = (sa.Index("ix_schedules_state_next_fire_at", "state", "next_fire_at"),)

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=64, unique=True)
    state_machine: str = Field(max_length=80, index=True)  # by name, as a target ARN names it
    expression: str = Field(max_length=256)
    timezone: str = Field(max_length=64)
    input: str = Field(sa_column=sa.Column(sa.Text, nullable=False))  # JSON text
    state: str = Field(max_length=16)  # ENABLED, DISABLED
    catchup: str = Field(max_length=16)  # once, none: after a missed window
    description: str = Field(default="", max_length=512)
    tags: str = Field(sa_column=sa.Column(sa.Text, nullable=False))  # JSON object
    # Rate ticks count from here: when the schedule was created or its expression changed.
    anchor_at: datetime = Field(sa_column=_now_column())
    # None: no fire time is left (an at() that fired, or a cron past its last year).
    next_fire_at: datetime | None = Field(
        default=None, sa_column=sa.Column(sa.DateTime(timezone=True), nullable=True)
    )
    last_fire_at: datetime | None = Field(
        default=None, sa_column=sa.Column(sa.DateTime(timezone=True), nullable=True)
    )
    last_execution_arn: str | None = Field(default=None, max_length=512)
    last_error: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    created_at: datetime = Field(sa_column=_now_column())
    updated_at: datetime = Field(sa_column=_now_column())
