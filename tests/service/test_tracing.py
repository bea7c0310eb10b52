"""OpenTelemetry traces through real processes: `statewright serve` with an OTLP endpoint
exports one trace per execution to an in-test OTLP/HTTP collector (a real HTTP server on
127.0.0.1 decoding the protobuf requests), and its HTTP task carries the trace on in
``traceparent`` to the service it calls."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from service import tracing
from service.db.migrate import upgrade
from tests.service.server import running_server
from tests.service.test_webhooks import _client, _create_machine, wait_for


class Collector:
    """Receives OTLP/HTTP trace exports; keeps (trace id, span id, parent id, name) of each
    span. Also answers the workflow's HTTP task at /call, keeping its traceparent."""

    def __init__(self) -> None:
        self.spans: list[tuple[int, int, int, str]] = []
        self.traceparents: list[str] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path == "/v1/traces":
                    request = ExportTraceServiceRequest.FromString(body)
                    for resource in request.resource_spans:
                        for scope in resource.scope_spans:
                            for span in scope.spans:
                                collector.spans.append(
                                    (
                                        int.from_bytes(span.trace_id, "big"),
                                        int.from_bytes(span.span_id, "big"),
                                        int.from_bytes(span.parent_span_id or b"\0", "big"),
                                        span.name,
                                    )
                                )
                    answer, kind = b"", "application/x-protobuf"
                else:
                    collector.traceparents.append(self.headers.get("traceparent", ""))
                    answer, kind = json.dumps({"ok": True}).encode(), "application/json"
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def of(self, trace: int) -> dict[str, tuple[int, int]]:
        """Name -> (span id, parent id) of the spans of ``trace``."""
        return {name: (span, parent) for t, span, parent, name in self.spans if t == trace}


def test_an_execution_is_one_trace_with_a_span_per_state_and_task(
    postgres_database: str, tmp_path: Path
) -> None:
    upgrade(postgres_database)
    collector = Collector()
    definition = {
        "StartAt": "Prepare",
        "States": {
            "Prepare": {"Type": "Pass", "Next": "Call"},
            "Call": {
                "Type": "Task",
                "Resource": "arn:aws:states:::http:invoke",
                "Parameters": {"ApiEndpoint": f"{collector.url}/call", "Method": "POST"},
                "ResultSelector": {"ok.$": "$.ResponseBody.ok"},
                "Next": "Done",
            },
            "Done": {"Type": "Pass", "End": True},
        },
    }
    env = {
        "STATEWRIGHT_OTLP_ENDPOINT": collector.url,
        "OTEL_BSP_SCHEDULE_DELAY": "100",  # export every 0.1 s (default 5 s)
    }
    try:
        with (
            running_server(
                postgres_database, tmp_path / "server.log", backend="postgres", env=env
            ) as server,
            _client(server) as client,
        ):
            _create_machine(client, "traced", definition)
            started = client.post(
                "/api/v1/state-machines/traced/executions", json={"input": {"n": 1}}
            ).json()
            arn = started["arn"]
            trace = tracing.trace_id(arn)
            wait_for(
                lambda: "execution traced" in collector.of(trace),
                30,
                f"the execution's spans; got {collector.spans}",
            )
        spans = collector.of(trace)
        root, _ = spans["execution traced"]
        assert root == tracing.span_id(arn, "execution")
        assert {name for name in spans} == {
            "execution traced",
            "state Prepare",
            "state Call",
            "state Done",
            "task http:invoke",
        }
        for state in ("state Prepare", "state Call", "state Done"):
            assert spans[state][1] == root  # children of the execution's span
        task, parent = spans["task http:invoke"]
        assert parent == spans["state Call"][0]  # the task call is a child of its state
        # The service the task called got the trace and the task call's span.
        assert collector.traceparents == [f"00-{trace:032x}-{task:016x}-01"]
    finally:
        collector.server.shutdown()
        collector.server.server_close()
