"""HTTP tasks: ``"Resource": "arn:aws:states:::http:invoke"`` (and ``.waitForTaskToken``).

The runner takes pending http:invoke tasks from the outbox with a lease (the row is marked
RUNNING, claimed by this worker until ``claim_expires_at``), records TaskStarted, sends the
request outside any transaction, then records the result in one transaction, only if the row
is still its own and RUNNING (a task that timed out, or whose execution stopped, meanwhile
keeps its ending). A worker that dies mid-request leaves the lease to expire; another worker
then sends the request again with the same ``Idempotency-Key`` header (the execution ARN and
the TaskScheduled event id), so the receiving service can de-duplicate: HTTP side effects are
at least once, the task's result is recorded once.

Parameters are AWS's: ApiEndpoint, Method, Headers, QueryParameters, RequestBody, Transform
(RequestBodyEncoding NONE or URL_ENCODED with RequestEncodingOptions.ArrayFormat INDICES,
REPEAT, COMMAS or BRACKETS). The output is ``{"Headers": {name: [values]}, "ResponseBody":
parsed JSON or text, "StatusCode": n, "StatusText": "..."}``. Errors:

* a non-2xx status: ``States.Http.StatusCode.<code>`` (the cause is the output above, as JSON);
* no answer within the timeout: ``States.Http.Socket`` (AWS's name for it);
* the connection refused or reset: ``States.Http.Connection``; the name not resolved:
  ``States.Http.NameResolution``; a TLS failure: ``States.Http.TLS``;
* a destination the outbound rules refuse: ``States.Http.DestinationNotAllowed``;
* a binary or oversized response: ``States.Http.UnsupportedResponse`` / ``States.DataLimitExceeded``;
* Parameters that do not make a request: ``States.Runtime``.

Outbound rules (server-side request forgery): the host is resolved once, every address is
checked, and the request goes to the checked address (the Host header and TLS server name
stay the host's), so a second DNS answer cannot slip past the check. Link-local and cloud
metadata addresses are always refused unless listed; loopback and private ranges need the
allow-list (``STATEWRIGHT_HTTP_ALLOW``: hosts and CIDRs; ``statewright dev`` allows loopback).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import json
import logging
import socket
import ssl
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import aiohttp
import yarl
from sqlalchemy.ext.asyncio import AsyncEngine

from service import connections, logs, metrics, tracing
from service.db import queries
from service.db.engine import one_statement
from service.sealing import Sealer, ServerKeyError
from statemachine.payload import payload_size

log = logging.getLogger("statewright.http")
JSON = Any
RESOURCE = "arn:aws:states:::http:invoke"
RESOURCES = (RESOURCE, RESOURCE + ".waitForTaskToken")
METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD")
MAX_RESPONSE_BYTES = 256 * 1024
# Headers a task may not set (AWS's list): the transport, the service or the connection owns them.
FORBIDDEN_HEADERS = frozenset(
    h.lower()
    for h in (
        "A-IM Accept-Charset Accept-Datetime Accept-Encoding Authorization Cache-Control "
        "Connection Content-Encoding Content-Length Content-MD5 Date Expect Forwarded From "
        "Host HTTP2-Settings Max-Forwards Origin Pragma Proxy-Authorization Referer Server TE "
        "Trailer Transfer-Encoding Upgrade Via Warning Idempotency-Key"
    ).split()
)
FORBIDDEN_PREFIXES = ("if-", "x-forwarded-", "x-amz-", "x-amzn-")
BINARY_TYPES = ("image/", "audio/", "video/", "application/octet-stream")
ALWAYS_REFUSED = (
    ipaddress.ip_network("169.254.0.0/16"),  # link-local, the cloud metadata service
    ipaddress.ip_network("fe80::/10"),
    ipaddress.ip_network("fd00:ec2::254/128"),
    ipaddress.ip_network("0.0.0.0/8"),
)


class TaskFailure(Exception):
    """The task fails with ``error`` and ``cause``."""

    def __init__(self, error: str, cause: str) -> None:
        super().__init__(f"{error}: {cause}")
        self.error = error
        self.cause = cause


# ---------------------------------------------------------------------------- the request


@dataclass(frozen=True, slots=True)
class Request:
    """An HTTP request built from a task's Parameters."""

    method: str
    url: str
    headers: list[tuple[str, str]]
    params: list[tuple[str, str]]
    content: bytes | None


