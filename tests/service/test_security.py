"""Claims of SECURITY.md that no other test covers, against the real server.

* Every route the app has, not only the documented ones, wants an API key, but the
  callbacks (their token is the credential), liveness/readiness and the API docs.
* The secret behind task tokens (the execution's seed) is shown by no API answer.
"""

from __future__ import annotations

import re
import sqlite3
import time
from typing import Any

import httpx
from fastapi.routing import APIRoute

from service import control
from service.app import create_app
from service.settings import Settings
from tests.service.server import SERVER_KEY, Server

OPEN = {"/healthz", "/readyz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}
CALLBACKS = "/api/v1/callbacks/"
# The web viewer's page and its files (service/viewer): the same for everyone, no data; the
# data comes from the API with the user's key (its one route of its own wants a key too).
VIEWER_FILES = {
    ("GET", "/"),
    ("GET", "/ui"),
    ("GET", "/ui/assets/{name}"),
    ("GET", "/ui/{path:path}"),
}
PASS = {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}


def _routes() -> list[tuple[str, str]]:
    """(method, path) of every route of the app (a throwaway instance: nothing is served)."""
    saved = control.REGION, control.ACCOUNT
    try:
        settings = Settings(
            database_url="sqlite:///unused.db", workers=0, auth=True, secret_key=SERVER_KEY
        )
        app = create_app(settings)
    finally:
        control.REGION, control.ACCOUNT = saved  # create_app sets these module globals
    out = []
    routes = list(app.routes)
    while routes:
        route = routes.pop()
        included = getattr(route, "original_router", None)  # an included router's own routes
        if included is not None:
            routes.extend(included.routes)
            continue
        for method in sorted(set(getattr(route, "methods", None) or ()) - {"HEAD"}):
            out.append((method, getattr(route, "path", "")))
    assert any(isinstance(route, APIRoute) for route in app.routes)
    return out


def test_every_route_but_callbacks_health_and_docs_wants_a_key(
    sqlite_api_server: Server,
) -> None:
    server = sqlite_api_server
    routes = _routes()
    checked = []
    # The AWS API (POST /) is served ahead of the routes (service.app.AwsEndpoint).
    routes.append(("POST", "/"))
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        for method, path in routes:
            if path in OPEN or path.startswith(CALLBACKS) or (method, path) in VIEWER_FILES:
                continue
            url = re.sub(r"\{[^}]+\}", "x", path)
            response = client.request(method, url, json={} if method != "GET" else None)
            checked.append(f"{method} {path}")
            if path == "/":  # the AWS API answers in AWS's shape
                assert response.status_code in (400, 403), (method, path, response.text)
                assert "MissingAuthenticationToken" in response.text, response.text
                continue
            assert response.status_code == 401, (method, path, response.status_code, response.text)
    # The REST API, webhooks, metrics and the AWS API were all among them.
    for expected in (
        "POST /api/v1/state-machines",
        "GET /api/v1/executions/{execution_id}/state-machine",
        "GET /metrics",
        "POST /",
    ):
        assert expected in checked, checked
    assert any(c.startswith("POST /api/v1/webhooks") for c in checked), checked


def test_no_answer_shows_the_seed_behind_task_tokens(sqlite_api_server: Server) -> None:
    server = sqlite_api_server
    name = f"sec-tokens-{int(time.time() * 1000)}"
    with httpx.Client(base_url=server.base_url, headers=server.headers, timeout=30) as client:
        made = client.post("/api/v1/state-machines", json={"name": name, "definition": PASS})
        assert made.status_code == 201, made.text
        started = client.post(f"/api/v1/state-machines/{name}/executions", json={"input": {}})
        assert started.status_code == 201, started.text
        execution: dict[str, Any] = started.json()
        answers = [started.text]
        deadline = time.monotonic() + 30
        while True:
            described = client.get(f"/api/v1/executions/{execution['id']}")
            if described.json()["status"] != "RUNNING" or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        answers.append(described.text)
        answers.append(client.get(f"/api/v1/executions/{execution['id']}/history").text)
        answers.append(client.get("/api/v1/executions").text)
    assert described.json()["status"] == "SUCCEEDED"
    with sqlite3.connect(server.database_url.removeprefix("sqlite:///")) as db:
        (seed,) = db.execute(
            "SELECT seed FROM executions WHERE id = ?", (execution["id"],)
        ).fetchone()
    for text in answers:
        assert str(seed) not in text, text[:500]
        assert '"seed"' not in text, text[:500]
