"""Decisions, a batch of executions in one transaction.

A decider locks the executions that need a decision (``wake_at`` due, or something in their
inbox; Postgres skips rows other workers hold), folds their histories (incrementally, from a
small in-memory cache of folded executions when it has seen one before), lets the engine handle
every waiting incoming event and due timer, and writes the result in the same transaction: the new events,
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

import dataclasses
import json
import logging
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from service import logs, metrics, tracing, webhooks
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


@dataclass(slots=True)
class _Work:
    """One execution of a batch, on its way through the decision."""

    claimed: queries.Claimed
    machine: StateMachine
    record: queries.VersionRecord
    execution: Execution | None = None
    waiting_before: frozenset[int] = frozenset()


class Decider:
    """Makes decisions for any execution; keeps recently folded executions in memory.

    A decision takes a batch of due executions (up to ``batch_size``) in one transaction:
    one query each reads their new history events, takes their inboxes and takes their due
    timers; the engine decides each; one statement each writes all their events, outbox
    tasks, timers and rows. Under load that is a handful of round trips and one commit for
    many executions; with one due execution it is the same as deciding it alone. An
    execution the engine cannot process fails on its own; the others in the batch go on.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        cache_size: int = 256,
        batch_size: int = 16,
        tracer: tracing.Tracer | None = None,
    ) -> None:
        self.engine = engine
        self.tracer = tracer
        self.cache_size = cache_size
        self.batch_size = batch_size
        self._folded: OrderedDict[str, tuple[int, Execution]] = OrderedDict()
        self._machines: dict[int, tuple[StateMachine, queries.VersionRecord]] = {}
        self._single = 0  # after a failed batch: decide this many alone, to isolate the cause
        self.decisions = 0
        # Executions a lane of this process is deciding: news of them needs no other lane,
        # as the deciding lane looks again once it commits.
        self.in_progress: set[str] = set()
        # Resources of the tasks committed since a lane last took them (take_scheduled): the
        # runners of this process that have work to look for.
        self._resources: set[str] = set()

    async def decide_due(self) -> tuple[int, datetime]:
        """Decide the executions that are due (up to ``batch_size``): how many (0 when none
        is), and the database's clock when they were claimed."""
        limit = 1 if self._single else self.batch_size
        self._single = max(self._single - 1, 0)
        batch: list[queries.Claimed] = []
        try:
            async with self.engine.begin() as conn:
                at, batch = await queries.claim_due(conn, limit)
                self.in_progress.update(claimed.id for claimed in batch)
                decided = await self._decide(conn, batch, at) if batch else []
        except Exception:
            for claimed in batch:
                self._folded.pop(claimed.id, None)
            if len(batch) > 1:
                # The database refused the batch (or went away): if one execution's data is
                # the cause, deciding the next ones alone keeps it from holding up the rest.
                self._single = len(batch)
            raise
        finally:
            self.in_progress.difference_update(claimed.id for claimed in batch)
        self.decisions += len(batch)
        self._committed(decided)
        return len(batch), at

    async def decide_execution(self, execution_id: str, closed_too: bool = False) -> None:
        """Make a decision for one given execution now (waits for one in progress elsewhere);
        ``closed_too`` for a redrive, which wakes a closed execution."""
        async with self.engine.begin() as conn:
            at = await queries.now(conn)
            claimed = await queries.lock_execution(conn, execution_id, closed_too=closed_too)
            if claimed is None:
                return
            try:
                decided = await self._decide(conn, [claimed], at)
            except Exception:
                self._folded.pop(claimed.id, None)
                raise
        self._committed(decided)

    def take_scheduled(self) -> set[str]:
        """The resources of tasks queued by decisions committed since the last call."""
        resources, self._resources = self._resources, set()
        return resources

    def _committed(self, decided: list[_Work]) -> None:
        """Metrics and trace spans of committed decisions; the resources of their tasks."""
        metrics.DECISIONS.inc(len(decided))
        for work in decided:
            execution = work.execution
            assert execution is not None
            self._resources.update(
                c.resource for c in execution.commands if isinstance(c, ScheduleTask)
            )
            metrics.count_events(work.record.name, execution.new_events)
            if self.tracer is not None:
                try:
                    self.tracer.record(work.record.arn, execution, execution.new_events)
                except Exception as exc:  # tracing must never cost a decision
                    log.warning("trace spans of %s not recorded: %s", work.claimed.arn, exc)

    async def _machine(
        self, conn: AsyncConnection, version_id: int
    ) -> tuple[StateMachine, queries.VersionRecord]:
        if version_id not in self._machines:
            record = await queries.load_version(conn, version_id)
            if record is None:
                raise LookupError(f"state machine version {version_id} does not exist")
            self._machines[version_id] = (parse(json.loads(record.definition)), record)
        return self._machines[version_id]

    async def _decide(
        self, conn: AsyncConnection, batch: list[queries.Claimed], at: datetime
    ) -> list[_Work]:
        """Decide ``batch`` in ``conn``'s transaction; the executions decided (the others
        were failed as unprocessable)."""
        works: list[_Work] = []
        broken: dict[str, Exception] = {}
        for claimed in batch:
            try:
                machine, record = await self._machine(conn, claimed.version_id)
            except (LookupError, ValueError) as exc:
                broken[claimed.id] = exc
                continue
            works.append(_Work(claimed, machine, record))
        works = await self._fold(conn, works, broken)
        incoming = await self._incoming(conn, works, at, broken)
        decided: list[_Work] = []
        for work in works:
            execution = work.execution
            assert execution is not None
            if work.claimed.id in broken:
                continue
            try:
                for event in incoming[work.claimed.id]:
                    execution.handle(event)
            except Exception as exc:  # a history the engine cannot process, or a bug
                broken[work.claimed.id] = exc
                continue
            decided.append(work)
        for work in works:
            self._folded.pop(work.claimed.id, None)  # re-cached below once written
        await self._write(conn, decided, at)
        if broken:
            await self._quarantine(conn, [c for c in batch if c.id in broken], broken, at)
        for work in decided:
            execution = work.execution
            assert execution is not None
            if execution.status == "RUNNING":
                self._folded[work.claimed.id] = (len(execution.events), execution)
        while len(self._folded) > self.cache_size:
            self._folded.popitem(last=False)
        return decided

    async def _fold(
        self, conn: AsyncConnection, works: list[_Work], broken: dict[str, Exception]
    ) -> list[_Work]:
        """Each execution as its history leaves it: the cached fold brought up to date, or a
        fold of the whole history; the new events of all of them in one query."""
        wanted: dict[str, int] = {}
        fresh: set[str] = set()  # folded from the whole history, not from the cache
        for work in works:
            claimed = work.claimed
            cached = self._folded.get(claimed.id)
            if cached is not None and cached[0] <= claimed.version:
                work.execution = cached[1]
                if cached[0] < claimed.version:
                    wanted[claimed.id] = cached[0]
            else:
                work.execution = Execution(work.machine)
                fresh.add(claimed.id)
                if claimed.version:
                    wanted[claimed.id] = 0
        histories = await queries.load_histories(conn, wanted)
        ready: list[_Work] = []
        for work in works:
            claimed = work.claimed
            execution = work.execution
            assert execution is not None
            try:
                history = histories.get(claimed.id, [])
                if isinstance(history, Exception):
                    raise history
                execution.fold(history)
            except Exception as exc:
                self._folded.pop(claimed.id, None)
                broken[claimed.id] = exc
                continue
            if len(execution.events) != claimed.version:
                self._folded.pop(claimed.id, None)
                if claimed.id in fresh:  # the row and its events disagree
                    broken[claimed.id] = ValueError(
                        f"the execution row says {claimed.version} events, "
                        f"the history holds {len(execution.events)}"
                    )
                else:
                    # A cached fold that is not this history's: next round folds afresh.
                    token = logs.EXECUTION.set(claimed.id)
                    log.warning("execution %s: cached fold out of date", claimed.arn)
                    logs.EXECUTION.reset(token)
                continue
            execution.new_events = []
            execution.commands = []
            work.waiting_before = frozenset(execution.tasks)
            ready.append(work)
        return ready

    async def _incoming(
        self,
        conn: AsyncConnection,
        works: list[_Work],
        at: datetime,
        broken: dict[str, Exception],
    ) -> dict[str, list[Incoming]]:
        """For each execution, its inbox events and due timers, taken out of their tables in
        this transaction, in the order they happened. A heartbeat that came before its task's
        heartbeat timer fell due supersedes that timer (the heartbeat re-arms it)."""
        ids = [work.claimed.id for work in works]
        inboxes, due = await queries.take_incoming(conn, ids, at)
        # An execution at version 0 has not started: its row is the start request.
        refs = [work.claimed.input_ref for work in works if not work.claimed.version]
        inputs = await queries.load_payloads(conn, refs) if refs else {}
        out: dict[str, list[Incoming]] = {}
        for work in works:
            claimed = work.claimed
            timed: list[tuple[datetime, int, Incoming]] = []
            if not claimed.version:
                start = StartExecution(
                    input=inputs[claimed.input_ref],
                    timestamp=at,
                    execution_arn=claimed.arn,
                    state_machine_arn=work.record.arn,
                    role_arn=work.record.role_arn,
                    seed=claimed.seed,
                    token_key=claimed.token_key,
                )
                timed.append((claimed.started_at, 0, start))
            try:
                for _, kind, body, created_at in inboxes[claimed.id]:
                    if kind != "start":  # written before the row was the start request
                        incoming = _to_incoming(kind, body, at)
                        timed.append((created_at, len(timed), incoming))
            except Exception as exc:  # an inbox row this version cannot read
                broken[claimed.id] = exc
                continue
            for fire_at, timer_id in due[claimed.id]:
                timed.append((fire_at, len(timed), TimerFired(timer_id, at)))
            pending: list[Incoming] = []
            beaten: set[int] = set()
            for _, _, incoming in sorted(timed, key=lambda item: (item[0], item[1])):
                if isinstance(incoming, TaskHeartbeat):
                    beaten.add(incoming.task_id)
                elif isinstance(incoming, TimerFired) and incoming.timer_id.startswith(
                    "heartbeat:"
                ):
                    if int(incoming.timer_id.partition(":")[2]) in beaten:
                        continue
                pending.append(incoming)
            out[claimed.id] = pending
        return out

    async def _write(self, conn: AsyncConnection, decided: list[_Work], at: datetime) -> None:
        """Everything the decisions produced, in a few statements for the whole batch."""
        rows: list[dict[str, Any]] = []
        scheduled: list[tuple[str, ScheduleTask]] = []
        cancelled: dict[str, list[int]] = {}
        timers_deleted: set[tuple[str, str]] = set()
        timers_created: dict[tuple[str, str], datetime] = {}
        closed_ids: list[str] = []
        finished: list[queries.Decision] = []
        changes: list[webhooks.StatusChange] = []
        for work in decided:
            claimed, execution = work.claimed, work.execution
            assert execution is not None
            changes.extend(
                webhooks.changes_of(
                    claimed.id, work.record.name, work.record.arn, execution, execution.new_events
                )
            )
            # Tasks that stopped waiting (answered, timed out, aborted) close their outbox
            # rows, so a late callback with their token gets TaskTimedOut and a runner stops
            # retrying them.
            await queries.close_tasks(conn, claimed.id, work.waiting_before - set(execution.tasks))
            rows.extend(await queries.event_rows(conn, claimed.id, execution.new_events))
            for command in execution.commands:
                if isinstance(command, ScheduleTask):
                    scheduled.append((claimed.id, command))
                elif isinstance(command, StartTimer):
                    timers_created[(claimed.id, command.timer_id)] = command.fire_at
                elif isinstance(command, CancelTimer):
                    key = (claimed.id, command.timer_id)
                    timers_created.pop(key, None)
                    timers_deleted.add(key)
                elif isinstance(command, CancelTask):
                    cancelled.setdefault(claimed.id, []).append(command.task_id)
            finished.append(await self._row(conn, claimed, execution, at))
            if execution.status != "RUNNING":
                closed_ids.append(claimed.id)
        await queries.insert_event_rows(conn, rows)
        await queries.add_tasks(conn, scheduled, at)
        for execution_id, task_ids in cancelled.items():
            await queries.cancel_tasks(conn, execution_id, task_ids)
        await queries.replace_timers(conn, timers_deleted, timers_created)
        await queries.delete_all_timers(conn, closed_ids)
        await queries.finish_decisions(conn, finished)
        # Status webhooks: their deliveries commit (or roll back) with the status change.
        await webhooks.record(conn, changes, at)

    async def _row(
        self, conn: AsyncConnection, claimed: queries.Claimed, execution: Execution, at: datetime
    ) -> queries.Decision:
        """The execution row after the decision. Running (also once redriven): nothing of a
        close; closed: when, why, and the output."""
        decision = queries.Decision(
            claimed.id, claimed.version, len(execution.events), execution.status
        )
        if execution.status == "RUNNING":
            return decision
        last = execution.events[-1]
        output_ref = None
        if last.type == "ExecutionSucceeded":
            output_ref = await queries.store_payload(conn, last.details.get("output"), claimed.id)
        return dataclasses.replace(
            decision,
            stopped_at=at,
            error=last.details.get("error"),
            cause=last.details.get("cause"),
            output_ref=output_ref,
        )

    async def _quarantine(
        self,
        conn: AsyncConnection,
        claimed: list[queries.Claimed],
        broken: dict[str, Exception],
        at: datetime,
    ) -> None:
        """Fail executions the engine cannot process (a corrupted history, or a bug), loudly,
        in the same transaction: the rest of the batch goes on."""
        for item in claimed:
            exc = broken[item.id]
            token = logs.EXECUTION.set(item.id)
            log.error("execution %s cannot be processed", item.arn, exc_info=exc)
            logs.EXECUTION.reset(token)
            self._folded.pop(item.id, None)
            await conn.execute(
                queries.executions.update()
                .where(queries.executions.c.id == item.id)
                .values(
                    status="FAILED",
                    error="States.Runtime",
                    cause=f"Statewright could not process this execution's history: {exc}",
                    stopped_at=at,
                    wake_at=None,
                )
            )
        await queries.delete_all_timers(conn, [item.id for item in claimed])
        inputs = await queries.load_payloads(conn, [item.input_ref for item in claimed])
        changes = []
        for item in claimed:
            _, _, region, account, _, machine, _ = item.arn.split(":", 6)
            changes.append(
                webhooks.StatusChange(
                    item.id,
                    machine,
                    "FAILED",
                    webhooks.status_event(
                        execution_arn=item.arn,
                        state_machine_arn=f"arn:aws:states:{region}:{account}:stateMachine:{machine}",
                        status="FAILED",
                        at=at,
                        start=item.started_at,
                        input_value=inputs[item.input_ref],
                        error="States.Runtime",
                        cause="Statewright could not process this execution's history",
                    ),
                )
            )
        await webhooks.record(conn, changes, at)


def _to_incoming(kind: str, body: dict[str, JSON], at: datetime) -> Incoming:
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
