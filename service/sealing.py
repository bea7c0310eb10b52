"""Secrets at rest: sealed (encrypted and authenticated) with the server key.

The server key comes from ``STATEWRIGHT_SECRET_KEY`` (any text of at least 32 characters;
``statewright keys server-key`` prints a fresh one). It never goes into the database: a copy
of the database alone does not reveal what it seals. Sealing is Fernet from the
``cryptography`` package (AES-128-CBC with HMAC-SHA256 over a random IV): tampering with a
sealed value makes opening it fail instead of yielding something else.
"""

from __future__ import annotations

import base64
import hashlib
import secrets

from cryptography.fernet import Fernet, InvalidToken

MIN_KEY_CHARACTERS = 32


class ServerKeyError(ValueError):
    """The server key is missing, too short, or not the one a value was sealed with."""


def new_server_key() -> str:
    """A fresh server key (256 random bits, URL-safe text)."""
    return secrets.token_urlsafe(32)


class Sealer:
    """Seals and opens short secrets with one server key."""

    def __init__(self, server_key: str | None) -> None:
        if not server_key:
            raise ServerKeyError(
                "STATEWRIGHT_SECRET_KEY is not set: it encrypts the secrets the database "
                "keeps (API keys); create one with `statewright keys server-key` and give "
                "every API process and `statewright keys` the same value"
            )
        if len(server_key) < MIN_KEY_CHARACTERS:
            raise ServerKeyError(
                f"STATEWRIGHT_SECRET_KEY is {len(server_key)} characters; it needs at least "
                f"{MIN_KEY_CHARACTERS} (`statewright keys server-key` prints a good one)"
            )
        # The key text is high-entropy by requirement: one SHA-256 derives Fernet's 32 bytes.
        digest = hashlib.sha256(b"statewright-sealing\0" + server_key.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(digest))

    def seal(self, plain: str) -> str:
        """``plain`` encrypted and authenticated, as ASCII text."""
        return self._fernet.encrypt(plain.encode()).decode("ascii")

    def open(self, sealed: str) -> str:
        """The plain text of a sealed value; ServerKeyError if the key is not the one it was
        sealed with (or the value was altered)."""
        try:
            return self._fernet.decrypt(sealed.encode("ascii")).decode()
        except (InvalidToken, UnicodeError):
            raise ServerKeyError(
                "a stored secret cannot be opened with this STATEWRIGHT_SECRET_KEY (it was "
                "sealed with another key, or altered)"
            ) from None
