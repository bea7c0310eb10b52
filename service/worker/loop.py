"""The worker process: decide for executions that need it, until told to stop.

Wake-ups: Postgres LISTEN/NOTIFY (a start or a task result wakes a worker within
milliseconds), the earliest ``wake_at`` (timers), and polling as a fallback (the only way
behind a transaction pooler without a direct URL to LISTEN on). A worker that
loses its database retries with back-off and goes on; SIGTERM lets the decisions in flight
finish (their transactions commit or roll back), then the process exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import signal
import socket
import uuid
from collections.abc import Collection
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from service import logs, metrics, schedules, tracing, webhooks
from service.db import queries
from service.db.engine import Pooler, configured_pooler, create_engine, is_postgres, normalize_url
from service.runners import container, http
from service.runners.container import ContainerBackend, ContainerRunner
from service.runners.docker import DockerEngine
from service.runners.http import HttpRunner, Outbound
from service.runners.kubernetes import KubernetesJobs
from service.runners.mock import MockRunner
from service.sealing import Sealer
from service.settings import Settings
from service.worker.decider import Decider

log = logging.getLogger("statewright.worker")


class Worker:
    """Decides executions with ``lanes`` concurrent deciders on one engine."""

    def __init__(
        self,
        database_url: str | None,
        *,
        lanes: int = 2,
        poll_seconds: float = 1.0,
        engine: AsyncEngine | None = None,
        mock_config: str | None = None,
        express_retention_seconds: float = 3600.0,
        http_allow: str = "",
        http_concurrency: int = 32,
        http_timeout_seconds: float = 60.0,
        secret_key: str | None = None,
        http_per_host: int = 32,
        http_per_host_rate: float = 0.0,
        webhook_timeout_seconds: float = 10.0,
        webhook_retry_base_seconds: float = 1.0,
        webhook_max_age_seconds: float = 86400.0,
        webhook_concurrency: int = 16,
        otlp_endpoint: str | None = None,
        container_host: str | None = None,
        container_concurrency: int = 8,
        container_lease_seconds: float = 30.0,
        container_networks: str = "",
        container_backend: ContainerBackend | None = None,
        database_pooler: Pooler | None = None,
        listen_database_url: str | None = None,
    ) -> None:
        self.url = normalize_url(database_url)
        self.pooler = database_pooler or configured_pooler()
        # Lanes, the listener, the HTTP runner's claims and result writes, the sweeps.
        self.engine = engine or create_engine(self.url, pool_size=lanes + 4, pooler=self.pooler)
        # LISTEN is session state: behind a transaction pooler it needs a direct connection
        # to Postgres, or the worker polls (every poll_seconds).
        self.listen_url = normalize_url(listen_database_url) if listen_database_url else None
        self.listens = is_postgres(self.url) and (
            self.listen_url is not None or self.pooler != "transaction"
        )
        self.tracer = tracing.Tracer(otlp_endpoint) if otlp_endpoint else None
        self.decider = Decider(self.engine, tracer=self.tracer)
        # SQLite has one writer at a time: more lanes would only wait on its lock.
        self.lanes = lanes if is_postgres(self.url) else 1
        self.poll_seconds = poll_seconds
        self.mock_runner = MockRunner(self.engine, mock_config) if mock_config else None
        self.express_retention = timedelta(seconds=express_retention_seconds)
        worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        outbound = Outbound.parse(http_allow.split(","))
        sealer = Sealer(secret_key) if secret_key else None
        self.http_runner = HttpRunner(
            self.engine,
            outbound,
            worker_id=worker_id,
            sealer=sealer,
            concurrency=http_concurrency,
            timeout=http_timeout_seconds,
            # Held past any request's timeout: a lease that runs out means its worker died.
            lease=http_timeout_seconds + 5.0,
            per_host=http_per_host,
            per_host_rate=http_per_host_rate,
            traced=self.tracer is not None,
        )
        self.deliverer = webhooks.Deliverer(
            self.engine,
            outbound,
            worker_id,
            sealer,
            concurrency=webhook_concurrency,
            timeout=webhook_timeout_seconds,
            retry_base=webhook_retry_base_seconds,
            max_age=webhook_max_age_seconds,
        )
        self._hooks_wake = asyncio.Event()
        self._http_wake = asyncio.Event()
        self.http_runner.on_recorded = self._recorded
        self.http_runner.on_free = self._http_wake.set
        self.container_runner = ContainerRunner(
            self.engine,
            container_backend or DockerEngine.from_environment(container_host),
            worker_id=worker_id,
            concurrency=container_concurrency,
            lease=container_lease_seconds,
            networks=("none", *(n.strip() for n in container_networks.split(",") if n.strip())),
            on_recorded=self._recorded,
        )
        self._container_wake = asyncio.Event()
        self.stopping = asyncio.Event()
        self.listening = asyncio.Event()  # set once LISTEN is active (Postgres)
        self._lane_wakes: list[asyncio.Event] = []
        self._idle: list[asyncio.Event] = []  # decision lanes asleep for want of work
        self._mock_wake: asyncio.Event | None = None

    def stop(self) -> None:
        """Finish the decisions in flight, then return from run()."""
        self.stopping.set()
        self._wake_all()

    async def run(self) -> None:
        """Run until stop() (or SIGTERM/SIGINT when installed by main)."""
        if self.listen_url is not None and self.listens:
            shown = make_url(self.listen_url).render_as_string(hide_password=True)
            log.info("listening for wake-ups on %s (STATEWRIGHT_LISTEN_DATABASE_URL)", shown)
        elif is_postgres(self.url) and not self.listens:
            log.info(
                "database pooler in transaction mode and no STATEWRIGHT_LISTEN_DATABASE_URL: "
                "no LISTEN/NOTIFY wake-ups, polling every %.1f s",
                self.poll_seconds,
            )
        listener = asyncio.create_task(self._listen()) if self.listens else None
        try:
            lanes = [self._lane(i) for i in range(self.lanes)]
            if self.mock_runner is not None:
                lanes.append(self._mock_lane())
            lanes.append(self._retention_lane())
            lanes.append(self._schedule_lane())
            lanes.append(self._http_lane())
            lanes.append(self._webhook_lane())
            lanes.append(self._container_lane())
            await asyncio.gather(*lanes)
        finally:
            if listener is not None:
                listener.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listener
            await self.engine.dispose()
            if self.tracer is not None:
                self.tracer.close()

    async def _lane(self, number: int) -> None:
        # Each lane has its own wake-up flag, cleared *before* it looks for work: a NOTIFY that
        # arrives while it looks is remembered and cuts the next sleep short.
        wake = asyncio.Event()
        self._lane_wakes.append(wake)
        backoff = 0.1
        while not self.stopping.is_set():
            wake.clear()
            try:
                worked, claimed_at = await self.decider.decide_due()
                backoff = 0.1
                # Tell this process's runners of the tasks at once: on Postgres without
                # waiting for the NOTIFY to come back; the embedded store has none (and
                # another lane may have queued them meanwhile: every runner looks anyway).
                for resource in self.decider.take_scheduled():
                    self._notified(queries.TASKS_NOTICE + resource)
                if worked and not is_postgres(self.url):
                    self._notified(queries.TASKS_NOTICE)
            except queries.StaleVersion:
                metrics.LEASE_LOSSES.inc()
                continue  # another worker moved it on; the row is free again
            except Exception as exc:  # the database went away, or a driver error
                # Exponential back-off up to 5 s, with jitter so workers do not retry in step.
                delay = backoff * (0.5 + random.random() / 2)
                log.warning("lane %d: %s; retrying in %.1f s", number, exc, delay)
                await self._sleep(wake, delay)
                backoff = min(backoff * 2, 5.0)
                continue
            if not worked:
                seconds = await self._idle_seconds(claimed_at)
                self._idle.append(wake)
                try:
                    await self._sleep(wake, seconds)
                finally:
                    self._idle.remove(wake)

    async def _mock_lane(self) -> None:
        """Answer mocked tasks (executions started with a mock config test case)."""
        assert self.mock_runner is not None
        wake = self._mock_wake = asyncio.Event()
        self._lane_wakes.append(wake)
        while not self.stopping.is_set():
            wake.clear()
            try:
                worked = await self.mock_runner.run_one()
            except Exception as exc:
                log.warning("mock runner: %s", exc)
                worked = False
            if not worked:
                # SQLite has no NOTIFY: poll briefly (mocks are a testing aid).
                await self._sleep(wake, 0.05 if not is_postgres(self.url) else self.poll_seconds)

    async def _http_lane(self) -> None:
        """Start HTTP tasks as they come (bounded by the runner's concurrency); on stop, let
        the requests in flight finish and record their results."""
        wake = self._http_wake
        while not self.stopping.is_set():
            wake.clear()
            try:
                started = await self.http_runner.run_some()
            except Exception as exc:  # the database is away: try again later
                log.warning("http runner: %s", exc)
                started = 0
            # Look again at once only if the claim may have left tasks behind (a claim that
            # finds nothing is a round trip for nothing): new ones come with a notice, and
            # capacity that frees up wakes this lane (on_free).
            if not started or not self.http_runner.more_pending:
                # SQLite has no NOTIFY: poll briefly there.
                await self._sleep(wake, self.poll_seconds if is_postgres(self.url) else 0.05)
        await self.http_runner.close()

    async def _webhook_lane(self) -> None:
        """Deliver status webhooks as they fall due; on stop, let those in flight finish."""
        wake = self._hooks_wake
        while not self.stopping.is_set():
            wake.clear()
            try:
                started = await self.deliverer.run_some()
                pause = None if started else await self.deliverer.seconds_to_next()
            except Exception as exc:  # the database is away: try again later
                log.warning("webhooks: %s", exc)
                started, pause = 0, None
            if not started:
                seconds = self.poll_seconds if pause is None else min(pause, self.poll_seconds)
                # SQLite has no NOTIFY: poll briefly there.
                if not is_postgres(self.url):
                    seconds = min(seconds, 0.1)
                await self._sleep(wake, seconds)
        await self.deliverer.close()

    async def _container_lane(self) -> None:
        """Start container tasks as they come (bounded by the runner's concurrency); on stop,
        hand the containers still running to the next worker (they run on)."""
        wake = self._container_wake
        while not self.stopping.is_set():
            wake.clear()
            try:
                started = await self.container_runner.run_some()
            except Exception as exc:  # the database is away: try again later
                log.warning("container runner: %s", exc)
                started = 0
            if not started:
                await self._sleep(wake, self.poll_seconds if is_postgres(self.url) else 0.05)
        await self.container_runner.close()

    async def _retention_lane(self) -> None:
        """Forget closed EXPRESS executions once they are older than the retention (AWS keeps
        no Express history at all; here they stay describable for a while). Every worker
        sweeps; the deletes are idempotent and in small batches."""
        pause = min(60.0, max(self.express_retention.total_seconds() / 2, 0.05))
        while not self.stopping.is_set():
            try:
                async with self.engine.begin() as conn:
                    before = await queries.now(conn) - self.express_retention
                    purged = await queries.purge_closed(conn, kind="EXPRESS", before=before)
                if purged:
                    log.info("forgot %d EXPRESS execution(s) past their retention", purged)
                    continue
            except Exception as exc:
                log.warning("retention sweep: %s", exc)
            await self._sleep(self.stopping, pause)

    async def _schedule_lane(self) -> None:
        """Start the executions of due schedules, then sleep until the next fire time (at
        most the polling interval: a schedule made or changed elsewhere is seen by then).
        Every worker runs one; the claim is SKIP LOCKED, so each fire time starts once."""
        # Out of the way of the decision lanes while the process starts (its connection
        # would be one more to open first), and out of step with the other workers.
        await self._sleep(self.stopping, random.uniform(0.5, 1.0) * self.poll_seconds)
        while not self.stopping.is_set():
            seconds: float | None = self.poll_seconds
            try:
                if await schedules.fire_due(self.engine):
                    continue
                async with self.engine.connect() as conn:
                    seconds = await schedules.seconds_to_next_fire(conn)
            except Exception as exc:
                log.warning("schedules: %s", exc)
            timeout = self.poll_seconds if seconds is None else min(seconds, self.poll_seconds)
            await self._sleep(self.stopping, timeout)

    def _wake_all(self) -> None:
        for wake in self._lane_wakes:
            wake.set()
        self._http_wake.set()
        self._hooks_wake.set()
        self._container_wake.set()

    def _recorded(self, executions: Collection[str]) -> None:
        """Task results this process's runners committed: wake a decision lane, unless a lane
        of this process is deciding each of their executions (it looks again once it commits)."""
        if not all(execution in self.decider.in_progress for execution in executions):
            self._notified("")

    def _notified(self, payload: str) -> None:
        """New outbox tasks wake the runners. Anything else became due for a decision: wake
        one sleeping decision lane (it takes a batch of what is due; waking every lane of
        every worker for each start would cost a query each), or, when none sleeps, flag
        every lane so that none goes to sleep without looking again."""
        if payload.startswith(webhooks.HOOKS_NOTICE):
            self._hooks_wake.set()
        elif payload.startswith(queries.TASKS_NOTICE):
            # The notice names a resource: only its runner looks (a claim that finds nothing
            # is a round trip and a query plan for nothing). Anything else (an older worker's
            # notice, or none): every runner looks. Mocks answer tasks of any resource.
            resource = payload[len(queries.TASKS_NOTICE) :]
            named = resource.startswith("arn:")
            if self._mock_wake is not None:
                self._mock_wake.set()
            if not named or resource in http.RESOURCES:
                self._http_wake.set()
            if not named or resource in container.RESOURCES:
                self._container_wake.set()
        elif payload and payload in self.decider.in_progress:
            pass  # the lane deciding it looks again as soon as it commits
        elif self._idle:
            self._idle[-1].set()
        else:
            for wake in self._lane_wakes:
                wake.set()

    async def _idle_seconds(self, after: datetime) -> float:
        """Until the earliest execution sleeping past ``after`` (the clock of this lane's
        claim that found nothing) wakes, at most the polling interval."""
        timeout = self.poll_seconds
        try:
            async with self.engine.connect() as conn:
                seconds = await queries.seconds_to_next_wake(conn, after)
            if seconds is not None:
                timeout = min(timeout, seconds)
        except Exception:  # the database is away: poll again later
            pass
        return timeout

    async def _sleep(self, wake: asyncio.Event, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), timeout=seconds)

    async def _listen(self) -> None:
        """Hold a LISTEN connection (on the direct URL when there is one); reconnect when it
        drops."""
        engine = self.engine
        if self.listen_url is not None:
            engine = create_engine(self.listen_url, pool_size=1, max_overflow=0, pooler="none")
        try:
            await self._hold_listener(engine)
        finally:
            if engine is not self.engine:
                await engine.dispose()

    async def _hold_listener(self, engine: AsyncEngine) -> None:
        while not self.stopping.is_set():
            try:
                async with engine.connect() as conn:
                    raw = await conn.get_raw_connection()
                    driver = raw.driver_connection
                    assert driver is not None
                    await driver.add_listener(
                        queries.NOTIFY_CHANNEL, lambda *args: self._notified(str(args[3]))
                    )
                    self.listening.set()
                    while not self.stopping.is_set() and not driver.is_closed():
                        await asyncio.sleep(1.0)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.listening.clear()
                log.warning("listener: %s; reconnecting", exc)
                await asyncio.sleep(1.0)


def settings_options(settings: Settings) -> dict[str, Any]:
    """The Worker keyword arguments that come from the settings (STATEWRIGHT_*)."""
    return {
        "express_retention_seconds": settings.express_retention_seconds,
        "http_allow": settings.http_allow,
        "http_concurrency": settings.http_concurrency,
        "http_timeout_seconds": settings.http_timeout_seconds,
        "http_per_host": settings.http_per_host,
        "http_per_host_rate": settings.http_per_host_rate,
        "webhook_timeout_seconds": settings.webhook_timeout_seconds,
        "webhook_retry_base_seconds": settings.webhook_retry_base_seconds,
        "webhook_max_age_seconds": settings.webhook_max_age_seconds,
        "webhook_concurrency": settings.webhook_concurrency,
        "otlp_endpoint": settings.otlp_endpoint,
        "secret_key": settings.secret_key,
        "container_host": settings.container_host,
        "container_concurrency": settings.container_concurrency,
        "container_lease_seconds": settings.container_lease_seconds,
        "container_networks": settings.container_networks,
        "container_backend": container_backend(settings),
        "database_pooler": settings.database_pooler,
        "listen_database_url": settings.listen_database_url,
    }


def container_backend(settings: Settings) -> ContainerBackend:
    """Where container tasks run, as STATEWRIGHT_CONTAINER_BACKEND says (nothing is read or
    reached before the first container task)."""
    if settings.container_backend == "kubernetes":
        return KubernetesJobs(
            api=settings.kubernetes_api,
            namespace=settings.kubernetes_namespace,
            token=settings.kubernetes_token,
            token_file=settings.kubernetes_token_file,
            ca_file=settings.kubernetes_ca_file,
            insecure=settings.kubernetes_insecure,
            ttl_seconds=settings.kubernetes_ttl_seconds,
            image_pull_seconds=settings.kubernetes_image_pull_seconds,
        )
    return DockerEngine.from_environment(settings.container_host)


def main(
    database_url: str | None,
    lanes: int = 2,
    mock_config: str | None = None,
    options: dict[str, Any] | None = None,
) -> None:
    """Run a worker in this process until SIGTERM or SIGINT."""
    logs.configure(Settings().log_format)

    async def run() -> None:
        worker = Worker(database_url, lanes=lanes, mock_config=mock_config, **(options or {}))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, worker.stop)
        log.info("worker started at %s", datetime.now(UTC).isoformat())
        await worker.run()
        log.info("worker stopped after %d decisions", worker.decider.decisions)

    asyncio.run(run())
