"""Status webhooks: every status change of an execution, delivered to the URLs that asked.

A webhook names a URL, a secret, and which executions it covers (one state machine or all)
and which statuses (RUNNING, SUCCEEDED, FAILED, TIMED_OUT, ABORTED; or all). Each status change
becomes an event shaped like AWS's EventBridge "Step Functions Execution Status Change"
(``detail-type``, ``source: aws.states``, ``detail`` with executionArn, stateMachineArn, name,
status, startDate, stopDate, input, output, error, cause, redriveCount...).

Durable delivery: the decision that changes an execution's status writes one delivery row per
matching webhook in the same transaction (``webhook_deliveries``), so a status change that
committed is delivered even if every process dies right after; one that rolled back never is.
Workers send due deliveries with a lease (a dead worker's lease runs out and another sends
again): delivery is at least once, and the ``Statewright-Delivery`` header (the row's id) is
the same on every attempt so that receivers can de-duplicate. Per webhook and execution,
events go out in order: a delivery waits until the ones before it were delivered (or given
up on). A failed attempt (no answer, or not 2xx) is retried with exponential back-off, from
``retry_base`` seconds up to an hour apart, until the event is ``max_age`` old (24 h); then it
is dead-lettered (``DEAD``), visible in the delivery log, and can be sent again by hand.

Signature: ``Statewright-Signature: t=<unix seconds>,v1=<hex>``, where ``hex`` is
HMAC-SHA256 with the webhook's secret of ``"<t>." + body``. A receiver recomputes it over the
raw body, compares in constant time, and refuses timestamps far from its clock (replays).
The same outbound rules as HTTP tasks apply (``STATEWRIGHT_HTTP_ALLOW``).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import random
import re
import secrets
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
import yarl
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from service import control, logs, metrics
from service.db import queries
from service.db.tables import WebhookDeliveryRow, WebhookRow
from service.runners.http import Client, Outbound, TaskFailure
from service.sealing import Sealer, ServerKeyError
from statemachine import Execution
from statemachine.events import Event

log = logging.getLogger("statewright.webhooks")
JSON = Any
webhooks = WebhookRow.__table__  # type: ignore[attr-defined]
deliveries = WebhookDeliveryRow.__table__  # type: ignore[attr-defined]
DETAIL_TYPE = "Step Functions Execution Status Change"
STATUSES = ("RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")
# The history event that puts an execution in each status.
STATUS_OF_EVENT = {
    "ExecutionStarted": "RUNNING",
    "ExecutionRedriven": "RUNNING",
    "ExecutionSucceeded": "SUCCEEDED",
    "ExecutionFailed": "FAILED",
    "ExecutionTimedOut": "TIMED_OUT",
    "ExecutionAborted": "ABORTED",
}
HOOKS_NOTICE = "hooks:"  # the NOTIFY payload prefix that wakes the deliverers
_NAME = re.compile(r"^[\.\-_A-Za-z0-9]{1,64}$")
MAX_ERROR = 500


# ---------------------------------------------------------------------------- subscriptions


@dataclass(frozen=True, slots=True)
class WebhookInfo:
    """A webhook as the API shows it: never its secret."""

    name: str
    url: str
    state_machine: str | None
    statuses: list[str]
    enabled: bool
    created_at: datetime


def _info(row: Any) -> WebhookInfo:
    return WebhookInfo(
        row.name,
        row.url,
        row.state_machine,
        [s for s in row.statuses.split(",") if s],
        row.enabled,
        queries.aware(row.created_at),
    )


def _check_url(url: str) -> None:
    if not isinstance(url, str) or not re.match(r"^https?://[^/\s]+", url) or len(url) > 2048:
        raise control.ValidationException(
            f"url must be an http or https URL of at most 2048 characters, not {url!r}"
        )


def _check_statuses(statuses: Iterable[str]) -> list[str]:
    chosen = list(dict.fromkeys(statuses))
    unknown = [s for s in chosen if s not in STATUSES]
    if unknown:
        raise control.ValidationException(
            f"unknown statuses {', '.join(map(repr, unknown))}: choose from {', '.join(STATUSES)}"
        )
    return chosen


async def create_webhook(
    engine: AsyncEngine,
    sealer: Sealer,
    name: str,
    url: str,
    *,
    secret: str | None = None,
    state_machine: str | None = None,
    statuses: Sequence[str] = (),
) -> tuple[WebhookInfo, str]:
    """Create a webhook; its info and its secret (generated when not given: shown this once).
    ConflictException if the name is taken; ValidationException for a bad URL or status."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise control.ValidationException(
            f"Invalid webhook name {name!r}: 1-64 letters, digits, '.', '-' or '_'"
        )
    _check_url(url)
    chosen = _check_statuses(statuses)
    if secret is not None and not 16 <= len(secret) <= 512:
        raise control.ValidationException("secret must be 16 to 512 characters")
    secret = secret or secrets.token_urlsafe(32)
    try:
        async with engine.begin() as conn:
            if state_machine is not None:
                await control.state_machine_row(conn, state_machine)
            at = await queries.now(conn)
            await conn.execute(
                webhooks.insert().values(
                    name=name,
                    url=url,
                    secret_sealed=sealer.seal(secret),
                    state_machine=state_machine,
                    statuses=",".join(chosen),
                    enabled=True,
                    created_at=at,
                )
            )
    except IntegrityError:
        raise control.ConflictException(f"Webhook already exists: '{name}'") from None
    return WebhookInfo(name, url, state_machine, chosen, True, at), secret


