"""Prometheus metrics: what the processes of this machine did, and what the database holds.

Counters live in the process that does the work: the API (``statewright serve`` also runs its
worker lanes in-process, so one scrape of its /metrics covers both) and each ``statewright
worker`` (``--metrics-port`` serves them). Gauges of the shared state (outbox lag, timer lag,
executions running, webhook deliveries waiting) are read from the database when /metrics is
scraped, so any one API process reports them for the whole deployment.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from sqlalchemy.ext.asyncio import AsyncEngine

from service.db import queries

REGISTRY = CollectorRegistry()

EXECUTIONS_STARTED = Counter(
    "statewright_executions_started_total",
    "Executions that started (ExecutionStarted recorded), by state machine",
    ["state_machine"],
    registry=REGISTRY,
)
EXECUTIONS_FINISHED = Counter(
    "statewright_executions_finished_total",
    "Executions that closed, by state machine and status",
    ["state_machine", "status"],
    registry=REGISTRY,
)
TRANSITIONS = Counter(
    "statewright_state_transitions_total",
    "States entered, by state machine",
    ["state_machine"],
    registry=REGISTRY,
)
DECISIONS = Counter(
    "statewright_decisions_total", "Decisions committed by this process", registry=REGISTRY
)
LEASE_LOSSES = Counter(
    "statewright_lease_losses_total",
    "Decisions refused because another worker had moved the execution on (stale version)",
    registry=REGISTRY,
)
TASK_SECONDS = Histogram(
    "statewright_task_duration_seconds",
    "Task calls made by this process's runners, from sending to the answer, by resource",
    ["resource", "outcome"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
    registry=REGISTRY,
)
WEBHOOK_DELIVERIES = Counter(
    "statewright_webhook_deliveries_total",
    "Webhook delivery attempts, by outcome (delivered, failed, dead)",
    ["outcome"],
    registry=REGISTRY,
)
OUTBOX_LAG = Gauge(
    "statewright_outbox_lag_seconds",
    "Age of the oldest task waiting for a runner (0: none waits)",
    registry=REGISTRY,
)
TIMER_LAG = Gauge(
    "statewright_timer_lag_seconds",
    "How late the most overdue timer is (0: none is overdue)",
    registry=REGISTRY,
)
RUNNING = Gauge(
    "statewright_executions_running", "Executions with status RUNNING", registry=REGISTRY
)
WEBHOOKS_WAITING = Gauge(
    "statewright_webhook_deliveries_waiting",
    "Webhook deliveries not delivered yet, by status (PENDING, RUNNING, DEAD)",
    ["status"],
    registry=REGISTRY,
)

_CLOSING = {
    "ExecutionSucceeded": "SUCCEEDED",
    "ExecutionFailed": "FAILED",
    "ExecutionTimedOut": "TIMED_OUT",
    "ExecutionAborted": "ABORTED",
}


def count_events(state_machine: str, events: Sequence[Any]) -> None:
    """Count a committed decision's new events (their ``type`` and ``scope``)."""
    entered = 0
    for event in events:
        kind = event.type
        if kind.endswith("StateEntered"):
            entered += 1
        elif event.scope:
            continue
        elif kind == "ExecutionStarted":
            EXECUTIONS_STARTED.labels(state_machine).inc()
        elif kind in _CLOSING:
            EXECUTIONS_FINISHED.labels(state_machine, _CLOSING[kind]).inc()
    if entered:
        TRANSITIONS.labels(state_machine).inc(entered)


async def read_database(engine: AsyncEngine) -> None:
    """Set the gauges of the shared state from the database."""
    o, t, e = queries.outbox, queries.timers, queries.executions
    d = sa.table("webhook_deliveries", sa.column("status"))
    async with engine.connect() as conn:
        at = await queries.now(conn)
        oldest = (
            await conn.execute(
                sa.select(sa.func.min(o.c.created_at)).where(o.c.status == "PENDING")
            )
        ).scalar()
        overdue = (
            await conn.execute(sa.select(sa.func.min(t.c.fire_at)).where(t.c.fire_at <= at))
        ).scalar()
        running = (
            await conn.execute(sa.select(sa.func.count()).where(e.c.status == "RUNNING"))
        ).scalar()
        rows = await conn.execute(
            sa.select(d.c.status, sa.func.count())
            .where(d.c.status != "DELIVERED")
            .group_by(d.c.status)
        )
        waiting: dict[str, int] = {str(status): int(count) for status, count in rows}
    OUTBOX_LAG.set(0 if oldest is None else (at - queries.aware(oldest)).total_seconds())
    TIMER_LAG.set(0 if overdue is None else (at - queries.aware(overdue)).total_seconds())
    RUNNING.set(running or 0)
    for status in ("PENDING", "RUNNING", "DEAD"):
        WEBHOOKS_WAITING.labels(status).set(waiting.get(status, 0))


def exposition() -> bytes:
    """The metrics in Prometheus's text format."""
    return generate_latest(REGISTRY)
