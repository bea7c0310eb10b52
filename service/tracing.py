"""OpenTelemetry traces of executions, exported over OTLP/HTTP (off unless
``STATEWRIGHT_OTLP_ENDPOINT`` is set; needs ``pip install 'statewright[otel]'``).

One trace per execution, whatever worker made each decision: the ids are derived from the
execution ARN and event ids, not drawn at random, so spans written by different processes
(and after a crash, again) fit together:

* the trace id is a hash of the execution ARN;
* the execution's span (from its start to its close, error status when it did not succeed)
  is the root; every state's span (its ``...StateEntered`` to its ``...StateExited``) is a
  child of it; a task call's span (``TaskScheduled`` to its result) is a child of its state's;
* HTTP tasks send ``traceparent`` with the trace id and their task span's id, so the services
  they call continue the same trace.

Spans are built from the history events a decision committed, with the events' own
timestamps, and handed to a batching exporter.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from typing import Any

from statemachine import Execution
from statemachine.events import Event

log = logging.getLogger("statewright.tracing")
_STATUS = {
    "ExecutionSucceeded": "SUCCEEDED",
    "ExecutionFailed": "FAILED",
    "ExecutionTimedOut": "TIMED_OUT",
    "ExecutionAborted": "ABORTED",
}
_CLOSING = set(_STATUS)
_TASK_ENDS = ("Succeeded", "Failed", "TimedOut")


def _id(text: str, size: int) -> int:
    value = int.from_bytes(hashlib.sha256(text.encode()).digest()[:size], "big")
    return value or 1  # 0 is not a valid id


def trace_id(execution_arn: str) -> int:
    """The trace of an execution."""
    return _id(execution_arn, 16)


def span_id(execution_arn: str, kind: str, event_id: int = 0) -> int:
    """The span of the execution (``kind`` "execution"), of a state (``"state"``, its
    StateEntered event id) or of a task call (``"task"``, its TaskScheduled event id)."""
    return _id(f"{execution_arn}/{kind}/{event_id}", 8)


def traceparent(execution_arn: str, scheduled_id: int, sampled: bool) -> str:
    """The W3C ``traceparent`` header of the task call scheduled at ``scheduled_id``."""
    flags = "01" if sampled else "00"
    return (
        f"00-{trace_id(execution_arn):032x}-{span_id(execution_arn, 'task', scheduled_id):016x}"
        f"-{flags}"
    )


def require(endpoint: str | None) -> None:
    """ValueError, saying what to install, when ``endpoint`` is set without OpenTelemetry."""
    if endpoint:
        try:
            import opentelemetry.exporter.otlp.proto.http.trace_exporter
            import opentelemetry.sdk.trace  # noqa: F401
        except ImportError:
            raise ValueError(
                "STATEWRIGHT_OTLP_ENDPOINT is set but OpenTelemetry is not installed: "
                "pip install 'statewright[otel]'"
            ) from None
        if not endpoint.startswith(("http://", "https://")):
            raise ValueError(
                f"STATEWRIGHT_OTLP_ENDPOINT must be an http(s) URL (OTLP/HTTP), not {endpoint!r}"
            )


def _nanos(event: Event) -> int:
    return int(event.timestamp.timestamp() * 1_000_000_000)


class Tracer:
    """Turns committed decisions into spans and exports them."""

    def __init__(self, endpoint: str, service_name: str = "statewright") -> None:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
        except ImportError:
            raise ValueError(
                "STATEWRIGHT_OTLP_ENDPOINT is set but OpenTelemetry is not installed: "
                "pip install 'statewright[otel]'"
            ) from None
        url = endpoint.rstrip("/")
        if not url.endswith("/v1/traces"):
            url += "/v1/traces"
        self.resource = Resource.create({"service.name": service_name})
        self.processor = BatchSpanProcessor(OTLPSpanExporter(endpoint=url))

    def record(
        self, state_machine_arn: str, execution: Execution, new_events: Sequence[Event]
    ) -> None:
        """The spans that ``new_events`` (just committed) close."""
        info = execution.info
        if info is None or not new_events:
            return
        for span in self._spans(info.execution_arn, state_machine_arn, execution, new_events):
            self.processor.on_end(span)

    def _spans(
        self,
        arn: str,
        state_machine_arn: str,
        execution: Execution,
        new_events: Sequence[Event],
    ) -> list[Any]:
        from opentelemetry.sdk.trace import ReadableSpan
        from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

        trace = trace_id(arn)
        root = SpanContext(trace, span_id(arn, "execution"), True, TraceFlags(1))
        events = execution.events

        def context(kind: str, event_id: int) -> SpanContext:
            return SpanContext(trace, span_id(arn, kind, event_id), True, TraceFlags(1))

        def opened(closing: Event, suffix: str) -> Event | None:
            """The latest event of ``closing``'s scope before it whose type ends in
            ``suffix`` (its StateEntered, or its TaskScheduled)."""
            for earlier in reversed(events[: closing.id - 1]):
                if earlier.scope == closing.scope and earlier.type.endswith(suffix):
                    return earlier
            return None

        spans = []
        for event in new_events:
            kind = event.type
            if kind.endswith("StateExited"):
                entered = opened(event, "StateEntered")
                if entered is None:
                    continue
                name = str(entered.details.get("name", ""))
                spans.append(
                    ReadableSpan(
                        name=f"state {name}",
                        context=context("state", entered.id),
                        parent=root,
                        resource=self.resource,
                        attributes={
                            "statewright.state.name": name,
                            "statewright.state.type": kind.removesuffix("StateExited"),
                            "statewright.scope": event.scope,
                            "statewright.execution.arn": arn,
                        },
                        start_time=_nanos(entered),
                        end_time=_nanos(event),
                    )
                )
            elif kind.endswith(_TASK_ENDS) and (
                kind.startswith(("Task", "LambdaFunction", "Activity"))
            ):
                scheduled = opened(event, "Scheduled")
                if scheduled is None:
                    continue
                state = opened(scheduled, "StateEntered")
                details = scheduled.details
                resource = str(details.get("resource", ""))
                if details.get("resourceType"):
                    resource = f"{details['resourceType']}:{resource}"
                failed = not kind.endswith("Succeeded")
                spans.append(
                    ReadableSpan(
                        name=f"task {resource}",
                        context=context("task", scheduled.id),
                        parent=context("state", state.id) if state is not None else root,
                        resource=self.resource,
                        kind=SpanKind.CLIENT,
                        attributes={
                            "statewright.task.resource": resource,
                            "statewright.task.outcome": kind,
                            "statewright.execution.arn": arn,
                        },
                        status=Status(
                            StatusCode.ERROR if failed else StatusCode.OK,
                            str(event.details.get("error", "")) if failed else None,
                        ),
                        start_time=_nanos(scheduled),
                        end_time=_nanos(event),
                    )
                )
            elif kind in _CLOSING and not event.scope:
                succeeded = kind == "ExecutionSucceeded"
                spans.append(
                    ReadableSpan(
                        name=f"execution {arn.rsplit(':', 2)[-2]}",
                        context=root,
                        parent=None,
                        resource=self.resource,
                        attributes={
                            "statewright.execution.arn": arn,
                            "statewright.state_machine.arn": state_machine_arn,
                            "statewright.execution.status": _STATUS[kind],
                        },
                        status=Status(
                            StatusCode.OK if succeeded else StatusCode.ERROR,
                            None if succeeded else str(event.details.get("error", kind)),
                        ),
                        start_time=_nanos(events[0]),
                        end_time=_nanos(event),
                    )
                )
        return spans

    def close(self) -> None:
        """Export what is waiting, then stop."""
        self.processor.shutdown()  # type: ignore[no-untyped-call]
