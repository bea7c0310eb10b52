"""Fixtures of the service tests: the real server (``statewright serve``) on each backend.

* ``sqlite_api_server`` (session): on the embedded SQLite store in a temp dir.
* ``postgres_api_server`` (session): on a clone of a migrated Postgres template database.
* ``api_server`` (session, parametrized ``sqlite``/``postgres``): one of the two, so a test
  that uses it runs against both backends; tests are grouped per backend.
* ``container_engine`` (session): the container engine of container tasks, started (installed
  on a fresh machine) by scripts/container-engine.sh; its DOCKER_HOST and CONTAINERS_CONF are
  put in this process's environment, so servers and workers started afterwards use it.

The servers are shared by every test of the session: tests use unique names.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.db.migrate import upgrade
from tests.postgres import CloneFactory, PostgresServer, TemplateFactory, _Names, clone_database
from tests.service.server import ROOT, Server, running_server


@pytest.fixture(scope="session")
def sqlite_api_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("api-sqlite")
    with running_server(
        f"sqlite:///{folder / 'statewright.db'}", folder / "server.log", backend="sqlite"
    ) as server:
        yield server


@pytest.fixture(scope="session")
def schema_template(postgres_template_factory: TemplateFactory) -> str:
    """A Postgres template database at the latest schema, migrated once per session."""
    return postgres_template_factory("api_schema", upgrade)


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A new database at the latest schema: the embedded SQLite store, then a Postgres clone."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
        upgrade(url)
        yield url
        return
    clone: CloneFactory = request.getfixturevalue("postgres_clone")
    yield clone(request.getfixturevalue("schema_template"))


@pytest.fixture(scope="session")
def postgres_api_server(
    tmp_path_factory: pytest.TempPathFactory,
    postgres_server: PostgresServer,
    _postgres_names: _Names,
    schema_template: str,
) -> Iterator[Server]:
    # postgres_clone is function-scoped; a session-long server needs its own clone.
    name = _postgres_names.next("api")
    url = clone_database(postgres_server, schema_template, name)
    folder = tmp_path_factory.mktemp("api-postgres")
    try:
        with running_server(url, folder / "server.log", backend="postgres") as server:
            yield server
    finally:
        with contextlib.suppress(Exception):
            postgres_server.drop_database(name)


@pytest.fixture(
    scope="session", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def api_server(request: pytest.FixtureRequest) -> Server:
    server: Server = request.getfixturevalue(f"{request.param}_api_server")
    return server


@pytest.fixture(scope="session")
def container_engine() -> str:
    """DOCKER_HOST of a running podman API service with localhost/busybox:test. Without one
    the container tests fail, saying why: they are never skipped."""
    script = ROOT / "scripts" / "container-engine.sh"
    try:
        done = subprocess.run(
            ["bash", str(script)], cwd=ROOT, capture_output=True, text=True, timeout=900
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{script.name} did not finish within 15 minutes", pytrace=False)
    if done.returncode != 0:
        pytest.fail(
            f"no container engine for the container tests: {script.name} exited "
            f"{done.returncode}:\n{done.stderr[-3000:]}",
            pytrace=False,
        )
    settings = dict(line.split("=", 1) for line in done.stdout.splitlines() if line.count("=") >= 1)
    os.environ.update(settings)
    return settings["DOCKER_HOST"]