def build_request(parameters: JSON) -> Request:
    """The request a task's Parameters describe; TaskFailure(States.Runtime) if they don't."""
    if not isinstance(parameters, dict):
        raise _invalid("Parameters must be an object with ApiEndpoint and Method")
    endpoint = parameters.get("ApiEndpoint")
    if not isinstance(endpoint, str) or not endpoint:
        raise _invalid("ApiEndpoint must be a URL (https://host/path)")
    url = urllib.parse.urlsplit(endpoint)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise _invalid(f"ApiEndpoint must be an http or https URL, not {endpoint!r}")
    method = parameters.get("Method")
    if not isinstance(method, str) or method.upper() not in METHODS:
        raise _invalid(f"Method must be one of {', '.join(METHODS)}, not {method!r}")
    headers: list[tuple[str, str]] = []
    given = parameters.get("Headers") or {}
    if not isinstance(given, dict):
        raise _invalid("Headers must be an object of strings")
    for name, value in given.items():
        lowered = name.lower()
        if lowered in FORBIDDEN_HEADERS or lowered.startswith(FORBIDDEN_PREFIXES):
            raise _invalid(f"the header {name!r} cannot be set by a task")
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise _invalid(f"the header {name!r} must be a string")
        headers.append((name, str(value)))
    params = _query(parameters.get("QueryParameters"))
    content: bytes | None = None
    if "RequestBody" in parameters:
        body = parameters["RequestBody"]
        transform = parameters.get("Transform") or {}
        if not isinstance(transform, dict):
            raise _invalid("Transform must be an object")
        encoding = transform.get("RequestBodyEncoding", "NONE")
        if encoding == "URL_ENCODED":
            if not isinstance(body, dict):
                raise _invalid("a URL_ENCODED RequestBody must be an object")
            options = transform.get("RequestEncodingOptions") or {}
            array_format = (
                options.get("ArrayFormat", "INDICES") if isinstance(options, dict) else None
            )
            content = _form(body, array_format).encode()
            _default(headers, "Content-Type", "application/x-www-form-urlencoded")
        elif encoding == "NONE":
            if isinstance(body, str):
                content = body.encode()
                _default(headers, "Content-Type", "text/plain; charset=UTF-8")
            else:
                content = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
                _default(headers, "Content-Type", "application/json; charset=UTF-8")
        else:
            raise _invalid(f"RequestBodyEncoding must be NONE or URL_ENCODED, not {encoding!r}")
    return Request(method.upper(), endpoint, headers, params, content)


def _invalid(message: str) -> TaskFailure:
    return TaskFailure("States.Runtime", f"The HTTP task's Parameters are not valid: {message}")


def _default(headers: list[tuple[str, str]], name: str, value: str) -> None:
    if not any(n.lower() == name.lower() for n, _ in headers):
        headers.append((name, value))


def _scalar(value: JSON) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _query(given: JSON) -> list[tuple[str, str]]:
    if given is None:
        return []
    if not isinstance(given, dict):
        raise _invalid("QueryParameters must be an object")
    out = []
    for name, value in given.items():
        for item in value if isinstance(value, list) else [value]:
            out.append((name, _scalar(item)))
    return out


def _form(body: dict[str, JSON], array_format: JSON) -> str:
    pairs: list[tuple[str, str]] = []
    for name, value in body.items():
        if not isinstance(value, list):
            pairs.append((name, _scalar(value)))
        elif array_format == "INDICES":
            pairs.extend((f"{name}[{i}]", _scalar(v)) for i, v in enumerate(value))
        elif array_format == "REPEAT":
            pairs.extend((name, _scalar(v)) for v in value)
        elif array_format == "COMMAS":
            pairs.append((name, ",".join(_scalar(v) for v in value)))
        elif array_format == "BRACKETS":
            pairs.extend((f"{name}[]", _scalar(v)) for v in value)
        else:
            raise _invalid(
                f"ArrayFormat must be INDICES, REPEAT, COMMAS or BRACKETS, not {array_format!r}"
            )
    return urllib.parse.urlencode(pairs)


