"""The history viewer's read API under /api/v1 (same auth and error shape as the REST API).

Included ahead of the REST router: ``/executions/count``, ``/executions/bulk/...`` and
``/state-machines/summary`` must win over ``/executions/{execution_id}`` and
``/state-machines/{name}``.

Routes: machine summaries, versions, definition validation with positions, execution search
with keyset pages (``Next-Cursor``), counts, history pages and download, per-state
aggregates, timeline, state at an event (time travel), a live event stream (SSE), and bulk
stop/redrive. Every answer is a read model over the history; none is stored.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncEngine

from service import control, positions, readmodel
from service.api import rest
from service.api.rest import EngineDep, ExecutionPublic
from service.db import reads
from statemachine.definition import StateMachine, loads
from statemachine.errors import DefinitionError
from statemachine.events import Event
from statemachine.validate import validate

JSON = Any
router = APIRouter(prefix="/api/v1", dependencies=[Depends(rest._authorized)])

COUNT_CAP = 10_000
HISTORY_PAGE = 1000
STREAM_POLL_SECONDS = 0.25
STREAM_HEARTBEAT_SECONDS = 15.0
TIMELINE_DEFAULT, TIMELINE_MAX = 2000, 10_000


# ---------------------------------------------------------------------------- state machines


class MachineSummaryPublic(BaseModel):
    """A state machine, its latest version, and its executions counted by status."""

    name: str
    arn: str
    version: int
    description: str
    created_at: datetime
    status: str
    counts: dict[str, int]


class VersionPublic(BaseModel):
    """One immutable version of a state machine."""

    version: int
    created_at: datetime
    definition: dict[str, JSON]


@router.get("/state-machines/summary")
async def machine_summaries(engine: EngineDep) -> list[MachineSummaryPublic]:
    """Every state machine with its latest version and its executions counted by status
    (RUNNING, SUCCEEDED, FAILED, TIMED_OUT, ABORTED, PENDING_REDRIVE; zeros included)."""
    async with engine.connect() as conn:
        found = await reads.machine_summaries(conn)
    return [
        MachineSummaryPublic(
            name=m.name,
            arn=m.arn,
            version=m.version,
            description=m.description,
            created_at=m.created_at,
            status=m.status,
            counts=m.counts,
        )
        for m in found
    ]


@router.get("/state-machines/{name}/versions")
async def list_versions(engine: EngineDep, name: str) -> list[VersionPublic]:
    """Every version of a state machine, newest first."""
    return [
        VersionPublic(
            version=info.version,
            created_at=info.updated_at,
            definition=json.loads(info.definition),
        )
        for info in await control.list_versions(engine, name)
    ]


@router.get("/state-machines/{name}/versions/{version}")
async def describe_version(
    engine: EngineDep, name: str, version: Annotated[int, Path(ge=1)]
) -> VersionPublic:
    """One version of a state machine (404 ResourceNotFound when it has no such version)."""
    info = await control.describe_state_machine(engine, name, version)
    return VersionPublic(
        version=info.version, created_at=info.updated_at, definition=json.loads(info.definition)
    )


# ---------------------------------------------------------------------------- validation


class ValidateRequest(BaseModel):
    """A definition as JSON text (text, so that diagnostics can be placed in it)."""

    definition: str


class DiagnosticPublic(BaseModel):
    """A problem of the definition: ``location`` is a JSON pointer, ``line``/``column``
    (1-based, in characters) where it points in the text, null when unknown."""

    severity: str
    code: str
    message: str
    location: str
    line: int | None
    column: int | None


class ValidateResult(BaseModel):
    """``result`` FAIL when any diagnostic is an ERROR, else OK."""

    result: str
    diagnostics: list[DiagnosticPublic]


@router.post("/validate")
async def validate_definition(body: ValidateRequest) -> ValidateResult:
    """Every diagnostic of a definition, with its line and column in the text: an object
    member at its key, an array element or the whole document ("/") at its value. When the
    text is not JSON, the diagnostic is placed where the parser stopped."""
    text = body.definition
    found = validate(text)
    where = positions.locate(text, {d.location for d in found})
    broken = positions.json_error_position(text)
    out = []
    for d in found:
        place = where.get(d.location)
        if d.code == "INVALID_JSON_DESCRIPTION" and broken is not None:
            place = broken
        out.append(
            DiagnosticPublic(
                severity=d.severity,
                code=d.code,
                message=d.message,
                location=d.location,
                line=place[0] if place else None,
                column=place[1] if place else None,
            )
        )
    result = "FAIL" if any(d.severity == "ERROR" for d in found) else "OK"
    return ValidateResult(result=result, diagnostics=out)


# ---------------------------------------------------------------------------- executions


class ExecutionListedPublic(ExecutionPublic):
    """An execution in a listing: its summary and how many times it was redriven."""

    redrive_count: int


class ExecutionCount(BaseModel):
    """How many executions match; ``capped``: there are more than ``count``."""

    count: int
    capped: bool


def _when(value: str | None, name: str) -> datetime | None:
    if value is None or value == "":
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise control.ValidationException(
            f"{name} must be an ISO 8601 date and time, e.g. 2026-01-31T12:00:00Z: {value!r}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # dates without an offset are UTC
    return moment.astimezone(UTC)


def encode_cursor(started_at: datetime, execution_id: str) -> str:
    """The opaque keyset cursor after an execution: base64url of [started_at, id]."""
    text = json.dumps([started_at.astimezone(UTC).isoformat(), execution_id])
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The (started_at, id) of a cursor; InvalidToken for anything this API did not make."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        started, execution_id = json.loads(raw)
        moment = datetime.fromisoformat(started)
        if not isinstance(execution_id, str) or len(execution_id) > 36 or moment.tzinfo is None:
            raise ValueError("not a cursor")
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise control.InvalidToken(f"Invalid pagination cursor: {cursor[:100]!r}") from None
    return moment.astimezone(UTC), execution_id


async def _filter(
    engine: AsyncEngine,
    state_machine: str | None,
    status: str | None,
    name_prefix: str | None,
    started_after: str | None,
    started_before: str | None,
    redrive_count: int | None,
    q: str | None,
    stuck_seconds: float | None,
) -> reads.ExecutionFilter:
    if status is not None and status not in reads.STATUSES:
        raise control.ValidationException(
            f"status must be one of {', '.join(reads.STATUSES)}: {status!r}"
        )
    machine_id = None
    if state_machine is not None:
        async with engine.connect() as conn:
            machine_id = (await control.state_machine_row(conn, state_machine, True)).id
    return reads.ExecutionFilter(
        state_machine_id=machine_id,
        status=status,
        name_prefix=name_prefix or None,
        started_after=_when(started_after, "started_after"),
        started_before=_when(started_before, "started_before"),
        redrive_count=redrive_count,
        q=q or None,
        stuck_seconds=stuck_seconds,
    )


class _Filters:
    """The query parameters shared by GET /executions and /executions/count."""

    def __init__(
        self,
        state_machine: str | None = None,
        status: str | None = None,
        name_prefix: Annotated[str | None, Query(max_length=80)] = None,
        started_after: Annotated[str | None, Query(description="ISO 8601, inclusive")] = None,
        started_before: Annotated[str | None, Query(description="ISO 8601, exclusive")] = None,
        redrive_count: Annotated[
            int | None, Query(ge=0, description="redriven at least this many times")
        ] = None,
        q: Annotated[
            str | None,
            Query(max_length=256, description="text in the input or output JSON, any case"),
        ] = None,
        stuck_seconds: Annotated[
            float | None,
            Query(ge=0, description="RUNNING, with a task unanswered for over N seconds"),
        ] = None,
    ) -> None:
        self.args = (
            state_machine,
            status,
            name_prefix,
            started_after,
            started_before,
            redrive_count,
            q,
            stuck_seconds,
        )


FiltersDep = Annotated[_Filters, Depends()]


def _listed(item: reads.ExecutionListed) -> dict[str, JSON]:
    return rest._ex(item, ExecutionListedPublic)


@router.get("/executions", response_model=list[ExecutionListedPublic])
async def list_executions(
    engine: EngineDep,
    filters: FiltersDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = None,
) -> Response:
    """Executions, newest first (by start, then id), filtered. When the page is full, the
    ``Next-Cursor`` header holds the cursor of the next page: pass it back as ``cursor``
    with the same filters. ``stuck_seconds``: RUNNING executions with a task (an HTTP,
    container or Lambda call in flight, an activity, a callback waiting for its token)
    scheduled more than that many seconds ago and not answered yet."""
    selected = await _filter(engine, *filters.args)
    after = decode_cursor(cursor) if cursor else None
    async with engine.connect() as conn:
        found = await reads.list_executions(conn, selected, limit, after)
    headers = {}
    if len(found) == limit:
        headers["Next-Cursor"] = encode_cursor(found[-1].started_at, found[-1].id)
    return JSONResponse([_listed(item) for item in found], headers=headers)


@router.get("/executions/count")
async def count_executions(engine: EngineDep, filters: FiltersDep) -> ExecutionCount:
    """How many executions GET /executions would list with these filters, counted up to
    10,000 (``capped``: more than that)."""
    selected = await _filter(engine, *filters.args)
    async with engine.connect() as conn:
        count, capped = await reads.count_executions(conn, selected, COUNT_CAP)
    return ExecutionCount(count=count, capped=capped)


# ---------------------------------------------------------------------------- bulk actions


class BulkRequest(BaseModel):
    """Executions (ids or ARNs) to act on, each independently."""

    ids: list[str] = Field(min_length=1, max_length=1000)
    error: str | None = Field(default=None, max_length=256)
    cause: str | None = Field(default=None, max_length=32768)


class BulkResult(BaseModel):
    """The outcome for one execution: ``ok``, or the error's ``code`` and ``message``."""

    id: str
    ok: bool
    code: str | None = None
    message: str | None = None


