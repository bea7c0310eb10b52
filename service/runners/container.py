"""Container tasks: ``"Resource": "arn:statewright:::container:run"`` (and ``.waitForTaskToken``).

The runner takes pending container tasks from the outbox with a lease (the row is marked
RUNNING, claimed by this worker until ``claim_expires_at``), records TaskStarted, and runs the
container through a backend: ``ContainerSpec`` (parsed from the Parameters) is the same for
every backend; ``service/runners/docker.py`` is the Docker Engine API (Docker, or podman's
compatible service), ``service/runners/kubernetes.py`` a Kubernetes Job per attempt
(``STATEWRIGHT_CONTAINER_BACKEND`` chooses; the Job takes the container's place below).
The container of an attempt is named after the attempt's idempotency key (the execution ARN
and the TaskScheduled event id): ``statewright-<sha256 of the key, 24 hex digits>``, with the
labels ``statewright.idempotency-key`` and ``statewright.execution``. Crash points:

* **before the create**: the lease runs out, another worker claims the row, finds no
  container of that name and creates it: it runs once. (A claim of a PENDING row, which no
  worker took before, creates without looking.)
* **between create and start**: the next worker finds the container ``created`` and starts it.
* **while it runs**: the next worker finds it running (or exited) and follows it: waits, reads
  its logs, records the result. It never starts a second one; a create that meets the name
  already taken (409, or podman's 500 "already in use") follows the existing container too.
  Input on stdin is written by whoever starts the container: a worker that dies while writing
  it leaves the container with its stdin cut short (InputFile is written before the start).
* **after the exit, before the result is recorded**: the next worker finds it exited and
  reads the same logs; the result is recorded once (only by the row's current holder).
* **after the record, before the remove**: the exited container is left behind (not a second
  run); a worker that runs container tasks sweeps such leftovers (exited, and their attempt's
  row closed in this database) after its first claim and every ``SWEEP_SECONDS``.

While a container runs the worker renews its lease every ``lease / 3`` s; a renewal that finds
the row no longer its RUNNING row (the state's TimeoutSeconds closed it, the execution was
stopped, or the lease lapsed and another worker took it) kills and removes the container. On
SIGTERM the worker stops following its containers, which keep running, and hands their rows
back (lease expired at once) so another worker follows them. An engine that cannot be reached
is not the task's fault: the task is left to its lease and runs (is followed) again later.

Parameters (``ContainerSpec``): Image (required), Command and Entrypoint (lists of strings),
Environment (an object of strings), WorkingDir, User, MemoryMiB, CpuCount, Network (``none``
unless the operator lists others in ``STATEWRIGHT_CONTAINER_NETWORKS``), TimeoutSeconds (the
container's own limit), Input (any JSON, written to stdin as JSON text) and InputFile (a path:
Input goes into that file instead). The output is ``{"ExitCode": 0, "Stdout": parsed JSON or
text, "StderrTail": the last 4 KiB of stderr, "Duration": seconds}``. Errors:

* a non-zero exit: ``Container.ExitCode.<n>``, the cause stderr's tail (137: killed);
* TimeoutSeconds passed: ``Container.Timeout`` (the container is killed);
* the image is not in the engine: ``Container.ImageNotFound`` (images are not pulled);
* the engine refuses to create or start it: ``Container.CreateFailed`` / ``Container.StartFailed``;
* stdout over 256 KiB: ``States.DataLimitExceeded``;
* Parameters that do not make a container: ``States.Runtime``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from service import logs, metrics
from service.db import queries
from service.db.engine import one_statement
from service.runners.http import TaskFailure
from statemachine.payload import payload_size

log = logging.getLogger("statewright.container")
JSON = Any
RESOURCE = "arn:statewright:::container:run"
RESOURCES = (RESOURCE, RESOURCE + ".waitForTaskToken")
MAX_STDOUT_BYTES = 256 * 1024
STDERR_TAIL_BYTES = 4 * 1024
KEY_LABEL = "statewright.idempotency-key"
EXECUTION_LABEL = "statewright.execution"
SWEEP_SECONDS = 600.0
PARAMETERS = frozenset(
    "Image Command Entrypoint Environment WorkingDir User MemoryMiB CpuCount Network "
    "TimeoutSeconds Input InputFile".split()
)


class EngineUnavailable(Exception):
    """The container engine cannot be reached (or answered nonsense): not the task's fault."""


# ---------------------------------------------------------------------------- the spec


