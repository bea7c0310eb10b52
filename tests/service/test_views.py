"""The viewer's read API (service/api/views.py) over HTTP against the real server on both
backends, the read models (service/readmodel.py) on histories from run_local, the JSON
position finder, and the performance of lists and large histories on Postgres."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import statistics
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from service import control
from service.db import queries
from service.db.engine import create_engine
from service.db.migrate import upgrade
from service.positions import locate
from service.readmodel import HistoryFold, state_at
from statemachine import TaskError, TaskRequest, parse, run_local
from tests.service.server import Server, running_server
from tests.service.test_api_rest import CALLBACK
from tests.service.test_webhooks import wait_for

JSON = Any
TERMINAL = {"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"}
PASS = {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}
WAIT = {"StartAt": "Hold", "States": {"Hold": {"Type": "Wait", "Seconds": 600, "End": True}}}
SHORT_WAIT = {
    "StartAt": "First",
    "States": {
        "First": {"Type": "Pass", "Next": "Pause"},
        "Pause": {"Type": "Wait", "Seconds": 1, "Next": "Last"},
        "Last": {"Type": "Pass", "End": True},
    },
}
FAIL = {"StartAt": "Boom", "States": {"Boom": {"Type": "Fail", "Error": "Custom.Boom"}}}
# A Parallel (one branch fails, retried once, then caught), a Map with a tolerated failing
# iteration, and variables at the top level and inside the iterations.
GROUPS = {
    "StartAt": "Setup",
    "States": {
        "Setup": {"Type": "Pass", "Assign": {"where": "top"}, "Next": "Par"},
        "Par": {
            "Type": "Parallel",
            "Branches": [
                {"StartAt": "Fine", "States": {"Fine": {"Type": "Pass", "End": True}}},
                {"StartAt": "Bad", "States": {"Bad": {"Type": "Fail", "Error": "Custom.Bad"}}},
            ],
            "Retry": [{"ErrorEquals": ["Custom.Bad"], "MaxAttempts": 1, "IntervalSeconds": 1}],
            "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Each", "ResultPath": "$.error"}],
            "Next": "Each",
        },
        "Each": {
            "Type": "Map",
            "ItemsPath": "$.items",
            "ToleratedFailureCount": 5,
            "ItemProcessor": {
                "StartAt": "Check",
                "States": {
                    "Check": {
                        "Type": "Choice",
                        "Choices": [{"Variable": "$", "NumericEquals": 2, "Next": "No"}],
                        "Default": "Yes",
                    },
                    "Yes": {"Type": "Pass", "Assign": {"inner.$": "$"}, "End": True},
                    "No": {"Type": "Fail", "Error": "Custom.Two"},
                },
            },
            "Next": "Done",
        },
        "Done": {"Type": "Succeed"},
    },
}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def api(api_server: Server) -> Iterator[httpx.Client]:
    api_server.check_alive()
    with httpx.Client(
        base_url=f"{api_server.base_url}/api/v1", timeout=60, headers=api_server.headers
    ) as client:
        yield client


def upload(api: httpx.Client, definition: JSON, name: str | None = None) -> str:
    name = name or unique("view")
    answer = api.post("/state-machines", json={"name": name, "definition": definition})
    assert answer.status_code == 201, answer.text
    return name


def start(api: httpx.Client, machine: str, data: JSON = None, name: str | None = None) -> str:
    body: dict[str, JSON] = {"input": data if data is not None else {}}
    if name is not None:
        body["name"] = name
    answer = api.post(f"/state-machines/{machine}/executions", json=body)
    assert answer.status_code == 201, answer.text
    execution_id: str = answer.json()["id"]
    return execution_id


def settled(api: httpx.Client, execution_id: str, status: str | None = None) -> JSON:
    def probe() -> JSON:
        found = api.get(f"/executions/{execution_id}").json()
        done = found["status"] in TERMINAL if status is None else found["status"] == status
        return found if done else None

    return wait_for(probe, 60, f"execution {execution_id} {status or 'closed'}")


def error_code(answer: httpx.Response, status: int) -> str:
    assert answer.status_code == status, answer.text
    code: str = answer.json()["code"]
    return code


# ---------------------------------------------------------------------------- state machines


def test_summary_counts_executions_by_status(api: httpx.Client) -> None:
    machine = upload(api, PASS)
    holding = upload(api, WAIT)
    for _ in range(3):
        settled(api, start(api, machine), "SUCCEEDED")
    start(api, holding)
    summary = {m["name"]: m for m in api.get("/state-machines/summary").json()}
    counts = summary[machine]["counts"]
    assert counts == {
        "RUNNING": 0,
        "SUCCEEDED": 3,
        "FAILED": 0,
        "TIMED_OUT": 0,
        "ABORTED": 0,
        "PENDING_REDRIVE": 0,
    }
    assert summary[holding]["counts"]["RUNNING"] == 1
    assert summary[machine]["version"] == 1
    assert summary[machine]["status"] == "ACTIVE"
    assert summary[machine]["arn"].endswith(f":stateMachine:{machine}")


def test_versions_newest_first_and_one_by_number(api: httpx.Client) -> None:
    machine = upload(api, PASS)
    second = {"StartAt": "Q", "States": {"Q": {"Type": "Pass", "End": True}}}
    upload(api, second, machine)
    versions = api.get(f"/state-machines/{machine}/versions").json()
    assert [v["version"] for v in versions] == [2, 1]
    assert versions[0]["definition"] == second
    one = api.get(f"/state-machines/{machine}/versions/1").json()
    assert one["definition"] == PASS and one["version"] == 1
    datetime.fromisoformat(one["created_at"])
    assert error_code(api.get(f"/state-machines/{machine}/versions/9"), 404) == "ResourceNotFound"
    assert api.get(f"/state-machines/{machine}/versions/0").status_code == 422
    missing = api.get(f"/state-machines/{unique('none')}/versions")
    assert error_code(missing, 404) == "StateMachineDoesNotExist"


def test_an_execution_shows_the_version_it_runs(api: httpx.Client) -> None:
    machine = upload(api, PASS)
    execution = start(api, machine)
    second = {"StartAt": "Q", "States": {"Q": {"Type": "Pass", "End": True}}}
    upload(api, second, machine)  # the latest is now 2; the execution ran 1
    ran = api.get(f"/executions/{execution}/state-machine").json()
    assert (ran["name"], ran["version"], ran["definition"]) == (machine, 1, PASS)
    missing = api.get(f"/executions/{unique('none')}/state-machine")
    assert error_code(missing, 404) == "ExecutionDoesNotExist"


# ---------------------------------------------------------------------------- validation


def test_validate_places_diagnostics_in_the_text(api: httpx.Client) -> None:
    text = (
        '{\n  "StartAt": "A",\n  "States": {\n    "A": {"Type": "Pass", "Next": "Nowhere"}\n  }\n}'
    )
    answer = api.post("/validate", json={"definition": text})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["result"] == "FAIL"
    placed = {d["location"]: (d["code"], d["line"], d["column"]) for d in body["diagnostics"]}
    assert placed["/States/A/Next"] == ("MISSING_TRANSITION_TARGET", 4, 27)  # the "Next" key
    assert placed["/States"] == ("MISSING_END_STATE", 3, 3)

    broken = api.post("/validate", json={"definition": '{"StartAt": "A",\n  "States": {'}).json()
    assert broken["diagnostics"][0]["code"] == "INVALID_JSON_DESCRIPTION"
    assert broken["diagnostics"][0]["line"] == 2

    fine = api.post("/validate", json={"definition": json.dumps(PASS)}).json()
    assert fine == {"result": "OK", "diagnostics": []}
    assert api.post("/validate", json={"definition": {"StartAt": "A"}}).status_code == 422


def test_locate_pointers() -> None:
    text = '{"a": [1, {"b~c": 2, "d/e": [3]}], "f": {}}'
    found = locate(text, ["/", "/a/1/b~0c", "/a/1/d~1e/0", "/a/7", "/f/x", "nope"])
    assert found == {
        "/": (1, 1),
        "/a/1/b~0c": (1, 12),
        "/a/1/d~1e/0": (1, 30),
        "/a/7": None,
        "/f/x": None,
        "nope": None,
    }
    assert locate("{not json", ["/a"]) == {"/a": None}


# ---------------------------------------------------------------------------- executions


def listed(api: httpx.Client, **params: JSON) -> list[str]:
    answer = api.get("/executions", params=params)
    assert answer.status_code == 200, answer.text
    return [e["id"] for e in answer.json()]


def test_list_pages_with_a_cursor_newest_first(api: httpx.Client) -> None:
    machine = upload(api, PASS)
    ids = [start(api, machine, {"n": i}) for i in range(7)]
    everything = listed(api, state_machine=machine)
    assert sorted(everything) == sorted(ids)
    pages: list[list[str]] = []
    cursor = None
    while True:
        params: dict[str, JSON] = {"state_machine": machine, "limit": 3}
        if cursor:
            params["cursor"] = cursor
        answer = api.get("/executions", params=params)
        assert answer.status_code == 200, answer.text
        pages.append([e["id"] for e in answer.json()])
        cursor = answer.headers.get("Next-Cursor")
        if cursor is None:
            break
    assert [len(p) for p in pages] == [3, 3, 1]
    assert [i for page in pages for i in page] == everything
    starts = [
        e["started_at"] for e in api.get("/executions", params={"state_machine": machine}).json()
    ]
    assert starts == sorted(starts, reverse=True)
    counted = api.get("/executions/count", params={"state_machine": machine}).json()
    assert counted == {"count": 7, "capped": False}


def test_list_refuses_bad_input(api: httpx.Client) -> None:
    machine = upload(api, PASS)
    for cursor in ("nonsense", "W10", "WyJ4IiwgMV0"):
        answer = api.get("/executions", params={"cursor": cursor})
        assert error_code(answer, 400) == "InvalidToken", cursor
    answer = api.get("/executions", params={"started_after": "yesterday"})
    assert error_code(answer, 400) == "ValidationException"
    answer = api.get("/executions/count", params={"started_before": "2026-13-01"})
    assert error_code(answer, 400) == "ValidationException"
    assert (
        error_code(api.get("/executions", params={"status": "DONE"}), 400) == "ValidationException"
    )
    for limit in (0, 1001, "x"):
        assert api.get("/executions", params={"limit": limit}).status_code == 422
    assert api.get("/executions", params={"redrive_count": -1}).status_code == 422
    assert api.get("/executions", params={"stuck_seconds": "soon"}).status_code == 422
    answer = api.get("/executions", params={"state_machine": unique("none")})
    assert error_code(answer, 404) == "StateMachineDoesNotExist"
    assert listed(api, state_machine=machine, q="x" * 256) == []
    assert api.get("/executions", params={"q": "x" * 257}).status_code == 422


def test_list_filters(api: httpx.Client) -> None:
    machine = upload(api, PASS)
    tag = uuid.uuid4().hex[:8]
    small = start(api, machine, {"note": f"Hello-{tag}-World"}, name=f"a_{tag}-1")
    # Over 1 KiB: stored once in the payloads table, searched there.
    large = start(api, machine, {"blob": "z" * 2000 + f"NEEDLE{tag}"}, name=f"b_{tag}-2")
    other = start(api, machine, {"note": "nothing"}, name=f"a{tag}-3")
    for execution in (small, large, other):
        settled(api, execution, "SUCCEEDED")

    assert listed(api, q=f"hello-{tag}-WORLD") == [small]  # any case, input or output
    assert listed(api, q=f"needle{tag}") == [large]
    assert listed(api, state_machine=machine, q="%") == []  # a literal, not a wildcard
    assert listed(api, name_prefix=f"a_{tag}") == [small]  # "_" is literal too
    assert api.get("/executions/count", params={"q": f"NEEDLE{tag}"}).json()["count"] == 1

    started = [
        datetime.fromisoformat(api.get(f"/executions/{i}").json()["started_at"])
        for i in (small, large, other)
    ]
    middle = started[1]
    after = listed(api, state_machine=machine, started_after=middle.isoformat())
    assert set(after) == {
        i for i, s in zip((small, large, other), started, strict=True) if s >= middle
    }
    before = listed(api, state_machine=machine, started_before=middle.isoformat())
    assert set(before) == {
        i for i, s in zip((small, large, other), started, strict=True) if s < middle
    }
    naive = (started[0] - timedelta(hours=1)).astimezone(UTC).replace(tzinfo=None)
    assert len(listed(api, state_machine=machine, started_after=naive.isoformat())) == 3
    later = (started[2] + timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    assert listed(api, state_machine=machine, started_after=later) == []


def test_redrive_count_filter_and_bulk_actions(api: httpx.Client) -> None:
    failing = upload(api, FAIL)
    holding = upload(api, WAIT)
    passing = upload(api, PASS)
    failed = start(api, failing)
    settled(api, failed, "FAILED")
    assert listed(api, state_machine=failing, redrive_count=1) == []
    redriven = api.post("/executions/bulk/redrive", json={"ids": [failed, "no-such-id"]}).json()
    assert redriven["results"][0] == {"id": failed, "ok": True, "code": None, "message": None}
    assert redriven["results"][1]["ok"] is False
    assert redriven["results"][1]["code"] == "ExecutionDoesNotExist"
    settled(api, failed, "FAILED")
    wait_for(
        lambda: listed(api, state_machine=failing, redrive_count=1) == [failed],
        30,
        "the redriven execution listed with redrive_count=1",
    )
    assert listed(api, state_machine=failing, redrive_count=2) == []
    assert api.get("/executions", params={"state_machine": failing}).json()[0]["redrive_count"] == 1

    held = [start(api, holding) for _ in range(2)]
    done = start(api, passing)
    settled(api, done, "SUCCEEDED")
    answer = api.post(
        "/executions/bulk/stop", json={"ids": [*held, done], "error": "Ops.Bulk", "cause": "test"}
    )
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert [r["id"] for r in results] == [*held, done]
    assert [r["ok"] for r in results] == [True, True, False]
    assert results[2]["code"] == "ExecutionNotRunning"
    for execution in held:
        stopped = settled(api, execution, "ABORTED")
        assert stopped["error"] == "Ops.Bulk"
    again = api.post("/executions/bulk/redrive", json={"ids": [done]}).json()["results"][0]
    assert again["code"] == "ExecutionNotRedrivable"
    assert api.post("/executions/bulk/stop", json={"ids": []}).status_code == 422
    too_many = [str(uuid.uuid4()) for _ in range(1001)]
    assert api.post("/executions/bulk/stop", json={"ids": too_many}).status_code == 422


def test_stuck_executions_wait_on_a_task(api: httpx.Client) -> None:
    waiting = upload(api, CALLBACK)
    holding = upload(api, WAIT)
    task = start(api, waiting)
    timer = start(api, holding)

    def scheduled() -> bool:
        events = api.get(f"/executions/{task}/history").json()
        return any(e["type"] == "TaskScheduled" for e in events)

    wait_for(scheduled, 30, "the callback task scheduled")
    assert task in listed(api, state_machine=waiting, stuck_seconds=0)
    assert listed(api, state_machine=waiting, stuck_seconds=3600) == []
    assert timer not in listed(api, state_machine=holding, stuck_seconds=0)  # a Wait is no task
    wait_for(
        lambda: task in listed(api, state_machine=waiting, stuck_seconds=1),
        30,
        "the task unanswered for over a second",
    )
    api.post(f"/executions/{task}/stop")
    api.post(f"/executions/{timer}/stop")
    assert listed(api, state_machine=waiting, stuck_seconds=0) == []


# ---------------------------------------------------------------------------- history


def test_history_pages_in_both_directions(api: httpx.Client) -> None:
    machine = upload(api, SHORT_WAIT)
    execution = start(api, machine)
    settled(api, execution, "SUCCEEDED")
    every = api.get(f"/executions/{execution}/history").json()
    count = len(every)
    assert [e["id"] for e in every] == list(range(1, count + 1))

    def ids(**params: JSON) -> tuple[list[int], str | None]:
        answer = api.get(f"/executions/{execution}/history", params=params)
        assert answer.status_code == 200, answer.text
        return [e["id"] for e in answer.json()], answer.headers.get("Next-Cursor")

    assert ids(limit=3) == ([1, 2, 3], "3")
    assert ids(after=3, limit=3) == ([4, 5, 6], "6")
    assert ids(reverse=True, limit=2) == ([count, count - 1], str(count - 1))
    assert ids(reverse=True, before=count - 1, limit=2) == ([count - 2, count - 3], str(count - 3))
    assert ids(after=2, before=5) == ([3, 4], None)
    assert ids(after=count) == ([], None)
    assert api.get(f"/executions/{execution}/history", params={"before": 0}).status_code == 422
    missing = api.get(f"/executions/{uuid.uuid4()}/history")
    assert error_code(missing, 404) == "ExecutionDoesNotExist"

    download = api.get(f"/executions/{execution}/history/download")
    assert download.status_code == 200
    assert "attachment" in download.headers["content-disposition"]
    assert download.json() == every
    missing = api.get(f"/executions/{uuid.uuid4()}/history/download")
    assert error_code(missing, 404) == "ExecutionDoesNotExist"


def test_stream_sends_status_events_and_ends(api_server: Server, api: httpx.Client) -> None:
    machine = upload(api, SHORT_WAIT)
    execution = start(api, machine)
    seen: list[tuple[str, JSON]] = []
    with api.stream("GET", f"/executions/{execution}/stream", timeout=60) as answer:
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/event-stream")
        kind = ""
        for line in answer.iter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                seen.append((kind, json.loads(line[6:])))
    assert seen[0] == ("status", {"status": "RUNNING", "events": seen[0][1]["events"]})
    assert seen[-1] == ("end", {"status": "SUCCEEDED"})
    history = [data["id"] for kind, data in seen if kind == "history"]
    assert history == list(range(1, len(history) + 1))
    assert history == [e["id"] for e in api.get(f"/executions/{execution}/history").json()]
    assert ("status", {"status": "SUCCEEDED", "events": len(history)}) in seen

    # Resuming after an event id sends only what follows it.
    with api.stream("GET", f"/executions/{execution}/stream", params={"after": 3}) as answer:
        text = answer.read().decode()
    resumed = [int(line[4:]) for line in text.splitlines() if line.startswith("id: ")]
    assert resumed == list(range(4, len(history) + 1))
    missing = api.get(f"/executions/{uuid.uuid4()}/stream")
    assert error_code(missing, 404) == "ExecutionDoesNotExist"


# ---------------------------------------------------------------------------- read models

FLAKY = {
    "StartAt": "Call",
    "States": {
        "Call": {
            "Type": "Task",
            "Resource": "arn:aws:lambda:us-east-1:123456789012:function:flaky",
            "Retry": [{"ErrorEquals": ["Flaky"], "MaxAttempts": 2, "IntervalSeconds": 1}],
            "Next": "After",
        },
        "After": {"Type": "Pass", "End": True},
        "Never": {"Type": "Pass", "End": True},
    },
}


def _flaky(request: TaskRequest) -> JSON:
    if request.attempt == 0:
        raise TaskError("Flaky", "first attempt")
    return {"ok": True}


def test_states_fold_groups_iterations_retries_and_catches() -> None:
    result = run_local(GROUPS, {"items": [1, 2, 3]})
    fold = HistoryFold(parse(GROUPS), span_limit=5)
    fold.fold(result.events)
    states = fold.states()
    summary = {path: s["status"] for path, s in states.items()}
    assert summary == {
        "Setup": "succeeded",
        "Par": "caught",
        "Par/branch 0/Fine": "succeeded",
        "Par/branch 1/Bad": "failed",
        "Each": "succeeded",
        "Each/ItemProcessor/Check": "succeeded",
        "Each/ItemProcessor/Yes": "succeeded",
        "Each/ItemProcessor/No": "failed",
        "Done": "succeeded",
    }
    assert states["Par"]["retries"] == 1 and states["Par"]["caught"] == 1
    assert states["Par"]["error"] == "Custom.Bad"
    assert states["Each"]["iterations"] == {
        "total": 3,
        "succeeded": 2,
        "failed": 1,
        "aborted": 0,
        "running": 0,
        "failed_indexes": [1],
    }
    assert states["Each/ItemProcessor/Check"]["entered"] == 3
    assert states["Each/ItemProcessor/No"]["error"] == "Custom.Two"
    assert fold.status == "SUCCEEDED"
    spans = fold.timeline()
    assert [s["path"] for s in spans] == [
        "Setup",
        "Par",
        "Par/branch 0/Fine",
        "Par/branch 1/Bad",
        "Par/branch 0/Fine",
    ]
    assert fold.visits == 14
    taken = {(t["from"], t["to"], t["kind"]): t["count"] for t in fold.transitions()}
    assert taken == {
        ("#start", "Setup", "next"): 1,
        ("Setup", "Par", "next"): 1,
        # The branches ran twice (the Parallel was retried once).
        ("Par/branch 0#start", "Par/branch 0/Fine", "next"): 2,
        ("Par/branch 0/Fine", "Par/branch 0#end", "next"): 2,
        ("Par/branch 1#start", "Par/branch 1/Bad", "next"): 2,
        ("Par/branch 1/Bad", "Par/branch 1#end", "fail"): 2,
        # Par's Catch and its Next both lead to Each: the catch is the one taken.
        ("Par", "Each", "catch"): 1,
        ("Each/ItemProcessor#start", "Each/ItemProcessor/Check", "next"): 3,
        ("Each/ItemProcessor/Check", "Each/ItemProcessor/Yes", "next"): 2,
        ("Each/ItemProcessor/Check", "Each/ItemProcessor/No", "next"): 1,
        ("Each/ItemProcessor/Yes", "Each/ItemProcessor#end", "next"): 2,
        ("Each/ItemProcessor/No", "Each/ItemProcessor#end", "fail"): 1,
        ("Each", "Done", "next"): 1,
        ("Done", "#end", "next"): 1,
    }


def test_states_fold_retried_running_and_not_reached() -> None:
    result = run_local(FLAKY, {}, tasks=_flaky)
    fold = HistoryFold(parse(FLAKY))
    fold.fold(result.events)
    states = fold.states()
    assert states["Call"]["status"] == "retried"
    assert states["Call"]["retries"] == 1
    assert states["After"]["status"] == "succeeded"
    assert states["Never"]["status"] == "not_reached"
    assert states["Never"]["entered"] == 0
    # The history up to the first TaskScheduled: the task is running, nothing else reached.
    first = next(e.id for e in result.events if e.type.endswith("Scheduled"))
    partial = HistoryFold(parse(FLAKY))
    partial.fold(result.events[:first])
    assert partial.states()["Call"]["status"] == "running"
    assert partial.states()["After"]["status"] == "not_reached"
    assert partial.status == "RUNNING"
    # A retried task goes on once: one transition out of it; the unreached state has none.
    assert {(t["from"], t["to"], t["count"]) for t in fold.transitions()} == {
        ("#start", "Call", 1),
        ("Call", "After", 1),
        ("After", "#end", 1),
    }
    assert partial.transitions() == [{"from": "#start", "to": "Call", "kind": "next", "count": 1}]


def test_states_fold_a_map_of_10000_iterations() -> None:
    definition = {
        "StartAt": "Each",
        "States": {
            "Each": {
                "Type": "Map",
                "ItemProcessor": {
                    "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                    "StartAt": "Inner",
                    "States": {"Inner": {"Type": "Pass", "End": True}},
                },
                "MaxConcurrency": 1000,
                "End": True,
            }
        },
    }
    result = run_local(definition, list(range(10_000)))
    assert result.status == "SUCCEEDED"
    began = time.perf_counter()
    fold = HistoryFold(parse(definition), span_limit=2000)
    fold.fold(result.events)
    states = fold.states()
    spans = fold.timeline()
    elapsed = time.perf_counter() - began
    print(
        f"\nstates fold of a 10,000-iteration Map ({len(result.events)} events): {elapsed * 1000:.0f} ms"
    )
    assert states["Each"]["iterations"]["succeeded"] == 10_000
    assert states["Each/ItemProcessor/Inner"]["entered"] == 10_000
    assert states["Each/ItemProcessor/Inner"]["status"] == "succeeded"
    assert len(spans) == 2000 and fold.visits == 10_001
    assert elapsed < _allowance(2.0)


def test_state_at_replays_to_an_event() -> None:
    result = run_local(GROUPS, {"items": [1, 2, 3]})
    machine = parse(GROUPS)
    by_type = {(e.type, e.details.get("name")): e for e in result.events}
    yes = by_type[("PassStateExited", "Yes")]  # the last iteration's Yes (index 2)
    answer = state_at(machine, result.events[: yes.id])
    assert answer["state"] == "Each/ItemProcessor/Yes"
    assert answer["event_type"] == "PassStateExited"
    assert answer["output"] == 3
    assert answer["variables"] == {"top": {"where": "top"}, "scope": {"where": "top", "inner": 3}}
    assert answer["status"] == "RUNNING"
    entered = by_type[("MapStateEntered", "Each")]
    answer = state_at(machine, result.events[: entered.id])
    assert answer["state"] == "Each"
    assert answer["input"] == {"items": [1, 2, 3], "error": {"Error": "Custom.Bad"}}
    assert answer["variables"] == {"top": {"where": "top"}, "scope": None}
    answer = state_at(machine, result.events)
    assert answer["state"] is None and answer["status"] == "SUCCEEDED"
    assert state_at(machine, result.events[:1])["state"] is None


def _allowance(seconds: float) -> float:
    """A generous limit, tripled on a machine busier than its cores."""
    cores = os.cpu_count() or 1
    return seconds * (3 if os.getloadavg()[0] > 1.5 * cores else 1)


def test_states_timeline_and_state_at_over_http(api: httpx.Client) -> None:
    machine = upload(api, GROUPS)
    execution = start(api, machine, {"items": [1, 2, 3]})
    settled(api, execution, "SUCCEEDED")
    answer = api.get(f"/executions/{execution}/states")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["status"] == "SUCCEEDED"
    assert "ItemProcessor" in body["path_scheme"]
    states = body["states"]
    assert states["Par"]["status"] == "caught"
    assert states["Each"]["iterations"]["failed_indexes"] == [1]
    assert states["Each/ItemProcessor/No"]["status"] == "failed"

    timeline = api.get(f"/executions/{execution}/timeline", params={"limit": 3}).json()
    assert [s["path"] for s in timeline["spans"]] == ["Setup", "Par", "Par/branch 0/Fine"]
    assert timeline["truncated"] is True and timeline["total"] == 14
    full = api.get(f"/executions/{execution}/timeline").json()
    assert full["truncated"] is False and len(full["spans"]) == 14
    assert api.get(f"/executions/{execution}/timeline", params={"limit": 0}).status_code == 422

    history = api.get(f"/executions/{execution}/history").json()
    yes = [e for e in history if e["type"] == "PassStateExited"][-1]
    at = api.get(f"/executions/{execution}/state-at/{yes['id']}").json()
    assert at["state"] == "Each/ItemProcessor/Yes"
    assert at["variables"]["scope"] == {"where": "top", "inner": 3}
    assert at["status"] == "RUNNING"
    last = api.get(f"/executions/{execution}/state-at/{len(history)}").json()
    assert last["status"] == "SUCCEEDED" and last["event_type"] == "ExecutionSucceeded"
    for bad in (0, len(history) + 1):
        answer = api.get(f"/executions/{execution}/state-at/{bad}")
        assert error_code(answer, 400) == "InvalidEventId"
    assert api.get(f"/executions/{execution}/state-at/x").status_code == 422
    for route in ("states", "timeline", "state-at/1"):
        missing = api.get(f"/executions/{uuid.uuid4()}/{route}")
        assert error_code(missing, 404) == "ExecutionDoesNotExist", route


# ---------------------------------------------------------------------------- performance

EXECUTIONS = 100_000
BIG_MAP_ITEMS = 6_000  # 4 events per iteration: a history of about 24,000 events
BIG_MAP = {
    "StartAt": "Each",
    "States": {
        "Each": {
            "Type": "Map",
            "ItemProcessor": {
                "StartAt": "Inner",
                "States": {"Inner": {"Type": "Pass", "End": True}},
            },
            "End": True,
        }
    },
}
_SEED_EXECUTIONS = """
    INSERT INTO executions (id, arn, name, state_machine_id, version_id, status, input_ref,
                            output_ref, started_at, stopped_at, seed, version, redrive_count)
    SELECT 'x' || lpad(i::text, 35, '0'), CAST(:arn AS text) || i, 'run-' || i,
           CASE WHEN i % 10 = 0 THEN CAST(:other AS integer) ELSE CAST(:machine AS integer) END,
           CAST(:version_id AS integer),
           (ARRAY['SUCCEEDED', 'SUCCEEDED', 'SUCCEEDED', 'FAILED', 'RUNNING', 'ABORTED'])[1 + i % 6],
           '{"order":' || i || ',"customer":"c' || (i % 997) || '","note":"item ' || md5(i::text) || '"}',
           '{"ok"\\:true}',
           now() - make_interval(secs => CAST(:count AS integer) - i),
           now() - make_interval(secs => CAST(:count AS integer) - i - 1),
           i, 3, CASE WHEN i % 1000 = 0 THEN 1 ELSE 0 END
    FROM generate_series(1, CAST(:count AS integer)) AS i
