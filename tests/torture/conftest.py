"""The torture tests use the service tests' real-server fixtures."""

from __future__ import annotations

from tests.service.conftest import api_schema_template, postgres_api_server, sqlite_api_server

__all__ = ["api_schema_template", "postgres_api_server", "sqlite_api_server"]
