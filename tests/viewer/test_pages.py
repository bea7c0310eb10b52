"""The viewer's pages in a real Chromium: they load cleanly, draw the graph, validate and
start executions, sign in with an API key, and answer the keyboard."""

from __future__ import annotations

import json
import re

import httpx
from playwright.sync_api import Page, expect

from tests.service.server import Server
from tests.viewer.conftest import ConsoleErrors
from tests.viewer.helpers import FAN_OUT, FAN_OUT_PATHS, start, upload, wait_status


def test_the_page_and_its_assets_are_served(server: Server) -> None:
    with httpx.Client(base_url=server.base_url) as client:
        for path in ("/", "/ui/executions", "/ui/executions/some-id?tab=events"):
            page = client.get(path)
            assert page.status_code == 200, path
            assert page.headers["content-type"].startswith("text/html")
            assert "script-src 'self'" in page.headers["content-security-policy"]
            assert '<script type="module" src="/ui/assets/app.js">' in page.text
        script = client.get("/ui/assets/app.js")
        assert script.headers["content-type"].startswith("text/javascript")
        again = client.get("/ui/assets/app.js", headers={"If-None-Match": script.headers["etag"]})
        assert again.status_code == 304
        assert client.get("/ui/assets/nothing.js").status_code == 404
        # Only the shipped files: a path out of the folder is a deep link (the page), not a file.
        escape = client.get("/ui/assets/..%2Froutes.py")
        assert "from __future__" not in escape.text
        assert escape.headers["content-type"].startswith("text/html")
        # HEAD answers like GET, without a body (uptime checkers probe with HEAD).
        for path in ("/", "/ui/executions", "/ui/webhooks/x", "/ui/assets/app.js"):
            head = client.head(path)
            assert head.status_code == 200, path
            assert head.headers["etag"] == client.get(path).headers["etag"]
            assert head.content == b""
        assert client.head("/ui", follow_redirects=False).status_code == 308
        # The AWS API is still POST / (answered ahead of the routes).
        assert client.post("/", content=b"{}").status_code in (400, 403)


def test_every_page_loads_without_console_errors(
    viewer: Page, server: Server, api: httpx.Client
) -> None:
    machine = upload(api, FAN_OUT, "pages")
    upload_again = dict(FAN_OUT, Comment="second version")
    api.post("/state-machines", json={"name": machine, "definition": upload_again})
    execution = start(api, machine, {"items": [1, 2, 3]})
    wait_status(api, execution, {"FAILED"})
    base = server.base_url

    viewer.goto(f"{base}/")
    expect(viewer.get_by_role("link", name=machine)).to_be_visible()
    row = viewer.locator("tr", has=viewer.get_by_role("link", name=machine))
    expect(row).to_contain_text("FAILED")
    expect(row).to_contain_text("v2")

    viewer.goto(f"{base}/ui/state-machines/{machine}")
    expect(viewer.locator("g.node").first).to_be_visible()
    for tab, shows in (
        ("Definition", viewer.get_by_text("No diagnostics")),
        ("Versions", viewer.locator(".diff-line.add")),
        ("Start execution", viewer.get_by_label("Input (JSON)")),
    ):
        viewer.get_by_role("tab", name=tab).click()
        expect(shows).to_be_visible()
        if tab == "Versions":
            expect(viewer.get_by_text("Changes from v1 to v2")).to_be_visible()
            expect(shows).to_contain_text("second version")
    assert "tab=start" in viewer.url

    viewer.goto(f"{base}/ui/executions?state_machine={machine}")
    expect(viewer.locator("table.executions tbody tr")).to_have_count(1)
    expect(viewer.get_by_text("1 execution match")).to_be_visible()

    viewer.goto(f"{base}/ui/executions/{execution}")
    expect(viewer.locator("g.node").first).to_be_visible()
    for tab, shows in (
        ("Events", viewer.locator("tr.event-row").first),
        ("Timeline", viewer.locator("svg.timeline")),
        ("Input & output", viewer.get_by_text("Input", exact=True)),
    ):
        viewer.get_by_role("tab", name=tab).click()
        expect(shows).to_be_visible()


def test_the_graph_draws_every_state_with_groups_and_edges(
    viewer: Page, server: Server, api: httpx.Client
) -> None:
    machine = upload(api, FAN_OUT, "graph")
    viewer.goto(f"{server.base_url}/ui/state-machines/{machine}")
    for path in FAN_OUT_PATHS:
        expect(viewer.locator(f'g.node[data-path="{path}"]')).to_have_count(1)
    expect(viewer.locator('g.node.group[data-path="Each"]')).to_contain_text("Map: Each")
    expect(viewer.locator('g.node.group[data-path="Fan"]')).to_contain_text("2 branches")
    expect(viewer.locator("path.edge.e-catch")).to_have_count(1)
    expect(viewer.locator("path.edge.e-default")).to_have_count(2)
    expect(viewer.locator("path.edge.e-choice")).to_have_count(2)
    # Nodes do not overlap one another (siblings of one graph).
    boxes = viewer.evaluate(
        """() => [...document.querySelectorAll('svg.graph g.node')].map(g => {
            const r = g.getBoundingClientRect();
            return {p: g.dataset.path, x: r.x, y: r.y, w: r.width, h: r.height};
        })"""
    )
    by_path = {b["p"]: b for b in boxes}
    for a in boxes:
        for b in boxes:
            if a is b or a["p"].startswith(b["p"] + "/") or b["p"].startswith(a["p"] + "/"):
                continue
            apart = (
                a["x"] + a["w"] <= b["x"] + 1
                or b["x"] + b["w"] <= a["x"] + 1
                or a["y"] + a["h"] <= b["y"] + 1
                or b["y"] + b["h"] <= a["y"] + 1
            )
            assert apart, f"{a['p']} overlaps {b['p']}"
    assert by_path["Check"]["y"] < by_path["Fan"]["y"] < by_path["Each"]["y"] < by_path["Done"]["y"]
    viewer.locator('g.node[data-path="Each/ItemProcessor/Boom"]').click()
    expect(viewer.locator("aside")).to_contain_text('"Error": "Item.Bad"')