"""


def _timed(
    client: httpx.Client, path: str, runs: int = 5, **params: JSON
) -> tuple[float, httpx.Response]:
    """The median time of ``runs`` requests (after one warm-up), in ms, and the last answer."""
    answer = client.get(path, params=params)
    assert answer.status_code == 200, answer.text[:500]
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        answer = client.get(path, params=params)
        times.append((time.perf_counter() - began) * 1000)
        assert answer.status_code == 200, answer.text[:500]
    return statistics.median(times), answer


async def _seed(url: str) -> str:
    """100,000 executions over two state machines, and one execution with a 24,000-event
    history, written directly; returns the big one's id."""
    engine = create_engine(url)
    machine = await control.create_state_machine(engine, "perf", BIG_MAP)
    other = await control.create_state_machine(engine, "perf-other", PASS)
    result = run_local(BIG_MAP, list(range(BIG_MAP_ITEMS)))
    assert result.status == "SUCCEEDED"
    async with engine.begin() as conn:
        version_id = (
            await conn.execute(
                queries.versions.select()
                .with_only_columns(queries.versions.c.id)
                .where(queries.versions.c.state_machine_id == machine.id)
            )
        ).scalar_one()
        await conn.execute(
            sa.text(_SEED_EXECUTIONS),
            {
                "arn": control.execution_arn("perf", "run-"),
                "machine": machine.id,
                "other": other.id,
                "version_id": version_id,
                "count": EXECUTIONS,
            },
        )
        big = str(uuid.uuid4())
        await queries.start_execution(
            conn,
            execution_id=big,
            arn=control.execution_arn("perf", "big"),
            name="big",
            state_machine_id=machine.id,
            version_id=version_id,
            input_value=list(range(BIG_MAP_ITEMS)),
            seed=0,
            at=result.events[0].timestamp,
        )
        rows = await queries.event_rows(conn, big, result.events)
        await queries.insert_event_rows(conn, rows)
        await conn.execute(
            queries.executions.update()
            .where(queries.executions.c.id == big)
            .values(status="SUCCEEDED", version=len(rows), wake_at=None)
        )
        await conn.execute(sa.text("ANALYZE"))
    await engine.dispose()
    return big


