"""Container tasks: ``"Resource": "arn:statewright:::container:run"`` (and ``.waitForTaskToken``).

The runner takes pending container tasks from the outbox with a lease (the row is marked
RUNNING, claimed by this worker until ``claim_expires_at``), records TaskStarted, and runs the
container through a backend (the Docker Engine API: Docker, or podman's compatible service).
The container of an attempt is named after the attempt's idempotency key (the execution ARN
and the TaskScheduled event id): ``statewright-<sha256 of the key, 24 hex digits>``, with the
labels ``statewright.idempotency-key`` and ``statewright.execution``. Crash points:

* **before the create**: the lease runs out, another worker claims the row, finds no
  container of that name and creates it: it runs once.
* **between create and start**: the next worker finds the container ``created`` and starts it.
* **while it runs**: the next worker finds it running (or exited) and follows it: waits, reads
  its logs, records the result. It never starts a second one; a create that meets the name
  already taken (409, or podman's 500 "already in use") follows the existing container too.
  Input on stdin is written by whoever starts the container: a worker that dies while writing
  it leaves the container with its stdin cut short (InputFile is written before the start).
* **after the exit, before the result is recorded**: the next worker finds it exited and
  reads the same logs; the result is recorded once (only by the row's current holder).
* **after the record, before the remove**: the exited container is left behind (a leak, not a
  second run); ``statewright.*`` labels find it.

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
import io
import json
import logging
import os
import posixpath
import re
import tarfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import httpx
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from service.db import queries
from service.runners.http import TaskFailure
from statemachine.payload import payload_size

log = logging.getLogger("statewright.container")
JSON = Any
RESOURCE = "arn:statewright:::container:run"
RESOURCES = (RESOURCE, RESOURCE + ".waitForTaskToken")
MAX_STDOUT_BYTES = 256 * 1024
STDERR_TAIL_BYTES = 4 * 1024
DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
API_VERSION = "v1.41"  # Docker 20.10; podman 4 speaks it too
LIBPOD_API = "v4.0.0/libpod"  # podman's own API, for its faster wait
KEY_LABEL = "statewright.idempotency-key"
EXECUTION_LABEL = "statewright.execution"
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
    """Runs containers somewhere: the Docker Engine API here; a Kubernetes Job could be next."""

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

    async def aclose(self) -> None:
        """Release connections."""
        ...


# ---------------------------------------------------------------------------- Docker API


@dataclass
class DockerEngine:
    """The Docker Engine REST API (Docker, or podman's ``system service``) at ``host``:
    ``unix:///path`` or ``tcp://host:port`` (plain: no TLS), as ``DOCKER_HOST`` says."""

    host: str = DEFAULT_DOCKER_HOST
    _client: httpx.AsyncClient | None = None
    _podman: bool | None = None  # the engine is podman (asked once)

    @classmethod
    def from_environment(cls, host: str | None = None) -> DockerEngine:
        """The engine at ``host``, else ``$DOCKER_HOST``, else Docker's default socket."""
        return cls(host or os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST)

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            if self.host.startswith("unix://"):
                transport = httpx.AsyncHTTPTransport(uds=self.host.removeprefix("unix://"))
                base = "http://docker"
            elif self.host.startswith("tcp://"):
                transport = httpx.AsyncHTTPTransport()
                base = "http://" + self.host.removeprefix("tcp://")
            else:
                raise EngineUnavailable(
                    f"DOCKER_HOST={self.host}: only unix:// and tcp:// engines are supported"
                )
            self._client = httpx.AsyncClient(
                transport=transport, base_url=f"{base}/{API_VERSION}", timeout=30.0
            )
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _call(self, method: str, path: str | httpx.URL, **kwargs: Any) -> httpx.Response:
        try:
            return await self.client.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise EngineUnavailable(
                f"the container engine at {self.host} cannot be reached: "
                f"{type(exc).__name__}: {exc}"
            ) from None

    async def run(
        self, spec: ContainerSpec, name: str, labels: dict[str, str], new: bool
    ) -> Exited:
        state = None if new else await self._inspect(name)
        if state is None:
            created = await self._create(spec, name, labels)
            state = await self._inspect(name) if not created else {"Status": "created"}
        if state is None:  # removed between the name conflict and the look
            raise EngineUnavailable(f"the container {name} vanished while being followed")
        started: datetime | None = None
        stdin: asyncio.Task[None] | None = None
        following = state.get("Status") not in ("created", "configured")
        began = time.monotonic()
        if not following:
            if spec.input_file is not None and spec.input is not None:
                await self._put_file(name, spec.input_file, spec.input)
            stdin = await self._start(name, spec)
        else:  # a crashed worker's container: follow it
            started = _time(state.get("StartedAt"))
            log.info("following the existing container %s (%s)", name, state.get("Status"))
        try:
            exit_code, timed_out = await self._wait(name, spec.timeout_seconds, started)
        finally:
            if stdin is not None:
                stdin.cancel()
        duration = time.monotonic() - began
        if following:  # it ran before this worker looked: the engine knows how long
            state = await self._inspect(name) or {}
            begun, ended = _time(state.get("StartedAt")), _time(state.get("FinishedAt"))
            duration = (ended - begun).total_seconds() if begun and ended else 0.0
            if exit_code == 137 and spec.timeout_seconds and duration >= spec.timeout_seconds:
                timed_out = True  # killed at its timeout by the worker followed before
        stdout, stdout_bytes, stderr_tail = await self._logs(name)
        return Exited(exit_code, stdout, stdout_bytes, stderr_tail, max(duration, 0.0), timed_out)

    async def remove(self, name: str) -> None:
        response = await self._call("DELETE", f"/containers/{name}", params={"force": "1"})
        if response.status_code not in (200, 204, 404):
            raise EngineUnavailable(f"removing {name}: {_message(response)}")

    async def _inspect(self, name: str) -> dict[str, JSON] | None:
        response = await self._call("GET", f"/containers/{name}/json")
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise EngineUnavailable(f"inspecting {name}: {_message(response)}")
        state: dict[str, JSON] = response.json().get("State") or {}
        return state

    async def _create(self, spec: ContainerSpec, name: str, labels: dict[str, str]) -> bool:
        """Create the container; False when the name is taken (another attempt's worker
        created it: follow that one)."""
        host_config: dict[str, JSON] = {"NetworkMode": spec.network}
        if spec.memory_mib is not None:
            host_config["Memory"] = spec.memory_mib * 1024 * 1024
        if spec.cpu_count is not None:
            host_config["NanoCpus"] = int(spec.cpu_count * 1e9)
        body: dict[str, JSON] = {
            "Image": spec.image,
            "Env": [f"{k}={v}" for k, v in spec.environment],
            "Labels": labels,
            "HostConfig": host_config,
        }
        if spec.command is not None:
            body["Cmd"] = list(spec.command)
        if spec.entrypoint is not None:
            body["Entrypoint"] = list(spec.entrypoint)
        if spec.working_dir is not None:
            body["WorkingDir"] = spec.working_dir
        if spec.user is not None:
            body["User"] = spec.user
        if spec.stdin is not None:
            # StdinOnce: the container's stdin closes when the attached writer closes.
            body.update(AttachStdin=True, OpenStdin=True, StdinOnce=True)
        response = await self._call("POST", "/containers/create", params={"name": name}, json=body)
        message = _message(response)
        if response.status_code == 409 or "already in use" in message:
            return False
        if response.status_code == 404:
            raise TaskFailure(
                "Container.ImageNotFound",
                f"the image {spec.image} is not in the container engine (images are not "
                f"pulled: pull it into the engine first): {message}",
            )
        if response.status_code >= 500 and "no such image" in message.lower():
            raise TaskFailure("Container.ImageNotFound", f"the image {spec.image}: {message}")
        if response.status_code != 201:
            raise TaskFailure("Container.CreateFailed", f"creating a container: {message}")
        return True

    async def _put_file(self, name: str, path: str, data: bytes) -> None:
        """Put ``data`` at ``path`` in the (created, not started) container: a tar archive
        extracted at /, with the parent directories."""
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            parts = path.strip("/").split("/")
            for depth in range(1, len(parts)):
                folder = tarfile.TarInfo(posixpath.join(*parts[:depth]))
                folder.type, folder.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(folder)
            info = tarfile.TarInfo("/".join(parts))
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
        response = await self._call(
            "PUT",
            f"/containers/{name}/archive",
            params={"path": "/"},
            content=buffer.getvalue(),
            headers={"Content-Type": "application/x-tar"},
        )
        if response.status_code != 200:
            raise TaskFailure("Container.CreateFailed", f"writing {path}: {_message(response)}")

    async def _start(self, name: str, spec: ContainerSpec) -> asyncio.Task[None] | None:
        """Start the container; the task writing its stdin, if it has one (in the
        background: a container that does not read its stdin must not hold up the wait)."""
        stdin = await self._attach_stdin(name) if spec.stdin is not None else None
        response = await self._call("POST", f"/containers/{name}/start")
        if response.status_code not in (204, 304):
            if stdin is not None:
                stdin[1].close()
            raise TaskFailure("Container.StartFailed", _message(response))
        if stdin is None or spec.stdin is None:
            return None
        return asyncio.create_task(_write_and_close(*stdin, spec.stdin))

    async def _attach_stdin(self, name: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A hijacked attach connection to the container's stdin (made before the start, so
        nothing written is lost). httpx does not hand out upgraded connections: this one
        request is written by hand on its own socket."""
        path = f"/{API_VERSION}/containers/{name}/attach?stream=1&stdin=1&stdout=0&stderr=0"
        try:
            if self.host.startswith("unix://"):
                reader, writer = await asyncio.open_unix_connection(
                    self.host.removeprefix("unix://")
                )
            else:
                address, _, port = self.host.removeprefix("tcp://").rpartition(":")
                reader, writer = await asyncio.open_connection(address, int(port))
            writer.write(
                f"POST {path} HTTP/1.1\r\nHost: docker\r\nConnection: Upgrade\r\n"
                "Upgrade: tcp\r\nContent-Length: 0\r\n\r\n".encode()
            )
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
            raise EngineUnavailable(f"attaching to {name}'s stdin: {exc!r}") from None
        if not head.startswith((b"HTTP/1.1 101", b"HTTP/1.1 200", b"HTTP/1.0 200")):
            writer.close()
            raise EngineUnavailable(f"attaching to {name}'s stdin: {head[:200]!r}")
        return reader, writer

    async def _wait(
        self, name: str, timeout: float | None, started: datetime | None
    ) -> tuple[int, bool]:
        """The exit code, and whether the container was killed at its timeout (counted
        from its start, also when a crashed worker started it)."""
        waiting = self._wait_exit(name)
        if timeout is None:
            return await waiting, False
        if started is not None:
            timeout -= (datetime.now(UTC) - started).total_seconds()
        try:
            return await asyncio.wait_for(waiting, max(timeout, 0.0)), False
        except TimeoutError:
            response = await self._call("POST", f"/containers/{name}/kill")
            if response.status_code not in (204, 409):  # 409: it exited meanwhile
                raise EngineUnavailable(f"killing {name}: {_message(response)}") from None
            return await self._wait_exit(name), True

    async def _wait_exit(self, name: str) -> int:
        if self._podman is None:  # podman's /_ping answers with its own API version too
            ping = await self._call("GET", self.client.base_url.copy_with(path="/_ping"))
            self._podman = "libpod-api-version" in ping.headers
        if self._podman:
            # podman's Docker-compatible wait polls every 250 ms (half the run of a short
            # container); its own endpoint takes an interval: 10 ms for the first seconds,
            # then 200 ms (a long container need not be asked 100 times a second). "stopped"
            # comes before the cleanup that makes it "exited"; one found exited matches that.
            url = self.client.base_url.copy_with(path=f"/{LIBPOD_API}/containers/{name}/wait")
            for interval, seconds in (("10ms", 2.0), ("200ms", None)):
                params = {"condition": ["stopped", "exited"], "interval": interval}
                try:
                    response = await asyncio.wait_for(
                        self._call("POST", url, params=params, timeout=None), seconds
                    )
                except TimeoutError:
                    continue
                if response.status_code == 200:
                    return int(response.json())
                break
        else:
            response = await self._call("POST", f"/containers/{name}/wait", timeout=None)
            if response.status_code == 200:
                return int(response.json()["StatusCode"])
        raise EngineUnavailable(f"waiting for {name}: {_message(response)}")

    async def _logs(self, name: str) -> tuple[bytes, int, bytes]:
        """stdout (its first MAX_STDOUT_BYTES) and how long it was, and stderr's tail."""
        logs = Logs()
        try:
            async with self.client.stream(
                "GET", f"/containers/{name}/logs", params={"stdout": "1", "stderr": "1"}
            ) as response:
                if response.status_code != 200:
                    await response.aread()
                    raise EngineUnavailable(f"reading {name}'s logs: {_message(response)}")
                async for chunk in response.aiter_bytes():
                    logs.feed(chunk)
        except httpx.TransportError as exc:
            raise EngineUnavailable(f"reading {name}'s logs: {exc!r}") from None
        return bytes(logs.stdout), logs.stdout_bytes, bytes(logs.stderr)


@dataclass
class Logs:
    """A container's logs as the Docker API streams them (without a TTY), kept bounded: the
    first MAX_STDOUT_BYTES of stdout (and its length) and the last STDERR_TAIL_BYTES of stderr,
    however long they are and however the stream is cut into chunks, even inside one frame.
    Frames: [stream (1 stdout, 2 stderr), 0, 0, 0, size (uint32 big-endian)], then the payload."""

    stdout: bytearray = field(default_factory=bytearray)
    stdout_bytes: int = 0
    stderr: bytearray = field(default_factory=bytearray)
    _header: bytearray = field(default_factory=bytearray)
    _stream: int = 1
    _left: int = 0  # payload bytes of the current frame still to come

    def feed(self, chunk: bytes) -> None:
        """Take the next chunk of the stream."""
        view = memoryview(chunk)
        while view:
            if self._left == 0:
                take = 8 - len(self._header)
                self._header += view[:take]
                view = view[take:]
                if len(self._header) == 8:
                    self._stream = self._header[0]
                    self._left = int.from_bytes(self._header[4:8], "big")
                    self._header.clear()
                continue
            payload, view = view[: self._left], view[self._left :]
            self._left -= len(payload)
            if self._stream == 2:
                self.stderr += payload
                del self.stderr[:-STDERR_TAIL_BYTES]
            else:
                self.stdout_bytes += len(payload)
                self.stdout += payload[: max(MAX_STDOUT_BYTES - len(self.stdout), 0)]


async def _write_and_close(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes
) -> None:
    """Write the container's stdin and half-close the connection (with StdinOnce the
    container then reads EOF); hold it until the engine closes its end or the container's
    wait ends (this task is cancelled)."""
    try:
        writer.write(data)
        await writer.drain()
        writer.write_eof()
        while await reader.read(65536):
            pass
    except OSError as exc:
        log.warning("writing a container's stdin: %s", exc)
    finally:
        writer.close()


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"{response.status_code} {response.text[:500]}"
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])
    return f"{response.status_code} {response.text[:500]}"


