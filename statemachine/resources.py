"""Task resources: how a Resource ARN names its integration and shapes its history events.

* ``arn:aws:lambda:<region>:<account>:function:<name>``: a Lambda function, LambdaFunction* events;
* ``arn:aws:states:<region>:<account>:activity:<name>``: an activity, Activity* events;
* ``arn:aws:states:::<service>:<action>[.sync|.sync:2|.waitForTaskToken]``: a service
  integration (``http:invoke``, ``lambda:invoke``, ``aws-sdk:<service>:<action>``...), Task* events;
* ``arn:statewright:::<service>:<action>[.waitForTaskToken]``: Statewright's own integrations
  (``container:run``), shaped like AWS's: Task* events with resourceType ``container``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

JSON = Any
DEFAULT_REGION = "us-east-1"


@dataclass(frozen=True, slots=True)
class Resource:
    """A parsed Task resource."""

    arn: str
    kind: str  # "lambda-function" | "activity" | "integration"
    resource_type: str  # e.g. "lambda", "http", "aws-sdk:s3"
    resource: str  # e.g. "invoke", "invoke.waitForTaskToken"
    region: str
    pattern: str  # "request-response" | "sync" | "callback"

    @property
    def event_prefix(self) -> str:
        """The prefix of the task's history events."""
        return {"lambda-function": "LambdaFunction", "activity": "Activity"}.get(self.kind, "Task")


@lru_cache(maxsize=1024)
def parse_resource(arn: str) -> Resource:
    """Split a Resource ARN into what history events and runners need."""
    parts = arn.split(":")
    region = parts[3] if len(parts) > 3 and parts[3] else DEFAULT_REGION
    if len(parts) >= 7 and parts[2] == "lambda" and parts[5] == "function":
        return Resource(arn, "lambda-function", "lambda", arn, region, "request-response")
    if len(parts) >= 7 and parts[2] == "states" and parts[5] == "activity":
        return Resource(arn, "activity", "activity", arn, region, "callback")
    if len(parts) >= 7 and parts[2] == "states" and not parts[4]:
        service = parts[5]
        action = ":".join(parts[6:])
        if service == "aws-sdk" and ":" in action:
            sdk_service, _, action = action.partition(":")
            service = f"aws-sdk:{sdk_service}"
        pattern = "request-response"
        if action.endswith(".waitForTaskToken"):
            pattern = "callback"
        elif ".sync" in action:
            pattern = "sync"
        return Resource(arn, "integration", service, action, region, pattern)
    if len(parts) >= 6 and parts[1] == "statewright" and parts[4]:
        action = ":".join(parts[5:])
        pattern = "callback" if action.endswith(".waitForTaskToken") else "request-response"
        return Resource(arn, "integration", parts[4], action, region, pattern)
    return Resource(
        arn,
        "integration",
        parts[2] if len(parts) > 2 else "unknown",
        arn,
        region,
        "request-response",
    )


def event_prefix(arn: str) -> str:
    """The prefix of a Task's history events: Task, LambdaFunction or Activity."""
    return parse_resource(arn).event_prefix


def task_details(arn: str) -> dict[str, JSON]:
    """The resource fields carried by TaskStarted/Succeeded/Failed details."""
    res = parse_resource(arn)
    if res.kind != "integration":
        return {}
    return {"resourceType": res.resource_type, "resource": res.resource}


def scheduled_details(
    arn: str, parameters: JSON, timeout: float | None, heartbeat: float | None
) -> dict[str, JSON]:
    """Details of TaskScheduled / LambdaFunctionScheduled / ActivityScheduled."""
    res = parse_resource(arn)
    details: dict[str, JSON]
    if res.kind == "integration":
        details = {
            "resourceType": res.resource_type,
            "resource": res.resource,
            "region": res.region,
            "parameters": parameters,
        }
    else:
        details = {"resource": arn, "input": parameters}
    if timeout is not None:
        details["timeoutInSeconds"] = timeout
    if heartbeat is not None:
        details["heartbeatInSeconds"] = heartbeat
    return details
