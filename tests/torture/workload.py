"""The torture run's workload: random valid state machines, a local HTTP service they call, and
the same service as a run_local task provider, so every execution has an exact expectation.

* :func:`definition` draws a state machine (seeded, reproducible) mixing Pass, Choice, Wait
  (0-2 s), Parallel, inline Map (small, some with MaxConcurrency), HTTP tasks
  (``arn:aws:states:::http:invoke``) with Retry and Catch, Succeed and Fail. Inside Parallel
  branches and Map iterations every task has a ``States.ALL`` catcher and there is no Fail, so
  no branch is cancelled half-way (where a cancelled sibling stops depends on timing, which
  run_local cannot know).
* :class:`Target` is the HTTP service. What it does is a function of the request path and body
  only (:func:`answer`): ``/ok`` echoes, ``/flaky/K`` answers 500 while the body's ``attempt``
  (``$$.State.RetryCount``) is below K, ``/status/C`` always answers C, ``/hang`` never
  answers (the task's request times out: ``States.Http.Socket``), ``/reset`` resets the
  connection (``States.Http.Connection``). It counts requests per Idempotency-Key.
* :func:`provider` gives run_local the outcome the service's HTTP runner records for the same
  request: the same output (headers included: the target sends only headers that depend on
  the body) or the same error and cause.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import random
import socket
import struct
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from statemachine import TaskError, TaskRequest

JSON = Any
HTTP = "arn:aws:states:::http:invoke"
# httpx's words for a connection the server resets after reading the request (the runner
# prefixes the URL). The target resets with SO_LINGER 0, so the client sees an RST.
RESET_CAUSE = "{url}: ReadError: [Errno 104] Connection reset by peer"
REASONS = {200: "OK", 404: "Not Found", 500: "Internal Server Error", 503: "Service Unavailable"}


# ---------------------------------------------------------------------------- the answers


@dataclass(frozen=True, slots=True)
class Answer:
    """What the target does with a request: answer (status, body), hang or reset."""

    kind: str  # "http", "hang" or "reset"
    status: int = 200
    body: str = ""


def _ok(body: JSON) -> Answer:
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:12]
    echo = body.get("n") if isinstance(body, dict) else None
    return Answer("http", 200, json.dumps({"echo": echo, "digest": digest}))


def answer(path: str, body: JSON) -> Answer:
    """The target's answer to a POST of ``body`` (parsed JSON) to ``path``."""
    parts = path.strip("/").split("/")
    kind = parts[0]
    if kind == "ok":
        return _ok(body)
    if kind == "flaky":
        attempt = body.get("attempt", 0) if isinstance(body, dict) else 0
        if attempt < int(parts[1]):
            return Answer("http", 500, json.dumps({"message": "try again", "attempt": attempt}))
        return _ok(body)
    if kind == "status":
        return Answer("http", int(parts[1]), json.dumps({"message": f"always {parts[1]}"}))
    if kind in ("hang", "reset"):
        return Answer(kind)
    return Answer("http", 404, json.dumps({"message": f"no such path {path}"}))


def _headers(answer: Answer) -> list[tuple[str, str]]:
    return [
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(answer.body.encode()))),
        ("Connection", "close"),
    ]


def provider(http_timeout: float) -> Callable[[TaskRequest], JSON]:
    """A run_local task provider that answers like the HTTP runner calling the target."""

    def call(request: TaskRequest) -> JSON:
        parameters = request.parameters
        endpoint = parameters["ApiEndpoint"]
        method = parameters.get("Method", "POST").upper()
        got = answer(urllib.parse.urlsplit(endpoint).path, parameters.get("RequestBody"))
        if got.kind == "hang":
            raise TaskError(
                "States.Http.Socket", f"{method} {endpoint}: no answer within {http_timeout:g} s"
            )
        if got.kind == "reset":
            raise TaskError("States.Http.Connection", RESET_CAUSE.format(url=endpoint))
        output = {
            "Headers": {name.lower(): [value] for name, value in _headers(got)},
            "ResponseBody": json.loads(got.body),
            "StatusCode": got.status,
            "StatusText": REASONS[got.status],
        }
        if not 200 <= got.status < 300:
            raise TaskError(
                f"States.Http.StatusCode.{got.status}", json.dumps(output, ensure_ascii=False)
            )
        return output

    return call


# ---------------------------------------------------------------------------- the target


