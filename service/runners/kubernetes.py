"""The Kubernetes backend of container tasks: each attempt runs as a batch/v1 Job.

Plain httpx against the API server (the documented Job, Pod and log endpoints; no client
library). UNTESTED AGAINST A LIVE CLUSTER: the tests run it against a fake API server that
answers with responses written after the API's documented objects, not captured from a
cluster (tests/service/test_kubernetes_backend.py).

The API server is the in-cluster one (``KUBERNETES_SERVICE_HOST``/``_PORT``, the service
account's token, CA and namespace under /var/run/secrets/kubernetes.io/serviceaccount) unless
``STATEWRIGHT_KUBERNETES_API`` names one (with ``_TOKEN`` or ``_TOKEN_FILE``, ``_NAMESPACE``,
``_CA_FILE``; ``_INSECURE`` skips TLS verification, for tests only). The token file is read
again every minute: bound service account tokens are rotated.

An attempt's Job is named like the Docker backend's container (``statewright-<24 hex>``, a
DNS-1123 name of 36 characters). Label values are limited to 63 characters, so the task's
labels (the idempotency key, the execution ARN) go into annotations
(``statewright.io/idempotency-key``, ``statewright.io/execution``); the Job and its pod carry
the label ``statewright.io/key-hash`` (the name's hash), which the sweep selects on. A create
that meets the name taken (409 AlreadyExists: a crashed worker's Job) follows that Job.

The Job: backoffLimit 0 (an attempt runs once; Retry is the state machine's), restartPolicy
Never, activeDeadlineSeconds from TimeoutSeconds (counted by the Job controller from the Job's
start, so it includes scheduling and the image pull), ttlSecondsAfterFinished (a safety net;
the runner deletes the Job once the result is recorded), no service account token mounted.
Entrypoint is the container's ``command``, Command its ``args``; User must be numeric
(``"1000"`` or ``"1000:1000"``: runAsUser/runAsGroup); MemoryMiB and CpuCount are limits.

What differs from Docker:

* stdin: a Job's container cannot be given stdin through the API (attach needs a streaming
  upgrade while the pod runs). Input without InputFile goes into the environment variable
  ``STATEWRIGHT_INPUT`` (at most 128 KiB, Linux's limit for one variable); with InputFile,
  into that file, projected from a pod annotation by a downwardAPI volume mounted with
  subPath (the annotations of an object hold at most 256 KiB in all).
* Network: pods always have the cluster's network; ``none`` runs the pod on it (isolate task
  pods with a NetworkPolicy selecting ``statewright.io/key-hash``: that is cluster-level, not
  per task); ``host`` is hostNetwork; other values are refused (Container.CreateFailed).
* logs: Kubernetes merges stdout and stderr. Stdout is the log (its first 256 KiB), and on a
  non-zero exit StderrTail is the log's last 4 KiB; on exit 0 StderrTail is empty.
* images are pulled by the cluster; a pull that keeps failing (ErrImagePull, ImagePullBackOff)
  for ``image_pull_seconds`` fails the task with Container.ImageNotFound (InvalidImageName at
  once), and the Job is deleted.
* TimeoutSeconds: the Job fails with DeadlineExceeded and its pod is killed: Container.Timeout.
  OOMKilled is a non-zero exit (137) whose cause says so.
* Duration comes from the container's start and finish times, which have second resolution.

The API server unreachable, answering 5xx, or refusing the worker (401/403: its credentials or
RBAC) is EngineUnavailable: the task waits for its lease and is followed again.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import os
import ssl
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
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
SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
HASH_LABEL = "statewright.io/key-hash"
ANNOTATION_PREFIX = "statewright.io/"
INPUT_ANNOTATION = "statewright.io/input"
INPUT_VARIABLE = "STATEWRIGHT_INPUT"
CONTAINER = "task"
MAX_VARIABLE_BYTES = 128 * 1024 - 1  # Linux's MAX_ARG_STRLEN, with the name and "="
MAX_INPUT_FILE_BYTES = 240 * 1024  # under the 256 KiB of all annotations, with the others
LOG_LIMIT_BYTES = 16 * 1024 * 1024  # read at most this much of a log (kubelet rotates at 10 MiB)
PULL_FAILURES = frozenset({"ErrImagePull", "ImagePullBackOff"})
CREATE_FAILURES = frozenset({"CreateContainerConfigError", "CreateContainerError"})
TOKEN_REREAD_SECONDS = 60.0


@dataclass
class KubernetesJobs:
    """Container tasks as Kubernetes Jobs in ``namespace`` of the API server at ``api``
    (both None: the cluster the worker runs in, from its service account)."""

    api: str | None = None
    namespace: str | None = None
    token: str | None = field(default=None, repr=False)  # a secret: never in a log line
    token_file: str | None = None
    ca_file: str | None = None
    insecure: bool = False
    ttl_seconds: int = 86400
    image_pull_seconds: float = 120.0
    poll_first: float = 0.2  # seconds between looks at a Job, growing 1.5x to poll_max
    poll_max: float = 5.0
    _client: httpx.AsyncClient | None = None
    _token_read: tuple[float, str] | None = field(default=None, repr=False)
    _namespace: str | None = None

    @property
    def ns(self) -> str:
        """The namespace of the Jobs: as configured, else the service account's."""
        if self._namespace is None:
            self._namespace = self.namespace or _read(SERVICE_ACCOUNT / "namespace") or "default"
        return self._namespace

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            api, ca_file, token_file = self.api, self.ca_file, self.token_file
            if api is None:
                host = os.environ.get("KUBERNETES_SERVICE_HOST")
                if not host:
                    raise EngineUnavailable(
                        "STATEWRIGHT_CONTAINER_BACKEND=kubernetes: not running in a cluster "
                        "(no KUBERNETES_SERVICE_HOST) and no STATEWRIGHT_KUBERNETES_API"
                    )
                port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
                api = f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"
                ca_file = ca_file or str(SERVICE_ACCOUNT / "ca.crt")
            if self.token is None and token_file is None and self.api is None:
                token_file = str(SERVICE_ACCOUNT / "token")
            self.token_file = token_file
            verify: bool | ssl.SSLContext = not self.insecure
            if ca_file is not None and not self.insecure:
                try:
                    verify = ssl.create_default_context(cafile=ca_file)
                except (OSError, ssl.SSLError) as exc:
                    raise EngineUnavailable(f"the Kubernetes CA file {ca_file}: {exc}") from None
            self._client = httpx.AsyncClient(base_url=api, verify=verify, timeout=30.0)
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _headers(self) -> dict[str, str]:
        if self.token is not None:
            return {"Authorization": f"Bearer {self.token}"}
        if self.token_file is None:
            return {}
        now = time.monotonic()
        if self._token_read is None or now - self._token_read[0] > TOKEN_REREAD_SECONDS:
            token = _read(Path(self.token_file))
            if token is None:
                raise EngineUnavailable(f"no Kubernetes token in {self.token_file}")
            self._token_read = (now, token)
        return {"Authorization": f"Bearer {self._token_read[1]}"}

    async def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        client = self.client
        try:
            response = await client.request(method, path, headers=self._headers(), **kwargs)
        except httpx.TransportError as exc:
            raise EngineUnavailable(
                f"the Kubernetes API at {client.base_url} cannot be reached: "
                f"{type(exc).__name__}: {exc}"
            ) from None
        if response.status_code >= 500 or response.status_code in (401, 403):
            raise EngineUnavailable(f"{method} {path}: {_message(response)}")
        return response

    def _jobs(self, name: str = "") -> str:
        path = f"/apis/batch/v1/namespaces/{self.ns}/jobs"
        return f"{path}/{name}" if name else path

    async def run(
        self, spec: ContainerSpec, name: str, labels: dict[str, str], new: bool
    ) -> Exited:
        job = None if new else await self._get_job(name)
        if job is None:
            if not await self._create(job_manifest(spec, name, labels, self.ttl_seconds)):
                log.info("the Job %s exists already: following it", name)
        else:
            log.info("following the existing Job %s", name)
        return await self._follow(spec, name)

    async def remove(self, name: str) -> None:
        response = await self._call(
            "DELETE", self._jobs(name), params={"propagationPolicy": "Background"}
        )
        if response.status_code not in (200, 202, 404):
            raise EngineUnavailable(f"deleting the Job {name}: {_message(response)}")

    async def exited(self) -> dict[str, str]:
        response = await self._call("GET", self._jobs(), params={"labelSelector": HASH_LABEL})
        if response.status_code != 200:
            raise EngineUnavailable(f"listing Jobs: {_message(response)}")
        found = {}
        for job in response.json().get("items") or []:
            metadata = job.get("metadata") or {}
            key = (metadata.get("annotations") or {}).get(ANNOTATION_PREFIX + "idempotency-key")
            if key and _finished(job) is not None:
                found[str(metadata["name"])] = str(key)
        return found

    async def _get_job(self, name: str) -> dict[str, JSON] | None:
        response = await self._call("GET", self._jobs(name))
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise EngineUnavailable(f"reading the Job {name}: {_message(response)}")
        job: dict[str, JSON] = response.json()
        return job

    async def _create(self, manifest: dict[str, JSON]) -> bool:
        """Create the Job; False when its name is taken (follow that one)."""
        response = await self._call("POST", self._jobs(), json=manifest)
        if response.status_code == 409:
            return False
        if response.status_code == 404:  # the namespace: the operator's to fix
            raise EngineUnavailable(f"creating a Job: {_message(response)}")
        if response.status_code not in (200, 201, 202):
            raise TaskFailure("Container.CreateFailed", f"creating a Job: {_message(response)}")
        return True

    async def _follow(self, spec: ContainerSpec, name: str) -> Exited:
        """Look at the Job (and its pod) at growing intervals until it has finished."""
        delay = self.poll_first
        failing_since: float | None = None
        while True:
            job = await self._get_job(name)
            if job is None:
                raise EngineUnavailable(f"the Job {name} vanished while being followed")
            ended = _finished(job)
            pod = await self._pod(name)
            if ended is not None:
                return await self._exited(spec, name, ended, pod)
            waiting = _container(pod).get("state", {}).get("waiting") or {}
            reason = str(waiting.get("reason") or "")
            if reason in PULL_FAILURES or reason in CREATE_FAILURES:
                now = time.monotonic()
                failing_since = failing_since or now
                if now - failing_since >= self.image_pull_seconds:
                    await self.remove(name)
                    raise _waiting_failure(spec, reason, waiting)
            elif reason == "InvalidImageName":
                await self.remove(name)
                raise _waiting_failure(spec, reason, waiting)
            else:
                failing_since = None
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, self.poll_max)

    async def _pod(self, name: str) -> dict[str, JSON] | None:
        """The Job's pod (with backoffLimit 0 there is one; else the newest)."""
        response = await self._call(
            "GET",
            f"/api/v1/namespaces/{self.ns}/pods",
            params={"labelSelector": f"job-name={name}"},
        )
        if response.status_code != 200:
            raise EngineUnavailable(f"listing the pods of {name}: {_message(response)}")
        pods = response.json().get("items") or []
        if not pods:
            return None
        newest: dict[str, JSON] = max(
            pods, key=lambda p: str((p.get("metadata") or {}).get("creationTimestamp") or "")
        )
        return newest

    async def _exited(
        self, spec: ContainerSpec, name: str, ended: tuple[str, str], pod: dict[str, JSON] | None
    ) -> Exited:
        condition, reason = ended
        terminated = _container(pod).get("state", {}).get("terminated") or {}
        timed_out = condition == "Failed" and reason == "DeadlineExceeded"
        if "exitCode" in terminated:
            exit_code = int(terminated["exitCode"])
        elif timed_out:
            exit_code = 137  # its pod was killed (and may be gone)
        elif condition == "Complete":
            exit_code = 0
        else:
            raise TaskFailure(
                "Container.StartFailed",
                f"the Job {name} failed ({reason or 'no reason given'}) without a container "
                "exit to read (its pod is gone or never ran)",
            )
        begun, finished = _time(terminated.get("startedAt")), _time(terminated.get("finishedAt"))
        duration = (finished - begun).total_seconds() if begun and finished else 0.0
        head, total, tail = b"", 0, b""
        if pod is not None:
            head, total, tail = await self._logs(str(pod["metadata"]["name"]))
        else:
            log.warning("the Job %s ended (%s) but its pod is gone: no log to read", name, reason)
        cause = tail if exit_code != 0 or timed_out else b""
        why = str(terminated.get("reason") or "")
        if exit_code != 0 and why not in ("", "Error", "Completed"):
            cause = (cause + f"\n[Kubernetes: the container was {why}]".encode())[
                -STDERR_TAIL_BYTES:
            ]
        return Exited(exit_code, head, total, cause, max(duration, 0.0), timed_out)

    async def _logs(self, pod: str) -> tuple[bytes, int, bytes]:
        """The log's first MAX_STDOUT_BYTES, its length (up to LOG_LIMIT_BYTES) and its last
        STDERR_TAIL_BYTES; empty if the pod or its log is gone."""
        head, tail, total = bytearray(), bytearray(), 0
        path = f"/api/v1/namespaces/{self.ns}/pods/{pod}/log"
        params = {"container": CONTAINER, "limitBytes": str(LOG_LIMIT_BYTES)}
        try:
            client = self.client
            async with client.stream(
                "GET", path, params=params, headers=self._headers()
            ) as response:
                if response.status_code in (400, 404):  # gone, or never started
                    return b"", 0, b""
                if response.status_code != 200:
                    await response.aread()
                    raise EngineUnavailable(f"reading {pod}'s log: {_message(response)}")
                async for chunk in response.aiter_bytes():
                    total += len(chunk)
                    head += chunk[: max(MAX_STDOUT_BYTES - len(head), 0)]
                    tail += chunk
                    del tail[:-STDERR_TAIL_BYTES]
        except httpx.TransportError as exc:
            raise EngineUnavailable(f"reading {pod}'s log: {exc!r}") from None
        return bytes(head), total, bytes(tail)