def test_performance_with_100k_executions_and_a_24k_event_history(
    postgres_database: str, tmp_path: Path
) -> None:
    upgrade(postgres_database)
    big = asyncio.run(_seed(postgres_database))
    figures: dict[str, float] = {}
    with (
        running_server(
            postgres_database, tmp_path / "server.log", backend="postgres", workers=1
        ) as server,
        httpx.Client(
            base_url=f"{server.base_url}/api/v1", headers=server.headers, timeout=120
        ) as api,
    ):
        figures["list: first page (100)"], page = _timed(api, "/executions")
        assert len(page.json()) == 100
        cursor = page.headers["Next-Cursor"]
        figures["list: second page (cursor)"], _ = _timed(api, "/executions", cursor=cursor)
        figures["list: machine + status (100)"], page = _timed(
            api, "/executions", state_machine="perf", status="FAILED"
        )
        assert len(page.json()) == 100
        assert {e["status"] for e in page.json()} == {"FAILED"}
        figures["list: name prefix"], page = _timed(api, "/executions", name_prefix="run-9999")
        assert len(page.json()) == 11
        figures["list: q, rare text"], page = _timed(api, "/executions", q=f"ITEM {_md5(77777)}")
        assert [e["name"] for e in page.json()] == ["run-77777"]
        figures["list: q, common text (100)"], page = _timed(
            api, "/executions", q='"customer":"c12"'
        )
        assert len(page.json()) == 100
        figures["list: redrive_count=1"], page = _timed(api, "/executions", redrive_count=1)
        assert len(page.json()) == 100
        figures["list: started window"], page = _timed(
            api,
            "/executions",
            started_after=(datetime.now(UTC) - timedelta(hours=2)).isoformat(),
            started_before=(datetime.now(UTC) - timedelta(hours=1)).isoformat(),
        )
        assert len(page.json()) == 100
        figures["count: all (capped)"], counted = _timed(api, "/executions/count")
        assert counted.json() == {"count": 10_000, "capped": True}
        figures["count: q rare"], counted = _timed(api, "/executions/count", q=_md5(4242))
        assert counted.json() == {"count": 1, "capped": False}
        figures["summary (grouped counts)"], summary = _timed(api, "/state-machines/summary")
        counts = {m["name"]: m["counts"] for m in summary.json()}
        assert sum(counts["perf"].values()) + sum(counts["perf-other"].values()) == EXECUTIONS + 1

        figures["history: first page (1000)"], page = _timed(api, f"/executions/{big}/history")
        assert page.json()[0]["id"] == 1
        figures["history: last page, reverse"], page = _timed(
            api, f"/executions/{big}/history", reverse=True, limit=100
        )
        total = page.json()[0]["id"]
        assert total > 24_000
        figures["history: middle page (after)"], page = _timed(
            api, f"/executions/{big}/history", after=12_000, limit=100
        )
        assert page.json()[0]["id"] == 12_001
        figures["states (24k events)"], states = _timed(api, f"/executions/{big}/states", runs=3)
        assert states.json()["states"]["Each"]["iterations"]["succeeded"] == BIG_MAP_ITEMS
        figures["timeline (2000 of 6001)"], timeline = _timed(
            api, f"/executions/{big}/timeline", runs=3
        )
        assert timeline.json()["truncated"] is True
        figures["state-at: last event"], at = _timed(
            api, f"/executions/{big}/state-at/{total}", runs=3
        )
        assert at.json()["status"] == "SUCCEEDED"
        figures["history download (24k)"], download = _timed(
            api, f"/executions/{big}/history/download", runs=1
        )
        assert len(download.json()) == total
    width = max(map(len, figures))
    print(f"\n{EXECUTIONS:,} executions, a {total:,}-event history, Postgres (median ms):")
    for what, ms in figures.items():
        print(f"  {what:<{width}}  {ms:8.1f}")
    slow = _allowance(1.0) * 1000
    for what, ms in figures.items():
        limit = slow * (5 if "download" in what or "state-at" in what else 1)
        assert ms < limit, f"{what}: {ms:.0f} ms"


