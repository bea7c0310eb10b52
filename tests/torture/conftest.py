"""The torture tests use the service tests' real-server fixtures."""

from __future__ import annotations

from tests.service.conftest import postgres_api_server, schema_template, sqlite_api_server

__all__ = ["postgres_api_server", "schema_template", "sqlite_api_server"]