class Target:
    """The HTTP service the tasks call, on 127.0.0.1 in a thread of its own (asyncio, so a
    hanging request costs a coroutine, not a thread)."""

    def __init__(self) -> None:
        self.keys: Counter[str] = Counter()  # requests per Idempotency-Key
        self.first_seen: dict[str, float] = {}  # monotonic time of a key's first request
        self.resend_after_s: list[float] = []  # for each resend, how long after the first
        self.outcomes: Counter[str] = Counter()  # "200", "500", "hang", "reset", ...
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._ready.wait(10) or self._server is None:
            raise RuntimeError("the target server did not start")
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def start() -> None:
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0, backlog=512)
            self._ready.set()

        self._loop.run_until_complete(start())
        try:
            self._loop.run_forever()
        finally:
            tasks = asyncio.all_tasks(self._loop)
            for task in tasks:
                task.cancel()
            self._loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            if self._server is not None:
                self._server.close()
                self._loop.run_until_complete(self._server.wait_closed())
            self._loop.close()

    def close(self) -> None:
        with contextlib.suppress(RuntimeError):  # already closed
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def duplicates(self) -> int:
        """Requests beyond the first per Idempotency-Key (the at-least-once resends)."""
        with self._lock:
            return sum(count - 1 for count in self.keys.values())

    def requests(self) -> int:
        with self._lock:
            return sum(self.keys.values())

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            _, target, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
            raw = await reader.readexactly(int(headers.get("content-length", "0")))
            body = json.loads(raw) if raw else None
            got = answer(urllib.parse.urlsplit(target).path, body)
            with self._lock:
                key = headers.get("idempotency-key", "")
                self.keys[key] += 1
                now = time.monotonic()
                if key in self.first_seen:
                    self.resend_after_s.append(now - self.first_seen[key])
                else:
                    self.first_seen[key] = now
                self.outcomes[got.kind if got.kind != "http" else str(got.status)] += 1
            if got.kind == "hang":
                await reader.read()  # until the client gives up and closes
                return
            if got.kind == "reset":
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.transport.abort()
                return
            status = f"HTTP/1.1 {got.status} {REASONS[got.status]}\r\n"
            fields = "".join(f"{name}: {value}\r\n" for name, value in _headers(got))
            writer.write((status + fields + "\r\n").encode("latin-1") + got.body.encode())
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()


# ---------------------------------------------------------------------------- the definitions


@dataclass
class _Draw:
    rng: random.Random
    url: str
    counter: int = 0

    def name(self, kind: str) -> str:
        self.counter += 1
        return f"{kind}{self.counter}"


BEHAVIOURS = ("/ok", "/flaky/", "/status/", "/hang", "/reset")


def definitions(seed: int, url: str, count: int) -> dict[str, dict[str, JSON]]:
    """``count`` definitions (named torture0, torture1, ...) whose tasks, between them, call
    every behaviour of the target."""
    chosen: dict[str, dict[str, JSON]] = {}
    missing = set(BEHAVIOURS)
    draw = 0
    while len(chosen) < count:
        candidate = definition(seed * 1000 + draw, url)
        draw += 1
        text = json.dumps(candidate)
        brings = {behaviour for behaviour in missing if behaviour in text}
        # Keep a candidate that brings a missing behaviour, or any once the places left are
        # enough for the behaviours still missing.
        if brings or count - len(chosen) > len(missing):
            chosen[f"torture{len(chosen)}"] = candidate
            missing -= brings
    return chosen


def definition(seed: int, url: str, depth: int = 2) -> dict[str, JSON]:
    """A random valid state machine (the same for the same seed) whose tasks call ``url``."""
    draw = _Draw(random.Random(seed), url)
    states: dict[str, JSON] = {}
    length = draw.rng.randint(2, 6)
    start = _sequence(draw, states, length, None, depth, branch=False)
    return {"Comment": f"torture seed {seed}", "StartAt": start, "States": states}


def execution_input(i: int) -> dict[str, JSON]:
    """The input of the i-th execution."""
    return {"n": i, "tag": f"t{i % 5}", "items": list(range(i % 4)), "delay": i % 3}


def _link(state: dict[str, JSON], then: str | None) -> dict[str, JSON]:
    if then is None:
        state["End"] = True
    else:
        state["Next"] = then
    return state


def _sequence(
    draw: _Draw, states: dict[str, JSON], length: int, then: str | None, depth: int, branch: bool
) -> str:
    """Add ``length`` states ending in ``then`` (None: the end) to ``states``; the first's name.

    At the top level (not ``branch``) the sequence may end in Succeed or Fail.
    """
    rng = draw.rng
    if then is None and not branch:
        roll = rng.random()
        if roll < 0.15:
            then = draw.name("Fail")
            states[then] = {"Type": "Fail", "Error": "Torture.Failed", "Cause": "by design"}
        elif roll < 0.35:
            then = draw.name("Succeed")
            states[then] = {"Type": "Succeed"}
    kinds = ["pass", "pass", "task", "task", "task", "choice", "wait"]
    if depth > 0:
        kinds += ["parallel", "map"]
    for _ in range(length):
        then = _state(draw, states, rng.choice(kinds), then, depth, branch)
    assert then is not None
    return then


