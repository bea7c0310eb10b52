"""The ASGI application: the AWS-compatible API on POST /, the REST API under /api/v1.

With ``workers`` > 0 the process also runs worker lanes (``statewright dev`` and ``serve``);
``statewright api`` runs none and leaves decisions to ``statewright worker`` processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from service import control, metrics, schedules
from service.api import aws, demo, hooks, rest, views
from service.auth import Authenticator, AuthError
from service.db import migrate
from service.db.engine import create_engine
from service.sealing import Sealer
from service.settings import Settings
from service.viewer import routes as viewer
from service.worker.loop import Worker, settings_options

_REST_STATUS = {
    "StateMachineDoesNotExist": 404,
    "ExecutionDoesNotExist": 404,
    "TaskDoesNotExist": 404,
    "StateMachineAlreadyExists": 409,
    "ConflictException": 409,
    "ResourceNotFound": 404,
    "StateMachineDeleting": 409,
    "ExecutionAlreadyExists": 409,
    "TaskTimedOut": 409,
    "ExecutionNotRedrivable": 409,
    "ScheduleDoesNotExist": 404,
    "ScheduleAlreadyExists": 409,
}


MAX_REST_BODY_BYTES = 1_100_000  # a 1 MiB definition plus the request around it


class Admission:
    """At most ``limit`` requests in progress: beyond it, answer at once with 429 and
    Retry-After (AWS's ThrottlingException on POST /), instead of letting requests queue
    without bound. Health, readiness and metrics are always answered."""

    EXEMPT = frozenset({"/healthz", "/readyz", "/metrics"})

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit
        self.in_flight = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] in self.EXEMPT:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.limit:
            await self._refuse(scope, send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1

    async def _refuse(self, scope: Any, send: Any) -> None:
        message = f"Rate exceeded: {self.in_flight} requests in progress; retry with back-off"
        if scope["path"] == "/":
            body = {"__type": "ThrottlingException", "message": message}
            kind = b"application/x-amz-json-1.0"
        else:
            body = {"code": "ThrottlingException", "message": message}
            kind = b"application/json"
        data = json.dumps(body).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 429,
                "headers": [
                    (b"content-type", kind),
                    (b"content-length", str(len(data)).encode()),
                    (b"retry-after", b"1"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": data})


class AwsEndpoint:
    """POST / is the AWS API (awsJson1_0): answered here, ahead of FastAPI's routing,
    exception handlers and dependency injection, none of which it uses (it checks its own
    SigV4, limits and errors). StartExecution's cost per call is mostly framework otherwise."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/" and scope["method"] == "POST":
            state = scope["app"].state
            response = await aws.handle(Request(scope, receive), state.engine, state.auth)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


class _TooLarge(Exception):
    pass


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes with 413, reading no more than that (a
    declared Content-Length over it is refused before any is read). POST / (the AWS API)
    applies its own limit and answers in AWS's shape."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] == "/":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            await self._refuse(send)
            return
        received = 0
        started = refused = False

        async def limited_receive() -> Any:
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    # Answer now: the framework may turn the exception into its own error.
                    if not started and not refused:
                        refused = True
                        await self._refuse(send)
                    raise _TooLarge
            return message

        async def tracking_send(message: Any) -> None:
            nonlocal started
            if refused:
                return  # the 413 went out already
            started = started or message["type"] == "http.response.start"
            await send(message)

        with contextlib.suppress(_TooLarge):
            await self.app(scope, limited_receive, tracking_send)

    async def _refuse(self, send: Any) -> None:
        body = json.dumps(
            {
                "code": "RequestTooLarge",
                "message": f"The request body is over the limit of {self.limit} bytes",
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def create_app(settings: Settings | None = None) -> FastAPI:
    """The application for ``settings`` (default: from the environment)."""
    settings = settings or Settings()
    control.REGION, control.ACCOUNT = settings.region, settings.account_id
    aws.ACTIVITY_POLL_SECONDS = settings.activity_poll_seconds
    schedules.ALLOW_SECONDS = settings.schedule_seconds

    # A missing or short server key stops the start here, with a message saying what to set.
    sealer = Sealer(settings.secret_key) if settings.auth or settings.secret_key else None

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # A fixed pool: under load, requests wait for a connection rather than open and
        # close one each (a new connection costs more than the statement it would run).
        app.state.engine = create_engine(
            settings.database_url,
            pool_size=settings.database_pool_size,
            max_overflow=0,
            pooler=settings.database_pooler,
        )
        app.state.auth = (
            Authenticator(app.state.engine, sealer) if sealer and settings.auth else None
        )
        app.state.sealer = sealer  # for connections' secrets
        workers: list[Worker] = []
        tasks: list[asyncio.Task[None]] = []
        if settings.workers > 0:
            worker = Worker(
                settings.database_url,
                lanes=settings.workers,
                poll_seconds=1.0,
                mock_config=settings.mock_config,
                **settings_options(settings),
            )
            workers.append(worker)
            tasks.append(asyncio.create_task(worker.run()))
        try:
            yield
        finally:
            for worker in workers:
                worker.stop()
            await asyncio.gather(*tasks, return_exceptions=True)
            await app.state.engine.dispose()

    app = FastAPI(
        title="Statewright",
        description="Durable AWS Step Functions compatible workflows. The AWS API (awsJson1_0) "
        "answers POST / ; this is the REST API.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.add_middleware(BodyLimit, limit=MAX_REST_BODY_BYTES)
    app.add_middleware(AwsEndpoint)
    app.add_middleware(Admission, limit=settings.max_requests_in_flight)  # the outermost
    control.set_start_queue_limit(settings.start_queue_limit)
    app.include_router(views.router)  # ahead of rest: /executions/count before /{id}
    app.include_router(rest.router)
    app.include_router(rest.callbacks)
    app.include_router(hooks.router)
    app.include_router(viewer.router)  # the web viewer: GET / and /ui/...
    if settings.demo:
        app.include_router(demo.router)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        """The process answers (liveness)."""
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz(request: Request) -> Response:
        """The process can serve: its database answers and has the schema this version
        needs (readiness; 503 with the reason otherwise)."""
        try:
            async with request.app.state.engine.connect() as conn:
                current = await migrate.current_revision(conn)
        except Exception as exc:
            return JSONResponse(
                {"status": "unavailable", "reason": f"database: {type(exc).__name__}"},
                status_code=503,
            )
        if current != migrate.head_revision():
            return JSONResponse(
                {
                    "status": "unavailable",
                    "reason": f"schema at {current}, this version needs {migrate.head_revision()}: "
                    "run `statewright db upgrade`",
                },
                status_code=503,
            )
        return JSONResponse({"status": "ready"})

    @app.get("/metrics", include_in_schema=False, dependencies=[Depends(rest._authorized)])
    async def prometheus_metrics(request: Request) -> Response:
        """Prometheus metrics (text format); with auth on, scrape with a bearer API key."""
        try:
            await metrics.read_database(request.app.state.engine)
        except Exception:  # the counters are still worth reporting
            pass
        return Response(metrics.exposition(), media_type="text/plain; version=0.0.4")

    @app.exception_handler(AuthError)
    async def auth_error(request: Request, exc: AuthError) -> Response:
        return JSONResponse(
            {"code": exc.code, "message": str(exc)},
            status_code=401,
            headers={"WWW-Authenticate": 'Bearer realm="statewright"'},
        )

    @app.exception_handler(control.ServiceError)
    async def service_error(request: Request, exc: control.ServiceError) -> Response:
        body: dict[str, Any] = {"code": exc.code, "message": str(exc)}
        if isinstance(exc, control.InvalidDefinition):
            body["diagnostics"] = [
                {
                    "severity": d.severity,
                    "code": d.code,
                    "message": d.message,
                    "location": d.location,
                }
                for d in exc.diagnostics
            ]
        if isinstance(exc, control.ThrottlingException):
            return JSONResponse(
                body, status_code=exc.status, headers={"Retry-After": str(exc.retry_after)}
            )
        return JSONResponse(body, status_code=_REST_STATUS.get(exc.code, 400))

    @app.exception_handler(RequestValidationError)
    async def request_error(request: Request, exc: RequestValidationError) -> Response:
        body = {
            "code": "ValidationException",
            "message": "The request is not valid",
            "errors": exc.errors(),
        }
        # The errors may quote the raw body, which can be bytes.
        encoded = jsonable_encoder(
            body, custom_encoder={bytes: lambda b: b.decode("utf-8", "replace")}
        )
        return JSONResponse(encoded, status_code=422)

    @app.exception_handler(UnicodeEncodeError)
    async def unicode_error(request: Request, exc: UnicodeEncodeError) -> Response:
        # A lone surrogate ("\ud800") parses as JSON but cannot be stored or compared.
        message = "Strings must be valid Unicode (no lone surrogates)"
        return JSONResponse({"code": "ValidationException", "message": message}, status_code=400)

    return app
