"""Resource ARNs: the integration, action and pattern history events and runners see."""

from __future__ import annotations

import pytest

from statemachine.resources import parse_resource, task_details
from statemachine.validate import validate


@pytest.mark.parametrize(
    ("arn", "kind", "resource_type", "resource", "pattern"),
    [
        (
            "arn:aws:states:::http:invoke",
            "integration",
            "http",
            "invoke",
            "request-response",
        ),
        (
            "arn:aws:states:::http:invoke.waitForTaskToken",
            "integration",
            "http",
            "invoke.waitForTaskToken",
            "callback",
        ),
        (
            "arn:aws:states:::aws-sdk:s3:getObject",
            "integration",
            "aws-sdk:s3",
            "getObject",
            "request-response",
        ),
        (
            "arn:statewright:::container:run",
            "integration",
            "container",
            "run",
            "request-response",
        ),
        (
            "arn:statewright:::container:run.waitForTaskToken",
            "integration",
            "container",
            "run.waitForTaskToken",
            "callback",
        ),
        (
            "arn:aws:states:us-east-1:123456789012:activity:review",
            "activity",
            "activity",
            "arn:aws:states:us-east-1:123456789012:activity:review",
            "callback",
        ),
    ],
)
def test_parse_resource(
    arn: str, kind: str, resource_type: str, resource: str, pattern: str
) -> None:
    parsed = parse_resource(arn)
    assert (parsed.kind, parsed.resource_type, parsed.resource, parsed.pattern) == (
        kind,
        resource_type,
        resource,
        pattern,
    )


def test_container_task_events_name_the_integration() -> None:
    assert task_details("arn:statewright:::container:run") == {
        "resourceType": "container",
        "resource": "run",
    }


@pytest.mark.parametrize(
    ("arn", "codes"),
    [
        ("arn:statewright:::container:run", []),
        ("arn:statewright:::container:run.waitForTaskToken", []),
        ("arn:statewright:::", ["INVALID_RESOURCE"]),  # no integration named
    ],
)
def test_statewright_integrations_validate(arn: str, codes: list[str]) -> None:
    definition = {"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": arn, "End": True}}}
    assert [d.code for d in validate(definition) if d.severity == "ERROR"] == codes