def job_manifest(
    spec: ContainerSpec, name: str, labels: dict[str, str], ttl_seconds: int
) -> dict[str, JSON]:
    """The batch/v1 Job that runs ``spec``; TaskFailure for what Kubernetes cannot run."""
    key = labels.get(KEY_LABEL, name)
    own_labels = {
        HASH_LABEL: hashlib.sha256(key.encode()).hexdigest()[:24],
        "app.kubernetes.io/managed-by": "statewright",
    }
    annotations = {
        ANNOTATION_PREFIX + label.removeprefix("statewright."): value
        for label, value in labels.items()
    }
    container: dict[str, JSON] = {
        "name": CONTAINER,
        "image": spec.image,
        "env": [{"name": k, "value": v} for k, v in spec.environment],
    }
    if spec.entrypoint is not None:
        container["command"] = list(spec.entrypoint)
    if spec.command is not None:
        container["args"] = list(spec.command)
    if spec.working_dir is not None:
        container["workingDir"] = spec.working_dir
    if spec.user is not None:
        container["securityContext"] = _run_as(spec.user)
    limits = {}
    if spec.memory_mib is not None:
        limits["memory"] = f"{spec.memory_mib}Mi"
    if spec.cpu_count is not None:
        limits["cpu"] = f"{max(math.ceil(spec.cpu_count * 1000), 1)}m"
    if limits:
        container["resources"] = {"limits": limits}
    pod: dict[str, JSON] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,  # the task gets no credentials of its own
        "enableServiceLinks": False,
        "containers": [container],
    }
    template_annotations: dict[str, str] = {}
    if spec.input is not None:
        if spec.input_file is None:
            if len(spec.input) + len(INPUT_VARIABLE) + 1 > MAX_VARIABLE_BYTES:
                raise _unsupported(
                    f"an Input of {len(spec.input)} bytes does not fit in the environment "
                    f"variable {INPUT_VARIABLE} (at most 128 KiB): give an InputFile"
                )
            container["env"].append({"name": INPUT_VARIABLE, "value": spec.input.decode()})
        else:
            if len(spec.input) > MAX_INPUT_FILE_BYTES:
                raise _unsupported(
                    f"an Input of {len(spec.input)} bytes does not fit in a pod annotation "
                    f"(at most {MAX_INPUT_FILE_BYTES} bytes here)"
                )
            template_annotations[INPUT_ANNOTATION] = spec.input.decode()
            pod["volumes"] = [
                {
                    "name": "statewright-input",
                    "downwardAPI": {
                        "items": [
                            {
                                "path": "input.json",
                                "fieldRef": {
                                    "fieldPath": f"metadata.annotations['{INPUT_ANNOTATION}']"
                                },
                            }
                        ]
                    },
                }
            ]
            container["volumeMounts"] = [
                {
                    "name": "statewright-input",
                    "mountPath": spec.input_file,
                    "subPath": "input.json",
                    "readOnly": True,
                }
            ]
    if spec.network == "host":
        pod["hostNetwork"] = True
    elif spec.network != "none":
        raise _unsupported(
            f"Network {spec.network!r}: a pod has the cluster's network (none) or the "
            "node's (host); isolate task pods with a NetworkPolicy"
        )
    template_metadata: dict[str, JSON] = {"labels": own_labels}
    if template_annotations:
        template_metadata["annotations"] = template_annotations
    job_spec: dict[str, JSON] = {
        "backoffLimit": 0,
        "ttlSecondsAfterFinished": ttl_seconds,
        "template": {"metadata": template_metadata, "spec": pod},
    }
    if spec.timeout_seconds is not None:
        job_spec["activeDeadlineSeconds"] = max(math.ceil(spec.timeout_seconds), 1)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": own_labels, "annotations": annotations},
        "spec": job_spec,
    }


