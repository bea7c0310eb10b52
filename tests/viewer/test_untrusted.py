"""What a person sees when the address names nothing, when data holds markup, and when they
stop or redrive an execution from its page."""

from __future__ import annotations

import json
import time

import httpx
from playwright.sync_api import Page, expect

from tests.service.server import Server
from tests.viewer.conftest import ConsoleErrors
from tests.viewer.helpers import CALLBACK, start, unique, upload, wait_status

SCRIPT = "<script>window.__pwned=1</script>"
IMAGE = '<img src=x onerror="window.__pwned=1">'
MARKUP = {
    "StartAt": "Shape",
    "States": {
        "Shape": {
            "Type": "Pass",
            "Parameters": {SCRIPT: IMAGE, "note.$": "$.note"},
            "Next": "Refuse",
        },
        "Refuse": {"Type": "Fail", "Error": f"Bad{IMAGE}", "Cause": f"because {SCRIPT}"},
    },
}


def _expected_404s(console_errors: ConsoleErrors) -> None:
    # The browser logs the API's 404 answers as failed resource loads: those are the point
    # of the test, anything else still fails it.
    console_errors[:] = [e for e in console_errors if "404" not in e]


def test_a_missing_state_machine_or_execution_gets_a_not_found_page(
    viewer: Page, server: Server, console_errors: ConsoleErrors
) -> None:
    missing = unique("nothing")
    viewer.goto(f"/ui/state-machines/{missing}")
    expect(viewer.get_by_role("heading", name="No such state machine")).to_be_visible()
    expect(viewer.locator(".not-found")).to_contain_text(missing)
    expect(viewer.get_by_role("link", name="All state machines")).to_be_visible()

    viewer.goto(f"/ui/executions/{missing}")
    expect(viewer.get_by_role("heading", name="No such execution")).to_be_visible()
    expect(viewer.locator(".not-found")).to_contain_text(missing)
    viewer.get_by_role("link", name="All executions").click()
    expect(viewer).to_have_url(f"{server.base_url}/ui/executions")
    _expected_404s(console_errors)


def test_markup_in_data_is_shown_as_text_never_run(
    viewer: Page, server: Server, api: httpx.Client
) -> None:
    machine = upload(api, MARKUP, "markup")
    execution = start(api, machine, {"note": SCRIPT + IMAGE, IMAGE: SCRIPT})
    wait_status(api, execution, {"FAILED"})

    viewer.goto(f"/ui/executions?state_machine={machine}")
    expect(viewer.locator("table.executions tbody tr")).to_have_count(1)
    viewer.goto(f"/ui/executions/{execution}")
    expect(viewer.locator(".failure")).to_contain_text(f"Bad{IMAGE}")
    expect(viewer.locator(".failure")).to_contain_text(f"because {SCRIPT}")
    viewer.locator('g.node[data-path="Shape"]').click()
    expect(viewer.locator("aside")).to_contain_text(json.dumps(SCRIPT)[1:-1])
    viewer.locator('g.node[data-path="Refuse"]').click()
    expect(viewer.locator("aside")).to_contain_text(IMAGE)
    for tab in ("Events", "Timeline", "Input & output"):
        viewer.get_by_role("tab", name=tab).click()
        if tab == "Events":
            row = viewer.locator("tr.event-row").nth(1)
            row.click()
            viewer.get_by_role("button", name="State at this event").click()
            expect(viewer.locator("#time-travel")).to_contain_text("State at event")
    expect(viewer.locator("main")).to_contain_text("window.__pwned=1")
    assert viewer.evaluate("window.__pwned") is None
    assert viewer.locator("main script").count() == 0
    assert viewer.locator("main img").count() == 0


def _latest_token(api: httpx.Client, execution_id: str, after: int) -> tuple[str, int]:
    """The token of the newest TaskScheduled after event ``after``, and its id."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        history = api.get(f"/executions/{execution_id}/history").json()
        scheduled = [e for e in history if e["type"] == "TaskScheduled" and e["id"] > after]
        if scheduled:
            params = json.loads(scheduled[-1]["taskScheduledEventDetails"]["parameters"])
            return params["MessageBody"]["token"], scheduled[-1]["id"]
        time.sleep(0.1)
    raise AssertionError(f"{execution_id} scheduled no task after event {after}")


def test_stop_from_the_page(viewer: Page, server: Server, api: httpx.Client) -> None:
    machine = upload(api, CALLBACK, "stop")
    execution = start(api, machine, {})
    _latest_token(api, execution, 0)
    viewer.goto(f"/ui/executions/{execution}")
    expect(viewer.locator("h1 .badge")).to_contain_text("RUNNING")
    viewer.get_by_role("button", name="Stop").click()
    expect(viewer.locator("h1 .badge")).to_contain_text("ABORTED", timeout=30_000)
    assert api.get(f"/executions/{execution}").json()["status"] == "ABORTED"
    expect(viewer.get_by_role("button", name="Stop")).to_have_count(0)


def test_redrive_from_the_page(viewer: Page, server: Server, api: httpx.Client) -> None:
    machine = upload(api, CALLBACK, "redrive")
    execution = start(api, machine, {})
    token, first = _latest_token(api, execution, 0)
    failed = api.post(f"/callbacks/{token}/failure", json={"error": "Shop.Closed", "cause": "x"})
    assert failed.status_code == 202, failed.text
    wait_status(api, execution, {"FAILED"})

    viewer.goto(f"/ui/executions/{execution}")
    expect(viewer.locator(".failure")).to_contain_text("Shop.Closed")
    viewer.get_by_role("button", name="Redrive").click()
    expect(viewer.locator("h1 .badge")).to_contain_text("RUNNING", timeout=30_000)
    token, _ = _latest_token(api, execution, first)
    api.post(f"/callbacks/{token}/success", json={"open": True}).raise_for_status()
    # Live: the open page turns SUCCEEDED without a reload, and says it was redriven.
    expect(viewer.locator("h1 .badge")).to_contain_text("SUCCEEDED", timeout=30_000)
    expect(viewer.locator("dl.facts")).to_contain_text("Redrives")
    viewer.get_by_role("tab", name="Events").click()
    viewer.get_by_label("Event type").select_option("ExecutionRedriven")
    expect(viewer.locator("tr.event-row")).to_have_count(1)
    assert api.get(f"/executions/{execution}").json()["output"] == {"open": True}


def test_upload_a_definition_from_the_viewer(
    viewer: Page, server: Server, api: httpx.Client
) -> None:
    name = unique("uploaded")
    viewer.goto("/ui/state-machines")
    viewer.get_by_text("New state machine").click()
    viewer.get_by_label("Name").fill(name)
    broken = {"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "Nowhere"}}}
    viewer.get_by_label("Definition (ASL JSON)").fill(json.dumps(broken, indent=2))
    viewer.get_by_role("button", name="Create").click()
    expect(viewer.locator("#new-error")).to_contain_text("fix them before creating it")
    expect(viewer.locator("#new-machine")).to_contain_text("Nowhere")
    assert api.get(f"/state-machines/{name}").status_code == 404  # nothing was created

    fixed = {
        "StartAt": "A",
        "States": {"A": {"Type": "Pass", "Next": "B"}, "B": {"Type": "Succeed"}},
    }
    viewer.get_by_label("Definition (ASL JSON)").fill(json.dumps(fixed, indent=2))
    viewer.get_by_role("button", name="Create").click()
    expect(viewer).to_have_url(f"{server.base_url}/ui/state-machines/{name}")
    expect(viewer.locator('g.node[data-path="B"]')).to_be_visible()
    assert api.get(f"/state-machines/{name}").json()["definition"] == fixed