# ---------------------------------------------------------------------------- outbound rules


@dataclass(frozen=True, slots=True)
class Pinned:
    """Where to send a request whose destination was checked (Outbound.pin)."""

    url: str  # the URL with the checked address in place of the host name
    host_header: str
    server_hostname: str | None  # the TLS server name for https


@dataclass(frozen=True)
class Outbound:
    """Which destinations HTTP tasks may reach."""

    allowed_hosts: frozenset[str] = frozenset()
    allowed_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> Outbound:
        """From ``STATEWRIGHT_HTTP_ALLOW``'s entries: host names and addresses or CIDRs."""
        hosts: set[str] = set()
        networks = []
        for entry in entries:
            entry = entry.strip()
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                hosts.add(entry.lower().rstrip("."))
        return cls(frozenset(hosts), tuple(networks))

    async def resolve_checked(self, url: urllib.parse.SplitResult) -> list[str]:
        """The addresses of ``url``'s host, each checked (TaskFailure if one is refused)."""
        host = url.hostname or ""
        addresses = await resolve(host, url.port or (443 if url.scheme == "https" else 80))
        for address in addresses:
            self.check(host, address)
        return addresses

    async def pin(self, raw_url: str) -> Pinned:
        """``raw_url`` resolved and checked, to be sent to the address that was checked (so a
        second DNS answer cannot slip past the check); Host and the TLS server name stay the
        host's."""
        url = urllib.parse.urlsplit(raw_url)
        addresses = await self.resolve_checked(url)
        target = f"[{addresses[0]}]" if ":" in addresses[0] else addresses[0]
        netloc = f"{target}:{url.port}" if url.port else target
        return Pinned(
            urllib.parse.urlunsplit((url.scheme, netloc, url.path, url.query, url.fragment)),
            url.netloc.rpartition("@")[2],
            url.hostname if url.scheme == "https" else None,
        )

    def check(self, host: str, address: str) -> None:
        """Raise TaskFailure unless ``address`` (``host`` resolved) may be reached."""
        ip = ipaddress.ip_address(address)
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        listed = host.lower().rstrip(".") in self.allowed_hosts or any(
            ip in network for network in self.allowed_networks
        )
        if listed:
            return
        if any(ip in network for network in ALWAYS_REFUSED) or ip.is_multicast:
            reason = "link-local and cloud metadata addresses are refused"
        elif ip.is_loopback or ip.is_private or ip.is_unspecified or ip.is_reserved:
            reason = "loopback and private addresses need STATEWRIGHT_HTTP_ALLOW"
        else:
            return
        raise TaskFailure(
            "States.Http.DestinationNotAllowed",
            f"{host} resolves to {address}: {reason} (list the host or its network in "
            "STATEWRIGHT_HTTP_ALLOW to allow it)",
        )


async def resolve(host: str, port: int) -> list[str]:
    """The addresses of ``host`` (an address stands for itself)."""
    try:
        return [str(ipaddress.ip_address(host.strip("[]")))]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise TaskFailure(
            "States.Http.NameResolution", f"cannot resolve {host}: {exc.strerror}"
        ) from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


# ---------------------------------------------------------------------------- sending


async def invoke(
    client: Client,
    parameters: JSON,
    idempotency_key: str,
    outbound: Outbound,
    timeout: float,
    auth_headers: Sequence[tuple[str, str]] = (),
) -> JSON:
    """Send the request (with a connection's ``auth_headers``); return the task output or
    raise TaskFailure."""
    request = build_request(parameters)
    target = await outbound.pin(request.url)
    headers = [
        *request.headers,
        *auth_headers,
        ("Host", target.host_header),
        ("Idempotency-Key", idempotency_key),
        ("User-Agent", "Statewright|HttpInvoke"),
    ]
    answer = await client.send(
        request.method,
        _with_query(target.url, request.params),
        headers,
        request.content,
        timeout,
        target.server_hostname,
        shown=request.url,
    )
    output = _output(answer)
    if not 200 <= answer.status < 300:
        cause = json.dumps(output, ensure_ascii=False)
        raise TaskFailure(f"States.Http.StatusCode.{answer.status}", cause[:32768])
    return output


