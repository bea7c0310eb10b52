"""Screenshots of the viewer's main pages at 1280x800, for the README (docs/screenshots/).

Always taken (into the test's temporary directory) and checked to be real images of the
pages; written to the folder named by STATEWRIGHT_SCREENSHOTS as well when it is set, which
`make screenshots` does.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import httpx
from playwright.sync_api import Page, expect

from tests.service.server import Server
from tests.viewer.helpers import FAN_OUT, start, upload, wait_status


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_screenshots_of_the_main_pages(
    viewer: Page, server: Server, api: httpx.Client, tmp_path: Path
) -> None:
    viewer.set_viewport_size({"width": 1280, "height": 800})
    machine = upload(api, FAN_OUT, "orders")
    start(api, machine, {"items": [1, 3], "marker": "fine"})
    failed = start(api, machine, {"items": [1, 2, 3]})
    wait_status(api, failed, {"FAILED"})
    hook = api.post(
        "/webhooks",
        json={"name": "on-call", "url": "https://ops.example/hooks", "statuses": ["FAILED"]},
    )
    assert hook.status_code == 201, hook.text

    shots: list[tuple[str, str, str]] = [
        ("state-machines", "/ui/state-machines", "table"),
        ("definition-graph", f"/ui/state-machines/{machine}", "g.node"),
        ("executions", f"/ui/executions?state_machine={machine}", "table.executions tbody tr"),
        ("execution-failed", f"/ui/executions/{failed}?state=Each", "aside h2"),
        ("execution-events", f"/ui/executions/{failed}?tab=events", "tr.event-row"),
        ("execution-timeline", f"/ui/executions/{failed}?tab=timeline", "svg.timeline"),
        ("webhooks", "/ui/webhooks", "table"),
    ]
    written = (
        Path(os.environ["STATEWRIGHT_SCREENSHOTS"])
        if os.environ.get("STATEWRIGHT_SCREENSHOTS")
        else None
    )
    for name, url, ready in shots:
        viewer.goto(url)
        expect(viewer.locator(ready).first).to_be_visible()
        data = viewer.screenshot()
        assert _png_size(data) == (1280, 800), name
        assert len(data) > 10_000, f"{name}: a nearly empty page ({len(data)} bytes)"
        (tmp_path / f"{name}.png").write_bytes(data)
        if written is not None:
            written.mkdir(parents=True, exist_ok=True)
            (written / f"{name}.png").write_bytes(data)

    # Time travel, from the events table: the state at the failing iteration's event.
    history = api.get(f"/executions/{failed}/history").json()
    event = next(e["id"] for e in history if e["type"] == "MapIterationFailed")
    viewer.goto(f"/ui/executions/{failed}?tab=events")
    viewer.locator(f'tr.event-row[data-id="{event}"]').click()
    viewer.get_by_role("button", name="State at this event").click()
    expect(viewer.locator("#time-travel")).to_contain_text(f"State at event {event}")
    viewer.locator("#time-travel").scroll_into_view_if_needed()
    data = viewer.screenshot()
    assert _png_size(data) == (1280, 800)
    if written is not None:
        (written / "time-travel.png").write_bytes(data)
