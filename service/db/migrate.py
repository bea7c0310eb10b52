"""Schema migrations through Alembic (``statewright db upgrade``, ``alembic upgrade head``)."""

from __future__ import annotations

import functools
import os

import sqlalchemy as sa
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from alembic import command
from service.db.engine import normalize_url
from service.shipped import shipped


def alembic_config(database_url: str | None) -> Config:
    """An Alembic config for the repository's migrations and ``database_url``."""
    config = Config(str(shipped("alembic.ini")))
    config.set_main_option("script_location", str(shipped("alembic")))
    url = database_url or os.environ.get("STATEWRIGHT_DATABASE_URL")
    # ConfigParser interpolation: a literal % in a password must be doubled.
    config.set_main_option("sqlalchemy.url", normalize_url(url).replace("%", "%%"))
    return config


def upgrade(database_url: str | None, revision: str = "head") -> None:
    """Bring the schema up to ``revision``."""
    command.upgrade(alembic_config(database_url), revision)


@functools.cache
def head_revision() -> str | None:
    """The newest migration this version of Statewright has."""
    config = Config(str(shipped("alembic.ini")))
    config.set_main_option("script_location", str(shipped("alembic")))
    head: str | None = ScriptDirectory.from_config(config).get_current_head()
    return head


async def current_revision(conn: AsyncConnection) -> str | None:
    """The migration the database is at (None: no schema yet)."""
    try:
        async with conn.begin_nested() if conn.in_transaction() else conn.begin():
            found = await conn.execute(sa.text("SELECT version_num FROM alembic_version"))
            row = found.first()
    except DBAPIError:
        return None
    return None if row is None else str(row[0])
