"""Definitions and small helpers shared by the viewer tests."""

from __future__ import annotations

import os
import time
import uuid
from typing import Any

import httpx

JSON = Any

# Choice, Parallel, Map (failing in one iteration) and Catch: every kind of group and edge.
FAN_OUT = {
    "Comment": "viewer test: every kind of group and edge",
    "StartAt": "Check",
    "States": {
        "Check": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.skip", "IsPresent": True, "Next": "Done"}],
            "Default": "Fan",
        },
        "Fan": {
            "Type": "Parallel",
            "Branches": [
                {"StartAt": "Left", "States": {"Left": {"Type": "Pass", "End": True}}},
                {
                    "StartAt": "Right",
                    "States": {
                        "Right": {"Type": "Pass", "Next": "RightAgain"},
                        "RightAgain": {"Type": "Pass", "End": True},
                    },
                },
            ],
            "ResultPath": "$.fan",
            "Next": "Each",
        },
        "Each": {
            "Type": "Map",
            "ItemsPath": "$.items",
            "ItemProcessor": {
                "ProcessorConfig": {"Mode": "INLINE"},
                "StartAt": "IsBad",
                "States": {
                    "IsBad": {
                        "Type": "Choice",
                        "Choices": [{"Variable": "$", "NumericEquals": 2, "Next": "Boom"}],
                        "Default": "Fine",
                    },
                    "Boom": {"Type": "Fail", "Error": "Item.Bad", "Cause": "item two is bad"},
                    "Fine": {"Type": "Pass", "End": True},
                },
            },
            "Catch": [{"ErrorEquals": ["Other.Error"], "Next": "Recover"}],
            "ResultPath": "$.each",
            "Next": "Done",
        },
        "Recover": {"Type": "Pass", "Next": "Done"},
        "Done": {"Type": "Succeed"},
    },
}
FAN_OUT_PATHS = [
    "Check",
    "Fan",
    "Fan/branch 0/Left",
    "Fan/branch 1/Right",
    "Fan/branch 1/RightAgain",
    "Each",
    "Each/ItemProcessor/IsBad",
    "Each/ItemProcessor/Boom",
    "Each/ItemProcessor/Fine",
    "Recover",
    "Done",
]

CALLBACK = {
    "StartAt": "Prepare",
    "States": {
        "Prepare": {"Type": "Pass", "Assign": {"stage": "prepared"}, "Next": "Callback"},
        "Callback": {
            "Type": "Task",
            "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
            "Parameters": {"MessageBody": {"token.$": "$$.Task.Token"}},
            "Assign": {"stage": "answered"},
            "End": True,
        },
    },
}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def upload(api: httpx.Client, definition: JSON, prefix: str = "sm") -> str:
    name = unique(prefix)
    answer = api.post("/state-machines", json={"name": name, "definition": definition})
    assert answer.status_code == 201, answer.text
    return name


def start(api: httpx.Client, machine: str, value: JSON) -> str:
    answer = api.post(f"/state-machines/{machine}/executions", json={"input": value})
    assert answer.status_code == 201, answer.text
    execution_id: str = answer.json()["id"]
    return execution_id


def wait_status(
    api: httpx.Client, execution_id: str, statuses: set[str], timeout: float = 30
) -> JSON:
    deadline = time.monotonic() + timeout
    while True:
        found = api.get(f"/executions/{execution_id}").json()
        if found["status"] in statuses:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{execution_id} still {found['status']} after {timeout} s")
        time.sleep(0.1)


def wait_token(api: httpx.Client, execution_id: str, timeout: float = 30) -> str:
    """The task token of the execution's waiting callback task (from its history)."""
    import json

    deadline = time.monotonic() + timeout
    while True:
        for event in api.get(f"/executions/{execution_id}/history").json():
            if event["type"] == "TaskScheduled":
                params = json.loads(event["taskScheduledEventDetails"]["parameters"])
                token: str = params["MessageBody"]["token"]
                return token
        if time.monotonic() > deadline:
            raise AssertionError(f"{execution_id} scheduled no task within {timeout} s")
        time.sleep(0.1)


def slack() -> float:
    """How much longer than on an idle machine a timing may take: 3x on a loaded one."""
    cores = os.cpu_count() or 1
    return 3.0 if os.getloadavg()[0] > 1.5 * cores else 1.0
