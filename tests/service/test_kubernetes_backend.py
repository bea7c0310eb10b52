"""The Kubernetes backend of container tasks against a fake API server (no cluster can run
here): a real HTTP server on 127.0.0.1 that records the requests and answers with Job, Pod,
log and Status objects shaped as the Kubernetes API documents them (the status transitions of
a Job that completes, fails, passes its deadline, or whose image cannot be pulled). The Job
manifest is checked field by field and validated against the API's schemas."""

from __future__ import annotations

import asyncio
import copy
import json
import re
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import kubernetes_validate
import pytest

from service import control
from service.db.engine import create_engine
from service.db.migrate import upgrade
from service.runners import kubernetes
from service.runners.container import (
    EXECUTION_LABEL,
    KEY_LABEL,
    ContainerSpec,
    EngineUnavailable,
    Exited,
    container_name,
    task_output,
)
from service.runners.http import TaskFailure
from service.runners.kubernetes import KubernetesJobs, job_manifest
from service.settings import Settings
from service.worker.loop import Worker, container_backend

KEY = "arn:aws:states:us-east-1:123456789012:execution:sm:run-1:7"
EXECUTION = "arn:aws:states:us-east-1:123456789012:execution:sm:run-1"
NAME = container_name(KEY)
LABELS = {KEY_LABEL: KEY, EXECUTION_LABEL: EXECUTION}
HASH = NAME.removeprefix("statewright-")
NS = "tasks"
TOKEN = "token-of-the-worker"
IMAGE = "registry.example/team/step:1.2"
SCHEMA_VERSIONS = ("1.29.0", kubernetes_validate.latest_version())


# ------------------------------------- API responses (written after the documented objects)


def job_object(name: str = NAME, status: dict[str, Any] | None = None) -> dict[str, Any]:
    """A Job as the API server returns it (metadata trimmed of managedFields)."""
    return {
        "kind": "Job",
        "apiVersion": "batch/v1",
        "metadata": {
            "name": name,
            "namespace": NS,
            "uid": "0b6f4c1e-5d0a-4f6e-9d55-6f1b8d1c2a10",
            "resourceVersion": "48213",
            "generation": 1,
            "creationTimestamp": "2024-05-02T10:00:00Z",
            "labels": {
                kubernetes.HASH_LABEL: HASH,
                "app.kubernetes.io/managed-by": "statewright",
            },
            "annotations": {"statewright.io/idempotency-key": KEY},
        },
        "spec": {"backoffLimit": 0, "completions": 1, "parallelism": 1},
        "status": status if status is not None else {},
    }


ACTIVE = {"startTime": "2024-05-02T10:00:00Z", "active": 1, "ready": 0, "terminating": 0}
COMPLETE = {
    "conditions": [
        {
            "type": "SuccessCriteriaMet",
            "status": "True",
            "lastProbeTime": "2024-05-02T10:00:03Z",
            "lastTransitionTime": "2024-05-02T10:00:03Z",
        },
        {
            "type": "Complete",
            "status": "True",
            "lastProbeTime": "2024-05-02T10:00:03Z",
            "lastTransitionTime": "2024-05-02T10:00:03Z",
        },
    ],
    "startTime": "2024-05-02T10:00:00Z",
    "completionTime": "2024-05-02T10:00:03Z",
    "succeeded": 1,
    "ready": 0,
    "terminating": 0,
    "uncountedTerminatedPods": {},
}
BACKOFF_LIMIT = {
    "conditions": [
        {
            "type": "FailureTarget",
            "status": "True",
            "reason": "BackoffLimitExceeded",
            "message": "Job has reached the specified backoff limit",
            "lastProbeTime": "2024-05-02T10:00:03Z",
            "lastTransitionTime": "2024-05-02T10:00:03Z",
        },
        {
            "type": "Failed",
            "status": "True",
            "reason": "BackoffLimitExceeded",
            "message": "Job has reached the specified backoff limit",
            "lastProbeTime": "2024-05-02T10:00:03Z",
            "lastTransitionTime": "2024-05-02T10:00:03Z",
        },
    ],
    "startTime": "2024-05-02T10:00:00Z",
    "failed": 1,
    "ready": 0,
    "terminating": 0,
    "uncountedTerminatedPods": {},
}
DEADLINE = {
    "conditions": [
        {
            "type": "Failed",
            "status": "True",
            "reason": "DeadlineExceeded",
            "message": "Job was active longer than specified deadline",
            "lastProbeTime": "2024-05-02T10:00:05Z",
            "lastTransitionTime": "2024-05-02T10:00:05Z",
        }
    ],
    "startTime": "2024-05-02T10:00:00Z",
    "failed": 1,
    "ready": 0,
    "terminating": 0,
}


