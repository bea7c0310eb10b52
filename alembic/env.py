"""Alembic environment: runs migrations on Statewright's async engines (Postgres or SQLite)."""

from __future__ import annotations

import asyncio
import os

from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

import service.db.tables  # noqa: F401  (registers the tables on SQLModel.metadata)
from alembic import context
from service.db.engine import create_engine

target_metadata = SQLModel.metadata


def _include(obj: object, name: str | None, kind: str, reflected: bool, compare_to: object) -> bool:
    # Trigram indexes exist only on Postgres with pg_trgm (migration 0012), not in the models.
    return not (kind == "index" and reflected and (name or "").endswith("_trgm"))


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        include_object=_include,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copy
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _online() -> None:
    url = (
        context.get_x_argument(as_dictionary=True).get("url")
        or context.config.get_main_option("sqlalchemy.url")
        or os.environ.get("STATEWRIGHT_DATABASE_URL")
    )
    engine = create_engine(url)
    async with engine.connect() as connection:
        await connection.run_sync(_run)
        await connection.commit()
    await engine.dispose()


if context.is_offline_mode():
    context.configure(
        url=context.config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata
    )
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_online())