async def list_webhooks(engine: AsyncEngine) -> list[WebhookInfo]:
    """Every webhook, by name (no secrets)."""
    async with engine.connect() as conn:
        rows = await conn.execute(sa.select(webhooks).order_by(webhooks.c.name))
        return [_info(row) for row in rows]


async def _row(conn: AsyncConnection, name: str) -> Any:
    row = (await conn.execute(sa.select(webhooks).where(webhooks.c.name == name))).first()
    if row is None:
        raise control.ResourceNotFound(f"Webhook does not exist: '{name}'")
    return row


async def describe_webhook(engine: AsyncEngine, name: str) -> WebhookInfo:
    """One webhook (no secret); ResourceNotFound if there is none of that name."""
    async with engine.connect() as conn:
        return _info(await _row(conn, name))


async def set_enabled(engine: AsyncEngine, name: str, enabled: bool) -> WebhookInfo:
    """Pause (no new deliveries are written while paused) or resume a webhook."""
    async with engine.begin() as conn:
        await _row(conn, name)
        await conn.execute(webhooks.update().where(webhooks.c.name == name).values(enabled=enabled))
        return _info(await _row(conn, name))


async def delete_webhook(engine: AsyncEngine, name: str) -> None:
    """Delete a webhook and its delivery log (what is not there: nothing to do)."""
    async with engine.begin() as conn:
        found = (
            await conn.execute(sa.select(webhooks.c.id).where(webhooks.c.name == name))
        ).first()
        if found is None:
            return
        await conn.execute(deliveries.delete().where(deliveries.c.webhook_id == found[0]))
        await conn.execute(webhooks.delete().where(webhooks.c.id == found[0]))


@dataclass(frozen=True, slots=True)
class DeliveryInfo:
    """One delivery in a webhook's log."""

    id: int
    execution_arn: str
    event_status: str
    status: str
    attempts: int
    created_at: datetime
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    last_status_code: int | None
    last_error: str | None


async def list_deliveries(
    engine: AsyncEngine,
    name: str,
    *,
    status: str | None = None,
    limit: int = 100,
    before: int | None = None,
) -> list[DeliveryInfo]:
    """A webhook's deliveries, newest first (``before``: ids below it, for the next page)."""
    d = deliveries
    async with engine.connect() as conn:
        webhook = await _row(conn, name)
        query = sa.select(d).where(d.c.webhook_id == webhook.id)
        if status is not None:
            query = query.where(d.c.status == status)
        if before is not None:
            query = query.where(d.c.id < before)
        rows = (await conn.execute(query.order_by(d.c.id.desc()).limit(limit))).all()
    out = []
    for row in rows:
        detail = json.loads(row.body)["detail"]
        out.append(
            DeliveryInfo(
                row.id,
                detail["executionArn"],
                detail["status"],
                row.status,
                row.attempts,
                queries.aware(row.created_at),
                queries.aware(row.next_attempt_at) if row.status == "PENDING" else None,
                queries.aware(row.delivered_at),
                row.last_status_code,
                row.last_error,
            )
        )
    return out


