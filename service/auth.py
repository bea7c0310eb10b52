"""API keys, and how a request proves it holds one.

A key is an id (20 characters, ``SWK`` and 17 base32 characters, shaped like an AWS access
key id) and a secret (40 characters, 240 random bits), made by ``statewright keys create``.
Requests present it in one of three ways:

* the AWS API (``POST /``): AWS Signature Version 4, as every AWS SDK and the AWS CLI sign,
  with the key id as access key id and the secret as secret access key. The signature is
  recomputed here from the request and the stored secret, so a wrong secret is refused;
* the REST API: ``Authorization: Bearer ID:SECRET``, or HTTP Basic with the id as user name
  and the secret as password (``curl -u ID:SECRET``);
* callbacks (``/api/v1/callbacks/{token}/...``) need no key: the task token is the proof.

Stored: the SHA-256 of the secret (a 240-bit random secret needs no slow hash) and the secret
sealed with the server key (service/sealing.py), because a SigV4 check needs the secret itself.
Keys are looked up through a cache of a few seconds: a revoked key stops working within
``CACHE_SECONDS``. Comparisons are constant-time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from service.db import queries
from service.db.tables import ApiKeyRow
from service.sealing import Sealer

api_keys = ApiKeyRow.__table__  # type: ignore[attr-defined]

KEY_ID_PREFIX = "SWK"
_BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
CACHE_SECONDS = 5.0
MAX_CLOCK_SKEW = timedelta(minutes=15)
SIGV4_SERVICE = "states"


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A key as listed (never its secret)."""

    id: str
    name: str
    created_at: datetime
    revoked_at: datetime | None


class AuthError(Exception):
    """A request without a valid key. ``code`` is AWS's exception name for the case."""

    def __init__(self, code: str, message: str, status: int = 403) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


def _missing() -> AuthError:
    return AuthError("MissingAuthenticationTokenException", "Missing Authentication Token", 403)


def _unknown_key() -> AuthError:
    return AuthError(
        "UnrecognizedClientException",
        "The security token included in the request is invalid.",
        403,
    )


def _bad_signature() -> AuthError:
    return AuthError(
        "InvalidSignatureException",
        "The request signature we calculated does not match the signature you provided. "
        "Check your AWS Secret Access Key and signing method. Consult the service "
        "documentation for details.",
        403,
    )


def _incomplete(message: str) -> AuthError:
    return AuthError("IncompleteSignatureException", message, 400)


# ---------------------------------------------------------------------------- keys


def new_key_id() -> str:
    """``SWK`` and 17 random base32 characters (85 bits): unique, not secret."""
    return KEY_ID_PREFIX + "".join(secrets.choice(_BASE32) for _ in range(17))


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


async def create_key(engine: AsyncEngine, name: str, sealer: Sealer) -> tuple[ApiKey, str]:
    """A new key and its secret (shown once; only its hash and a sealed copy are kept)."""
    if not name or len(name) > 80:
        raise ValueError("a key name has 1 to 80 characters")
    secret = secrets.token_urlsafe(30)
    key_id = new_key_id()
    async with engine.begin() as conn:
        at = await queries.now(conn)
        await conn.execute(
            api_keys.insert().values(
                id=key_id,
                name=name,
                secret_sha256=_digest(secret),
                secret_sealed=sealer.seal(secret),
                created_at=at,
            )
        )
    return ApiKey(key_id, name, at, None), secret