def pod_object(phase: str, state: dict[str, Any]) -> dict[str, Any]:
    """The Job's pod as the API server lists it."""
    return {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {
            "name": f"{NAME}-x7k2p",
            "generateName": f"{NAME}-",
            "namespace": NS,
            "uid": "7d0e2a53-1c1f-4f3e-a3a9-0f6f0f1e9b77",
            "creationTimestamp": "2024-05-02T10:00:00Z",
            "labels": {
                "batch.kubernetes.io/job-name": NAME,
                "job-name": NAME,
                "controller-uid": "0b6f4c1e-5d0a-4f6e-9d55-6f1b8d1c2a10",
                kubernetes.HASH_LABEL: HASH,
            },
        },
        "spec": {"restartPolicy": "Never", "containers": [{"name": "task", "image": IMAGE}]},
        "status": {
            "phase": phase,
            "startTime": "2024-05-02T10:00:00Z",
            "containerStatuses": [
                {
                    "name": "task",
                    "state": state,
                    "lastState": {},
                    "ready": False,
                    "restartCount": 0,
                    "image": IMAGE,
                    "imageID": "",
                    "started": False,
                }
            ],
        },
    }


def terminated(code: int, reason: str) -> dict[str, Any]:
    return {
        "terminated": {
            "exitCode": code,
            "reason": reason,
            "startedAt": "2024-05-02T10:00:01Z",
            "finishedAt": "2024-05-02T10:00:03Z",
            "containerID": "containerd://4f1b",
        }
    }


RUNNING = {"running": {"startedAt": "2024-05-02T10:00:01Z"}}
PULLING = {"waiting": {"reason": "ContainerCreating"}}
ERR_IMAGE_PULL = {
    "waiting": {
        "reason": "ErrImagePull",
        "message": f'rpc error: code = NotFound desc = failed to pull and unpack image "{IMAGE}"'
        ": not found",
    }
}
IMAGE_PULL_BACKOFF = {
    "waiting": {"reason": "ImagePullBackOff", "message": f'Back-off pulling image "{IMAGE}"'}
}


