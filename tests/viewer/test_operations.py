"""The viewer's operations pages in a real Chromium: webhooks and their delivery log (with a
real receiver on 127.0.0.1), schedules, and connections; pause, resume and Redeliver from
the page reach the API; no secret ever reaches the page."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, Response, expect

from tests.service.server import Server
from tests.viewer.helpers import start, unique, upload, wait_status

PASS = {"StartAt": "Only", "States": {"Only": {"Type": "Pass", "End": True}}}


class Receiver:
    """A webhook receiver on 127.0.0.1 answering every POST with ``code``; keeps each
    request's delivery id and arrival time."""

    def __init__(self, code: int) -> None:
        self.code = code
        self.received: list[tuple[str, float]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.lock:
                    receiver.received.append(
                        (self.headers.get("Statewright-Delivery", ""), time.monotonic())
                    )
                    code = receiver.code
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver(500)
    yield found
    found.close()


def record_responses(page: Page) -> list[Response]:
    """Every API response the page receives from now on (their bodies are read later)."""
    seen: list[Response] = []
    page.on("response", lambda r: seen.append(r) if "/api/" in r.url else None)
    return seen


def assert_nowhere(page: Page, responses: list[Response], secrets: list[str]) -> None:
    """None of ``secrets`` is in the page's DOM or in any API response it fetched."""
    assert responses, "the page fetched nothing from the API"
    dom = page.content()
    for secret in secrets:
        assert secret not in dom
        for response in responses:
            assert secret.encode() not in response.body(), response.url


def make_webhook(api: httpx.Client, url: str, **fields: Any) -> dict[str, Any]:
    answer = api.post("/webhooks", json={"name": unique("hook"), "url": url, **fields})
    assert answer.status_code == 201, answer.text
    made: dict[str, Any] = answer.json()
    return made


def test_webhooks_page_shows_subscriptions_pauses_and_resumes_them(
    viewer: Page, server: Server, api: httpx.Client
) -> None:
    machine = upload(api, PASS, "hooked")
    secret = "whsec-" + unique("never-shown") * 2
    filtered = make_webhook(
        api,
        "http://127.0.0.1:9/filtered",
        secret=secret,
        state_machine=machine,
        statuses=["SUCCEEDED", "FAILED"],
    )
    assert filtered["secret"] == secret
    everything = make_webhook(api, "http://127.0.0.1:9/everything")
    responses = record_responses(viewer)

    viewer.goto(f"{server.base_url}/ui/webhooks")
    expect(viewer.locator('nav a[data-section="webhooks"]')).to_have_attribute(
        "aria-current", "page"
    )
    row = viewer.locator(f'tr[data-name="{filtered["name"]}"]')
    expect(row).to_contain_text("http://127.0.0.1:9/filtered")
    expect(row).to_contain_text(machine)
    expect(row).to_contain_text("SUCCEEDED, FAILED")
    expect(row.locator(".hook-state")).to_have_text("✓ Active")
    other = viewer.locator(f'tr[data-name="{everything["name"]}"]')
    expect(other).to_contain_text("every state machine")
    expect(other).to_contain_text("every status")

    row.get_by_role("button", name=f"Pause webhook {filtered['name']}").click()
    expect(row.locator(".hook-state")).to_have_text("⏸ Paused")
    assert api.get(f"/webhooks/{filtered['name']}").json()["enabled"] is False
    row.get_by_role("button", name=f"Resume webhook {filtered['name']}").click()
    expect(row.locator(".hook-state")).to_have_text("✓ Active")
    assert api.get(f"/webhooks/{filtered['name']}").json()["enabled"] is True

    row.get_by_role("link", name=filtered["name"]).click()
    expect(viewer.get_by_role("heading", name=filtered["name"])).to_be_visible()
    expect(viewer.locator(".page-head")).to_contain_text("http://127.0.0.1:9/filtered")
    expect(viewer.get_by_text("No deliveries yet.")).to_be_visible()
    viewer.locator("#toggle").click()
    expect(viewer.locator("h1")).to_contain_text("Paused")
    assert api.get(f"/webhooks/{filtered['name']}").json()["enabled"] is False
    assert_nowhere(viewer, responses, [secret])


def test_a_failing_delivery_shows_its_code_and_redeliver_sends_it_again(
    viewer: Page, server: Server, api: httpx.Client, receiver: Receiver
) -> None:
    machine = upload(api, PASS, "delivered")
    hook = make_webhook(api, receiver.url, state_machine=machine, statuses=["SUCCEEDED"])
    execution = start(api, machine, {"n": 1})
    wait_status(api, execution, {"SUCCEEDED"})
    deliveries = f"/webhooks/{hook['name']}/deliveries"

    def failed_once() -> Any:
        found = api.get(deliveries).json()
        return found if found and found[0]["last_status_code"] == 500 else None

    (first,) = server.wait_for(failed_once, "a delivery answered with 500")
    assert first["status"] == "PENDING" and first["attempts"] == 1
    described = api.get(f"/executions/{execution}").json()

    viewer.goto(f"{server.base_url}/ui/webhooks/{hook['name']}")
    row = viewer.locator(f'tr[data-id="{first["id"]}"]')
    expect(row).to_contain_text("HTTP 500")
    expect(row).to_contain_text("Retrying")
    expect(row).to_contain_text("→ ✓ SUCCEEDED")
    expect(row.get_by_role("link", name=described["name"])).to_be_visible()

    receiver.code = 200
    row.get_by_role("button", name=f"Redeliver delivery {first['id']}").click()
    expect(viewer.locator("#delivery-note")).to_contain_text(f"Delivery {first['id']} will be sent")

    def delivered() -> Any:
        (found,) = api.get(deliveries).json()
        return found if found["status"] == "DELIVERED" else None

    again = server.wait_for(delivered, "the redelivered delivery to arrive", timeout=20)
    assert again["attempts"] == 2
    with receiver.lock:
        (one, sent_first), (two, sent_again) = receiver.received
    assert one == two == str(first["id"])
    # Retries are 30 s apart on this server: an attempt sooner is the Redeliver's.
    assert sent_again - sent_first < 25

    viewer.get_by_role("button", name="Refresh").click()
    expect(row).to_contain_text("✓ DELIVERED")
    expect(row).to_contain_text("HTTP 200")
    row.get_by_role("link", name=described["name"]).click()
    expect(viewer.get_by_role("heading", name=described["name"])).to_be_visible()
    expect(viewer.locator("h1 .badge")).to_contain_text("SUCCEEDED")


def test_the_delivery_log_pages_back_with_before(
    viewer: Page, server: Server, api: httpx.Client
) -> None:
    machine = upload(api, PASS, "paged")
    hook = make_webhook(api, "http://127.0.0.1:9/paused", state_machine=machine)
    for n in range(2):
        wait_status(api, start(api, machine, {"n": n}), {"SUCCEEDED"})
    listed = api.get(f"/webhooks/{hook['name']}/deliveries").json()
    assert len(listed) == 4  # RUNNING and SUCCEEDED of each execution
    ids = [d["id"] for d in listed]

    viewer.goto(f"{server.base_url}/ui/webhooks/{hook['name']}?limit=3")
    expect(viewer.locator("table.deliveries tbody tr")).to_have_count(3)
    for shown in ids[:3]:
        expect(viewer.locator(f'tr[data-id="{shown}"]')).to_have_count(1)
    viewer.locator("#next-page").click()
    expect(viewer.locator("table.deliveries tbody tr")).to_have_count(1)
    expect(viewer.locator(f'tr[data-id="{ids[3]}"]')).to_have_count(1)
    assert f"before={ids[2]}" in viewer.url
    expect(viewer.locator("#next-page")).to_have_count(0)
    viewer.get_by_role("link", name="« Newest").click()
    expect(viewer.locator("table.deliveries tbody tr")).to_have_count(3)


def test_schedules_page_and_the_state_machines_schedules(
    viewer: Page, server: Server, api: httpx.Client
) -> None:
    machine = upload(api, PASS, "scheduled")
    hourly = unique("hourly")
    fast = unique("fast")
    for name, expression, zone in (
        (hourly, "cron(0 9 * * ? *)", "Europe/Paris"),
        (fast, "rate(1 second)", "UTC"),
    ):
        made = api.post(
            "/schedules",
            json={
                "name": name,
                "state_machine": machine,
                "expression": expression,
                "timezone": zone,
            },
        )
        assert made.status_code == 201, made.text
    try:
        started = server.wait_for(
            lambda: api.get(f"/schedules/{fast}").json()["last_execution_arn"],
            "the fast schedule to start an execution",
        )
        viewer.goto(f"{server.base_url}/ui/schedules?state_machine={machine}")
        expect(viewer.locator("table.schedules tbody tr")).to_have_count(2)
        row = viewer.locator(f'tr[data-name="{hourly}"]')
        expect(row).to_contain_text("cron(0 9 * * ? *)")
        expect(row).to_contain_text("Europe/Paris")
        expect(row).to_contain_text("never")
        expect(row.get_by_role("link", name=machine)).to_be_visible()
        expect(row.locator(".schedule-state")).to_have_text("✓ Enabled")
        fast_row = viewer.locator(f'tr[data-name="{fast}"]')

        fast_row.get_by_role("button", name=f"Pause schedule {fast}").click()
        expect(fast_row.locator(".schedule-state")).to_have_text("⏸ Paused")
        assert api.get(f"/schedules/{fast}").json()["state"] == "DISABLED"
        last = api.get(f"/schedules/{fast}").json()["last_execution_arn"]
        viewer.reload()
        fast_row.get_by_role("link", name=last.split(":")[-1]).click()
        expect(viewer.locator("h1")).to_contain_text(last.split(":")[-1])
        assert started.split(":")[:7] == last.split(":")[:7]

        viewer.goto(f"{server.base_url}/ui/state-machines/{machine}")
        section = viewer.locator("section.machine-schedules")
        expect(section.locator("tbody tr")).to_have_count(2)
        hourly_row = section.locator(f'tr[data-name="{hourly}"]')
        hourly_row.get_by_role("button", name=f"Pause schedule {hourly}").click()
        expect(hourly_row.locator(".schedule-state")).to_have_text("⏸ Paused")
        assert api.get(f"/schedules/{hourly}").json()["state"] == "DISABLED"
        hourly_row.get_by_role("button", name=f"Resume schedule {hourly}").click()
        expect(hourly_row.locator(".schedule-state")).to_have_text("✓ Enabled")
        assert api.get(f"/schedules/{hourly}").json()["state"] == "ENABLED"
        expect(viewer.locator("g.node").first).to_be_visible()
    finally:
        for name in (hourly, fast):
            api.delete(f"/schedules/{name}")


def test_connections_page_shows_parameters_and_never_a_secret(
    viewer: Page, server: Server, api: httpx.Client
) -> None:
    secrets = [unique("apikey-secret"), unique("basic-password"), unique("oauth-secret")]
    made = {
        "API_KEY": {"name": "X-Api-Key", "value": secrets[0]},
        "BASIC": {"username": "robot", "password": secrets[1]},
        "OAUTH_CLIENT_CREDENTIALS": {
            "tokenEndpoint": "https://auth.example/token",
            "clientId": "client-7",
            "clientSecret": secrets[2],
        },
    }
    names = {}
    for kind, parameters in made.items():
        names[kind] = unique(kind.lower().replace("_", "-"))
        answer = api.post(
            "/connections", json={"name": names[kind], "type": kind, "parameters": parameters}
        )
        assert answer.status_code == 201, answer.text
    responses = record_responses(viewer)

    viewer.goto(f"{server.base_url}/ui/connections")
    for kind, shown in (
        ("API_KEY", "X-Api-Key"),
        ("BASIC", "robot"),
        ("OAUTH_CLIENT_CREDENTIALS", "client-7"),
    ):
        row = viewer.locator(f'tr[data-name="{names[kind]}"]')
        expect(row).to_contain_text(kind)
        expect(row).to_contain_text(shown)
    expect(viewer.locator(f'tr[data-name="{names["OAUTH_CLIENT_CREDENTIALS"]}"]')).to_contain_text(
        "https://auth.example/token"
    )
    assert_nowhere(viewer, responses, secrets)


def test_the_operations_pages_work_from_the_keyboard(
    viewer: Page, server: Server, api: httpx.Client, receiver: Receiver
) -> None:
    machine = upload(api, PASS, "keyboard")
    hook = make_webhook(api, receiver.url, state_machine=machine, statuses=["SUCCEEDED"])
    wait_status(api, start(api, machine, {}), {"SUCCEEDED"})
    server.wait_for(
        lambda: [
            d for d in api.get(f"/webhooks/{hook['name']}/deliveries").json() if d["attempts"]
        ],
        "a delivery attempt",
    )
    schedule = unique("keys")
    api.post(
        "/schedules",
        json={"name": schedule, "state_machine": machine, "expression": "rate(1 hour)"},
    )

    def tab_to(selector: str, limit: int = 60) -> None:
        for _ in range(limit):
            viewer.keyboard.press("Tab")
            if viewer.evaluate(f"!!document.activeElement.closest({selector!r})"):
                return
        raise AssertionError(f"{selector} not reached with Tab")

    try:
        viewer.goto(f"{server.base_url}/ui/state-machines")
        expect(viewer.locator("h1")).to_have_text("State machines")
        for section, heading in (
            ("schedules", "Schedules"),
            ("webhooks", "Webhooks"),
            ("connections", "Connections"),
        ):
            viewer.locator("body").focus()
            tab_to(f'nav a[data-section="{section}"]')
            viewer.keyboard.press("Enter")
            expect(viewer.locator("h1")).to_have_text(heading)

        viewer.goto(f"{server.base_url}/ui/webhooks/{hook['name']}")
        expect(viewer.locator("table.deliveries")).to_be_visible()
        tab_to("#toggle")
        viewer.keyboard.press("Enter")
        expect(viewer.locator("#toggle")).to_have_text("Resume")
        expect(viewer.locator("#toggle")).to_be_focused()
        assert api.get(f"/webhooks/{hook['name']}").json()["enabled"] is False
        viewer.keyboard.press(" ")
        expect(viewer.locator("#toggle")).to_have_text("Pause")
        assert api.get(f"/webhooks/{hook['name']}").json()["enabled"] is True
        tab_to("[data-redeliver]")
        viewer.keyboard.press("Enter")
        expect(viewer.locator("#delivery-note")).to_contain_text("will be sent again")

        viewer.goto(f"{server.base_url}/ui/schedules?state_machine={machine}")
        expect(viewer.locator("table.schedules")).to_be_visible()
        tab_to(f'tr[data-name="{schedule}"] button')
        viewer.keyboard.press("Enter")
        expect(viewer.locator(".schedule-state")).to_have_text("⏸ Paused")
        assert api.get(f"/schedules/{schedule}").json()["state"] == "DISABLED"
        expect(viewer.get_by_role("button", name=f"Resume schedule {schedule}")).to_be_focused()
    finally:
        api.delete(f"/schedules/{schedule}")