async def list_keys(engine: AsyncEngine) -> list[ApiKey]:
    """Every key, oldest first."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.select(
                api_keys.c.id, api_keys.c.name, api_keys.c.created_at, api_keys.c.revoked_at
            ).order_by(api_keys.c.created_at, api_keys.c.id)
        )
        return [
            ApiKey(r[0], r[1], queries.aware(r[2]), queries.aware(r[3]) if r[3] else None)
            for r in rows
        ]


async def revoke_key(engine: AsyncEngine, key_id: str) -> bool:
    """Revoke a key (for good); False if there is no such unrevoked key."""
    async with engine.begin() as conn:
        at = await queries.now(conn)
        result = await conn.execute(
            api_keys.update()
            .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=at)
        )
        return bool(result.rowcount == 1)


# ---------------------------------------------------------------------------- checking


class Authenticator:
    """Checks requests against the stored keys."""

    def __init__(self, engine: AsyncEngine, sealer: Sealer) -> None:
        self.engine = engine
        self.sealer = sealer
        self._cache: dict[str, tuple[float, str | None]] = {}
        self._signing_keys: dict[tuple[str, str, str], bytes] = {}

    async def _secret(self, key_id: str) -> str | None:
        """The secret of an unrevoked key; None for an unknown or revoked one."""
        now = time.monotonic()
        cached = self._cache.get(key_id)
        if cached is not None and now - cached[0] < CACHE_SECONDS:
            return cached[1]
        secret: str | None = None
        if len(key_id) <= 32:
            async with self.engine.connect() as conn:
                row = (
                    await conn.execute(
                        sa.select(api_keys.c.secret_sealed).where(
                            api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None)
                        )
                    )
                ).first()
            secret = self.sealer.open(row[0]) if row is not None else None
        if len(self._cache) > 10_000:  # unknown ids must not grow it without bound
            self._cache.clear()
        self._cache[key_id] = (now, secret)
        return secret

    async def rest(self, authorization: str | None) -> str:
        """The key id of a REST request's ``Authorization`` (Bearer ID:SECRET, or Basic)."""
        if not authorization:
            raise _missing()
        scheme, _, credentials = authorization.strip().partition(" ")
        credentials = credentials.strip()
        if scheme.lower() == "basic":
            try:
                credentials = base64.b64decode(credentials, validate=True).decode()
            except ValueError:  # not base64 (binascii.Error), not ASCII, not UTF-8
                raise AuthError(
                    "InvalidAuthorization", "The Basic credentials are not base64 'ID:SECRET'"
                ) from None
        elif scheme.lower() != "bearer":
            raise AuthError(
                "InvalidAuthorization",
                "Use 'Authorization: Bearer ID:SECRET' (or Basic with the key id and secret)",
            )
        key_id, sep, given = credentials.partition(":")
        if not sep or not key_id or not given:
            raise AuthError("InvalidAuthorization", "The credentials must be 'ID:SECRET'")
        secret = await self._secret(key_id)
        # Compared as digests: constant time, whatever the length of what was sent.
        if secret is None:
            raise _unknown_key()
        if not hmac.compare_digest(_digest(given), _digest(secret)):
            raise AuthError("InvalidAuthorization", "The API key secret is wrong")
        return key_id

    async def sigv4(
        self,
        method: str,
        raw_path: str,
        query: str,
        headers: Mapping[str, str],
        body: bytes,
        now: datetime | None = None,
    ) -> str:
        """The key id of a request signed with AWS Signature Version 4 (header form).
        ``headers`` are looked up by lower-case name."""
        authorization = headers.get("authorization")
        if not authorization:
            raise _missing()
        algorithm, _, rest = authorization.strip().partition(" ")
        if algorithm != "AWS4-HMAC-SHA256":
            raise _incomplete(
                f"Unsupported authorization algorithm {algorithm!r}: sign with AWS4-HMAC-SHA256"
            )
        parts: dict[str, str] = {}
        for item in rest.split(","):
            name, sep, value = item.strip().partition("=")
            if sep:
                parts[name] = value
        for required in ("Credential", "SignedHeaders", "Signature"):
            if required not in parts:
                raise _incomplete(
                    f"Authorization header requires '{required}' parameter. "
                    f"Authorization={authorization[:200]}"
                )
        scope = parts["Credential"].split("/")
        if len(scope) != 5 or scope[3] != SIGV4_SERVICE or scope[4] != "aws4_request":
            raise _incomplete(
                "Credential must be ACCESS_KEY_ID/YYYYMMDD/REGION/states/aws4_request, "
                f"not {parts['Credential']!r}"
            )
        key_id, day, region = scope[0], scope[1], scope[2]
        stamp = headers.get("x-amz-date", "")
        try:
            signed_at = _amz_date(stamp)
        except ValueError:
            raise _incomplete("The request needs an X-Amz-Date header (YYYYMMDDTHHMMSSZ)") from None
        if not stamp.startswith(day):
            raise _incomplete(f"The credential date {day} is not the date of X-Amz-Date {stamp}")
        current = now or datetime.now(UTC)
        if signed_at < current - MAX_CLOCK_SKEW:
            raise AuthError(
                "InvalidSignatureException",
                f"Signature expired: {stamp} is now earlier than "
                f"{_stamp(current - MAX_CLOCK_SKEW)} ({_stamp(current)} - 15 min.)",
            )
        if signed_at > current + MAX_CLOCK_SKEW:
            raise AuthError(
                "InvalidSignatureException",
                f"Signature not yet current: {stamp} is still later than "
                f"{_stamp(current + MAX_CLOCK_SKEW)} ({_stamp(current)} + 15 min.)",
            )
        signed_headers = parts["SignedHeaders"].split(";")
        if "host" not in signed_headers:
            raise _incomplete("The signed headers must include 'host'")
        secret = await self._secret(key_id)
        if secret is None:
            raise _unknown_key()
        payload_hash = hashlib.sha256(body).hexdigest()
        declared = headers.get("x-amz-content-sha256")
        if declared is not None and declared not in (payload_hash, "UNSIGNED-PAYLOAD"):
            raise AuthError(
                "InvalidSignatureException",
                "The x-amz-content-sha256 header does not match the body's SHA-256",
            )
        canonical = "\n".join(
            [
                method.upper(),
                _canonical_path(raw_path),
                _canonical_query(query),
                "".join(
                    f"{name}:{_header_value(headers.get(name.lower(), ''))}\n"
                    for name in signed_headers
                ),
                ";".join(signed_headers),
                declared if declared == "UNSIGNED-PAYLOAD" else payload_hash,
            ]
        )
        to_sign = "\n".join(
            [
                "AWS4-HMAC-SHA256",
                stamp,
                f"{day}/{region}/{SIGV4_SERVICE}/aws4_request",
                hashlib.sha256(canonical.encode()).hexdigest(),
            ]
        )
        expected = hmac.digest(self._signing_key(secret, day, region), to_sign.encode(), "sha256")
        if not hmac.compare_digest(expected.hex(), parts["Signature"]):
            raise _bad_signature()
        return key_id

    def _signing_key(self, secret: str, day: str, region: str) -> bytes:
        """SigV4's key for a day and region: four HMACs, the same for every request of the
        day, so derived once. hmac.digest is the one-shot C function: hmac.new builds a
        Python object per HMAC. With the headers in a dict (aws._headers), checking
        bench/api.py's StartExecution went from 35-45 us to 18-24 us."""
        cached = self._signing_keys.get((secret, day, region))
        if cached is not None:
            return cached
        key = ("AWS4" + secret).encode()
        for part in (day, region, SIGV4_SERVICE, "aws4_request"):
            key = hmac.digest(key, part.encode(), "sha256")
        if len(self._signing_keys) > 1000:  # days and regions come and go
            self._signing_keys.clear()
        self._signing_keys[(secret, day, region)] = key
        return key


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y%m%dT%H%M%SZ")