async def redeliver(engine: AsyncEngine, name: str, delivery_id: int) -> None:
    """Send a delivery again (a dead-lettered one, or one the receiver lost) as soon as a
    worker can; its retries start over."""
    d = deliveries
    async with engine.begin() as conn:
        webhook = await _row(conn, name)
        at = await queries.now(conn)
        result = await conn.execute(
            d.update()
            .where(d.c.id == delivery_id, d.c.webhook_id == webhook.id)
            .values(
                status="PENDING",
                created_at=at,
                next_attempt_at=at,
                claimed_by=None,
                claim_expires_at=None,
            )
        )
        if result.rowcount != 1:
            raise control.ResourceNotFound(f"Webhook '{name}' has no delivery {delivery_id}")
        await queries.notify(conn, HOOKS_NOTICE)


# ---------------------------------------------------------------------------- status changes


@dataclass(frozen=True, slots=True)
class StatusChange:
    """One execution status change, as the decision that made it saw it."""

    execution_id: str
    state_machine: str  # the state machine's name (webhooks filter on it)
    status: str
    body: str  # the event, JSON


def _millis(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp() * 1000)


def status_event(
    *,
    execution_arn: str,
    state_machine_arn: str,
    status: str,
    at: datetime,
    start: datetime,
    input_value: JSON,
    output: JSON = None,
    error: str | None = None,
    cause: str | None = None,
    redrive_count: int = 0,
    redrive_date: datetime | None = None,
) -> str:
    """The event AWS would send to EventBridge for this status change, as JSON."""
    parts = execution_arn.split(":")
    closed = status != "RUNNING"
    detail: dict[str, JSON] = {
        "executionArn": execution_arn,
        "stateMachineArn": state_machine_arn,
        "name": parts[-1],
        "status": status,
        "startDate": _millis(start),
        "stopDate": _millis(at) if closed else None,
        "input": json.dumps(input_value, ensure_ascii=False, separators=(",", ":")),
        "output": (
            json.dumps(output, ensure_ascii=False, separators=(",", ":"))
            if status == "SUCCEEDED"
            else None
        ),
        "inputDetails": {"included": True},
        "outputDetails": {"included": True} if status == "SUCCEEDED" else None,
        "error": error,
        "cause": cause,
        "redriveCount": redrive_count,
    }
    if redrive_date is not None:
        detail["redriveDate"] = _millis(redrive_date)
    return json.dumps(
        {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": DETAIL_TYPE,
            "source": "aws.states",
            "account": parts[4] if len(parts) > 4 else "",
            "time": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": parts[3] if len(parts) > 3 else "",
            "resources": [execution_arn],
            "detail": detail,
        },
        ensure_ascii=False,
        separators=(",", ":"),
    )


def changes_of(
    execution_id: str,
    state_machine: str,
    state_machine_arn: str,
    execution: Execution,
    new_events: Sequence[Event],
) -> list[StatusChange]:
    """The status changes a decision's new events make (a decision can make several: a
    short workflow starts and succeeds in one), in order."""
    info = execution.info
    changes: list[StatusChange] = []
    if info is None:
        return changes
    redriven: datetime | None = None
    for event in new_events:
        status = STATUS_OF_EVENT.get(event.type)
        if status is None or event.scope:
            continue
        if event.type == "ExecutionRedriven":
            redriven = event.timestamp
        elif redriven is None and info.redrive_count:
            redriven = _last_redrive(execution.events)
        details = event.details
        body = status_event(
            execution_arn=info.execution_arn,
            state_machine_arn=state_machine_arn,
            status=status,
            at=event.timestamp,
            start=info.start_time,
            input_value=info.input,
            output=details.get("output"),
            error=details.get("error"),
            cause=details.get("cause"),
            redrive_count=int(details.get("redriveCount", info.redrive_count)),
            redrive_date=redriven,
        )
        changes.append(StatusChange(execution_id, state_machine, status, body))
    return changes


def _last_redrive(events: Sequence[Event]) -> datetime | None:
    for event in reversed(events):
        if event.type == "ExecutionRedriven":
            return event.timestamp
    return None


