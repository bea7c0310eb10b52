"""Database URLs and engines: Postgres (asyncpg) in production, SQLite (aiosqlite) embedded."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

DEFAULT_SQLITE_PATH = Path(".statewright") / "statewright.db"

# What sits between Statewright and Postgres (STATEWRIGHT_DATABASE_POOLER).
Pooler = Literal["none", "session", "transaction"]
POOLERS: tuple[Pooler, ...] = ("none", "session", "transaction")


class DatabaseURLError(ValueError):
    """A database URL Statewright cannot use; the message says which forms work."""


def normalize_url(url: str | None) -> str:
    """Accept ``postgresql://``, ``postgresql+asyncpg://``, ``sqlite:///path``; default: embedded SQLite."""
    if not url:
        return f"sqlite+aiosqlite:///{DEFAULT_SQLITE_PATH}"
    try:
        parsed = make_url(url)
    except Exception as exc:  # SQLAlchemy raises ArgumentError for garbage
        raise DatabaseURLError(f"not a database URL: {url!r} ({exc})") from None
    backend = parsed.get_backend_name()
    if backend in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)
    if backend == "sqlite":
        return parsed.set(drivername="sqlite+aiosqlite").render_as_string(hide_password=False)
    raise DatabaseURLError(
        f"unsupported database {backend!r}: use postgresql://user@host:port/db or sqlite:///path"
    )


def is_postgres(url: str) -> bool:
    """Whether a normalized URL names a Postgres database."""
    return url.startswith("postgresql")


def configured_pooler() -> Pooler:
    """The pooler STATEWRIGHT_DATABASE_POOLER declares (the --database-pooler flag sets it
    for the whole process, so Alembic's engine follows it too)."""
    from service.settings import Settings

    return Settings().database_pooler


def pooler_connect_args(pooler: Pooler) -> dict[str, Any]:
    """The asyncpg connection arguments that make an engine safe behind ``pooler``."""
    if pooler != "transaction":
        return {}
    # A transaction pooler hands each transaction (and each statement outside one) whichever
    # server connection is free: a statement prepared in one transaction is missing, or is
    # another client's, in the next. statement_cache_size=0 makes asyncpg prepare unnamed
    # statements and send their Parse again with every execution, in the same Sync
    # (asyncpg's Connection._get_statement, "assuming people are running PgBouncer");
    # SQLAlchemy's dialect must not keep them either (prepared_statement_cache_size=0).
    # No unique prepared_statement_name_func: a named statement is parsed and executed in
    # two round trips, which outside a transaction block (starts are written in autocommit)
    # may reach two different server connections.
    return {"statement_cache_size": 0, "prepared_statement_cache_size": 0}


def create_engine(
    url: str | None,
    *,
    pool_size: int = 5,
    max_overflow: int | None = None,
    pooler: Pooler | None = None,
) -> AsyncEngine:
    """An async engine for ``url`` (normalized first); Postgres connections are pooled,
    ``pool_size`` kept open and up to ``max_overflow`` (default: as many again) opened for
    bursts and closed after. ``pooler`` (default: STATEWRIGHT_DATABASE_POOLER) says what
    sits between the engine and Postgres."""
    url = normalize_url(url)
    if is_postgres(url):
        # No pre-ping: it costs a round trip per checkout; callers retry on connection errors.
        return create_async_engine(
            url,
            pool_size=pool_size,
            max_overflow=pool_size if max_overflow is None else max_overflow,
            connect_args=pooler_connect_args(pooler or configured_pooler()),
        )
    path = make_url(url).database
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url, connect_args={"timeout": 30})

    @event.listens_for(engine.sync_engine, "connect")
    def _sqlite_pragmas(connection, _record):  # type: ignore[no-untyped-def]
        # WAL lets readers run beside the writer; foreign keys are off by default in SQLite.
        connection.isolation_level = None  # SQLAlchemy issues BEGIN itself (below)
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _sqlite_begin(connection):  # type: ignore[no-untyped-def]
        # Take the write lock at BEGIN: a decision reads then writes, and two deciders must
        # serialise instead of failing to upgrade a read lock.
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


@contextlib.asynccontextmanager
async def one_statement(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection for work that is one statement on Postgres (a data-modifying WITH is as
    atomic as a transaction): there outside a transaction block, so it costs one round trip
    where BEGIN and COMMIT would add two; on SQLite, where the work takes several statements,
    a transaction (committed on leaving)."""
    if engine.dialect.name != "postgresql":
        async with engine.begin() as conn:
            yield conn
        return
    async with engine.connect() as conn:
        yield await conn.execution_options(isolation_level="AUTOCOMMIT")