class BulkResults(BaseModel):
    """One result per requested id, in the request's order."""

    results: list[BulkResult]


BULK_CONCURRENCY = 4


async def _each(ids: list[str], act: Callable[[str], Awaitable[None]]) -> BulkResults:
    gate = asyncio.Semaphore(BULK_CONCURRENCY)

    async def one(ref: str) -> BulkResult:
        async with gate:
            try:
                await act(ref)
            except control.ServiceError as exc:
                return BulkResult(id=ref, ok=False, code=exc.code, message=str(exc))
        return BulkResult(id=ref, ok=True)

    return BulkResults(results=list(await asyncio.gather(*(one(ref) for ref in ids))))


@router.post("/executions/bulk/stop")
async def bulk_stop(engine: EngineDep, body: BulkRequest) -> BulkResults:
    """Stop up to 1,000 executions; each gets its own result (ExecutionNotRunning for one
    that had closed, ExecutionDoesNotExist for an unknown id)."""

    async def stop(ref: str) -> None:
        if (await control.describe_execution(engine, ref)).status != "RUNNING":
            raise control.ExecutionNotRunning(f"Execution is not running: '{ref}'")
        await control.stop_execution(engine, ref, body.error, body.cause)

    return await _each(body.ids, stop)


@router.post("/executions/bulk/redrive")
async def bulk_redrive(engine: EngineDep, body: BulkRequest) -> BulkResults:
    """Redrive up to 1,000 executions; each gets its own result (ExecutionNotRedrivable for
    one that is not FAILED, TIMED_OUT or ABORTED)."""

    async def redrive(ref: str) -> None:
        await control.redrive_execution(engine, ref)

    return await _each(body.ids, redrive)


