"""Fixtures of the viewer tests: the real server (``statewright serve``, auth on) on a
Postgres clone, a headless Chromium through Playwright (Debian's /usr/bin/chromium: the
browsers ``playwright install`` would download are never used), and a page that is signed
in with the tests' API key and fails the test on any console error.

Every test here is marked ``viewer`` (``-m viewer`` selects them; they also run in the
normal ``make test``).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import shutil
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import ConsoleMessage, Page

from service.db.migrate import upgrade
from tests.postgres import PostgresServer, TemplateFactory, _Names, clone_database
from tests.service.server import Server, running_server

CHROMIUM = os.environ.get("STATEWRIGHT_CHROMIUM", "/usr/bin/chromium")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # The browser tests run last, whatever the command line's order: Playwright's sync API
    # keeps an event loop running in the main thread until the session ends, and tests after
    # them that call asyncio.run() would fail.
    viewer = [i for i in items if "tests/viewer/" in str(i.fspath).replace(os.sep, "/")]
    for item in viewer:
        item.add_marker(pytest.mark.viewer)
    chosen = set(map(id, viewer))
    items[:] = [i for i in items if id(i) not in chosen] + viewer


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    # pytest-playwright's hook for launch options: the only way to point it at a browser
    # executable (its --browser-channel takes channel names, not paths).
    if not shutil.which(CHROMIUM):
        pytest.fail(
            f"no Chromium at {CHROMIUM}: install Debian's (apt-get install -y chromium; .ci/run "
            "does) or set STATEWRIGHT_CHROMIUM",
            pytrace=False,
        )
    return {**browser_type_launch_args, "executable_path": CHROMIUM}


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args: dict[str, Any]) -> dict[str, Any]:
    return {**browser_context_args, "viewport": {"width": 1280, "height": 800}}


@pytest.fixture(scope="session")
def base_url(server: Server) -> str:
    # Replaces pytest-base-url's fixture (an instance method, deprecated in pytest 9: a
    # warning, so an error here); page.goto("/ui/...") resolves against the server.
    return server.base_url


@pytest.fixture(scope="session")
def viewer_schema_template(postgres_template_factory: TemplateFactory) -> str:
    def migrate(url: str) -> None:
        # In a thread of its own: the migrations call asyncio.run(), which refuses to run
        # where Playwright's sync API already runs an event loop (when a page was set up
        # before this session fixture).
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            pool.submit(upgrade, url).result()

    return postgres_template_factory("viewer_schema", migrate)


@pytest.fixture(scope="session")
def viewer_db(
    postgres_server: PostgresServer, _postgres_names: _Names, viewer_schema_template: str
) -> Iterator[str]:
    name = _postgres_names.next("viewer")
    url = clone_database(postgres_server, viewer_schema_template, name)
    try:
        yield url
    finally:
        with contextlib.suppress(Exception):
            postgres_server.drop_database(name)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory, viewer_db: str) -> Iterator[Server]:
    """``statewright serve`` with auth on and two worker lanes, shared by the session."""
    folder = tmp_path_factory.mktemp("viewer")
    # A failed webhook delivery is retried 30 s later (not 1 s): the delivery log tests see
    # it waiting to be retried, and know that an attempt before then came from Redeliver.
    env = {"STATEWRIGHT_WEBHOOK_RETRY_BASE_SECONDS": "30"}
    with running_server(viewer_db, folder / "server.log", backend="postgres", env=env) as started:
        yield started


@pytest.fixture
def api(server: Server) -> Iterator[httpx.Client]:
    server.check_alive()
    with httpx.Client(
        base_url=f"{server.base_url}/api/v1", timeout=30, headers=server.headers
    ) as client:
        yield client


class ConsoleErrors(list[str]):
    """Console errors and uncaught exceptions of a page, collected as they happen."""

    def attach(self, page: Page) -> None:
        def on_console(message: ConsoleMessage) -> None:
            if message.type == "error":
                self.append(f"console: {message.text} at {message.location}")

        page.on("console", on_console)
        page.on("pageerror", lambda error: self.append(f"uncaught: {error}"))


@pytest.fixture
def console_errors(page: Page) -> ConsoleErrors:
    errors = ConsoleErrors()
    errors.attach(page)
    return errors


@pytest.fixture
def viewer(page: Page, server: Server, console_errors: ConsoleErrors) -> Iterator[Page]:
    """A page signed in with the tests' key (as the sign-in form stores it); the test fails
    when the page logged an error."""
    key = f"{server.key_id}:{server.secret}"
    page.add_init_script(f"sessionStorage.setItem('statewright.apiKey', {key!r})")
    page.set_default_timeout(15_000)
    yield page
    assert not console_errors, "errors in the browser console:\n" + "\n".join(console_errors)
