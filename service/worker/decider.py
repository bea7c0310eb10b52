"""One decision of one execution, in one transaction.

A decider locks an execution that needs a decision (``wake_at`` due; Postgres skips rows other
workers hold), folds its history (incrementally, from a small in-memory cache of folded
executions when it has seen the execution before), lets the engine handle every waiting
incoming event and due timer, and writes the result in the same transaction: the new events,
the outbox tasks and timers the commands ask for, the consumed inbox rows and fired timers,
and the execution's new status, version and wake-up time.

Crash points (nothing is lost or done twice):
* before the commit: the transaction rolls back, the row lock goes with the connection, and
  another worker makes the same decision from the same history (the engine is deterministic);
* after the commit, before a runner takes the task: the task waits in ``outbox``;
* after a runner ran the task, before its result is recorded: the runner runs it again with the
  same idempotency key (execution ARN and TaskScheduled event id), so the receiving service can
  de-duplicate: task side effects are at least once, state transitions exactly once;
* a late or duplicate result names a task that is no longer pending and changes nothing.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from service.db import queries
from statemachine import Execution, StateMachine, parse
from statemachine.events import (
    CancelTask,
    CancelTimer,
    Incoming,
    RedriveExecution,
    ScheduleTask,
    StartExecution,
    StartTimer,
    StopExecution,
    TaskFailed,
    TaskHeartbeat,
    TaskStarted,
    TaskSubmitted,
    TaskSucceeded,
    TimerFired,
)

log = logging.getLogger("statewright.worker")
JSON = Any
_CLOSING = {"ExecutionSucceeded", "ExecutionFailed", "ExecutionTimedOut", "ExecutionAborted"}


class Decider:
    """Makes decisions for any execution; keeps recently folded executions in memory."""

    def __init__(self, engine: AsyncEngine, *, cache_size: int = 256) -> None:
        self.engine = engine
        self.cache_size = cache_size
        self._folded: OrderedDict[str, tuple[int, Execution]] = OrderedDict()
        self._machines: dict[int, tuple[StateMachine, queries.VersionRecord]] = {}
        self.decisions = 0

    async def decide_one(self) -> bool:
        """Make one decision if some execution needs one; False when none does."""
        async with self.engine.begin() as conn:
            at, claimed = await queries.claim_one(conn)
            if claimed is None:
                return False
            try:
                await self._decide(conn, claimed, at)
            except queries.StaleVersion:
                self._folded.pop(claimed.id, None)
                raise
            except Exception as exc:
                self._folded.pop(claimed.id, None)
                if not _is_database_error(exc):
                    # A history the engine cannot process (corrupted, or a bug): fail this
                    # execution loudly and go on with the others.
                    log.exception("execution %s cannot be processed", claimed.arn)
                    await conn.rollback()
                    await self._quarantine(claimed, exc)
                    return True
                raise
        self.decisions += 1
        return True

    async def decide_execution(self, execution_id: str, closed_too: bool = False) -> None:
        """Make a decision for one given execution now (waits for one in progress elsewhere);
        ``closed_too`` for a redrive, which wakes a closed execution."""
        async with self.engine.begin() as conn:
            at = await queries.now(conn)
            claimed = await queries.lock_execution(conn, execution_id, closed_too=closed_too)
            if claimed is None:
                return
            await self._decide(conn, claimed, at)

    async def _quarantine(self, claimed: queries.Claimed, exc: Exception) -> None:
        async with self.engine.begin() as conn:
            at = await queries.now(conn)
            await conn.execute(
                queries.executions.update()
                .where(queries.executions.c.id == claimed.id)
                .values(
                    status="FAILED",
                    error="States.Runtime",
                    cause=f"Statewright could not process this execution's history: {exc}",
                    stopped_at=at,
                    wake_at=None,
                )
            )

    async def _machine(
        self, conn: AsyncConnection, version_id: int
    ) -> tuple[StateMachine, queries.VersionRecord]:
        if version_id not in self._machines:
            record = await queries.load_version(conn, version_id)
            if record is None:
                raise LookupError(f"state machine version {version_id} does not exist")
            self._machines[version_id] = (parse(json.loads(record.definition)), record)
        return self._machines[version_id]

    async def _fold(
        self, conn: AsyncConnection, claimed: queries.Claimed, machine: StateMachine
    ) -> Execution:
        cached = self._folded.pop(claimed.id, None)
        if cached is not None and cached[0] <= claimed.version:
            execution = cached[1]
            if cached[0] < claimed.version:
                execution.fold(await queries.load_events(conn, claimed.id, after=cached[0]))
        else:
            execution = Execution(machine)
            execution.fold(await queries.load_events(conn, claimed.id))
        if len(execution.events) != claimed.version:
            raise queries.StaleVersion(claimed.id, claimed.version)
        execution.new_events = []
        execution.commands = []
        return execution

    async def _incoming(
        self,
        conn: AsyncConnection,
        claimed: queries.Claimed,
        record: queries.VersionRecord,
        at: datetime,
    ) -> list[Incoming]:
        """The inbox events and due timers, taken out of their tables in this transaction, in
        the order they happened. A heartbeat that came before its task's heartbeat timer fell
        due supersedes that timer (the heartbeat re-arms it)."""
        timed: list[tuple[datetime, int, Incoming]] = []
        for _, kind, body, created_at in await queries.take_inbox(conn, claimed.id):
            incoming = await self._to_incoming(conn, claimed, record, kind, body, at)
            timed.append((created_at, len(timed), incoming))
        for fire_at, timer_id in await queries.take_due_timers(conn, claimed.id, at):
            timed.append((fire_at, len(timed), TimerFired(timer_id, at)))
        pending: list[Incoming] = []
        beaten: set[int] = set()
        for _, _, incoming in sorted(timed, key=lambda item: (item[0], item[1])):
            if isinstance(incoming, TaskHeartbeat):
                beaten.add(incoming.task_id)
            elif isinstance(incoming, TimerFired) and incoming.timer_id.startswith("heartbeat:"):
                if int(incoming.timer_id.partition(":")[2]) in beaten:
                    continue
            pending.append(incoming)
        return pending

    async def _to_incoming(
        self,
        conn: AsyncConnection,
        claimed: queries.Claimed,
        record: queries.VersionRecord,
        kind: str,
        body: dict[str, JSON],
        at: datetime,
    ) -> Incoming:
        if kind == "start":
            ref = body["input_ref"]
            value = (await queries.load_payloads(conn, [ref]))[ref]
            return StartExecution(
                input=value,
                timestamp=at,
                execution_arn=claimed.arn,
                state_machine_arn=record.arn,
                role_arn=record.role_arn,
                seed=claimed.seed,
            )
        if kind == "stop":
            return StopExecution(at, body.get("error"), body.get("cause"))
        if kind == "redrive":
            return RedriveExecution(at)
        task_id = int(body["task_id"])
        if kind == "task_started":
            return TaskStarted(task_id, at)
        if kind == "task_submitted":
            return TaskSubmitted(task_id, at, body.get("output"))
        if kind == "task_succeeded":
            return TaskSucceeded(task_id, body.get("output"), at)
        if kind == "task_failed":
            return TaskFailed(task_id, body.get("error"), body.get("cause"), at)
        if kind == "task_heartbeat":
            return TaskHeartbeat(task_id, at)
        raise ValueError(f"unknown inbox event kind {kind!r}")

    async def _decide(self, conn: AsyncConnection, claimed: queries.Claimed, at: datetime) -> None:
        machine, record = await self._machine(conn, claimed.version_id)
        execution = await self._fold(conn, claimed, machine)
        pending = await self._incoming(conn, claimed, record, at)
        waiting_before = set(execution.tasks)
        for incoming in pending:
            execution.handle(incoming)
        # Tasks that stopped waiting (answered, timed out, aborted) close their outbox rows, so
        # a late callback with their token gets TaskTimedOut and a runner stops retrying them.
        await queries.close_tasks(conn, claimed.id, waiting_before - set(execution.tasks))
        new_events = execution.new_events
        await queries.append_events(conn, claimed.id, new_events)
        cancelled: list[int] = []
        for command in execution.commands:
            if isinstance(command, ScheduleTask):
                await queries.add_task(
                    conn,
                    claimed.id,
                    task_id=command.task_id,
                    state_name=command.state_name,
                    resource=command.resource,
                    parameters=command.parameters,
                    idempotency_key=command.idempotency_key,
                    task_token=command.task_token,
                    timeout_seconds=command.timeout_seconds,
                    heartbeat_seconds=command.heartbeat_seconds,
                    at=at,
                )
            elif isinstance(command, StartTimer):
                await queries.set_timer(conn, claimed.id, command.timer_id, command.fire_at)
            elif isinstance(command, CancelTimer):
                await queries.delete_timers(conn, claimed.id, [command.timer_id])
            elif isinstance(command, CancelTask):
                cancelled.append(command.task_id)
        await queries.cancel_tasks(conn, claimed.id, cancelled)
        closed: dict[str, Any] | None = None
        if (
            execution.status == "RUNNING"
            and claimed.version
            and new_events
            and new_events[0].type == "ExecutionRedriven"
        ):
            # Running again: what the last close recorded no longer applies.
            closed = {"stopped_at": None, "error": None, "cause": None, "output_ref": None}
        if execution.status != "RUNNING":
            last = execution.events[-1]
            closed = {
                "stopped_at": at,
                "error": last.details.get("error"),
                "cause": last.details.get("cause"),
            }
            if last.type == "ExecutionSucceeded":
                closed["output_ref"] = await queries.store_payload(conn, last.details.get("output"))
            await queries.delete_all_timers(conn, claimed.id)
        new_version = len(execution.events)
        await queries.finish_decision(
            conn,
            claimed.id,
            expected_version=claimed.version,
            new_version=new_version,
            status=execution.status,
            closed=closed,
        )
        if execution.status == "RUNNING":
            self._folded[claimed.id] = (new_version, execution)
            while len(self._folded) > self.cache_size:
                self._folded.popitem(last=False)


def _is_database_error(exc: Exception) -> bool:
    module = type(exc).__module__
    return module.startswith(("sqlalchemy", "asyncpg", "sqlite3", "aiosqlite")) or isinstance(
        exc, OSError | ConnectionError | queries.StaleVersion
    )