def _md5(number: int) -> str:
    return hashlib.md5(str(number).encode()).hexdigest()


def test_viewer_answers_hold_no_execution_secrets(api_server: Server, api: httpx.Client) -> None:
    machine = upload(api, CALLBACK)
    execution = start(api, machine, {"order": 1})

    def scheduled() -> list[JSON] | None:
        events: list[JSON] = api.get(f"/executions/{execution}/history").json()
        return events if any(e["type"] == "TaskScheduled" for e in events) else None

    events = wait_for(scheduled, 30, "the callback task scheduled")

    async def secrets_of() -> tuple[str, str]:
        engine = create_engine(api_server.database_url)
        async with engine.connect() as conn:
            e = queries.executions
            row = (
                await conn.execute(sa.select(e.c.seed, e.c.token_key).where(e.c.id == execution))
            ).one()
        await engine.dispose()
        return str(row[0]), str(row[1])

    seed, token_key = asyncio.run(secrets_of())
    answers = [
        api.get(f"/executions/{execution}/{route}").text
        for route in (
            "states",
            "timeline",
            "history/download",
            *[f"state-at/{e['id']}" for e in events],
        )
    ]
    answers.append(api.get("/executions", params={"state_machine": machine}).text)
    api.post(f"/executions/{execution}/stop")
    with api.stream("GET", f"/executions/{execution}/stream") as streamed:
        answers.append(streamed.read().decode())
    for text in answers:
        assert token_key not in text, text[:300]
        assert '"seed"' not in text and '"token_key"' not in text, text[:300]
        assert f":{seed}," not in text and f": {seed}," not in text, text[:300]
