"""Connections: how HTTP tasks authenticate to an API (AWS: EventBridge connections).

A connection has a name, an ARN (``arn:aws:events:REGION:ACCOUNT:connection/NAME``) and one of
three authorizations, each with one secret:

* ``BASIC``: ``{"username", "password"}`` -> ``Authorization: Basic ...``;
* ``API_KEY``: ``{"name", "value"}`` -> a header ``name: value``;
* ``OAUTH_CLIENT_CREDENTIALS``: ``{"tokenEndpoint", "clientId", "clientSecret", "scope"?}`` ->
  a token fetched with the client credentials grant (cached until shortly before it expires)
  -> ``Authorization: Bearer ...``.

Tasks name the connection (``"Authentication": {"ConnectionArn": ...}``); the worker adds the
credentials to the request as it sends it, so the secret never enters a history, an API answer
or a log. The database keeps the secret sealed with the server key (service/sealing.py).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from service import control
from service.db import queries
from service.db.tables import ConnectionRow
from service.sealing import Sealer

JSON = Any
connections = ConnectionRow.__table__  # type: ignore[attr-defined]
_NAME = re.compile(r"^[\.\-_A-Za-z0-9]{1,64}$")
# For each type: the public fields (required, optional) and the one secret field.
TYPES: dict[str, tuple[tuple[str, ...], tuple[str, ...], str]] = {
    "BASIC": (("username",), (), "password"),
    "API_KEY": (("name",), (), "value"),
    "OAUTH_CLIENT_CREDENTIALS": (("tokenEndpoint", "clientId"), ("scope",), "clientSecret"),
}


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    """A connection as the API shows it: never its secret."""

    name: str
    arn: str
    type: str
    parameters: dict[str, str]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Credentials:
    """What a worker needs to authenticate a request (holds the secret: never log it)."""

    arn: str
    type: str
    parameters: dict[str, str]
    secret: str

    def __repr__(self) -> str:  # no secret in tracebacks or logs
        return f"Credentials({self.arn!r}, {self.type!r})"


def connection_arn(name: str) -> str:
    """The ARN of the connection ``name``."""
    return f"arn:aws:events:{control.REGION}:{control.ACCOUNT}:connection/{name}"


def name_from_arn(arn: str) -> str | None:
    """The connection name in ``arn:aws:events:...:connection/NAME[/ID]`` (None if not one)."""
    parts = arn.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn" or parts[2] != "events":
        return None
    kind, _, rest = parts[5].partition("/")
    name = rest.split("/", 1)[0]
    return name if kind == "connection" and _NAME.match(name) else None


def _split(kind: str, auth: JSON) -> tuple[dict[str, str], str]:
    if kind not in TYPES:
        raise control.ValidationException(f"type must be one of {', '.join(TYPES)}, not {kind!r}")
    required, optional, secret_field = TYPES[kind]
    if not isinstance(auth, dict):
        raise control.ValidationException(f"a {kind} connection needs an object of parameters")
    unknown = set(auth) - set(required) - set(optional) - {secret_field}
    if unknown:
        raise control.ValidationException(
            f"unknown {kind} parameters: {', '.join(sorted(unknown))}"
        )
    public: dict[str, str] = {}
    for name in (*required, secret_field):
        value = auth.get(name)
        if not isinstance(value, str) or not value or len(value) > 2048:
            raise control.ValidationException(
                f"a {kind} connection needs '{name}' (a string of 1 to 2048 characters)"
            )
    for name in (*required, *optional):
        if name in auth:
            if not isinstance(auth[name], str):
                raise control.ValidationException(f"'{name}' must be a string")
            public[name] = auth[name]
    if kind == "OAUTH_CLIENT_CREDENTIALS" and not public["tokenEndpoint"].startswith(
        ("https://", "http://")
    ):
        raise control.ValidationException("tokenEndpoint must be an http or https URL")
    return public, auth[secret_field]


async def create_connection(
    engine: AsyncEngine, sealer: Sealer, name: str, kind: str, auth: JSON
) -> ConnectionInfo:
    """Create a connection (its secret sealed); ConflictException if the name is taken."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise control.ValidationException(
            f"Invalid connection name {name!r}: 1-64 letters, digits, '.', '-' or '_'"
        )
    public, secret = _split(kind, auth)
    try:
        async with engine.begin() as conn:
            at = await queries.now(conn)
            await conn.execute(
                connections.insert().values(
                    name=name,
                    arn=connection_arn(name),
                    type=kind,
                    parameters=json.dumps(public),
                    secret_sealed=sealer.seal(secret),
                    created_at=at,
                )
            )
    except IntegrityError:
        raise control.ConflictException(
            f"Connection already exists: '{connection_arn(name)}'"
        ) from None
    return ConnectionInfo(name, connection_arn(name), kind, public, at)


def _info(row: Any) -> ConnectionInfo:
    return ConnectionInfo(
        row.name, row.arn, row.type, json.loads(row.parameters), queries.aware(row.created_at)
    )


async def list_connections(engine: AsyncEngine) -> list[ConnectionInfo]:
    """Every connection, by name (no secrets)."""
    async with engine.connect() as conn:
        rows = await conn.execute(sa.select(connections).order_by(connections.c.name))
        return [_info(row) for row in rows]


async def describe_connection(engine: AsyncEngine, name: str) -> ConnectionInfo:
    """One connection (no secret); ResourceNotFound if there is none of that name."""
    async with engine.connect() as conn:
        row = (await conn.execute(sa.select(connections).where(connections.c.name == name))).first()
    if row is None:
        raise control.ResourceNotFound(f"Connection does not exist: '{connection_arn(name)}'")
    return _info(row)


async def delete_connection(engine: AsyncEngine, name: str) -> None:
    """Delete a connection (what is not there: nothing to do)."""
    async with engine.begin() as conn:
        await conn.execute(connections.delete().where(connections.c.name == name))


async def credentials(engine: AsyncEngine, sealer: Sealer, arn: str) -> Credentials | None:
    """The credentials of the connection ``arn`` names; None if there is no such connection."""
    name = name_from_arn(arn)
    if name is None:
        return None
    async with engine.connect() as conn:
        row = (await conn.execute(sa.select(connections).where(connections.c.name == name))).first()
    if row is None:
        return None
    return Credentials(
        row.arn, row.type, json.loads(row.parameters), sealer.open(row.secret_sealed)
    )
