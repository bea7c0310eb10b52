"""The PostgreSQL test fixtures, against a real server: what the service and workers rely on."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.postgres import (
    URL_ENV,
    CloneFactory,
    PostgresServer,
    TemplateFactory,
    find_bindir,
    server_from_url,
    unavailable,
)

DEADLINE_S = 10.0


def _asyncpg() -> Any:
    import asyncpg as module

    return module


def _dsn(url: str) -> str:
    # asyncpg takes libpq URLs; the fixtures hand out SQLAlchemy-style +asyncpg ones.
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


@contextlib.asynccontextmanager
async def connect(url: str) -> AsyncIterator[Any]:
    conn = await _asyncpg().connect(_dsn(url), timeout=DEADLINE_S)
    try:
        yield conn
    finally:
        await conn.close()


async def _fetchval(url: str, query: str, *args: object) -> Any:
    async with connect(url) as conn:
        return await conn.fetchval(query, *args)


def _database_name(url: str) -> str:
    return url.rsplit("/", 1)[1].split("?", 1)[0]


# --- server and URLs ------------------------------------------------------------------------


def test_select_version(postgres_database: str) -> None:
    version = asyncio.run(_fetchval(postgres_database, "select version()"))
    assert isinstance(version, str)
    assert version.startswith("PostgreSQL ")


def test_url_forms(postgres_server: PostgresServer) -> None:
    base = f"{postgres_server.user}@{postgres_server.host}:{postgres_server.port}"
    assert postgres_server.url("db").startswith(f"postgresql+asyncpg://{base}/db")
    assert postgres_server.url("db", driver=None).startswith(f"postgresql://{base}/db")
    assert postgres_server.admin_dsn.startswith("postgresql://")
    if postgres_server.managed:
        assert (
            postgres_server.url("db")
            == f"postgresql+asyncpg://postgres@127.0.0.1:{postgres_server.port}/db"
        )


def test_database_url_points_at_its_own_database(postgres_database: str) -> None:
    name = asyncio.run(_fetchval(postgres_database, "select current_database()"))
    assert name == _database_name(postgres_database)
    assert postgres_database.startswith("postgresql+asyncpg://")


def test_throwaway_cluster_settings(postgres_server: PostgresServer) -> None:
    if not postgres_server.managed:
        pytest.skip(f"{URL_ENV} is set: the server's settings are not ours")

    async def settings() -> dict[str, str]:
        async with connect(postgres_server.admin_dsn) as conn:
            rows = await conn.fetch(
                "select name, setting from pg_settings where name = any($1::text[])",
                ["listen_addresses", "fsync", "synchronous_commit", "full_page_writes"],
            )
            return {r["name"]: r["setting"] for r in rows}

    assert asyncio.run(settings()) == {
        "listen_addresses": "127.0.0.1",
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
    }


def _other_local_addresses() -> list[tuple[int, str]]:
    """Addresses of this machine other than 127.0.0.1 (127.0.0.2 always routes to lo)."""
    found: set[tuple[int, str]] = {(socket.AF_INET, "127.0.0.2")}
    with contextlib.suppress(OSError):
        for family, _, _, _, addr in socket.getaddrinfo(socket.gethostname(), None):
            if family in (socket.AF_INET, socket.AF_INET6) and addr[0] != "127.0.0.1":
                found.add((family, str(addr[0])))
    if socket.has_ipv6:
        found.add((socket.AF_INET6, "::1"))
    return sorted(found)


def test_listens_on_127_0_0_1_only(postgres_server: PostgresServer) -> None:
    if not postgres_server.managed:
        pytest.skip(f"{URL_ENV} is set: the server's listen addresses are not ours")
    with socket.create_connection(("127.0.0.1", postgres_server.port), timeout=DEADLINE_S):
        pass  # reachable where it should be
    for family, address in _other_local_addresses():
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.settimeout(DEADLINE_S)
            with pytest.raises(OSError):
                s.connect((address, postgres_server.port))


# --- isolation and templates ----------------------------------------------------------------

_seen_databases: list[str] = []


@pytest.mark.parametrize("run", [1, 2])
def test_each_test_gets_its_own_database(
    run: int, postgres_server: PostgresServer, postgres_database: str
) -> None:
    """Run twice: the second run must not see the first's table, and the first's DB is gone."""
    name = _database_name(postgres_database)
    assert name not in _seen_databases

    async def probe() -> bool:
        async with connect(postgres_database) as conn:
            before = await conn.fetchval("select to_regclass('public.isolation_probe')")
            await conn.execute("create table isolation_probe (run int)")
            await conn.execute("insert into isolation_probe values ($1)", run)
            return before is None

    assert asyncio.run(probe()), "a table of another test's database is visible"
    existing = postgres_server.databases()
    assert name in existing
    assert not existing.intersection(_seen_databases), "an earlier test's database was not dropped"
    _seen_databases.append(name)


def test_created_and_dropped_database(postgres_server: PostgresServer) -> None:
    name = "sw_fixture_selftest_drop"
    postgres_server.drop_database(name)
    url = postgres_server.create_database(name)
    try:
        assert asyncio.run(_fetchval(url, "select current_database()")) == name
    finally:
        postgres_server.drop_database(name)
    assert name not in postgres_server.databases()


def test_drop_disconnects_open_sessions(postgres_server: PostgresServer) -> None:
    name = "sw_fixture_selftest_force"
    postgres_server.drop_database(name)
    url = postgres_server.create_database(name)

    async def hold_and_drop() -> None:
        async with connect(url) as conn:
            assert await conn.fetchval("select 1") == 1
            await asyncio.to_thread(postgres_server.drop_database, name)
            with pytest.raises((_asyncpg().PostgresError, _asyncpg().InterfaceError, OSError)):
                await conn.fetchval("select 1")

    asyncio.run(hold_and_drop())
    assert name not in postgres_server.databases()


_setup_calls: list[str] = []


def _build_probe_schema(url: str) -> None:
    _setup_calls.append(url)

    async def build() -> None:
        async with connect(url) as conn:
            await conn.execute("create table tmpl_probe (id int primary key, note text)")
            await conn.execute("insert into tmpl_probe values (1, 'from setup')")

    asyncio.run(build())


def test_template_clones_carry_the_setup(
    postgres_server: PostgresServer,
    postgres_template_factory: TemplateFactory,
    postgres_clone: CloneFactory,
) -> None:
    template = postgres_template_factory("fixture_probe", _build_probe_schema)
    assert postgres_template_factory("fixture_probe", _build_probe_schema) == template
    assert len(_setup_calls) == 1, "setup must run once per session"
    assert _setup_calls[0].startswith("postgresql+asyncpg://")

    first, second = postgres_clone(template), postgres_clone(template)
    assert first != second

    async def check() -> None:
        async with connect(first) as a, connect(second) as b:
            assert await a.fetchval("select note from tmpl_probe where id = 1") == "from setup"
            await a.execute("insert into tmpl_probe values (2, 'only in first')")
            assert await a.fetchval("select count(*) from tmpl_probe") == 2
            assert await b.fetchval("select count(*) from tmpl_probe") == 1

    asyncio.run(check())
    assert postgres_server.databases().issuperset({template, _database_name(first)})


def test_template_setup_failure_propagates(
    postgres_server: PostgresServer, postgres_template_factory: TemplateFactory
) -> None:
    def broken(url: str) -> None:
        raise RuntimeError("schema failed")

    with pytest.raises(RuntimeError, match="schema failed"):
        postgres_template_factory("fixture_broken", broken)
    assert not any("fixture_broken" in d for d in postgres_server.databases())


def test_template_name_is_validated(postgres_template_factory: TemplateFactory) -> None:
    with pytest.raises(ValueError, match="template name"):
        postgres_template_factory('bad"name', _build_probe_schema)


# --- LISTEN/NOTIFY (workers wake on notifications) ------------------------------------------


def test_listen_notify_between_connections(postgres_database: str) -> None:
    async def scenario() -> None:
        received: asyncio.Queue[tuple[int, str, str]] = asyncio.Queue()

        def on_notify(conn: object, pid: int, channel: str, payload: str) -> None:
            received.put_nowait((pid, channel, payload))

        async with (
            connect(postgres_database) as listener,
            connect(postgres_database) as tx_sender,
            connect(postgres_database) as sender,
        ):
            await listener.add_listener("work", on_notify)
            sender_pid = sender.get_server_pid()

            await sender.execute("select pg_notify('work', 'hello')")
            got = await asyncio.wait_for(received.get(), DEADLINE_S)
            assert got == (sender_pid, "work", "hello")

            # A NOTIFY inside a transaction is delivered on commit only, in commit order.
            tx = tx_sender.transaction()
            await tx.start()
            await tx_sender.execute("select pg_notify('work', 'in-tx')")
            await sender.execute("select pg_notify('work', 'marker')")
            got = await asyncio.wait_for(received.get(), DEADLINE_S)
            assert got[2] == "marker", f"uncommitted notification delivered: {got}"
            await tx.commit()
            got = await asyncio.wait_for(received.get(), DEADLINE_S)
            assert got == (tx_sender.get_server_pid(), "work", "in-tx")

            await listener.remove_listener("work", on_notify)
            assert received.empty()

    asyncio.run(scenario())


# --- discovery and the skip/fail policy (no server needed) ----------------------------------


def _fake_bindir(root: Path, version: str) -> Path:
    bindir = root / version / "bin"
    bindir.mkdir(parents=True)
    for name in ("initdb", "pg_ctl", "postgres"):
        exe = bindir / name
        exe.write_text("#!/bin/sh\n")
        exe.chmod(0o755)
    return bindir


def test_find_bindir_prefers_newest_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STATEWRIGHT_PG_BINDIR", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no pg_config, no initdb on PATH
    _fake_bindir(tmp_path, "9.6")
    newest = _fake_bindir(tmp_path, "16")
    _fake_bindir(tmp_path, "10")
    (tmp_path / "17" / "bin").mkdir(parents=True)  # client-only install: no server binaries
    assert find_bindir(tmp_path) == newest


def test_find_bindir_none_without_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STATEWRIGHT_PG_BINDIR", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert find_bindir(tmp_path) is None


@pytest.mark.parametrize(("ci", "outcome"), [("true", "fail"), ("", "skip")])
def test_unavailable_fails_in_ci_and_skips_locally(
    ci: str, outcome: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", ci)
    expected = pytest.fail.Exception if outcome == "fail" else pytest.skip.Exception
    with pytest.raises(expected, match="no server"):
        unavailable("no server")


def test_server_from_url() -> None:
    server = server_from_url("postgresql://alice:p%40ss@db.local:6543/test?sslmode=disable")
    assert (server.host, server.port, server.user, server.password) == (
        "db.local",
        6543,
        "alice",
        "p@ss",
    )
    assert server.admin_database == "test"
    assert server.url("x") == "postgresql+asyncpg://alice:p%40ss@db.local:6543/x?sslmode=disable"
    assert server.url("x", driver=None).startswith("postgresql://alice:")
    defaults = server_from_url("postgresql://127.0.0.1")
    assert (defaults.port, defaults.user, defaults.admin_database) == (5432, "postgres", "postgres")
    with pytest.raises(ValueError, match="postgresql"):
        server_from_url("mysql://x@y/z")
