"""The REST API under /api/v1 (FastAPI; OpenAPI at /docs)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncEngine

from service import connections, control, schedules
from service.auth import Authenticator
from service.sealing import Sealer

JSON = Any
# Shown in the OpenAPI document (and /docs's Authorize button); the check itself is _authorized,
# which also takes HTTP Basic.
_BEARER = HTTPBearer(
    auto_error=False,
    description="An API key as `ID:SECRET` (statewright keys create); HTTP Basic works too.",
)


async def _authorized(
    request: Request,
    _: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)],
) -> None:
    auth: Authenticator | None = request.app.state.auth
    if auth is not None:
        await auth.rest(request.headers.get("authorization"))


router = APIRouter(prefix="/api/v1", dependencies=[Depends(_authorized)])
# Callbacks are authorized by the task token in their URL alone.
callbacks = APIRouter(prefix="/api/v1")


def _engine(request: Request) -> AsyncEngine:
    engine: AsyncEngine = request.app.state.engine
    return engine


EngineDep = Annotated[AsyncEngine, Depends(_engine)]


class StateMachineCreate(BaseModel):
    """Upload a definition: a new state machine, or a new version of an existing one."""

    name: str = Field(min_length=1, max_length=80)
    definition: dict[str, JSON] | str


class StateMachinePublic(BaseModel):
    """A state machine and its latest version."""

    name: str
    arn: str
    version: int
    definition: dict[str, JSON]
    created_at: datetime
    status: str = "ACTIVE"  # DELETING: deleted, with executions still running
    type: str = "STANDARD"
    description: str = ""
    tags: dict[str, str] = Field(default_factory=dict)


class StateMachinePut(BaseModel):
    """The state machine as it should be: a new version only when the definition differs as
    JSON; description and tags replaced when given (absent: unchanged)."""

    definition: dict[str, JSON] | str
    type: str | None = None  # STANDARD or EXPRESS; an existing one's cannot change
    description: str | None = Field(default=None, max_length=256)
    tags: dict[str, str] | None = None


class StateMachinePutResult(StateMachinePublic):
    """The state machine after a PUT, and whether it published a new version."""

    published: bool


class ExecutionCreate(BaseModel):
    """Start an execution."""

    input: JSON = None
    name: str | None = Field(default=None, max_length=80)


class ExecutionPublic(BaseModel):
    """An execution's summary."""

    id: str
    arn: str
    name: str
    state_machine_arn: str
    status: str
    input: JSON
    output: JSON = None
    error: str | None = None
    cause: str | None = None
    started_at: datetime
    stopped_at: datetime | None = None
    events: int
    redrive_count: int = 0


class ExecutionStop(BaseModel):
    """Stop an execution."""

    error: str | None = Field(default=None, max_length=256)
    cause: str | None = Field(default=None, max_length=32768)


class TaskFailure(BaseModel):
    """A failed callback."""

    error: str | None = Field(default=None, max_length=256)
    cause: str | None = Field(default=None, max_length=32768)


def _sm(info: control.StateMachineInfo) -> StateMachinePublic:
    return StateMachinePublic(
        name=info.name,
        arn=info.arn,
        version=info.version,
        definition=json.loads(info.definition),
        created_at=info.created_at,
        status=info.status,
        type=info.type,
        description=info.description,
        tags=info.tags,
    )


def _ex(summary: Any, model: type[BaseModel] = ExecutionPublic) -> dict[str, JSON]:
    """An execution (any object with the model's fields as attributes) as a JSON answer."""
    out: dict[str, JSON] = {field: getattr(summary, field) for field in model.model_fields}
    for field in ("started_at", "stopped_at"):
        if out[field] is not None:
            out[field] = out[field].isoformat()
    return out


def _payloads(content: JSON, status_code: int = 200) -> Response:
    """An answer holding execution data (inputs, outputs, event details) as JSON, written by
    the standard encoder: the framework's own serializer refuses data nested more than a few
    hundred levels, which an execution may legitimately hold (the route's response_model
    still documents the shape)."""
    return JSONResponse(content, status_code=status_code)


@router.post("/state-machines", status_code=201)
async def upload(engine: EngineDep, body: StateMachineCreate) -> StateMachinePublic:
    """Create a state machine, or publish a new version when the definition changed."""
    try:
        info = await control.create_state_machine(engine, body.name, body.definition)
    except control.StateMachineAlreadyExists:
        info = await control.update_state_machine(engine, body.name, body.definition)
    return _sm(info)


@router.put("/state-machines/{name}")
async def put_state_machine(
    engine: EngineDep, name: str, body: StateMachinePut
) -> StateMachinePutResult:
    """Create or update a state machine idempotently (what `statewright apply` uses)."""
    info, published = await control.put_state_machine(
        engine,
        name,
        body.definition,
        kind=body.type,
        description=body.description,
        tags=body.tags,
    )
    return StateMachinePutResult(**_sm(info).model_dump(), published=published)