def test_definition_diagnostics_are_shown_on_their_lines(
    viewer: Page, server: Server, api: httpx.Client
) -> None:
    machine = upload(api, FAN_OUT, "diag")
    viewer.goto(f"{server.base_url}/ui/state-machines/{machine}?tab=definition")
    expect(viewer.get_by_text("No diagnostics")).to_be_visible()
    broken = json.loads(json.dumps(FAN_OUT))
    broken["States"]["Recover"]["Next"] = "Nowhere"
    viewer.get_by_text("Check an edited definition").click()
    viewer.get_by_label("Definition (JSON)").fill(json.dumps(broken, indent=2))
    viewer.get_by_role("button", name="Validate the edited text").click()
    marked = viewer.locator(".code-line.has-error")
    expect(marked).to_have_count(1)
    expect(marked).to_contain_text('"Next": "Nowhere"')
    expect(viewer.locator(".code-diag.sev-error")).to_contain_text("Nowhere")
    expect(viewer.locator("ul.diagnostics li")).to_have_count(1)


def test_start_form_refuses_invalid_json_and_starts_valid_input(
    viewer: Page, server: Server, api: httpx.Client
) -> None:
    machine = upload(api, FAN_OUT, "start")
    viewer.goto(f"{server.base_url}/ui/state-machines/{machine}?tab=start")
    field = viewer.get_by_label("Input (JSON)")
    field.fill('{"items": [1, 3,]}')
    viewer.get_by_role("button", name="Start execution").click()
    expect(viewer.locator("#start-input-error")).to_contain_text("Not valid JSON (line 1")
    expect(field).to_have_attribute("aria-invalid", "true")
    assert "/ui/state-machines/" in viewer.url  # nothing was sent
    assert api.get("/executions", params={"state_machine": machine}).json() == []

    field.fill('{"items": [1, 3], "skip": true}')
    expect(viewer.locator("#start-input-error")).to_be_hidden()
    viewer.get_by_label("Execution name (optional)").fill("from-the-form")
    viewer.get_by_role("button", name="Start execution").click()
    expect(viewer.get_by_role("heading", name=re.compile("from-the-form"))).to_be_visible()
    expect(viewer.locator("h1 .badge")).to_contain_text("SUCCEEDED")
    (listed,) = api.get("/executions", params={"state_machine": machine}).json()
    assert listed["name"] == "from-the-form"
    assert listed["input"] == {"items": [1, 3], "skip": True}


def test_sign_in_with_an_api_key(
    page: Page, server: Server, api: httpx.Client, console_errors: ConsoleErrors
) -> None:
    machine = upload(api, FAN_OUT, "signin")
    page.goto(f"{server.base_url}/ui/state-machines")
    form = page.locator("form#signin")
    expect(form).to_be_visible()
    expect(form).to_contain_text("Missing Authentication Token")
    key = page.get_by_label("API key")
    key.fill(f"{server.key_id}:not-the-secret")
    page.get_by_role("button", name="Sign in").click()
    expect(form.locator(".form-error")).to_contain_text("Refused")
    key.fill(f"{server.key_id}:{server.secret}")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("link", name=machine)).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('statewright.apiKey')").startswith(server.key_id)
    # The key goes with every request from now on, deep links included.
    page.goto(f"{server.base_url}/ui/state-machines/{machine}")
    expect(page.locator("g.node").first).to_be_visible()
    page.get_by_role("button", name="Sign out").click()
    expect(page.locator("form#signin")).to_be_visible()
    # The only console errors are the browser's notes of the refused requests.
    assert all("401" in e for e in console_errors), console_errors


def test_nodes_tabs_and_rows_work_from_the_keyboard(
    viewer: Page, server: Server, api: httpx.Client
) -> None:
    machine = upload(api, FAN_OUT, "keys")
    execution = start(api, machine, {"items": [1, 2, 3]})
    wait_status(api, execution, {"FAILED"})
    viewer.goto(f"{server.base_url}/ui/executions/{execution}")
    expect(viewer.locator("g.node").first).to_be_visible()

    def tab_to(selector: str, limit: int = 80) -> None:
        for _ in range(limit):
            viewer.keyboard.press("Tab")
            if viewer.evaluate(f"!!document.activeElement.closest({selector!r})"):
                return
        raise AssertionError(f"{selector} not reached with Tab")

    tab_to('g.node[data-path="Check"]')
    viewer.keyboard.press("Enter")
    expect(viewer.locator("aside h2")).to_have_text("Check")
    tab_to('g.node[data-path="Fan"]')
    viewer.keyboard.press(" ")
    expect(viewer.locator("aside h2")).to_have_text("Fan")

    viewer.get_by_role("tab", name="Graph").focus()
    viewer.keyboard.press("ArrowRight")
    expect(viewer.get_by_role("tab", name="Events")).to_be_focused()
    expect(viewer.locator("tr.event-row").first).to_be_visible()
    tab_to("tr.event-row")
    viewer.keyboard.press("Enter")
    expect(viewer.locator("tr.event-detail")).to_contain_text("ExecutionStarted")
    viewer.keyboard.press("ArrowDown")
    viewer.keyboard.press("Enter")
    expect(viewer.locator("tr.event-row[aria-expanded=true]")).to_have_attribute("data-id", "2")
