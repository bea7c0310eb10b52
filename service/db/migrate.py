"""Schema migrations through Alembic (``statewright db upgrade``, ``alembic upgrade head``)."""

from __future__ import annotations

import os
from pathlib import Path

from alembic.config import Config

from alembic import command
from service.db.engine import normalize_url

ROOT = Path(__file__).resolve().parents[2]


def alembic_config(database_url: str | None) -> Config:
    """An Alembic config for the repository's migrations and ``database_url``."""
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "alembic"))
    url = database_url or os.environ.get("STATEWRIGHT_DATABASE_URL")
    # ConfigParser interpolation: a literal % in a password must be doubled.
    config.set_main_option("sqlalchemy.url", normalize_url(url).replace("%", "%%"))
    return config


def upgrade(database_url: str | None, revision: str = "head") -> None:
    """Bring the schema up to ``revision``."""
    command.upgrade(alembic_config(database_url), revision)
