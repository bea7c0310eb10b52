"""Status webhooks through real processes: a real receiver on 127.0.0.1 gets every status
change of the executions it subscribed to, signed, in order, exactly once, also when it was
down for a while and when the worker that made the change was SIGKILLed before delivering."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from service import webhooks
from service.db.migrate import upgrade
from tests.service.server import ROOT, SERVER_KEY, Server, free_port, running_server

SECRET = "whsec-" + uuid.uuid4().hex  # unique: found in a log means leaked
FAST_RETRIES = {"STATEWRIGHT_WEBHOOK_RETRY_BASE_SECONDS": "0.2"}
CHAIN = {
    "StartAt": "A",
    "States": {
        "A": {"Type": "Pass", "Result": {"done": True}, "ResultPath": "$.a", "Next": "B"},
        "B": {"Type": "Pass", "End": True},
    },
}
FAILING = {
    "StartAt": "F",
    "States": {"F": {"Type": "Fail", "Error": "Oops", "Cause": "on purpose"}},
}


class Receiver:
    """A webhook receiver on 127.0.0.1 that answers ``failing`` requests with 503 first,
    then 200, and keeps what it accepted."""

    def __init__(self, port: int = 0, failing: int = 0) -> None:
        self.accepted: list[tuple[str, dict[str, Any]]] = []  # (delivery id, event)
        self.refused = 0
        self.bad_signatures = 0
        self.lock = threading.Lock()
        receiver = self
        self.failing = failing

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.lock:
                    if not webhooks.verify(
                        SECRET, self.headers.get("Statewright-Signature", ""), body
                    ):
                        receiver.bad_signatures += 1
                        status = 401
                    elif receiver.refused < receiver.failing:
                        receiver.refused += 1
                        status = 503
                    else:
                        receiver.accepted.append(
                            (self.headers["Statewright-Delivery"], json.loads(body))
                        )
                        status = 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def statuses(self, execution_arn: str) -> list[str]:
        with self.lock:
            return [
                event["detail"]["status"]
                for _, event in self.accepted
                if event["detail"]["executionArn"] == execution_arn
            ]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    made = Receiver(failing=3)
    yield made
    made.close()


def wait_for(condition: Callable[[], Any], seconds: float, what: str) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"not within {seconds:.0f} s: {what}")


def _create_machine(client: httpx.Client, name: str, definition: dict[str, Any]) -> None:
    answer = client.post("/api/v1/state-machines", json={"name": name, "definition": definition})
    assert answer.status_code == 201, answer.text


def _start(client: httpx.Client, machine: str, data: Any) -> str:
    answer = client.post(f"/api/v1/state-machines/{machine}/executions", json={"input": data})
    assert answer.status_code == 201, answer.text
    arn: str = answer.json()["arn"]
    return arn


@pytest.fixture
def server(postgres_database: str, tmp_path: Path) -> Iterator[Server]:
    upgrade(postgres_database)
    with running_server(
        postgres_database, tmp_path / "server.log", backend="postgres", env=FAST_RETRIES
    ) as running:
        yield running


def _client(server: Server) -> httpx.Client:
    return httpx.Client(base_url=server.base_url, headers=server.headers, timeout=10)


def test_every_status_change_arrives_signed_in_order_once_after_the_receiver_recovers(
    server: Server, receiver: Receiver
) -> None:
    with _client(server) as client:
        _create_machine(client, "hooked", CHAIN)
        _create_machine(client, "failing", FAILING)
        _create_machine(client, "other", CHAIN)
        made = client.post(
            "/api/v1/webhooks",
            json={"name": "all", "url": receiver.url, "secret": SECRET, "state_machine": "hooked"},
        )
        assert made.status_code == 201, made.text
        assert made.json()["secret"] == SECRET
        failures = client.post(
            "/api/v1/webhooks",
            json={
                "name": "failures",
                "url": receiver.url,
                "secret": SECRET,
                "statuses": ["FAILED"],
            },
        )
        assert failures.status_code == 201, failures.text

        started = [_start(client, "hooked", {"n": i}) for i in range(3)]
        failed = _start(client, "failing", {"bad": True})
        ignored = _start(client, "other", {})

        # The receiver refuses the first 3 requests (503): they are retried.
        wait_for(
            lambda: (
                all(receiver.statuses(arn) == ["RUNNING", "SUCCEEDED"] for arn in started)
                and receiver.statuses(failed) == ["FAILED"]
            ),
            30,
            f"every status change delivered; got {receiver.accepted}",
        )
        time.sleep(0.5)  # anything more (a duplicate) would arrive now
        for arn in started:
            assert receiver.statuses(arn) == ["RUNNING", "SUCCEEDED"]
        assert receiver.statuses(failed) == ["FAILED"]  # the FAILED-only webhook, once
        assert receiver.statuses(ignored) == []  # neither webhook covers "other"
        assert receiver.refused == 3 and receiver.bad_signatures == 0
        ids = [delivery for delivery, _ in receiver.accepted]
        assert len(ids) == len(set(ids)) == 7

        # The event is shaped like AWS's EventBridge status change.
        event = next(
            e
            for _, e in receiver.accepted
            if e["detail"]["executionArn"] == started[0] and e["detail"]["status"] == "SUCCEEDED"
        )
        assert event["detail-type"] == "Step Functions Execution Status Change"
        assert event["source"] == "aws.states" and event["resources"] == [started[0]]
        detail = event["detail"]
        assert json.loads(detail["input"]) == {"n": 0}
        assert json.loads(detail["output"]) == {"n": 0, "a": {"done": True}}
        assert detail["stateMachineArn"].endswith(":stateMachine:hooked")
        assert detail["startDate"] <= detail["stopDate"]
        failure = next(e for _, e in receiver.accepted if e["detail"]["executionArn"] == failed)
        assert (failure["detail"]["error"], failure["detail"]["cause"]) == ("Oops", "on purpose")

        # The delivery log shows the retries.
        log = client.get("/api/v1/webhooks/all/deliveries").json()
        assert len(log) == 6 and {d["status"] for d in log} == {"DELIVERED"}
        assert sum(d["attempts"] for d in log) >= 6 + 1
        assert any(d["last_error"] is None and d["attempts"] > 1 for d in log)
        listed = client.get("/api/v1/webhooks").json()
        assert {w["name"] for w in listed} == {"all", "failures"}
        assert SECRET not in json.dumps(listed)
        assert SECRET not in client.get("/api/v1/webhooks/all").text

        # Redelivery by hand sends the same delivery id again.
        first = log[-1]["id"]
        assert client.post(f"/api/v1/webhooks/all/deliveries/{first}/redeliver").status_code == 202
        wait_for(
            lambda: [d for d, _ in receiver.accepted].count(str(first)) == 2,
            15,
            "the redelivery",
        )
    assert SECRET not in server.log_path.read_text(errors="replace")


def test_bad_webhooks_are_refused_with_their_reason(server: Server, receiver: Receiver) -> None:
    with _client(server) as client:
        cases = [
            ({"name": "x", "url": "ftp://example.com/"}, 400, "url must be an http"),
            ({"name": "x", "url": receiver.url, "statuses": ["DONE"]}, 400, "unknown statuses"),
            ({"name": "x", "url": receiver.url, "state_machine": "nope"}, 404, "nope"),
            ({"name": "bad name!", "url": receiver.url}, 400, "Invalid webhook name"),
            ({"name": "x", "url": receiver.url, "secret": "short"}, 422, "secret"),
        ]
        for body, status, message in cases:
            answer = client.post("/api/v1/webhooks", json=body)
            assert answer.status_code == status, (body, answer.text)
            assert message in answer.text, (body, answer.text)
        assert (
            client.post("/api/v1/webhooks", json={"name": "x", "url": receiver.url}).status_code
            == 201
        )
        again = client.post("/api/v1/webhooks", json={"name": "x", "url": receiver.url})
        assert again.status_code == 409 and again.json()["code"] == "ConflictException"
        assert client.get("/api/v1/webhooks/none/deliveries").status_code == 404
        assert client.post("/api/v1/webhooks/x/deliveries/999/redeliver").status_code == 404
        assert client.post("/api/v1/webhooks/x/pause").json()["enabled"] is False
        assert client.delete("/api/v1/webhooks/x").status_code == 204
        assert client.get("/api/v1/webhooks/x").status_code == 404


def _worker(database_url: str, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STATEWRIGHT_")}
    env.update(
        PYTHONUNBUFFERED="1",
        STATEWRIGHT_HTTP_ALLOW="127.0.0.1",
        STATEWRIGHT_SECRET_KEY=SERVER_KEY,
        STATEWRIGHT_LOG_FORMAT="json",
        **FAST_RETRIES,
    )
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "service.cli", "worker", "--database-url", database_url],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )


def test_a_status_change_is_delivered_after_its_worker_was_killed(
    postgres_database: str, tmp_path: Path
) -> None:
    upgrade(postgres_database)
    port = free_port()  # the receiver is down (nothing listens here) until the worker is dead
    url = f"http://127.0.0.1:{port}/hook"
    with (
        running_server(
            postgres_database, tmp_path / "api.log", backend="postgres", command="api"
        ) as server,
        _client(server) as client,
    ):
        _create_machine(client, "hooked", CHAIN)
        made = client.post("/api/v1/webhooks", json={"name": "w", "url": url, "secret": SECRET})
        assert made.status_code == 201, made.text
        worker = _worker(postgres_database, tmp_path / "worker.log")
        receiver: Receiver | None = None
        try:
            started = client.post(
                "/api/v1/state-machines/hooked/executions", json={"input": {"n": 1}}
            ).json()
            arn, execution_id = started["arn"], started["id"]
            wait_for(
                lambda: any(
                    d["attempts"] >= 1 for d in client.get("/api/v1/webhooks/w/deliveries").json()
                ),
                30,
                "the status change committed and its delivery tried (the receiver is down)",
            )
            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=10)
            log = client.get("/api/v1/webhooks/w/deliveries").json()
            assert {d["status"] for d in log} <= {"PENDING", "RUNNING"}, log
            receiver = Receiver(port=port)
            worker = _worker(postgres_database, tmp_path / "worker.log")
            wait_for(
                lambda: receiver is not None and receiver.statuses(arn) == ["RUNNING", "SUCCEEDED"],
                30,
                "delivery by the new worker",
            )
            time.sleep(0.5)
            assert receiver.statuses(arn) == ["RUNNING", "SUCCEEDED"]  # once each
        finally:
            if worker.poll() is None:
                worker.terminate()
                worker.wait(timeout=15)
            if receiver is not None:
                receiver.close()
    written = (tmp_path / "worker.log").read_text(errors="replace")
    assert SECRET not in written
    # JSON log lines; those about a delivery name the execution it concerns.
    lines = [json.loads(line) for line in written.splitlines() if line.strip()]
    retries = [line for line in lines if line["message"].startswith("webhook delivery")]
    assert retries and all(line["level"] == "WARNING" for line in retries)
    assert {line.get("execution_id") for line in retries} == {execution_id}
