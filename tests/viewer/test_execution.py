"""One execution in the viewer: the graph coloured by outcome with Map groups, state
details, the event table's filter, time travel, live updates, and bulk stop."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Page, expect

from tests.service.server import Server
from tests.viewer.helpers import (
    CALLBACK,
    FAN_OUT,
    start,
    upload,
    wait_status,
    wait_token,
)


def test_a_failure_inside_a_map_shows_on_the_group_and_the_state(
    viewer: Page, server: Server, api: httpx.Client
) -> None:
    machine = upload(api, FAN_OUT, "mapfail")
    execution = start(api, machine, {"items": [1, 2, 3, 2]})
    wait_status(api, execution, {"FAILED"})
    viewer.goto(f"/ui/executions/{execution}")
    expect(viewer.locator("h1 .badge")).to_contain_text("FAILED")
    expect(viewer.locator(".failure").first).to_contain_text("Item.Bad")

    group = viewer.locator('g.node.group[data-path="Each"]')
    expect(group).to_have_attribute("data-status", "failed")
    expect(group.locator(":scope > text.iterations")).to_contain_text("4 iterations")
    expect(group.locator(":scope > text.iterations")).to_contain_text("1 failed")
    boom = viewer.locator('g.node[data-path="Each/ItemProcessor/Boom"]')
    expect(boom).to_have_attribute("data-status", "failed")
    assert "st-failed" in (boom.get_attribute("class") or "")
    assert "Failed" in (boom.get_attribute("aria-label") or "")  # not by colour alone
    expect(viewer.locator('g.node[data-path="Fan"]')).to_have_attribute("data-status", "succeeded")
    expect(viewer.locator('g.node[data-path="Recover"]')).to_have_attribute(
        "data-status", "not_reached"
    )
    expect(viewer.locator(".legend")).to_contain_text("Failed, caught")

    # The Map's failed iterations are reachable from its details.
    group.locator(":scope > text.name").click()
    side = viewer.locator("aside")
    expect(side).to_contain_text("4 in total")
    side.get_by_role("button", name="#1").click()
    expect(viewer.get_by_role("tab", name="Events")).to_have_attribute("aria-selected", "true")
    opened = viewer.locator("tr.event-row[aria-expanded=true]")
    expect(opened).to_contain_text("MapIterationFailed")
    expect(viewer.locator("tr.event-detail")).to_contain_text('"index": 1')


def test_the_graph_marks_the_transitions_the_execution_took(
    viewer: Page, server: Server, api: httpx.Client
) -> None:
    machine = upload(api, FAN_OUT, "taken")
    execution = start(api, machine, {"items": [1, 2, 3]})
    wait_status(api, execution, {"FAILED"})
    viewer.goto(f"/ui/executions/{execution}")
    expect(viewer.locator('g.node[data-path="Each"]')).to_have_attribute("data-status", "failed")

    def edge(source: str, target: str, kind: str = "next") -> Any:
        return viewer.locator(f'path.edge.e-{kind}[data-from="{source}"][data-to="{target}"]')

    answer = api.get(f"/executions/{execution}/states").json()
    entered = {path: state["entered"] for path, state in answer["states"].items()}
    inner = "Each/ItemProcessor"
    for source, target, kind, times in (
        ("#start", "Check", "next", 1),
        ("Check", "Fan", "default", 1),
        ("Fan/branch 1#start", "Fan/branch 1/Right", "next", 1),
        ("Fan/branch 1/Right", "Fan/branch 1/RightAgain", "next", 1),
        ("Fan/branch 0/Left", "Fan/branch 0#end", "next", 1),
        ("Fan", "Each", "next", 1),
        # The Map stops its iterations at the first failure: how many ran varies.
        (f"{inner}#start", f"{inner}/IsBad", "next", entered[f"{inner}/IsBad"]),
        (f"{inner}/IsBad", f"{inner}/Boom", "choice", 1),
        (f"{inner}/Boom", f"{inner}#end", "fail", 1),
    ):
        expect(edge(source, target, kind)).to_have_attribute("data-taken", str(times))
        expect(edge(source, target, kind)).to_have_class(re.compile(r"\btaken\b"))
    # Each transition of the read model is one drawn edge here (no two rules share a target).
    expect(viewer.locator("path.edge.taken")).to_have_count(len(answer["transitions"]))
    # Not taken: the skip rule, the uncaught error's Catch, and everything after the Map.
    for source, target, kind in (
        ("Check", "Done", "choice"),
        ("Each", "Recover", "catch"),
        ("Each", "Done", "next"),
        ("Recover", "Done", "next"),
        ("Done", "#end", "next"),
    ):
        expect(edge(source, target, kind)).to_have_count(1)
        expect(edge(source, target, kind)).not_to_have_class(re.compile(r"\btaken\b"))
    expect(viewer.locator(".legend")).to_contain_text("Transition taken")


def test_clicking_a_state_shows_its_input_and_output(
    viewer: Page, server: Server, api: httpx.Client
) -> None:
    machine = upload(api, FAN_OUT, "details")
    execution = start(api, machine, {"items": [1, 3], "marker": "look-here"})
    wait_status(api, execution, {"SUCCEEDED"})
    viewer.goto(f"/ui/executions/{execution}")
    viewer.locator('g.node[data-path="Fan"]').click()
    side = viewer.locator("aside")
    expect(side.locator("h2")).to_have_text("Fan")
    expect(side).to_contain_text("Succeeded")
    inputs = side.locator(".json-block", has_text="Input (event")
    outputs = side.locator(".json-block", has_text="Output (event")
    expect(inputs).to_contain_text('"marker": "look-here"')
    expect(outputs).to_contain_text('"fan": [')
    assert "state=Fan" in viewer.url
    # The selection is in the URL: a shared link opens on the same state.
    viewer.goto(viewer.url)
    expect(viewer.locator("aside h2")).to_have_text("Fan")
    expect(viewer.locator('g.node.selected[data-path="Fan"]')).to_have_count(1)


def test_the_event_table_filters_by_type(viewer: Page, server: Server, api: httpx.Client) -> None:
    machine = upload(api, FAN_OUT, "filter")
    execution = start(api, machine, {"items": list(range(3, 60))})
    done = wait_status(api, execution, {"SUCCEEDED"})
    viewer.goto(f"/ui/executions/{execution}?tab=events")
    rows = viewer.locator("tr.event-row")
    expect(rows).to_have_count(100)  # a page
    expect(viewer.locator(".event-table .toolbar")).to_contain_text(
        f"{done['events']} of {done['events']} events"
    )
    viewer.get_by_label("Event type").select_option("MapIterationSucceeded")
    expect(rows).to_have_count(57)
    for text in rows.locator("td:nth-child(2)").all_inner_texts():
        assert text == "MapIterationSucceeded"
    assert "type=MapIterationSucceeded" in viewer.url
    viewer.get_by_label("State", exact=True).select_option("Fine")
    expect(viewer.locator(".event-table .toolbar")).to_contain_text("57 of")
    viewer.get_by_label("Event type").select_option("")
    expect(rows.first).to_contain_text("Fine")
    # The filters are in the URL: reloading keeps them.
    viewer.reload()
    expect(viewer.get_by_label("State", exact=True)).to_have_value("Fine")


def test_time_travel_shows_the_variables_at_an_event(
    viewer: Page, server: Server, api: httpx.Client
) -> None:
    machine = upload(api, CALLBACK, "travel")
    execution = start(api, machine, {"order": 7})
    token = wait_token(api, execution)
    api.post(f"/callbacks/{token}/success", json={"ok": True}).raise_for_status()
    wait_status(api, execution, {"SUCCEEDED"})
    history = api.get(f"/executions/{execution}/history").json()
    prepared = next(e["id"] for e in history if e["type"] == "PassStateExited")
    viewer.goto(f"/ui/executions/{execution}?tab=events")
    viewer.locator(f'tr.event-row[data-id="{prepared}"]').click()
    viewer.get_by_role("button", name="State at this event").click()
    travel = viewer.locator("#time-travel")
    expect(travel).to_contain_text(f"State at event {prepared}")
    expect(travel.locator(".json-block", has_text="Variables")).to_contain_text('"prepared"')
    assert f"at={prepared}" in viewer.url
    last = history[-1]["id"]
    viewer.locator(f'tr.event-row[data-id="{last}"]').click()
    viewer.get_by_role("button", name="State at this event").click()
    expect(travel).to_contain_text(f"State at event {last}")
    expect(travel.locator(".json-block", has_text="Variables")).to_contain_text('"answered"')


def test_a_running_execution_updates_live_without_reload(
    viewer: Page, server: Server, api: httpx.Client
) -> None:
    machine = upload(api, CALLBACK, "live")
    execution = start(api, machine, {"order": 1})
    token = wait_token(api, execution)
    viewer.goto(f"/ui/executions/{execution}")
    expect(viewer.locator("h1 .badge")).to_contain_text("RUNNING")
    expect(viewer.locator(".live")).to_contain_text("Live")
    callback = viewer.locator('g.node[data-path="Callback"]')
    expect(callback).to_have_attribute("data-status", "running")
    viewer.evaluate("window.__sameDocument = true")
    api.post(f"/callbacks/{token}/success", json={"answer": 42}).raise_for_status()
    expect(viewer.locator("h1 .badge")).to_contain_text("SUCCEEDED", timeout=20_000)
    expect(callback).to_have_attribute("data-status", "succeeded")
    expect(viewer.locator(".live")).to_have_text("")
    assert viewer.evaluate("window.__sameDocument") is True  # no reload happened
    viewer.get_by_role("tab", name="Events").click()
    expect(viewer.locator("tr.event-row", has_text="ExecutionSucceeded")).to_have_count(1)


def test_bulk_stop_of_two_running_executions(
    viewer: Page, server: Server, api: httpx.Client
) -> None:
    machine = upload(api, CALLBACK, "bulk")
    first = start(api, machine, {"n": 1})
    second = start(api, machine, {"n": 2})
    for execution in (first, second):
        wait_token(api, execution)
    viewer.goto(f"/ui/executions?state_machine={machine}&status=RUNNING")
    rows = viewer.locator("table.executions tbody tr")
    expect(rows).to_have_count(2)
    viewer.get_by_label("Select all on this page").check()
    expect(viewer.locator(".bulk")).to_contain_text("2 selected")
    viewer.get_by_role("button", name="Stop selected").click()
    viewer.get_by_role("button", name="Confirm").click()
    expect(viewer.locator(".bulk-results")).to_contain_text("2 of 2 accepted")
    for execution in (first, second):
        assert wait_status(api, execution, {"ABORTED"})["status"] == "ABORTED"
    viewer.goto(f"/ui/executions?state_machine={machine}")
    expect(viewer.locator("table.executions .badge", has_text="ABORTED")).to_have_count(2)


def test_download_and_copy_as_curl_and_boto3(
    viewer: Page, server: Server, api: httpx.Client, tmp_path: Path
) -> None:
    machine = upload(api, FAN_OUT, "snippet")
    value = {"items": [1, 3], "skip": True, "quote": 'it\'s "quoted"'}
    execution = start(api, machine, value)
    wait_status(api, execution, {"SUCCEEDED"})
    viewer.goto(f"/ui/executions/{execution}")
    expect(viewer.locator("h1 .badge")).to_contain_text("SUCCEEDED")
    with viewer.expect_download() as download:
        viewer.get_by_role("button", name="Download history").click()
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    events = json.loads(saved.read_text())
    assert events[0]["type"] == "ExecutionStarted"
    assert events[-1]["type"] == "ExecutionSucceeded"
    # What the copy buttons put on the clipboard, made by the page's own module.
    snippets = viewer.evaluate(
        """async ([machine, arn, input]) => {
            const m = await import('/ui/assets/snippets.js');
            return [m.curlStart(machine, input), m.boto3Start(arn, input)];
        }""",
        [machine, api.get(f"/state-machines/{machine}").json()["arn"], value],
    )
    env = {**os.environ, "STATEWRIGHT_API_KEY": f"{server.key_id}:{server.secret}"}
    ran = subprocess.run(["bash", "-c", snippets[0]], capture_output=True, env=env, timeout=60)
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["input"] == value
    script = tmp_path / "start.py"
    script.write_text(snippets[1])
    ran = subprocess.run([sys.executable, str(script)], capture_output=True, env=env, timeout=60)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.decode().startswith("arn:aws:states:")
    listed = api.get("/executions", params={"state_machine": machine}).json()
    assert len(listed) == 3
    assert all(e["input"] == value for e in listed)