def _state(
    draw: _Draw, states: dict[str, JSON], kind: str, then: str | None, depth: int, branch: bool
) -> str:
    rng = draw.rng
    name = draw.name(kind.capitalize())
    slot = rng.randrange(3)
    if kind == "pass":
        step = rng.randrange(100)
        states[name] = _link(
            {
                "Type": "Pass",
                "Parameters": {"step": step, "sum.$": f"States.MathAdd($.n, {step})"},
                "ResultPath": f"$.p{slot}",
            },
            then,
        )
    elif kind == "wait":
        wait: dict[str, JSON] = {"Type": "Wait"}
        if rng.random() < 0.5:
            wait["Seconds"] = rng.choice([0, 1, 2])
        else:
            wait["SecondsPath"] = "$.delay"
        states[name] = _link(wait, then)
    elif kind == "choice":
        left = _state(draw, states, "pass", then, 0, branch)
        if not branch and rng.random() < 0.2:
            right = draw.name("Fail")
            states[right] = {"Type": "Fail", "Error": "Torture.Chosen", "Cause": "odd tag"}
        else:
            right = _state(draw, states, "pass", then, 0, branch)
        states[name] = {
            "Type": "Choice",
            "Choices": [
                {"Variable": "$.n", "NumericGreaterThan": rng.randrange(20), "Next": left},
                {"Variable": "$.tag", "StringEquals": f"t{rng.randrange(5)}", "Next": right},
            ],
            "Default": left,
        }
    elif kind == "task":
        states[name] = _task(draw, states, name, then, branch)
    elif kind == "parallel":
        branches = []
        for _ in range(rng.randint(2, 3)):
            sub: dict[str, JSON] = {}
            first = _sequence(draw, sub, rng.randint(1, 3), None, depth - 1, branch=True)
            branches.append({"StartAt": first, "States": sub})
        states[name] = _link(
            {
                "Type": "Parallel",
                "Branches": branches,
                "ResultSelector": {"n.$": "$[0].n", "count.$": "States.ArrayLength($)"},
                "ResultPath": f"$.par{slot}",
            },
            then,
        )
    elif kind == "map":
        sub = {}
        first = _sequence(draw, sub, rng.randint(1, 3), None, depth - 1, branch=True)
        states[name] = _link(
            {
                "Type": "Map",
                "ItemsPath": "$.items",
                "ItemSelector": {
                    "n.$": "$$.Map.Item.Value",
                    "tag.$": "$.tag",
                    "items": [1, 2],
                    "delay": 0,
                },
                "MaxConcurrency": rng.choice([0, 0, 1, 2]),
                "ItemProcessor": {"StartAt": first, "States": sub},
                "ResultSelector": {"count.$": "States.ArrayLength($)"},
                "ResultPath": f"$.map{slot}",
            },
            then,
        )
    else:
        raise ValueError(kind)
    return name


def _task(
    draw: _Draw, states: dict[str, JSON], name: str, then: str | None, branch: bool
) -> dict[str, JSON]:
    rng = draw.rng
    behaviour = rng.choice(
        ["ok", "ok", "ok", "ok", "flaky/1", "flaky/2", "status/500", "status/503", "hang", "reset"]
    )
    task: dict[str, JSON] = {
        "Type": "Task",
        "Resource": HTTP,
        "Parameters": {
            "ApiEndpoint": f"{draw.url}/{behaviour}",
            "Method": "POST",
            "RequestBody": {"n.$": "$.n", "attempt.$": "$$.State.RetryCount", "state": name},
        },
        "ResultSelector": {"body.$": "$.ResponseBody", "status.$": "$.StatusCode"},
        "ResultPath": f"$.t{rng.randrange(3)}",
    }
    retry = []
    if behaviour.startswith(("flaky", "status/5")) and rng.random() < 0.8:
        retry.append(
            {
                "ErrorEquals": ["States.Http.StatusCode.500"],
                "IntervalSeconds": 1,
                "MaxAttempts": rng.randint(1, 3),
                "BackoffRate": 1.0,
            }
        )
    if behaviour in ("hang", "reset") and rng.random() < 0.5:
        retry.append(
            {
                "ErrorEquals": ["States.Http.Socket", "States.Http.Connection"],
                "IntervalSeconds": 1,
                "MaxAttempts": 1,
            }
        )
    if retry:
        task["Retry"] = retry
    if branch or rng.random() < 0.7:
        handler = draw.name("Handler")
        states[handler] = _link(
            {"Type": "Pass", "Parameters": {"handled.$": "$.e.Error"}, "ResultPath": "$.h"},
            then,
        )
        task["Catch"] = [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.e", "Next": handler}]
    return _link(task, then)
