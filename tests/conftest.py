"""Suite-wide pytest setup: the ``postgres`` marker and the PostgreSQL fixtures."""

from __future__ import annotations

import pytest

from tests.postgres import (
    POSTGRES_FIXTURES,
    _postgres_names,
    postgres_clone,
    postgres_database,
    postgres_server,
    postgres_template_factory,
)

__all__ = [
    "_postgres_names",
    "postgres_clone",
    "postgres_database",
    "postgres_server",
    "postgres_template_factory",
]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "postgres: needs a real PostgreSQL server")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Tests that use a Postgres fixture get the marker, so `-m "not postgres"` deselects them.
    for item in items:
        if POSTGRES_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.postgres)