def status_object(code: int, reason: str, message: str) -> dict[str, Any]:
    """A Status, the body of every API error."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


ALREADY_EXISTS = status_object(409, "AlreadyExists", f'jobs.batch "{NAME}" already exists')
NOT_FOUND = status_object(404, "NotFound", f'jobs.batch "{NAME}" not found')


# ------------------------------------------------------------------ the fake API server


@dataclass
class FakeApi:
    """The Job, Pod and log endpoints of one namespace. ``timeline``: (Job status, pod) per
    look at the Job, the last one repeated; the Job exists once created (or if ``exists``)."""

    timeline: list[tuple[dict[str, Any], dict[str, Any] | None]] = field(default_factory=list)
    log: bytes = b""
    exists: bool = False
    create_answer: tuple[int, dict[str, Any]] | None = None  # instead of creating
    fail_everything: bool = False
    listed_jobs: list[dict[str, Any]] = field(default_factory=list)
    requests: list[tuple[str, str, dict[str, list[str]], Any, str]] = field(default_factory=list)
    looks: int = 0
    url: str = ""
    name: str = NAME  # the Job's (the one created, else NAME)

    def calls(self, method: str | None = None) -> list[tuple[str, str]]:
        return [(m, p) for m, p, _, _, _ in self.requests if method in (None, m)]

    def answer(
        self, method: str, path: str, query: dict[str, list[str]], body: Any
    ) -> tuple[int, Any]:
        if self.fail_everything:
            return 500, status_object(500, "InternalError", "etcdserver: request timed out")
        jobs = f"/apis/batch/v1/namespaces/{NS}/jobs"
        if method == "POST" and path == jobs:
            if self.create_answer is not None:
                return self.create_answer
            if self.exists:
                return 409, ALREADY_EXISTS
            self.exists = True
            self.name = body["metadata"]["name"]
            return 201, job_object(self.name)
        if method == "GET" and path == jobs:
            return 200, {"kind": "JobList", "apiVersion": "batch/v1", "items": self.listed_jobs}
        if path == f"{jobs}/{self.name}":
            if not self.exists:
                return 404, NOT_FOUND
            if method == "DELETE":
                self.exists = False
                return 200, job_object(self.name, self.timeline[-1][0] if self.timeline else {})
            status, _ = self.timeline[min(self.looks, len(self.timeline) - 1)]
            self.looks += 1
            return 200, job_object(self.name, status)
        if method == "GET" and path == f"/api/v1/namespaces/{NS}/pods":
            assert query["labelSelector"] == [f"job-name={self.name}"]
            _, pod = self.timeline[min(self.looks, len(self.timeline)) - 1]
            if pod is None:
                return 200, {"kind": "PodList", "apiVersion": "v1", "items": []}
            pod = copy.deepcopy(pod)
            pod["metadata"]["name"] = f"{self.name}-x7k2p"
            return 200, {"kind": "PodList", "apiVersion": "v1", "items": [pod]}
        if method == "GET" and path == f"/api/v1/namespaces/{NS}/pods/{self.name}-x7k2p/log":
            return 200, self.log[: int(query["limitBytes"][0])]
        return 404, status_object(404, "NotFound", "the server could not find the resource")


@pytest.fixture
def api() -> Iterator[FakeApi]:
    fake = FakeApi()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            fake.requests.append(
                (self.command, url.path, query, body, self.headers.get("Authorization", ""))
            )
            code, answer = fake.answer(self.command, url.path, query, body)
            data = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
            self.send_response(code)
            kind = "text/plain" if isinstance(answer, bytes) else "application/json"
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def backend(api: FakeApi) -> KubernetesJobs:
    return KubernetesJobs(
        api=api.url,
        namespace=NS,
        token=TOKEN,
        poll_first=0.01,
        poll_max=0.03,
        image_pull_seconds=0.2,
    )


def run(api: FakeApi, spec: ContainerSpec, new: bool = True) -> Exited:
    async def go() -> Exited:
        jobs = backend(api)
        try:
            return await jobs.run(spec, NAME, LABELS, new)
        finally:
            await jobs.aclose()

    return asyncio.run(go())


def spec(**parameters: Any) -> ContainerSpec:
    return ContainerSpec.parse({"Image": IMAGE, **parameters}, networks=("none", "host", "lan"))


# ------------------------------------------------------------------ the Job manifest


def test_the_job_manifest_maps_every_field_and_is_a_valid_job() -> None:
    full = spec(
        Command=["--rows", "10"],
        Entrypoint=["/app/step"],
        Environment={"MODE": "fast", "LIMIT": 3},
        WorkingDir="/work",
        User="1000:2000",
        MemoryMiB=256,
        CpuCount=0.5,
        TimeoutSeconds=90.5,
        Input={"rows": [1, "é"]},
    )
    manifest = job_manifest(full, NAME, LABELS, 3600)
    labels = {kubernetes.HASH_LABEL: HASH, "app.kubernetes.io/managed-by": "statewright"}
    assert manifest == {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": NAME,
            "labels": labels,
            "annotations": {
                "statewright.io/idempotency-key": KEY,
                "statewright.io/execution": EXECUTION,
            },
        },
        "spec": {
            "backoffLimit": 0,
            "ttlSecondsAfterFinished": 3600,
            "activeDeadlineSeconds": 91,
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "containers": [
                        {
                            "name": "task",
                            "image": IMAGE,
                            "command": ["/app/step"],
                            "args": ["--rows", "10"],
                            "env": [
                                {"name": "MODE", "value": "fast"},
                                {"name": "LIMIT", "value": "3"},
                                {"name": "STATEWRIGHT_INPUT", "value": '{"rows":[1,"é"]}'},
                            ],
                            "workingDir": "/work",
                            "securityContext": {"runAsUser": 1000, "runAsGroup": 2000},
                            "resources": {"limits": {"memory": "256Mi", "cpu": "500m"}},
                        }
                    ],
                },
            },
        },
    }
    # The name and the hash label are DNS-1123 / label values of at most 63 characters.
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", NAME) and len(NAME) <= 63
    for version in SCHEMA_VERSIONS:
        kubernetes_validate.validate(manifest, version, strict=True)


def test_input_file_is_a_downward_api_file_from_an_annotation() -> None:
    manifest = job_manifest(
        spec(Input={"a": 1}, InputFile="/in/input.json", Network="host", User="7"),
        NAME,
        LABELS,
        60,
    )
    pod = manifest["spec"]["template"]
    assert pod["metadata"]["annotations"] == {"statewright.io/input": '{"a":1}'}
    container = pod["spec"]["containers"][0]
    assert container["env"] == []  # not in the environment too
    assert container["volumeMounts"] == [
        {
            "name": "statewright-input",
            "mountPath": "/in/input.json",
            "subPath": "input.json",
            "readOnly": True,
        }
    ]
    field_ref = pod["spec"]["volumes"][0]["downwardAPI"]["items"][0]["fieldRef"]
    assert field_ref == {"fieldPath": "metadata.annotations['statewright.io/input']"}
    assert pod["spec"]["hostNetwork"] is True
    assert container["securityContext"] == {"runAsUser": 7}
    assert "activeDeadlineSeconds" not in manifest["spec"]
    for version in SCHEMA_VERSIONS:
        kubernetes_validate.validate(manifest, version, strict=True)


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"User": "nobody"}, "numeric user"),
        ({"User": "1000:staff"}, "numeric user"),
        ({"Network": "lan"}, "NetworkPolicy"),
        ({"Input": "x" * 140_000}, "give an InputFile"),
        ({"Input": "x" * 250_000, "InputFile": "/in.json"}, "pod annotation"),
    ],
)
def test_what_kubernetes_cannot_run_is_refused(parameters: dict[str, Any], message: str) -> None:
    with pytest.raises(TaskFailure) as failure:
        job_manifest(spec(**parameters), NAME, LABELS, 60)
    assert failure.value.error == "Container.CreateFailed"
    assert message in failure.value.cause


# ------------------------------------------------------------------ runs and their ends


def test_exit_0_with_json_stdout(api: FakeApi) -> None:
    api.timeline = [
        (ACTIVE, pod_object("Pending", PULLING)),
        (ACTIVE, pod_object("Running", RUNNING)),
        (COMPLETE, pod_object("Succeeded", terminated(0, "Completed"))),
    ]
    api.log = b'{"rows": 10}\n'
    full = spec(Entrypoint=["/app/step"], Input={"n": 1})
    exited = run(api, full)
    assert exited == Exited(0, b'{"rows": 10}\n', 13, b"", 2.0)
    assert task_output(full, exited) == {
        "ExitCode": 0,
        "Stdout": {"rows": 10},
        "StderrTail": "",
        "Duration": 2.0,
    }
    method, path, _, body, _ = api.requests[0]
    assert (method, path) == ("POST", f"/apis/batch/v1/namespaces/{NS}/jobs")
    assert body == job_manifest(full, NAME, LABELS, 86400)
    assert all(request[4] == f"Bearer {TOKEN}" for request in api.requests)
    assert api.calls("POST") == [("POST", f"/apis/batch/v1/namespaces/{NS}/jobs")]
    (log_request,) = [r for r in api.requests if r[1].endswith("/log")]
    assert log_request[2] == {
        "container": ["task"],
        "limitBytes": [str(kubernetes.LOG_LIMIT_BYTES)],
    }


def test_a_non_zero_exit_is_its_exit_code_with_the_log_tail(api: FakeApi) -> None:
    api.timeline = [
        (ACTIVE, pod_object("Running", RUNNING)),
        (BACKOFF_LIMIT, pod_object("Failed", terminated(3, "Error"))),
    ]
    api.log = b"x" * 10_000 + b"\nno such table: rows\n"
    failing = spec()
    exited = run(api, failing)
    assert exited.exit_code == 3 and not exited.timed_out
    assert exited.stderr_tail == api.log[-4096:]
    with pytest.raises(TaskFailure) as failure:
        task_output(failing, exited)
    assert failure.value.error == "Container.ExitCode.3"
    assert failure.value.cause.endswith("no such table: rows\n")


def test_out_of_memory_is_exit_137_and_says_so(api: FakeApi) -> None:
    api.timeline = [(BACKOFF_LIMIT, pod_object("Failed", terminated(137, "OOMKilled")))]
    api.log = b"allocating\n"
    with pytest.raises(TaskFailure) as failure:
        task_output(spec(MemoryMiB=16), run(api, spec(MemoryMiB=16)))
    assert failure.value.error == "Container.ExitCode.137"
    assert failure.value.cause == "allocating\n\n[Kubernetes: the container was OOMKilled]"


def test_the_deadline_is_container_timeout(api: FakeApi) -> None:
    # At the deadline the Job controller kills the pod; here it is already gone.
    api.timeline = [(ACTIVE, pod_object("Running", RUNNING)), (DEADLINE, None)]
    slow = spec(TimeoutSeconds=5)
    exited = run(api, slow)
    assert exited.timed_out and exited.exit_code == 137
    with pytest.raises(TaskFailure) as failure:
        task_output(slow, exited)
    assert failure.value.error == "Container.Timeout"


def test_an_image_that_cannot_be_pulled_is_image_not_found(api: FakeApi) -> None:
    api.timeline = [
        (ACTIVE, pod_object("Pending", PULLING)),
        (ACTIVE, pod_object("Pending", ERR_IMAGE_PULL)),
        (ACTIVE, pod_object("Pending", IMAGE_PULL_BACKOFF)),
    ]
    with pytest.raises(TaskFailure) as failure:
        run(api, spec())
    assert failure.value.error == "Container.ImageNotFound"
    assert "ImagePullBackOff" in failure.value.cause and IMAGE in failure.value.cause
    # It kept looking for image_pull_seconds (not at the first ErrImagePull), then deleted
    # the Job and its pod.
    assert api.looks > 5
    delete = [r for r in api.requests if r[0] == "DELETE"]
    assert [(r[1], r[2]) for r in delete] == [
        (f"/apis/batch/v1/namespaces/{NS}/jobs/{NAME}", {"propagationPolicy": ["Background"]})
    ]


def test_a_job_that_exists_already_is_followed_not_created_again(api: FakeApi) -> None:
    # A crashed worker created it: the create meets 409 AlreadyExists and follows that Job.
    api.exists = True
    api.timeline = [(COMPLETE, pod_object("Succeeded", terminated(0, "Completed")))]
    api.log = b"done\n"
    exited = run(api, spec(), new=True)
    assert (exited.exit_code, exited.stdout) == (0, b"done\n")
    assert len(api.calls("POST")) == 1
    # A worker taking over an attempt looks first, and does not create at all.
    api.requests.clear()
    api.looks = 0
    assert run(api, spec(), new=False).exit_code == 0
    assert api.calls("POST") == []
    assert api.calls()[0] == ("GET", f"/apis/batch/v1/namespaces/{NS}/jobs/{NAME}")


def test_a_job_that_does_not_exist_yet_is_created_by_a_follower(api: FakeApi) -> None:
    api.timeline = [(COMPLETE, pod_object("Succeeded", terminated(0, "Completed")))]
    assert run(api, spec(), new=False).exit_code == 0
    assert api.calls()[:2] == [
        ("GET", f"/apis/batch/v1/namespaces/{NS}/jobs/{NAME}"),
        ("POST", f"/apis/batch/v1/namespaces/{NS}/jobs"),
    ]


def test_a_job_the_api_refuses_is_create_failed(api: FakeApi) -> None:
    api.create_answer = (
        422,
        status_object(422, "Invalid", 'Job.batch "x" is invalid: spec.template: Invalid value'),
    )
    with pytest.raises(TaskFailure) as failure:
        run(api, spec())
    assert failure.value.error == "Container.CreateFailed"
    assert "is invalid" in failure.value.cause


def test_the_api_down_or_failing_is_engine_unavailable(api: FakeApi) -> None:
    api.fail_everything = True
    with pytest.raises(EngineUnavailable, match="etcdserver"):
        run(api, spec())
    api.fail_everything = False
    api.create_answer = (403, status_object(403, "Forbidden", "jobs.batch is forbidden"))
    with pytest.raises(EngineUnavailable, match="forbidden"):
        run(api, spec())
    closed = FakeApi(url="http://127.0.0.1:9")  # nothing listens on the discard port
    with pytest.raises(EngineUnavailable, match="cannot be reached"):
        run(closed, spec())


def test_remove_and_the_sweep_of_finished_jobs(api: FakeApi) -> None:
    finished = job_object(status=COMPLETE)
    running = job_object("statewright-running", status=ACTIVE)
    unlabelled = job_object("statewright-other", status=COMPLETE)
    unlabelled["metadata"]["annotations"] = {}
    api.listed_jobs = [finished, running, unlabelled]

    async def go() -> dict[str, str]:
        jobs = backend(api)
        try:
            await jobs.remove(NAME)  # gone already: nothing to do
            return await jobs.exited()
        finally:
            await jobs.aclose()

    assert asyncio.run(go()) == {NAME: KEY}
    listing = [r for r in api.requests if r[0] == "GET"]
    assert listing[0][2] == {"labelSelector": [kubernetes.HASH_LABEL]}


# ------------------------------------------------------------------ through a worker


def test_a_workflow_runs_its_container_task_as_a_job(api: FakeApi, tmp_path: Path) -> None:
    """A worker (on the embedded SQLite store) runs an execution whose container task is a
    Job of the fake API server; the Job is deleted once the result is recorded."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    upgrade(url)
    definition = {
        "StartAt": "Step",
        "States": {
            "Step": {
                "Type": "Task",
                "Resource": "arn:statewright:::container:run",
                "Parameters": {"Image": IMAGE, "Input.$": "$"},
                "ResultSelector": {"rows.$": "$.Stdout.rows", "code.$": "$.ExitCode"},
                "End": True,
            }
        },
    }
    api.timeline = [
        (ACTIVE, pod_object("Running", RUNNING)),
        (COMPLETE, pod_object("Succeeded", terminated(0, "Completed"))),
    ]
    api.log = b'{"rows": 3}'

    async def scenario() -> control.ExecutionSummary:
        engine = create_engine(url)
        await control.create_state_machine(engine, "k8s", definition)
        execution = await control.start_execution(engine, "k8s", {"n": 3})
        worker = Worker(url, lanes=1, poll_seconds=0.05, container_backend=backend(api))
        running = asyncio.create_task(worker.run())
        try:
            deadline = time.monotonic() + 20
            while (summary := await control.describe_execution(engine, execution.id)).status in (
                "RUNNING",
            ):
                assert time.monotonic() < deadline, "the execution did not finish"
                await asyncio.sleep(0.05)
            while api.exists and time.monotonic() < deadline:  # removed after the record
                await asyncio.sleep(0.05)
            return summary
        finally:
            worker.stop()
            await running
            await engine.dispose()

    summary = asyncio.run(scenario())
    assert (summary.status, summary.output) == ("SUCCEEDED", {"rows": 3, "code": 0})
    (create,) = [r for r in api.requests if r[0] == "POST"]
    manifest = create[3]
    env = manifest["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env == [{"name": "STATEWRIGHT_INPUT", "value": '{"n":3}'}]
    annotations = manifest["metadata"]["annotations"]
    assert annotations["statewright.io/execution"] == summary.id
    assert annotations["statewright.io/idempotency-key"].startswith(summary.arn + ":")
    assert manifest["metadata"]["name"] == container_name(
        annotations["statewright.io/idempotency-key"]
    )
    assert not api.exists


# ------------------------------------------------------------------ configuration

# A self-signed certificate (CN=kubernetes, its key thrown away), as a cluster's CA file.
CA = """\
-----BEGIN CERTIFICATE-----
MIIBgTCCASegAwIBAgIUHNwZX8+6Vq8biM0QtGdGmsYRmBEwCgYIKoZIzj0EAwIw
FTETMBEGA1UEAwwKa3ViZXJuZXRlczAgFw0yNjExMjYxNzQ0MTZaGA8yMTI2MTEw
MjE3NDQxNlowFTETMBEGA1UEAwwKa3ViZXJuZXRlczBZMBMGByqGSM49AgEGCCqG
SM49AwEHA0IABK2S6E3yh66SnHEGe6DFiemOTez+/CrduHU44S0hv1yVqycUTJbe
9hgMpooovBXOtG7P1En7j3kZZe/4tzQBf+GjUzBRMB0GA1UdDgQWBBRTH4ZvTwRX
swIAPmjJ8Or+owvWSjAfBgNVHSMEGDAWgBRTH4ZvTwRXswIAPmjJ8Or+owvWSjAP
BgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0gAMEUCIH8k/fJN9Jwjc3+sgzCO
AcvLfF8OraRmAoXj7XxAyBEFAiEA2+em6Dd4xG8xLRViL3A7R6JsGVDY958WYDQ9
ezF4+v4=
-----END CERTIFICATE-----
"""


def test_in_cluster_configuration(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "token").write_text("in-cluster-token\n")
    (tmp_path / "namespace").write_text("workflows")
    (tmp_path / "ca.crt").write_text(CA)
    monkeypatch.setattr(kubernetes, "SERVICE_ACCOUNT", tmp_path)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    jobs = KubernetesJobs()
    monkeypatch.setattr(kubernetes.httpx, "AsyncClient", _RecordingClient)
    client = jobs.client
    assert isinstance(client, _RecordingClient)
    assert client.options["base_url"] == "https://10.96.0.1:443"
    context = client.options["verify"]
    assert isinstance(context, ssl.SSLContext) and context.verify_mode == ssl.CERT_REQUIRED
    assert [c["subject"] for c in context.get_ca_certs()] == [((("commonName", "kubernetes"),),)]
    assert jobs.ns == "workflows"
    assert jobs._headers() == {"Authorization": "Bearer in-cluster-token"}


def test_a_token_file_is_read_again_as_tokens_rotate(
    api: FakeApi, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    token = tmp_path / "token"
    token.write_text("first\n")

    async def go() -> None:
        jobs = KubernetesJobs(api=api.url, namespace=NS, token_file=str(token))
        try:
            await jobs.remove(NAME)
            token.write_text("second\n")
            await jobs.remove(NAME)  # read a minute ago at most: the same
            monkeypatch.setattr(kubernetes, "TOKEN_REREAD_SECONDS", 0.0)
            await jobs.remove(NAME)
        finally:
            await jobs.aclose()

    asyncio.run(go())
    assert [r[4] for r in api.requests] == ["Bearer first", "Bearer first", "Bearer second"]
    assert "secret-token" not in repr(KubernetesJobs(token="secret-token"))


def test_insecure_skips_tls_verification_for_tests(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kubernetes.httpx, "AsyncClient", _RecordingClient)
    jobs = KubernetesJobs(api="https://127.0.0.1:6443", insecure=True, ca_file="/missing")
    client = jobs.client
    assert isinstance(client, _RecordingClient) and client.options["verify"] is False
    assert jobs._headers() == {}  # an explicit API without a token: no credentials sent


def test_outside_a_cluster_without_an_api_it_is_engine_unavailable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(EngineUnavailable, match="STATEWRIGHT_KUBERNETES_API"):
        KubernetesJobs().client  # noqa: B018


def test_the_backend_is_chosen_by_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATEWRIGHT_CONTAINER_BACKEND", "kubernetes")
    monkeypatch.setenv("STATEWRIGHT_KUBERNETES_API", "https://k8s.example:6443")
    monkeypatch.setenv("STATEWRIGHT_KUBERNETES_NAMESPACE", "batch")
    monkeypatch.setenv("STATEWRIGHT_KUBERNETES_TOKEN_FILE", "/token")
    chosen = container_backend(Settings())
    assert isinstance(chosen, KubernetesJobs)
    assert (chosen.api, chosen.ns, chosen.token_file) == (
        "https://k8s.example:6443",
        "batch",
        "/token",
    )
    monkeypatch.delenv("STATEWRIGHT_CONTAINER_BACKEND")
    assert not isinstance(container_backend(Settings()), KubernetesJobs)


class _RecordingClient:
    def __init__(self, **options: Any) -> None:
        self.options = copy.copy(options)