def _header_value(value: str) -> str:
    return " ".join(value.strip().split())


def _canonical_path(raw_path: str) -> str:
    if raw_path == "/":  # the AWS API's only path
        return "/"
    # Each segment URI-encoded once more, as SigV4 does for every service but S3.
    segments = raw_path.split("/")
    return "/".join(urllib.parse.quote(s, safe="-_.~") for s in segments) or "/"


def _canonical_query(query: str) -> str:
    if not query:
        return ""
    pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
    encoded = sorted(
        (urllib.parse.quote(k, safe="-_.~"), urllib.parse.quote(v, safe="-_.~")) for k, v in pairs
    )
    return "&".join(f"{k}={v}" for k, v in encoded)


def _amz_date(stamp: str) -> datetime:
    """``YYYYMMDDTHHMMSSZ`` (X-Amz-Date) as a datetime; ValueError if it is not one.
    (strptime costs ten times as much, on every signed request.)"""
    if (
        len(stamp) != 16
        or stamp[8] != "T"
        or stamp[15] != "Z"
        or not (stamp[:8].isdigit() and stamp[9:15].isdigit())
    ):
        raise ValueError(stamp)
    return datetime(
        int(stamp[0:4]),
        int(stamp[4:6]),
        int(stamp[6:8]),
        int(stamp[9:11]),
        int(stamp[11:13]),
        int(stamp[13:15]),
        tzinfo=UTC,
    )