def _time(value: JSON) -> datetime | None:
    """An engine's timestamp (RFC 3339 with nanoseconds); None for Go's zero time."""
    if not isinstance(value, str) or value.startswith("0001-"):
        return None
    trimmed = re.sub(r"(\.\d{6})\d+", r"\1", value).replace("Z", "+00:00")
    try:
        return datetime.fromisoformat(trimmed)
    except ValueError:
        return None


# ---------------------------------------------------------------------------- the runner


@dataclass(frozen=True, slots=True)
class Claimed:
    """An outbox row this worker holds."""

    outbox_id: int
    execution_id: str
    task_id: int
    resource: str
    parameters: JSON
    idempotency_key: str
    new: bool  # it was PENDING: no worker took this attempt before


@dataclass
class ContainerRunner:
    """Runs container tasks of this worker, ``concurrency`` at a time."""

    engine: AsyncEngine
    backend: ContainerBackend
    worker_id: str
    concurrency: int = 8
    lease: float = 30.0  # renewed every lease / 3 while the container runs
    networks: tuple[str, ...] = ("none",)
    # Called once a result is committed: wakes this process's deciders at once.
    on_recorded: Callable[[], None] | None = None
    _running: set[asyncio.Task[None]] = field(default_factory=set)

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
        return len(claimed)

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
        o, e = queries.outbox, queries.executions
        async with self.engine.begin() as conn:
            at = await queries.now(conn)
            due = sa.or_(
                o.c.status == "PENDING",
                sa.and_(o.c.status == "RUNNING", o.c.claim_expires_at < at),
            )
            query = (
                sa.select(
                    o.c.id,
                    o.c.execution_id,
                    o.c.task_id,
                    o.c.resource,
                    o.c.parameters_ref,
                    o.c.idempotency_key,
                    o.c.status,
                )
                .join(e, e.c.id == o.c.execution_id)
                # Executions run with a mock config test case get their answers from it.
                .where(o.c.resource.in_(RESOURCES), due, e.c.test_case.is_(None))
                .order_by(o.c.id)
                .limit(limit)
            )
            if queries.is_postgres(conn):
                query = query.with_for_update(of=o, skip_locked=True)
            rows = (await conn.execute(query)).all()
            if not rows:
                return []
            await conn.execute(
                o.update()
                .where(o.c.id.in_([row[0] for row in rows]))
                .values(
                    status="RUNNING",
                    claimed_by=self.worker_id,
                    claim_expires_at=at + timedelta(seconds=self.lease),
                )
            )
            await queries.enqueue_many(
                conn,
                [
                    (row[1], "task_started", {"task_id": row[2]})
                    for row in rows
                    if row[6] == "PENDING"  # a re-run after a lost lease started already
                ],
                at,
            )
            values = await queries.load_payloads(conn, [row[4] for row in rows])
        return [
            Claimed(r[0], r[1], r[2], r[3], values[r[4]], r[5], r[6] == "PENDING") for r in rows
        ]

    async def _run(self, claimed: Claimed) -> None:
        name = container_name(claimed.idempotency_key)
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
        o = queries.outbox
        waiting = _waits(claimed.resource) and answers[0][0] == "task_submitted"
        for attempt in range(5):
            try:
                async with self.engine.begin() as conn:
                    at = await queries.now(conn)
                    # A callback task waits on: its row stays open (RUNNING, claimed by
                    # nobody) until the callback or a timeout closes it.
                    result = await conn.execute(
                        o.update()
                        .where(
                            o.c.id == claimed.outbox_id,
                            o.c.status == "RUNNING",
                            o.c.claimed_by == self.worker_id,
                        )
                        .values(
                            status="RUNNING" if waiting else "DONE",
                            claimed_by=None,
                            claim_expires_at=None,
                        )
                        .returning(o.c.id)
                    )
                    if result.first() is not None:
                        await queries.enqueue_many(
                            conn, [(claimed.execution_id, k, b) for k, b in answers], at
                        )
                if self.on_recorded is not None:
                    self.on_recorded()
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