def _run_as(user: str) -> dict[str, int]:
    """runAsUser (and runAsGroup) of a numeric User: pods cannot name a user."""
    uid, _, gid = user.partition(":")
    if not uid.isdigit() or (gid and not gid.isdigit()):
        raise _unsupported(f'User {user!r}: Kubernetes needs a numeric user ("1000:1000")')
    context = {"runAsUser": int(uid)}
    if gid:
        context["runAsGroup"] = int(gid)
    return context


def _unsupported(message: str) -> TaskFailure:
    return TaskFailure("Container.CreateFailed", f"not supported on Kubernetes: {message}")


def _finished(job: dict[str, JSON]) -> tuple[str, str] | None:
    """("Complete" or "Failed", the reason) once the Job has finished."""
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("type") in ("Complete", "Failed") and condition.get("status") == "True":
            return str(condition["type"]), str(condition.get("reason") or "")
    return None


def _container(pod: dict[str, JSON] | None) -> dict[str, JSON]:
    """The task container's status in ``pod`` ({} before it has one)."""
    for status in ((pod or {}).get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == CONTAINER:
            found: dict[str, JSON] = status
            return found
    return {}


def _waiting_failure(spec: ContainerSpec, reason: str, waiting: dict[str, JSON]) -> TaskFailure:
    message = f"{reason}: {waiting.get('message') or ''}".strip().rstrip(":")
    if reason in CREATE_FAILURES:
        return TaskFailure("Container.CreateFailed", message)
    return TaskFailure("Container.ImageNotFound", f"the image {spec.image}: {message}")


def _message(response: httpx.Response) -> str:
    """A Status object's message (the API's errors are Status objects)."""
    try:
        body = response.json()
    except ValueError:
        return f"{response.status_code} {response.text[:500]}"
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return f"{response.status_code} {body.get('reason') or ''}: {body['message']}"
    return f"{response.status_code} {response.text[:500]}"


def _time(value: JSON) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except OSError:
        return None