def _with_query(url: str, params: Sequence[tuple[str, str]]) -> yarl.URL:
    """``url`` (its path and query percent-encoded where needed, the fragment dropped) with
    ``params`` added to its query as a form would encode them."""
    base = yarl.URL(url).with_fragment(None)
    if not params:
        return base
    query = "&".join(q for q in (base.raw_query_string, urllib.parse.urlencode(params)) if q)
    return yarl.URL(str(base.with_query(None)) + "?" + query, encoded=True)


@dataclass(frozen=True, slots=True)
class Answer:
    """A response, read whole (within MAX_RESPONSE_BYTES)."""

    status: int
    reason: str
    headers: list[tuple[str, str]]
    content_type: str
    charset: str | None
    body: bytes


class Client:
    """The HTTP runner's client: one aiohttp session, ``connections`` pooled keep-alive
    connections in all (a pooled connection is keyed by address, port, TLS settings and TLS
    server name, so a connection verified for one host name never carries another's request).

    aiohttp rather than httpx here: at 50 concurrent keep-alive requests to a local echo server
    httpx (its pool scanned under a lock on every request, even split into clients of four
    connections each) did 490-590 requests/s on this 2-core machine where aiohttp did 3,100-
    3,150, in the same run; the runner's throughput follows its client's CPU per request. The
    session keeps no cookies (one task's response must not reach another's request), follows
    no redirects, ignores proxy settings in the environment (a request goes to the address its
    destination check pinned), and sets TCP_NODELAY on its sockets."""

    def __init__(self, connections: int) -> None:
        self._tls = ssl.create_default_context()
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=max(1, connections), limit_per_host=0),
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False,
        )

    async def send(
        self,
        method: str,
        url: yarl.URL,
        headers: Sequence[tuple[str, str]],
        content: bytes | None,
        timeout: float,
        server_hostname: str | None = None,
        *,
        shown: str,
        auth: tuple[str, str] | None = None,
        form: Mapping[str, str] | None = None,
        read: bool = True,
    ) -> Answer:
        """Send one request; the answer, or TaskFailure for what went wrong on the way
        (``shown`` is the URL as the task gave it, for the cause). ``read=False``: the status
        and headers only, whatever the body."""
        try:
            async with self._session.request(
                method,
                url,
                headers=list(headers),
                data=content if form is None else form,
                auth=aiohttp.BasicAuth(*auth) if auth else None,
                timeout=aiohttp.ClientTimeout(total=timeout),
                ssl=self._tls if url.scheme == "https" else True,
                server_hostname=server_hostname,
                allow_redirects=False,
            ) as response:
                kind = response.headers.get("Content-Type", "").lower()
                if not read:
                    return Answer(response.status, response.reason or "", [], kind, None, b"")
                if kind.startswith(BINARY_TYPES):
                    raise TaskFailure(
                        "States.Http.UnsupportedResponse",
                        f"the response is {kind}: HTTP tasks take text and JSON responses only",
                    )
                body = bytearray()
                async for chunk in response.content.iter_chunked(64 * 1024):
                    body += chunk
                    if len(body) > MAX_RESPONSE_BYTES:
                        raise TaskFailure(
                            "States.DataLimitExceeded",
                            f"the response body is over {MAX_RESPONSE_BYTES} bytes, the limit",
                        )
                return Answer(
                    response.status,
                    response.reason or "",
                    list(response.headers.items()),
                    kind,
                    response.charset,
                    bytes(body),
                )
        except TimeoutError:  # aiohttp's timeouts are TimeoutErrors too
            raise TaskFailure(
                "States.Http.Socket", f"{method} {shown}: no answer within {timeout:g} s"
            ) from None
        except (aiohttp.ClientSSLError, ssl.SSLError) as exc:
            raise TaskFailure("States.Http.TLS", f"{shown}: {exc}") from None
        except aiohttp.ClientConnectorError as exc:
            raise TaskFailure("States.Http.Connection", f"{shown}: {exc}") from None
        except (aiohttp.ClientError, OSError) as exc:
            # A reset seen while reading can come without a message (it depends on timing).
            detail = str(exc) or "the connection was closed or reset before the answer"
            raise TaskFailure(
                "States.Http.Connection", f"{shown}: {type(exc).__name__}: {detail}"
            ) from None

    async def aclose(self) -> None:
        await self._session.close()