@dataclass(frozen=True, slots=True)
class ContainerSpec:
    """What to run, from a task's Parameters; the same for every backend."""

    image: str
    command: tuple[str, ...] | None = None
    entrypoint: tuple[str, ...] | None = None
    environment: tuple[tuple[str, str], ...] = ()
    working_dir: str | None = None
    user: str | None = None
    memory_mib: int | None = None
    cpu_count: float | None = None
    network: str = "none"
    timeout_seconds: float | None = None
    input: bytes | None = None  # JSON text, for stdin or input_file
    input_file: str | None = None

    @classmethod
    def parse(cls, parameters: JSON, networks: Sequence[str] = ("none",)) -> ContainerSpec:
        """The container a task's Parameters describe; TaskFailure(States.Runtime) if they
        don't. ``networks``: the Network values the operator allows."""
        if not isinstance(parameters, dict):
            raise _invalid("Parameters must be an object with at least Image")
        unknown = sorted(set(parameters) - PARAMETERS)
        if unknown:
            raise _invalid(
                f"unknown field(s) {', '.join(unknown)} (known: {', '.join(sorted(PARAMETERS))})"
            )
        image = parameters.get("Image")
        if not isinstance(image, str) or not image.strip():
            raise _invalid('Image must name an image, e.g. "localhost/busybox:test"')
        environment = parameters.get("Environment") or {}
        if not isinstance(environment, dict):
            raise _invalid("Environment must be an object of strings")
        env = []
        for name, value in environment.items():
            if not name or "=" in name or "\0" in name:
                raise _invalid(f"{name!r} is not an environment variable name")
            if isinstance(value, bool) or not isinstance(value, str | int | float):
                raise _invalid(f"the environment variable {name} must be a string")
            env.append((name, str(value)))
        network = parameters.get("Network", "none")
        if network not in networks:
            raise _invalid(
                f"Network {network!r} is not allowed (allowed: {', '.join(networks)}; the "
                "operator lists more in STATEWRIGHT_CONTAINER_NETWORKS)"
            )
        input_file = _optional_str(parameters, "InputFile")
        if input_file is not None:
            if not input_file.startswith("/") or input_file.endswith("/"):
                raise _invalid("InputFile must be an absolute file path, e.g. /input/input.json")
            if "Input" not in parameters:
                raise _invalid("InputFile names where Input goes: Input is missing")
        memory = _positive(parameters, "MemoryMiB")
        if memory is not None and (memory != int(memory) or memory < 6):
            raise _invalid("MemoryMiB must be a whole number of MiB, at least 6")
        data = None
        if "Input" in parameters:
            data = json.dumps(parameters["Input"], separators=(",", ":"), ensure_ascii=False)
        return cls(
            image=image.strip(),
            command=_strings(parameters, "Command"),
            entrypoint=_strings(parameters, "Entrypoint"),
            environment=tuple(env),
            working_dir=_optional_str(parameters, "WorkingDir"),
            user=_optional_str(parameters, "User"),
            memory_mib=None if memory is None else int(memory),
            cpu_count=_positive(parameters, "CpuCount"),
            network=str(network),
            timeout_seconds=_positive(parameters, "TimeoutSeconds"),
            input=None if data is None else data.encode(),
            input_file=input_file,
        )

    @property
    def stdin(self) -> bytes | None:
        """What goes to the container's stdin (None: no stdin at all)."""
        return self.input if self.input_file is None else None


def _invalid(message: str) -> TaskFailure:
    return TaskFailure(
        "States.Runtime", f"The container task's Parameters are not valid: {message}"
    )


def _strings(parameters: dict[str, JSON], name: str) -> tuple[str, ...] | None:
    value = parameters.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _invalid(f'{name} must be a list of strings, e.g. ["sh", "-c", "echo hi"]')
    return tuple(value)


def _optional_str(parameters: dict[str, JSON], name: str) -> str | None:
    value = parameters.get(name)
    if value is not None and (not isinstance(value, str) or not value):
        raise _invalid(f"{name} must be a non-empty string")
    return value


def _positive(parameters: dict[str, JSON], name: str) -> float | None:
    value = parameters.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise _invalid(f"{name} must be a positive number")
    return float(value)


def container_name(idempotency_key: str) -> str:
    """The container of the attempt with this key (the same after any crash)."""
    return "statewright-" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:24]


# ---------------------------------------------------------------------------- what ran


@dataclass(frozen=True, slots=True)
class Exited:
    """A container that ran to its end (or was killed at its TimeoutSeconds)."""

    exit_code: int
    stdout: bytes  # at most MAX_STDOUT_BYTES
    stdout_bytes: int  # how many it wrote in all
    stderr_tail: bytes
    duration: float
    timed_out: bool = False


