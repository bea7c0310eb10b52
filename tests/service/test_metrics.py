"""Prometheus metrics and health endpoints of real processes: /metrics of `statewright
serve` (API and in-process worker lanes) and of a separate `statewright worker
--metrics-port`, scraped after executions ran; /healthz and /readyz."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx

from service.db.migrate import upgrade
from tests.service.server import ROOT, SERVER_KEY, free_port, running_server
from tests.service.test_webhooks import CHAIN, FAILING, _client, _create_machine, _start, wait_for


def _value(text: str, series: str) -> float | None:
    """The value of one series line (``name{labels}``) in an exposition, if present."""
    match = re.search(rf"^{re.escape(series)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else None


def _done(client: httpx.Client, arns: list[str]) -> bool:
    listed = client.get("/api/v1/executions", params={"limit": 100}).json()
    statuses = {e["arn"]: e["status"] for e in listed}
    return all(statuses.get(arn) not in (None, "RUNNING") for arn in arns)


def test_serve_reports_what_its_lanes_did_and_what_the_database_holds(
    postgres_database: str, tmp_path: Path
) -> None:
    upgrade(postgres_database)
    with (
        running_server(postgres_database, tmp_path / "server.log", backend="postgres") as server,
        _client(server) as client,
    ):
        assert client.get("/readyz").json() == {"status": "ready"}
        assert client.get("/healthz").status_code == 200
        _create_machine(client, "counted", CHAIN)
        _create_machine(client, "failing", FAILING)
        arns = [_start(client, "counted", {"n": i}) for i in range(3)]
        arns.append(_start(client, "failing", {}))
        wait_for(lambda: _done(client, arns), 30, "the executions to finish")

        assert httpx.get(f"{server.base_url}/metrics").status_code == 401  # auth is on
        text = client.get("/metrics").text
        assert _value(text, 'statewright_executions_started_total{state_machine="counted"}') == 3
        assert (
            _value(
                text,
                'statewright_executions_finished_total{state_machine="counted",status="SUCCEEDED"}',
            )
            == 3
        )
        assert (
            _value(
                text,
                'statewright_executions_finished_total{state_machine="failing",status="FAILED"}',
            )
            == 1
        )
        assert _value(text, 'statewright_state_transitions_total{state_machine="counted"}') == 6
        decisions = _value(text, "statewright_decisions_total")
        assert decisions is not None and decisions >= 4
        assert _value(text, "statewright_executions_running") == 0
        assert _value(text, "statewright_outbox_lag_seconds") == 0
        assert _value(text, "statewright_timer_lag_seconds") == 0
        assert _value(text, 'statewright_webhook_deliveries_waiting{status="PENDING"}') == 0
        assert "statewright_lease_losses_total" in text
        assert "# TYPE statewright_task_duration_seconds histogram" in text


def test_a_worker_serves_its_own_metrics_on_its_metrics_port(
    postgres_database: str, tmp_path: Path
) -> None:
    upgrade(postgres_database)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STATEWRIGHT_")}
    env.update(PYTHONUNBUFFERED="1", STATEWRIGHT_SECRET_KEY=SERVER_KEY)
    command = [sys.executable, "-m", "service.cli", "worker", "--database-url", postgres_database]
    with (tmp_path / "worker.log").open("ab") as log:
        worker = subprocess.Popen(
            [*command, "--metrics-port", str(port)],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        with (
            running_server(
                postgres_database, tmp_path / "api.log", backend="postgres", command="api"
            ) as server,
            _client(server) as client,
        ):
            _create_machine(client, "counted", CHAIN)
            arns = [_start(client, "counted", {"n": i}) for i in range(2)]
            wait_for(lambda: _done(client, arns), 30, "the executions to finish")

            def scraped() -> str | None:
                try:
                    return httpx.get(f"http://127.0.0.1:{port}/metrics").text
                except httpx.TransportError:
                    return None

            text = wait_for(scraped, 10, "the worker's metrics port")
            assert (
                _value(text, 'statewright_executions_started_total{state_machine="counted"}') == 2
            )
        # A port that is taken is a usage error with the reason, not a traceback.
        taken = subprocess.run(
            [*command, "--metrics-port", str(port)],
            cwd=ROOT,
            capture_output=True,
            env=env,
            timeout=60,
        )
        assert taken.returncode == 2, taken.stderr
        assert f"--metrics-port {port}" in taken.stderr.decode()
    finally:
        worker.terminate()
        worker.wait(timeout=15)
