"""How the viewer copes with big executions and many of them, with figures printed (run
with -s to see them). The limits are generous, tripled on a loaded machine: they catch a
page that stops being usable, not a slow second."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time

import asyncpg
import httpx
from playwright.sync_api import Page, expect

from tests.service.server import Server
from tests.viewer.helpers import slack, start, upload, wait_status

ITEMS = 6200  # 4 events per iteration: 24,808 events, just under AWS's 25,000 cap
BIG_MAP = {
    "StartAt": "Each",
    "States": {
        "Each": {
            "Type": "Map",
            "ItemsPath": "$.items",
            "ItemProcessor": {
                "ProcessorConfig": {"Mode": "INLINE"},
                "StartAt": "Work",
                "States": {"Work": {"Type": "Pass", "End": True}},
            },
            "ResultPath": None,
            "End": True,
        }
    },
}
EXECUTIONS = 100_000


def test_a_history_of_25000_events_is_usable(
    viewer: Page, server: Server, api: httpx.Client
) -> None:
    machine = upload(api, BIG_MAP, "big")
    execution = start(api, machine, {"items": list(range(ITEMS))})
    done = wait_status(api, execution, {"SUCCEEDED"}, timeout=120)
    total = done["events"]
    assert total > 24_000

    began = time.monotonic()
    viewer.goto(f"/ui/executions/{execution}")
    expect(viewer.locator('g.node[data-path="Each"]')).to_be_visible()
    graph_s = time.monotonic() - began
    expect(viewer.locator('g.node[data-path="Each"] > text.iterations')).to_contain_text(
        f"{ITEMS:,} iterations"
    )
    viewer.get_by_role("tab", name="Events").click()
    expect(viewer.locator("tr.event-row")).to_have_count(100)
    rows_s = time.monotonic() - began
    expect(viewer.locator(".event-table .toolbar")).to_contain_text(
        f"{total:,} of {total:,} events", timeout=60_000
    )
    all_s = time.monotonic() - began

    began = time.monotonic()
    viewer.get_by_label("Event type").select_option("MapIterationSucceeded")
    expect(viewer.locator(".event-table .toolbar")).to_contain_text(f"{ITEMS:,} of {total:,}")
    filter_s = time.monotonic() - began
    began = time.monotonic()
    viewer.get_by_role("button", name="Last »").click()
    expect(viewer.locator("tr.event-row").last).to_contain_text("MapIterationSucceeded")
    last_page_s = time.monotonic() - began
    began = time.monotonic()
    viewer.get_by_role("tab", name="Timeline").click()
    expect(viewer.locator("svg.timeline .tl-bar").first).to_be_visible(timeout=30_000)
    timeline_s = time.monotonic() - began

    print(
        f"\n25k history ({total} events): graph {graph_s:.2f} s, first rows {rows_s:.2f} s, "
        f"all events loaded {all_s:.2f} s, type filter {filter_s:.2f} s, "
        f"last page {last_page_s:.2f} s, timeline {timeline_s:.2f} s (slack x{slack():.0f})"
    )
    assert graph_s < 6 * slack()
    assert rows_s < 8 * slack()
    assert all_s < 30 * slack()
    assert filter_s < 2 * slack()
    assert last_page_s < 2 * slack()


def _insert_executions(database_url: str, machine: str, count: int) -> None:
    async def insert() -> None:
        conn = await asyncpg.connect(database_url.replace("postgresql+asyncpg", "postgresql"))
        try:
            sm_id, sm_arn = await conn.fetchrow(
                "SELECT id, arn FROM state_machines WHERE name = $1", machine
            )
            version_id = await conn.fetchval(
                "SELECT id FROM state_machine_versions WHERE state_machine_id = $1", sm_id
            )
            prefix = sm_arn.replace(":stateMachine:", ":execution:") + ":"
            await conn.execute(
                """
                INSERT INTO executions (id, arn, name, state_machine_id, version_id, status,
                    input_ref, output_ref, started_at, stopped_at, seed, version, redrive_count)
                SELECT md5($1 || g)::uuid::text, $2 || 'row-' || g, 'row-' || g, $3, $4,
                    CASE WHEN g % 10 = 0 THEN 'FAILED' ELSE 'SUCCEEDED' END,
                    '{"n":' || g || '}', '{"ok":true}',
                    now() - g * interval '1 second', now() - g * interval '1 second'
                        + interval '250 milliseconds',
                    g, 4, 0
                FROM generate_series(1, $5::int) AS g
                """,
                machine,
                prefix,
                sm_id,
                version_id,
                count,
            )
            await conn.execute("ANALYZE executions")
        finally:
            await conn.close()

    # A thread of its own: Playwright's sync API runs an event loop in this one.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, insert()).result()


def test_the_list_of_100000_executions_loads_its_first_page_quickly(
    viewer: Page, server: Server, api: httpx.Client
) -> None:
    machine = upload(api, {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}, "many")
    began = time.monotonic()
    _insert_executions(server.database_url, machine, EXECUTIONS)
    insert_s = time.monotonic() - began

    rows = viewer.locator("table.executions tbody tr")
    began = time.monotonic()
    viewer.goto(f"/ui/executions?state_machine={machine}")
    expect(rows).to_have_count(50)
    filtered_s = time.monotonic() - began
    expect(rows.first).to_contain_text("row-1")
    expect(viewer.locator(".count-line")).to_contain_text("More than 10,000")

    began = time.monotonic()
    viewer.get_by_role("link", name="Older »").click()
    expect(rows.first).to_contain_text("row-51")
    next_s = time.monotonic() - began

    began = time.monotonic()
    viewer.goto(f"/ui/executions?state_machine={machine}&status=FAILED")
    expect(rows.first).to_contain_text("row-10")
    expect(rows).to_have_count(50)
    status_s = time.monotonic() - began

    began = time.monotonic()
    viewer.goto("/ui/executions")
    expect(rows).to_have_count(50)
    all_s = time.monotonic() - began

    print(
        f"\n{EXECUTIONS:,} executions (inserted in {insert_s:.1f} s): first page of one "
        f"machine {filtered_s:.2f} s, next page {next_s:.2f} s, FAILED only {status_s:.2f} s, "
        f"all machines {all_s:.2f} s (slack x{slack():.0f})"
    )
    for figure in (filtered_s, next_s, status_s, all_s):
        assert figure < 4 * slack()