@router.get("/state-machines")
async def list_state_machines(engine: EngineDep) -> list[StateMachinePublic]:
    """Every state machine."""
    return [_sm(info) for info in await control.list_state_machines(engine)]


@router.get("/state-machines/{name}")
async def describe_state_machine(engine: EngineDep, name: str) -> StateMachinePublic:
    """One state machine."""
    return _sm(await control.describe_state_machine(engine, name))


@router.delete("/state-machines/{name}", status_code=202)
async def delete_state_machine(engine: EngineDep, name: str) -> dict[str, str]:
    """Delete a state machine: running executions finish (status DELETING until then), no new
    ones start; the name can be used again afterwards. Deleting what is not there succeeds."""
    return {"status": await control.delete_state_machine(engine, name)}


@router.post("/state-machines/{name}/executions", status_code=201, response_model=ExecutionPublic)
async def start(engine: EngineDep, name: str, body: ExecutionCreate) -> Response:
    """Start an execution (a repeated name with the same input returns the same execution)."""
    summary = await control.start_execution(engine, name, body.input, body.name)
    return _payloads(_ex(summary), 201)


@router.get("/executions/{execution_id}", response_model=ExecutionPublic)
async def describe_execution(engine: EngineDep, execution_id: str) -> Response:
    """One execution."""
    return _payloads(_ex(await control.describe_execution(engine, execution_id)))


@router.post("/executions/{execution_id}/stop", status_code=202)
async def stop(
    engine: EngineDep, execution_id: str, body: ExecutionStop | None = None
) -> dict[str, str]:
    """Stop an execution (ABORTED at its next decision)."""
    body = body or ExecutionStop()
    at = await control.stop_execution(engine, execution_id, body.error, body.cause)
    return {"stop_requested_at": at.isoformat()}


@router.post("/executions/{execution_id}/redrive", status_code=202, response_model=ExecutionPublic)
async def redrive(engine: EngineDep, execution_id: str) -> Response:
    """Continue a FAILED, TIMED_OUT or ABORTED execution from the state it stopped in."""
    await control.redrive_execution(engine, execution_id)
    return _payloads(_ex(await control.describe_execution(engine, execution_id)), 202)


@callbacks.post("/callbacks/{token}/success", status_code=202)
async def callback_success(
    engine: EngineDep, token: str, output: Annotated[JSON, Body()] = None
) -> dict[str, str]:
    """Complete a waiting task with its output (any JSON)."""
    await control.send_task_success(engine, token, output)
    return {"status": "accepted"}


@callbacks.post("/callbacks/{token}/failure", status_code=202)
async def callback_failure(engine: EngineDep, token: str, body: TaskFailure) -> dict[str, str]:
    """Fail a waiting task."""
    await control.send_task_failure(engine, token, body.error, body.cause)
    return {"status": "accepted"}


@callbacks.post("/callbacks/{token}/heartbeat", status_code=202)
async def callback_heartbeat(engine: EngineDep, token: str) -> dict[str, str]:
    """Keep a waiting task alive."""
    await control.send_task_heartbeat(engine, token)
    return {"status": "accepted"}


# ---------------------------------------------------------------------------- connections


class ConnectionCreate(BaseModel):
    """A connection for HTTP tasks: BASIC {username, password}, API_KEY {name, value} or
    OAUTH_CLIENT_CREDENTIALS {tokenEndpoint, clientId, clientSecret, scope?}."""

    name: str = Field(min_length=1, max_length=64)
    type: str
    parameters: dict[str, JSON]


class ConnectionPublic(BaseModel):
    """A connection without its secret."""

    name: str
    arn: str
    type: str
    parameters: dict[str, str]
    created_at: datetime


def _connection(info: connections.ConnectionInfo) -> ConnectionPublic:
    return ConnectionPublic(
        name=info.name,
        arn=info.arn,
        type=info.type,
        parameters=info.parameters,
        created_at=info.created_at,
    )


def _sealer(request: Request) -> Sealer:
    sealer: Sealer | None = request.app.state.sealer
    if sealer is None:
        raise control.ValidationException(
            "This server has no STATEWRIGHT_SECRET_KEY to seal connection secrets with"
        )
    return sealer


@router.post("/connections", status_code=201)
async def create_connection(
    request: Request, engine: EngineDep, body: ConnectionCreate
) -> ConnectionPublic:
    """Create a connection; its secret is sealed and never shown again."""
    info = await connections.create_connection(
        engine, _sealer(request), body.name, body.type, body.parameters
    )
    return _connection(info)


@router.get("/connections")
async def list_connections(engine: EngineDep) -> list[ConnectionPublic]:
    """Every connection (without secrets)."""
    return [_connection(info) for info in await connections.list_connections(engine)]