def _output(answer: Answer) -> JSON:
    try:
        text = answer.body.decode(answer.charset or "utf-8", errors="replace")
    except LookupError:  # a charset Python does not know
        text = answer.body.decode("utf-8", errors="replace")
    body: JSON = text
    if text and ("json" in answer.content_type or text.lstrip()[:1] in ("{", "[")):
        try:
            body = json.loads(text)
        except ValueError:
            body = text
    headers: dict[str, list[str]] = {}
    for name, value in answer.headers:
        headers.setdefault(name.lower(), []).append(value)
    output = {
        "Headers": headers,
        "ResponseBody": body,
        "StatusCode": answer.status,
        "StatusText": answer.reason,
    }
    payload_size(output)  # the output must be storable JSON
    return output


def _waits(resource: str, answers: list[tuple[str, dict[str, JSON]]]) -> bool:
    """Whether a task goes on waiting (for its callback) after this answer."""
    return resource.endswith(".waitForTaskToken") and answers[0][0] == "task_submitted"


# ---------------------------------------------------------------------------- the runner


@dataclass
class HttpRunner:
    """Runs http:invoke tasks of this worker, ``concurrency`` at a time."""

    engine: AsyncEngine
    outbound: Outbound
    worker_id: str
    sealer: Sealer | None = None  # opens connection secrets; None: tasks with one fail
    concurrency: int = 32
    timeout: float = 60.0
    lease: float = 90.0  # longer than any request: an expired lease means a dead worker
    per_host: int = 32  # requests in flight to one host
    per_host_rate: float = 0.0  # requests started per second to one host (0: no limit)
    traced: bool = False  # traces are exported: traceparent says "sampled"
    client: Client | None = None
    _running: set[asyncio.Task[None]] = field(default_factory=set)
    _tokens: dict[str, tuple[float, str]] = field(default_factory=dict)  # OAuth, by connection
    _hosts: dict[str, asyncio.Semaphore] = field(default_factory=dict)
    # Called once results are committed, with their executions: wakes this process's deciders
    # at once (the embedded SQLite store has no NOTIFY; on Postgres it saves its round trip).
    on_recorded: Callable[[Collection[str]], None] | None = None
    _results: list[Any] = field(default_factory=list)  # written by _write_results
    _writer: asyncio.Task[None] | None = None
    _next_start: dict[str, float] = field(default_factory=dict)
    more_pending: bool = False  # see run_some
    # Called when a task ends after a claim found more tasks than free capacity.
    on_free: Callable[[], None] | None = None
    _full: bool = False

    async def run_some(self) -> int:
        """Start up to the free capacity of pending tasks; how many started. Afterwards
        ``more_pending`` says whether more may be waiting (the claim filled the capacity it
        asked for); if not, none was left a moment ago and a notice tells of new ones."""
        free = self.concurrency - len(self._running)
        self.more_pending = False
        if free <= 0:
            self._full = True
            return 0
        claimed = await self._claim(free)
        for row in claimed:
            task = asyncio.create_task(self._run(*row))
            self._running.add(task)
            task.add_done_callback(self._finished)
        self.more_pending = len(claimed) == free
        self._full = self._full or self.more_pending
        return len(claimed)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        if self._full and self.on_free is not None:
            # Tasks may wait in the outbox for this capacity: look now, not at the next notice.
            self._full = False
            self.on_free()

    async def close(self) -> None:
        """Let the requests in flight finish (their results are recorded), then close."""
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
        if self.client is not None:
            await self.client.aclose()

    async def _claim(self, limit: int) -> Sequence[tuple[int, str, int, str, JSON, str]]:
        async with one_statement(self.engine) as conn:
            taken = await queries.claim_tasks(conn, RESOURCES, self.worker_id, self.lease, limit)
        return [
            (t.outbox_id, t.execution_id, t.task_id, t.resource, t.parameters, t.idempotency_key)
            for t in taken
        ]

    async def _run(
        self,
        outbox_id: int,
        execution_id: str,
        task_id: int,
        resource: str,
        parameters: JSON,
        idempotency_key: str,
    ) -> None:
        if self.client is None:
            self.client = Client(self.concurrency)
        logs.EXECUTION.set(execution_id)  # this task's own context
        sent = 0.0
        try:
            auth_headers = await self._auth_headers(parameters)
            async with self._host_slot(parameters, outbox_id):
                sent = time.monotonic()
                # The execution's trace goes on in the service called (W3C Trace Context).
                arn = idempotency_key.rpartition(":")[0]
                given = parameters.get("Headers") if isinstance(parameters, dict) else None
                trace = (
                    []
                    if isinstance(given, dict) and "traceparent" in map(str.lower, given)
                    else [("traceparent", tracing.traceparent(arn, task_id, self.traced))]
                )
                output = await invoke(
                    self.client,
                    parameters,
                    idempotency_key,
                    self.outbound,
                    self.timeout,
                    [*auth_headers, *trace],
                )
            metrics.TASK_SECONDS.labels(RESOURCE, "succeeded").observe(time.monotonic() - sent)
            answers: list[tuple[str, dict[str, JSON]]] = []
            if resource.endswith(".waitForTaskToken"):
                answers.append(("task_submitted", {"task_id": task_id, "output": output}))
            else:
                answers.append(("task_succeeded", {"task_id": task_id, "output": output}))
        except TaskFailure as failure:
            metrics.TASK_SECONDS.labels(RESOURCE, "failed").observe(
                time.monotonic() - sent if sent else 0.0
            )
            answers = [
                (
                    "task_failed",
                    {"task_id": task_id, "error": failure.error, "cause": failure.cause},
                )
            ]
        except Exception as exc:  # a bug, or the database: the lease expires and it runs again
            log.exception("http task %s: %s", idempotency_key, exc)
            return
        await self._record(outbox_id, execution_id, resource, answers)

    @contextlib.asynccontextmanager
    async def _host_slot(self, parameters: JSON, outbox_id: int) -> AsyncIterator[None]:
        """Wait for the target host's turn: at most ``per_host`` requests in flight and
        ``per_host_rate`` started per second (0: no limit), so a Map of thousands of calls
        does not flatten one service. A long wait renews the task's lease first."""
        endpoint = parameters.get("ApiEndpoint") if isinstance(parameters, dict) else None
        host = urllib.parse.urlsplit(endpoint).hostname if isinstance(endpoint, str) else None
        if host is None:  # invoke() reports what is wrong with the Parameters
            yield
            return
        slots = self._hosts.setdefault(host, asyncio.Semaphore(self.per_host))
        waited_from = time.monotonic()
        async with slots:
            if self.per_host_rate > 0:
                now = time.monotonic()
                turn = max(now, self._next_start.get(host, now))
                self._next_start[host] = turn + 1 / self.per_host_rate
                await asyncio.sleep(turn - now)
            if time.monotonic() - waited_from > 1.0:
                await self._renew(outbox_id)
            yield

    async def _renew(self, outbox_id: int) -> None:
        o = queries.outbox
        async with self.engine.begin() as conn:
            at = await queries.now(conn)
            await conn.execute(
                o.update()
                .where(o.c.id == outbox_id, o.c.claimed_by == self.worker_id)
                .values(claim_expires_at=at + timedelta(seconds=self.lease))
            )

    async def _auth_headers(self, parameters: JSON) -> list[tuple[str, str]]:
        """The headers of the task's connection (Authentication.ConnectionArn), if it names
        one. The secret goes into the request only: never into the output, a cause or a log."""
        authentication = parameters.get("Authentication") if isinstance(parameters, dict) else None
        if authentication is None:
            return []
        arn = authentication.get("ConnectionArn") if isinstance(authentication, dict) else None
        if not isinstance(arn, str):
            raise _invalid('Authentication must be {"ConnectionArn": "arn:aws:events:..."}')
        if self.sealer is None:
            raise TaskFailure(
                "Events.ConnectionResource.InvalidConnectionState",
                f"this worker cannot open the secret of {arn}: STATEWRIGHT_SECRET_KEY is not set",
            )
        try:
            found = await connections.credentials(self.engine, self.sealer, arn)
        except ServerKeyError:
            raise TaskFailure(
                "Events.ConnectionResource.InvalidConnectionState",
                f"the secret of {arn} cannot be opened with this worker's STATEWRIGHT_SECRET_KEY",
            ) from None
        if found is None:
            raise TaskFailure(
                "Events.ConnectionResource.NotFound", f"the connection {arn} does not exist"
            )
        if found.type == "BASIC":
            pair = f"{found.parameters['username']}:{found.secret}".encode()
            return [("Authorization", "Basic " + base64.b64encode(pair).decode())]
        if found.type == "API_KEY":
            return [(found.parameters["name"], found.secret)]
        return [("Authorization", "Bearer " + await self._oauth_token(found))]

    async def _oauth_token(self, found: connections.Credentials) -> str:
        """A client-credentials token for the connection, cached until shortly before it
        expires."""
        cached = self._tokens.get(found.arn)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        endpoint = found.parameters["tokenEndpoint"]
        # To the checked address, as a task's own request (a second DNS answer cannot slip
        # past the check).
        target = await self.outbound.pin(endpoint)
        assert self.client is not None
        form = {"grant_type": "client_credentials"}
        if found.parameters.get("scope"):
            form["scope"] = found.parameters["scope"]
        status = 0
        try:
            answer = await self.client.send(
                "POST",
                yarl.URL(target.url),
                [("Host", target.host_header), ("Accept", "application/json")],
                None,
                self.timeout,
                target.server_hostname,
                shown=endpoint,
                auth=(found.parameters["clientId"], found.secret),
                form=form,
            )
            status = answer.status
            body = json.loads(answer.body) if status == 200 else {}
        except (TaskFailure, ValueError) as exc:
            reason = exc.error if isinstance(exc, TaskFailure) else type(exc).__name__
            raise TaskFailure(
                "Events.ConnectionResource.AuthorizationFailed",
                f"the token endpoint of {found.arn} failed: {reason}",
            ) from None
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str):
            raise TaskFailure(
                "Events.ConnectionResource.AuthorizationFailed",
                f"the token endpoint of {found.arn} answered {status} without an access_token",
            )
        lifetime = body.get("expires_in", 3600)
        lifetime = float(lifetime) if isinstance(lifetime, int | float) else 3600.0
        self._tokens[found.arn] = (time.monotonic() + max(lifetime - 30, 0), token)
        return token

    async def _record(
        self,
        outbox_id: int,
        execution_id: str,
        resource: str,
        answers: list[tuple[str, dict[str, JSON]]],
    ) -> None:
        """Hand the result to the writer and wait until it is written (or given up on)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._results.append((outbox_id, execution_id, resource, answers, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_results())
        await done

    async def _write_results(self) -> None:
        """Write the results that are waiting, all of them at once (one statement on Postgres:
        the results that finish while one batch is written form the next)."""
        while self._results:
            batch, self._results = self._results, []
            results = [
                queries.TaskResult(outbox_id, execution_id, answers, _waits(resource, answers))
                for outbox_id, execution_id, resource, answers, _ in batch
            ]
            for attempt in range(5):
                try:
                    async with one_statement(self.engine) as conn:
                        await queries.record_results(conn, self.worker_id, results)
                    if self.on_recorded is not None:
                        # This process's deciders need not wait to hear.
                        self.on_recorded({result.execution_id for result in results})
                    break
                except Exception as exc:  # the lease runs out and the task runs again
                    log.warning("http task results not recorded yet (%s); retrying", exc)
                    await asyncio.sleep(min(0.1 * 2**attempt, 2.0))
            for *_, done in batch:
                if not done.done():
                    done.set_result(None)
