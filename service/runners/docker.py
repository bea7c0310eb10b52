"""The Docker Engine API backend of container tasks: Docker, or podman's compatible service.

The engine is found as Docker's own tools find it: ``DOCKER_HOST`` (``unix:///path``, or
``tcp://host:port`` without TLS), else ``unix:///var/run/docker.sock``; paths are /v1.41/...
An attempt's container goes through create (with the task's labels; a name already taken
means another worker created it: follow that one), the input file (a tar archive extracted
at /, before the start), an attach to stdin (a hijacked connection, before the start, so
nothing written is lost), start, wait, the logs (without follow, after the exit, streamed and
bounded) and, once the result is recorded, a forced DELETE. Never AutoRemove: the logs must
outlive the exit, and a follower must find the exited container.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import posixpath
import re
import tarfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from service.runners.container import (
    KEY_LABEL,
    MAX_STDOUT_BYTES,
    STDERR_TAIL_BYTES,
    ContainerSpec,
    EngineUnavailable,
    Exited,
)
from service.runners.http import TaskFailure

log = logging.getLogger("statewright.container")
JSON = Any
DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
API_VERSION = "v1.41"  # Docker 20.10; podman 4 speaks it too
QUICK_LOOKS_SECONDS = 2.0
ENDED = ("exited", "stopped", "dead")  # "stopped": podman's, before its cleanup makes it exited


@dataclass
class DockerEngine:
    """The Docker Engine REST API (Docker, or podman's ``system service``) at ``host``:
    ``unix:///path`` or ``tcp://host:port`` (plain: no TLS), as ``DOCKER_HOST`` says."""

    host: str = DEFAULT_DOCKER_HOST
    _client: httpx.AsyncClient | None = None

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

    async def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
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

    async def exited(self) -> dict[str, str]:
        filters = {"label": [KEY_LABEL], "status": ["exited"]}
        response = await self._call(
            "GET", "/containers/json", params={"all": "1", "filters": json.dumps(filters)}
        )
        if response.status_code != 200:
            raise EngineUnavailable(f"listing containers: {_message(response)}")
        return {
            str((c.get("Names") or [""])[0]).lstrip("/"): str(c["Labels"][KEY_LABEL])
            for c in response.json()
            if c.get("Names") and KEY_LABEL in (c.get("Labels") or {})
        }

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
        """The exit code, once the container has stopped. The engine's wait answers it, but
        podman's (Docker-compatible, and its own) takes 150-250 ms after the exit, which was
        most of a short container's time; so, beside it, the container's state is looked at
        after 10 ms, then at intervals growing to 100 ms until 2 s have passed (about 20
        looks), and whichever sees the end first answers."""
        waiting = asyncio.create_task(self._call("POST", f"/containers/{name}/wait", timeout=None))
        try:
            delay, looked = 0.01, 0.0
            while looked < QUICK_LOOKS_SECONDS:
                done, _ = await asyncio.wait({waiting}, timeout=delay)
                if done:
                    break
                looked += delay
                delay = min(delay * 1.5, 0.1)
                state = await self._inspect(name)
                if state is not None and state.get("Status") in ENDED:
                    return int(state.get("ExitCode") or 0)
            response = await waiting
        finally:
            waiting.cancel()
        if response.status_code != 200:
            raise EngineUnavailable(f"waiting for {name}: {_message(response)}")
        return int(response.json()["StatusCode"])

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