@router.get("/connections/{name}")
async def describe_connection(engine: EngineDep, name: str) -> ConnectionPublic:
    """One connection (without its secret)."""
    return _connection(await connections.describe_connection(engine, name))


@router.delete("/connections/{name}", status_code=204)
async def delete_connection(engine: EngineDep, name: str) -> None:
    """Delete a connection; tasks that name it fail with Events.ConnectionResource.NotFound."""
    await connections.delete_connection(engine, name)


# ---------------------------------------------------------------------------- schedules


class ScheduleCreate(BaseModel):
    """A schedule: start ``state_machine`` with ``input`` at each fire time of ``expression``
    (rate(5 minutes), cron(0 12 * * ? *), at(2030-01-01T09:00:00)) in ``timezone``."""

    name: str = Field(min_length=1, max_length=64)
    state_machine: str = Field(min_length=1, max_length=80)
    expression: str = Field(min_length=1, max_length=256)
    timezone: str = Field(default="UTC", max_length=64)
    input: JSON = None
    state: str = "ENABLED"
    catchup: str = "once"  # after a missed window: once (start one execution) or none
    description: str = Field(default="", max_length=512)
    tags: dict[str, str] = Field(default_factory=dict)


class ScheduleUpdate(BaseModel):
    """Change a schedule: what is given (absent or null: unchanged)."""

    state_machine: str | None = Field(default=None, min_length=1, max_length=80)
    expression: str | None = Field(default=None, min_length=1, max_length=256)
    timezone: str | None = Field(default=None, max_length=64)
    input: JSON = None
    state: str | None = None
    catchup: str | None = None
    description: str | None = Field(default=None, max_length=512)
    tags: dict[str, str] | None = None


class SchedulePublic(BaseModel):
    """A schedule, its next fire times, and what its last fire did."""

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
    next_fire_times: list[datetime]
    last_fire_at: datetime | None
    last_execution_arn: str | None
    last_error: str | None


def _schedule(info: schedules.ScheduleInfo, upcoming: int = 1) -> SchedulePublic:
    return SchedulePublic(
        **{
            field: getattr(info, field)
            for field in SchedulePublic.model_fields
            if field != "next_fire_times"
        },
        next_fire_times=info.upcoming(upcoming),
    )


@router.post("/schedules", status_code=201)
async def create_schedule(engine: EngineDep, body: ScheduleCreate) -> SchedulePublic:
    """Create a schedule (400 for a bad expression or time zone, 404 for an unknown state
    machine, 409 for a taken name)."""
    info = await schedules.create_schedule(
        engine,
        body.name,
        body.state_machine,
        body.expression,
        timezone=body.timezone,
        input_value=body.input,
        state=body.state,
        catchup=body.catchup,
        description=body.description,
        tags=body.tags,
    )
    return _schedule(info)


@router.get("/schedules")
async def list_schedules(
    engine: EngineDep, state_machine: str | None = None
) -> list[SchedulePublic]:
    """Every schedule (of a state machine), by name, with its next fire time."""
    return [_schedule(info) for info in await schedules.list_schedules(engine, state_machine)]


@router.get("/schedules/{name}")
async def describe_schedule(
    engine: EngineDep, name: str, upcoming: Annotated[int, Query(ge=0, le=100)] = 5
) -> SchedulePublic:
    """One schedule with its next ``upcoming`` fire times."""
    return _schedule(await schedules.describe_schedule(engine, name), upcoming)


@router.patch("/schedules/{name}")
async def update_schedule(engine: EngineDep, name: str, body: ScheduleUpdate) -> SchedulePublic:
    """Change a schedule; a new expression or time zone counts from now."""
    info = await schedules.update_schedule(
        engine,
        name,
        state_machine=body.state_machine,
        expression=body.expression,
        timezone=body.timezone,
        input_value=body.input,
        state=body.state,
        catchup=body.catchup,
        description=body.description,
        tags=body.tags,
    )
    return _schedule(info)


@router.post("/schedules/{name}/pause")
async def pause_schedule(engine: EngineDep, name: str) -> SchedulePublic:
    """Stop starting executions (state DISABLED) until resumed."""
    return _schedule(await schedules.update_schedule(engine, name, state="DISABLED"))


@router.post("/schedules/{name}/resume")
async def resume_schedule(engine: EngineDep, name: str) -> SchedulePublic:
    """Start executions again from the next fire time after now (state ENABLED)."""
    return _schedule(await schedules.update_schedule(engine, name, state="ENABLED"))


@router.delete("/schedules/{name}", status_code=204)
async def delete_schedule(engine: EngineDep, name: str) -> None:
    """Delete a schedule; the executions it started go on."""
    await schedules.delete_schedule(engine, name)