async def record(conn: AsyncConnection, changes: Sequence[StatusChange], at: datetime) -> int:
    """Write the deliveries of ``changes`` (in their order) for every enabled webhook that
    covers them, in the caller's transaction; how many."""
    if not changes:
        return 0
    subscribed = (
        await conn.execute(
            sa.select(webhooks.c.id, webhooks.c.state_machine, webhooks.c.statuses).where(
                webhooks.c.enabled.is_(True)
            )
        )
    ).all()
    if not subscribed:
        return 0
    rows = [
        {
            "webhook_id": webhook_id,
            "execution_id": change.execution_id,
            "body": change.body,
            "status": "PENDING",
            "attempts": 0,
            "next_attempt_at": at,
            "created_at": at,
        }
        for change in changes
        for webhook_id, machine, statuses in subscribed
        if (machine is None or machine == change.state_machine)
        and (not statuses or change.status in statuses.split(","))
    ]
    if rows:
        # One INSERT per row keeps the ids in the order of the changes (executemany may not).
        for row in rows:
            await conn.execute(deliveries.insert().values(row))
        await queries.notify(conn, HOOKS_NOTICE)
    return len(rows)


# ---------------------------------------------------------------------------- signing


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The ``Statewright-Signature`` header of ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(secret: str, header: str, body: bytes, tolerance: float = 300.0) -> bool:
    """Whether ``header`` signs ``body`` with ``secret`` and is at most ``tolerance`` seconds
    from now (the receiver's side; the README shows the same in a few lines)."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(fields["t"])
    except (KeyError, ValueError):
        return False
    if abs(time.time() - timestamp) > tolerance:
        return False
    expected = signature(secret, timestamp, body).rpartition("v1=")[2]
    return hmac.compare_digest(expected, fields.get("v1", ""))


# ---------------------------------------------------------------------------- delivering


@dataclass
class Deliverer:
    """Sends this worker's share of due deliveries, ``concurrency`` at a time."""

    engine: AsyncEngine
    outbound: Outbound
    worker_id: str
    sealer: Sealer | None
    concurrency: int = 16
    timeout: float = 10.0
    retry_base: float = 1.0  # seconds before the first retry; doubles up to an hour
    max_age: float = 86400.0  # then the delivery is dead-lettered
    _client: Client | None = None
    _running: set[asyncio.Task[None]] = field(default_factory=set)

    async def run_some(self) -> int:
        """Start up to the free capacity of due deliveries; how many started."""
        free = self.concurrency - len(self._running)
        if free <= 0:
            return 0
        claimed = await self._claim(free)
        for item in claimed:
            task = asyncio.create_task(self._send(*item))
            self._running.add(task)
            task.add_done_callback(self._running.discard)
        return len(claimed)

    async def seconds_to_next(self) -> float | None:
        """Until the earliest pending delivery is due (None: none is pending)."""
        d = deliveries
        async with self.engine.connect() as conn:
            at = await queries.now(conn)
            earliest = (
                await conn.execute(
                    sa.select(sa.func.min(d.c.next_attempt_at)).where(d.c.status == "PENDING")
                )
            ).scalar()
        if earliest is None:
            return None
        return max(float((queries.aware(earliest) - at).total_seconds()), 0.0)

    async def close(self) -> None:
        """Let the deliveries in flight finish, then close the connections."""
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()

    async def _claim(self, limit: int) -> list[tuple[int, str, str, str, bytes, int, datetime]]:
        d = deliveries
        earlier = deliveries.alias("earlier")
        async with self.engine.begin() as conn:
            at = await queries.now(conn)
            due = sa.or_(
                sa.and_(d.c.status == "PENDING", d.c.next_attempt_at <= at),
                sa.and_(d.c.status == "RUNNING", d.c.claim_expires_at < at),
            )
            # In order per webhook and execution: nothing earlier still on its way.
            first = ~sa.exists().where(
                earlier.c.webhook_id == d.c.webhook_id,
                earlier.c.execution_id == d.c.execution_id,
                earlier.c.id < d.c.id,
                earlier.c.status.in_(("PENDING", "RUNNING")),
            )
            query = (
                sa.select(
                    d.c.id,
                    d.c.execution_id,
                    d.c.body,
                    d.c.attempts,
                    d.c.created_at,
                    webhooks.c.url,
                    webhooks.c.secret_sealed,
                )
                .join(webhooks, webhooks.c.id == d.c.webhook_id)
                .where(due, first)
                .order_by(d.c.id)
                .limit(limit)
            )
            if queries.is_postgres(conn):
                query = query.with_for_update(of=d, skip_locked=True)
            rows = (await conn.execute(query)).all()
            if not rows:
                return []
            await conn.execute(
                d.update()
                .where(d.c.id.in_([row.id for row in rows]))
                .values(
                    status="RUNNING",
                    claimed_by=self.worker_id,
                    claim_expires_at=at + timedelta(seconds=self.timeout + 30),
                )
            )
        claimed = []
        for row in rows:
            try:
                if self.sealer is None:
                    raise ServerKeyError("this worker has no STATEWRIGHT_SECRET_KEY")
                secret = self.sealer.open(row.secret_sealed)
            except ServerKeyError as exc:
                # Not the receiver's fault: leave it to a worker that can open the secret.
                log.error("webhook delivery %d: cannot sign it: %s", row.id, exc)
                continue
            claimed.append(
                (
                    row.id,
                    row.execution_id,
                    row.url,
                    secret,
                    row.body.encode(),
                    row.attempts,
                    queries.aware(row.created_at),
                )
            )
        return claimed

    async def _send(
        self,
        delivery_id: int,
        execution_id: str,
        url: str,
        secret: str,
        body: bytes,
        attempts: int,
        created_at: datetime,
    ) -> None:
        logs.EXECUTION.set(execution_id)  # this task's own context
        if self._client is None:
            self._client = Client(self.concurrency)
        code: int | None = None
        error: str | None = None
        try:
            target = await self.outbound.pin(url)
            timestamp = int(time.time())
            answer = await self._client.send(
                "POST",
                yarl.URL(target.url),
                [
                    ("Host", target.host_header),
                    ("Content-Type", "application/json"),
                    ("User-Agent", "Statewright-Webhooks"),
                    ("Statewright-Delivery", str(delivery_id)),
                    ("Statewright-Signature", signature(secret, timestamp, body)),
                ],
                body,
                self.timeout,
                target.server_hostname,
                shown=url,
                read=False,  # the status is the answer
            )
            code = answer.status
            if not 200 <= code < 300:
                error = f"the receiver answered {code}"
        except TaskFailure as exc:  # refused, not resolved, no answer, or the answer unread
            error = f"{exc.error}: {exc.cause}"
        try:
            await self._record(delivery_id, attempts + 1, created_at, code, error)
        except Exception as exc:  # the database is away: the lease runs out, it goes again
            log.warning("webhook delivery %d: outcome not recorded (%s)", delivery_id, exc)

    async def _record(
        self,
        delivery_id: int,
        attempts: int,
        created_at: datetime,
        code: int | None,
        error: str | None,
    ) -> None:
        d = deliveries
        async with self.engine.begin() as conn:
            at = await queries.now(conn)
            values: dict[str, Any] = {
                "attempts": attempts,
                "last_status_code": code,
                "last_error": error[:MAX_ERROR] if error else None,
                "claimed_by": None,
                "claim_expires_at": None,
            }
            if error is None:
                metrics.WEBHOOK_DELIVERIES.labels("delivered").inc()
                values.update(status="DELIVERED", delivered_at=at)
            else:
                delay = min(self.retry_base * 2 ** (attempts - 1), 3600.0)
                delay *= 0.8 + 0.4 * random.random()  # receivers are not hit in step
                retry_at = at + timedelta(seconds=delay)
                dead = retry_at - created_at > timedelta(seconds=self.max_age)
                values.update(status="DEAD" if dead else "PENDING", next_attempt_at=retry_at)
                metrics.WEBHOOK_DELIVERIES.labels("dead" if dead else "failed").inc()
                log.warning(
                    "webhook delivery %d, attempt %d: %s; %s",
                    delivery_id,
                    attempts,
                    error,
                    "dead-lettered" if dead else f"retrying in {delay:.1f} s",
                )
            await conn.execute(
                d.update()
                .where(d.c.id == delivery_id, d.c.claimed_by == self.worker_id)
                .values(**values)
            )
            if error is None:
                # The next delivery of the same execution may go now.
                await queries.notify(conn, HOOKS_NOTICE)