# ---------------------------------------------------------------------------- history


def _shaped(event: Event) -> dict[str, JSON]:
    shaped = event.to_aws()
    shaped["timestamp"] = event.timestamp.isoformat()
    return shaped


async def _resolve(engine: AsyncEngine, ref: str) -> tuple[str, str, int]:
    """(id, status, number of events) of an execution; ExecutionDoesNotExist."""
    async with engine.connect() as conn:
        execution_id = await control.execution_id(conn, ref)
        head = await reads.execution_head(conn, execution_id)
    if head is None:
        raise control.ExecutionDoesNotExist(f"Execution Does Not Exist: '{ref}'")
    return execution_id, head[0], head[1]


@router.get("/executions/{execution_id}/history", response_model=list[dict[str, JSON]])
async def get_history(
    engine: EngineDep,
    execution_id: str,
    after: Annotated[int, Query(ge=0)] = 0,
    before: Annotated[int | None, Query(ge=1)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 1000,
    reverse: bool = False,
) -> Response:
    """History events (AWS-shaped, plus ``timestamp``) with ``after < id < before``, oldest
    first, or newest first with ``reverse``. When the page is full, ``Next-Cursor`` holds
    the id to continue from: pass it as ``after`` (or, with ``reverse``, as ``before``)."""
    async with engine.connect() as conn:
        found = await control.execution_id(conn, execution_id)
        events = await reads.history_page(
            conn, found, after=after, before=before, limit=limit, reverse=reverse
        )
    headers = {"Next-Cursor": str(events[-1].id)} if len(events) == limit else {}
    return JSONResponse([_shaped(e) for e in events], headers=headers)


@router.get("/executions/{execution_id}/history/download")
async def download_history(engine: EngineDep, execution_id: str) -> Response:
    """The whole history as one JSON array (an attachment), streamed page by page."""
    found, _, _ = await _resolve(engine, execution_id)

    async def body() -> AsyncIterator[bytes]:
        yield b"["
        after, first = 0, True
        while True:
            async with engine.connect() as conn:
                events = await reads.history_page(conn, found, after=after, limit=HISTORY_PAGE)
            for event in events:
                yield (b"" if first else b",\n") + json.dumps(_shaped(event)).encode()
                first = False
            if len(events) < HISTORY_PAGE:
                break
            after = events[-1].id
        yield b"]\n"

    return StreamingResponse(
        body(),
        media_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="{found}-history.json"'},
    )


# ---------------------------------------------------------------------------- read models


async def _definition(engine: AsyncEngine, execution_id: str) -> StateMachine:
    info = await control.state_machine_for_execution(engine, execution_id)
    try:
        return loads(info.definition)
    except DefinitionError as exc:
        raise control.HistoryNotReplayable(f"The definition does not parse: {exc}") from None


async def _fold(
    engine: AsyncEngine, execution_id: str, span_limit: int = 0
) -> readmodel.HistoryFold:
    found, _, _ = await _resolve(engine, execution_id)
    machine = await _definition(engine, found)
    async with engine.connect() as conn:
        events = await reads.full_history(conn, found)
    fold = readmodel.HistoryFold(machine, span_limit)
    fold.fold(events)
    return fold


@router.get("/executions/{execution_id}/state-machine")
async def execution_state_machine(engine: EngineDep, execution_id: str) -> dict[str, JSON]:
    """The state machine version an execution runs (``{name, arn, version, definition}``):
    the viewer draws its graph from this, which may be older than the latest version."""
    info = await control.state_machine_for_execution(engine, execution_id)
    definition: JSON = json.loads(info.definition)
    return {"name": info.name, "arn": info.arn, "version": info.version, "definition": definition}


@router.get("/executions/{execution_id}/states")
async def execution_states(engine: EngineDep, execution_id: str) -> dict[str, JSON]:
    """Per-state aggregates for colouring the graph, folded from the history: every state
    of the definition by path (see ``path_scheme``) with ``status`` (not_reached, running,
    succeeded, failed, caught, retried), counts, first/last times, the last error, and for
    a Map its iterations (total, succeeded, failed, running, aborted, failed_indexes: the
    first 100). A state visited in several iterations or branches shows the most notable
    outcome: running, then failed, caught, retried, succeeded. A state cut short (its
    frame failed or was aborted, the execution stopped) counts as failed. ``transitions``:
    the edges taken (``from``, ``to``: paths, or ``<prefix>#start`` and ``<prefix>#end`` of
    a (sub) state machine; ``kind``: next, catch or fail; ``count``), each a state's exit
    followed by the next entry in the same frame."""
    fold = await _fold(engine, execution_id)
    return {
        "path_scheme": readmodel.PATH_SCHEME,
        "status": fold.status,
        "states": fold.states(),
        "transitions": fold.transitions(),
    }


@router.get("/executions/{execution_id}/timeline")
async def execution_timeline(
    engine: EngineDep,
    execution_id: str,
    limit: Annotated[int, Query(ge=1, le=TIMELINE_MAX)] = TIMELINE_DEFAULT,
) -> dict[str, JSON]:
    """Spans for a Gantt chart: each entry into a state (one per Map iteration), in the
    order entered, the first ``limit`` of them (``truncated`` when there are more; ``total``
    counts them all). ``exited_at`` is null while running or when cut short; ``iteration``
    is the index of the innermost Map iteration, null outside Maps."""
    fold = await _fold(engine, execution_id, span_limit=limit)
    spans = fold.timeline()
    return {"spans": spans, "truncated": fold.visits > len(spans), "total": fold.visits}


@router.get("/executions/{execution_id}/state-at/{event_id}")
async def state_at(engine: EngineDep, execution_id: str, event_id: int) -> Response:
    """Time travel: the execution replayed by the engine up to and including ``event_id``:
    ``{event_id, event_type, state (path or null), input, output, variables: {top, scope},
    status}``. 400 InvalidEventId for an id outside 1..number of events."""
    found, _, count = await _resolve(engine, execution_id)
    if not 1 <= event_id <= count:
        raise control.InvalidEventId(
            f"Event {event_id} is not in the history of '{execution_id}' (events 1 to {count})"
        )
    machine = await _definition(engine, found)
    async with engine.connect() as conn:
        events = await reads.full_history(conn, found, upto=event_id)
    try:
        answer = readmodel.state_at(machine, events)
    except readmodel.ReplayFailed as exc:
        raise control.HistoryNotReplayable(str(exc)) from None
    return JSONResponse(answer)


# ---------------------------------------------------------------------------- live stream


def _sse(kind: str, data: JSON, event_id: int | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {kind}\ndata: {json.dumps(data)}\n\n".encode()


@router.get("/executions/{execution_id}/stream")
async def stream(
    request: Request,
    engine: EngineDep,
    execution_id: str,
    after: Annotated[int | None, Query(ge=0)] = None,
) -> Response:
    """Server-sent events: ``status`` ({status, events}) first, then each history event as
    it is appended (``history``, the AWS-shaped event; its SSE id is the event id), a
    ``status`` event on each status change, and ``end`` once the execution has closed and
    every event was sent. A comment line every 15 s keeps proxies from closing it. Resume
    with ``after`` (or the Last-Event-ID header) to get only the events after that id."""
    found, _, _ = await _resolve(engine, execution_id)
    resume = after
    if resume is None:
        last = request.headers.get("last-event-id", "")
        resume = int(last) if last.isdigit() else 0

    async def body() -> AsyncIterator[bytes]:
        sent, status = resume, None
        loop = asyncio.get_running_loop()
        quiet_since = loop.time()
        while not await request.is_disconnected():
            async with engine.connect() as conn:
                head = await reads.execution_head(conn, found)
                events = await reads.history_page(conn, found, after=sent, limit=HISTORY_PAGE)
            if head is None:
                return  # purged
            if status is None:
                status = head[0]
                yield _sse("status", {"status": status, "events": head[1]})
            for event in events:
                yield _sse("history", _shaped(event), event.id)
                sent = event.id
            if head[0] != status:
                status = head[0]
                yield _sse("status", {"status": status, "events": head[1]})
            if events:
                quiet_since = loop.time()
            # The events were read after the status: a closed execution's are all in.
            if status != "RUNNING" and len(events) < HISTORY_PAGE:
                yield _sse("end", {"status": status})
                return
            if len(events) == HISTORY_PAGE:
                continue  # catching up: no pause
            if loop.time() - quiet_since >= STREAM_HEARTBEAT_SECONDS:
                yield b": keep-alive\n\n"
                quiet_since = loop.time()
            await asyncio.sleep(STREAM_POLL_SECONDS)

    return StreamingResponse(
        body(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