def task_output(spec: ContainerSpec, exited: Exited) -> JSON:
    """The task output for a container that exited 0; TaskFailure for every other end."""
    tail = exited.stderr_tail.decode(errors="replace")
    if exited.timed_out:
        raise TaskFailure(
            "Container.Timeout",
            f"killed after its TimeoutSeconds ({spec.timeout_seconds:g} s); stderr tail: {tail}",
        )
    if exited.exit_code != 0:
        raise TaskFailure(f"Container.ExitCode.{exited.exit_code}", tail)
    if exited.stdout_bytes > MAX_STDOUT_BYTES:
        raise TaskFailure(
            "States.DataLimitExceeded",
            f"the container wrote {exited.stdout_bytes} bytes to stdout; the limit is "
            f"{MAX_STDOUT_BYTES}",
        )
    text = exited.stdout.decode(errors="replace")
    stdout: JSON = text
    if text.strip():
        try:
            stdout = json.loads(text)
        except ValueError:
            stdout = text
    output = {
        "ExitCode": 0,
        "Stdout": stdout,
        "StderrTail": tail,
        "Duration": round(exited.duration, 3),
    }
    payload_size(output)  # the output must be storable JSON
    return output


class ContainerBackend(Protocol):
    """Runs containers somewhere: the Docker Engine API, or Kubernetes Jobs."""

    async def run(
        self, spec: ContainerSpec, name: str, labels: dict[str, str], new: bool
    ) -> Exited:
        """Run the container ``name`` to its end, or follow it if it exists already (a
        crashed worker's; ``new``: no worker took this attempt before, so there is none to
        look for); raise TaskFailure for the task's faults, EngineUnavailable for the
        engine's."""
        ...

    async def remove(self, name: str) -> None:
        """Kill (if running) and remove the container ``name``; nothing if it is gone."""
        ...

    async def exited(self) -> dict[str, str]:
        """The exited containers labelled with an idempotency key: {name: key}."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


# ---------------------------------------------------------------------------- the runner


# An outbox row this worker holds: what the shared claim returns.
Claimed = queries.ClaimedTask


@dataclass
class ContainerRunner:
    """Runs container tasks of this worker, ``concurrency`` at a time."""

    engine: AsyncEngine
    backend: ContainerBackend
    worker_id: str
    concurrency: int = 8
    lease: float = 30.0  # renewed every lease / 3 while the container runs
    networks: tuple[str, ...] = ("none",)
    # Called once a result is committed, with its execution: wakes this process's deciders.
    on_recorded: Callable[[Collection[str]], None] | None = None
    _running: set[asyncio.Task[None]] = field(default_factory=set)
    _swept_at: float | None = None
    _sweeps: set[asyncio.Task[int]] = field(default_factory=set)

    async def run_some(self) -> int:
        """Start up to the free capacity of pending tasks; how many started."""
        free = self.concurrency - len(self._running)
        if free <= 0:
            return 0
        claimed = await self._claim(free)
        for row in claimed:
            task = asyncio.create_task(self._run(row))
            self._running.add(task)
            task.add_done_callback(self._running.discard)
        # Only a worker that runs container tasks talks to the engine: one without any never
        # needs one configured.
        now = time.monotonic()
        if claimed and (self._swept_at is None or now - self._swept_at > SWEEP_SECONDS):
            self._swept_at = now
            sweeping = asyncio.create_task(self.sweep())
            self._sweeps.add(sweeping)
            sweeping.add_done_callback(self._sweeps.discard)
        return len(claimed)

    async def sweep(self) -> int:
        """Remove the exited containers whose results are recorded (a worker died between
        the record and the remove); those of other databases' attempts stay. How many."""
        try:
            leftovers = await self.backend.exited()
            if not leftovers:
                return 0
            o = queries.outbox
            async with self.engine.connect() as conn:
                done = {
                    row[0]
                    for row in await conn.execute(
                        sa.select(o.c.idempotency_key).where(
                            o.c.idempotency_key.in_(list(leftovers.values())),
                            sa.or_(
                                o.c.status.in_(("DONE", "CANCELLED")),
                                # a callback task that waits on: its container is done with
                                sa.and_(o.c.status == "RUNNING", o.c.claimed_by.is_(None)),
                            ),
                        )
                    )
                }
            names = [name for name, key in leftovers.items() if key in done]
            for name in names:
                await self.backend.remove(name)
            if names:
                log.info("removed %d container(s) left behind after their results", len(names))
            return len(names)
        except Exception as exc:  # the engine or the database is away: next time
            log.warning("sweeping exited containers: %s", exc)
            return 0

    async def close(self) -> None:
        """Stop following the containers (they run on) and hand their rows back at once."""
        for task in self._running:
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)
        o = queries.outbox
        with contextlib.suppress(Exception):  # the database is away: the leases run out
            async with self.engine.begin() as conn:
                at = await queries.now(conn)
                await conn.execute(
                    o.update()
                    .where(
                        o.c.claimed_by == self.worker_id,
                        o.c.status == "RUNNING",
                        o.c.resource.in_(RESOURCES),
                    )
                    .values(claim_expires_at=at)
                )
        await self.backend.aclose()

    async def _claim(self, limit: int) -> list[Claimed]:
        async with self.engine.begin() as conn:
            taken = await queries.claim_tasks(conn, RESOURCES, self.worker_id, self.lease, limit)
        return list(taken)

    async def _run(self, claimed: Claimed) -> None:
        logs.EXECUTION.set(claimed.execution_id)  # this task's own context
        name = container_name(claimed.idempotency_key)
        began = time.monotonic()
        try:
            spec = ContainerSpec.parse(claimed.parameters, self.networks)
        except TaskFailure as failure:
            await self._record(claimed, [_failed(claimed, failure)])
            return
        labels = {KEY_LABEL: claimed.idempotency_key, EXECUTION_LABEL: claimed.execution_id}
        running = asyncio.create_task(self.backend.run(spec, name, labels, claimed.new))
        try:
            while True:
                done, _ = await asyncio.wait({running}, timeout=self.lease / 3)
                if done:
                    break
                if not await self._renew(claimed.outbox_id):
                    log.info(
                        "container task %s is no longer this worker's (timed out, stopped or "
                        "taken over): killing %s",
                        claimed.idempotency_key,
                        name,
                    )
                    running.cancel()
                    try:
                        await self.backend.remove(name)
                    except EngineUnavailable as exc:
                        log.warning("container task %s: %s", claimed.idempotency_key, exc)
                    return
            exited = running.result()
            try:
                output = task_output(spec, exited)
                kind = "task_submitted" if _waits(claimed.resource) else "task_succeeded"
                answer = (kind, {"task_id": claimed.task_id, "output": output})
            except TaskFailure as failure:
                answer = _failed(claimed, failure)
        except TaskFailure as failure:
            answer = _failed(claimed, failure)
        except EngineUnavailable as exc:
            log.warning(
                "container task %s: %s; it runs again when its lease runs out",
                claimed.idempotency_key,
                exc,
            )
            return
        except asyncio.CancelledError:
            running.cancel()  # the worker stops: the container runs on, to be followed
            raise
        except Exception as exc:  # a bug, or the database: the lease expires and it runs again
            log.exception("container task %s: %s", claimed.idempotency_key, exc)
            return
        outcome = "succeeded" if answer[0] != "task_failed" else "failed"
        metrics.TASK_SECONDS.labels(RESOURCE, outcome).observe(time.monotonic() - began)
        if await self._record(claimed, [answer]):
            with contextlib.suppress(EngineUnavailable):
                await self.backend.remove(name)

    async def _renew(self, outbox_id: int) -> bool:
        """Extend the lease; False if the row is no longer this worker's RUNNING row."""
        o = queries.outbox
        try:
            async with self.engine.begin() as conn:
                at = await queries.now(conn)
                result = await conn.execute(
                    o.update()
                    .where(
                        o.c.id == outbox_id,
                        o.c.claimed_by == self.worker_id,
                        o.c.status == "RUNNING",
                    )
                    .values(claim_expires_at=at + timedelta(seconds=self.lease))
                    .returning(o.c.id)
                )
                return result.first() is not None
        except Exception as exc:  # the database is away: keep following, try again later
            log.warning("renewing a container task's lease: %s", exc)
            return True

    async def _record(self, claimed: Claimed, answers: list[tuple[str, dict[str, JSON]]]) -> bool:
        """Record the result if the row is still this worker's RUNNING row. True once the
        container is no longer needed (recorded, or the task was closed meanwhile)."""
        waiting = _waits(claimed.resource) and answers[0][0] == "task_submitted"
        # A callback task waits on: its row stays open (RUNNING, claimed by nobody) until the
        # callback or a timeout closes it. Only a row still this worker's and RUNNING is
        # closed (queries.record_results, shared with the HTTP runner).
        result = queries.TaskResult(claimed.outbox_id, claimed.execution_id, answers, waiting)
        for attempt in range(5):
            try:
                async with one_statement(self.engine) as conn:
                    await queries.record_results(conn, self.worker_id, [result])
                if self.on_recorded is not None:
                    self.on_recorded((claimed.execution_id,))
                return True
            except Exception as exc:  # the lease runs out and the container is followed again
                log.warning("container task result not recorded yet (%s); retrying", exc)
                await asyncio.sleep(min(0.1 * 2**attempt, 2.0))
        return False


def _failed(claimed: Claimed, failure: TaskFailure) -> tuple[str, dict[str, JSON]]:
    return (
        "task_failed",
        {"task_id": claimed.task_id, "error": failure.error, "cause": failure.cause[:32768]},
    )


def _waits(resource: str) -> bool:
    return resource.endswith(".waitForTaskToken")
