"""Who may do what: signed JWTs, Argon2id password hashes, the caller and its role.

:class:`Authenticator` issues and checks the tokens (HS256); :class:`Principal` is who a token
belongs to. A bootstrap admin token (``QORGAU_ADMIN_TOKEN``) is accepted as an ``admin`` token,
for scripted set-up (creating the first users).

Nothing here speaks HTTP: the web room (:mod:`web.deps`) reads tokens from requests (bearer
header or the live map's session cookie), answers 401 and 403 and declares each route's roles.
"""

from __future__ import annotations

import functools
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from dispatch.domain import Role, User

if TYPE_CHECKING:
    from argon2 import PasswordHasher

# PyJWT (which loads cryptography) and argon2 are imported by the first token or password, not at
# start: a replica answers /healthz sooner, and qorgau.runtime preloads them once it is up.

__all__ = ["BOOTSTRAP_ADMIN", "Authenticator", "Principal", "hash_password", "preload", "verify_password"]

BOOTSTRAP_ADMIN = "bootstrap-admin"
"""The actor recorded for requests made with ``QORGAU_ADMIN_TOKEN``."""

_ALGORITHM = "HS256"


@functools.cache
def _hasher() -> PasswordHasher:
    """Argon2id with the library's (RFC 9106 low-memory) parameters."""
    from argon2 import PasswordHasher

    return PasswordHasher()


def preload() -> None:
    """Import what tokens and passwords need (PyJWT, cryptography, argon2), so the first sign-in does not."""
    import jwt  # noqa: F401

    _hasher()


def hash_password(password: str) -> str:
    """An Argon2id hash of ``password`` (salted; the parameters are stored in the hash)."""
    if len(password) < 8:
        msg = f"a password needs at least 8 characters, got {len(password)}"
        raise ValueError(msg)
    return _hasher().hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    from argon2.exceptions import InvalidHashError, VerificationError

    try:
        return _hasher().verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller of a request: who, with which role, and for a ``unit`` login which unit."""

    username: str
    role: Role
    unit_id: str | None = None

    @property
    def actor(self) -> str:
        """How the audit trail names the caller."""
        return self.username


class Authenticator:
    """Issues and checks tokens.

    Parameters
    ----------
    secret
        The HS256 signing key; None makes a random one (tokens then die with the process).
    token_ttl
        How long a token is valid.
    admin_token
        The bootstrap admin token, or None for none.
    """

    def __init__(
        self, secret: str | None = None, *, token_ttl: timedelta = timedelta(hours=12), admin_token: str | None = None
    ) -> None:
        if secret is not None and len(secret) < 32:
            msg = f"the JWT secret needs at least 32 characters, got {len(secret)}"
            raise ValueError(msg)
        if admin_token is not None and len(admin_token) < 16:
            msg = f"QORGAU_ADMIN_TOKEN needs at least 16 characters, got {len(admin_token)}"
            raise ValueError(msg)
        self._secret = secret or secrets.token_urlsafe(48)
        self.token_ttl = token_ttl
        self._admin_token = admin_token

    def issue(self, user: User, *, now: datetime | None = None) -> str:
        now = now or datetime.now(UTC)
        claims: dict[str, Any] = {
            "sub": user.username,
            "role": user.role.value,
            "iat": int(now.timestamp()),
            "exp": int((now + self.token_ttl).timestamp()),
        }
        if user.unit_id is not None:
            claims["unit_id"] = user.unit_id
        import jwt

        return jwt.encode(claims, self._secret, algorithm=_ALGORITHM)

    def principal(self, token: str) -> Principal | None:
        """Who the token belongs to; None for an invalid or expired one."""
        if self._admin_token is not None and hmac.compare_digest(token.encode(), self._admin_token.encode()):
            return Principal(BOOTSTRAP_ADMIN, Role.ADMIN)
        import jwt

        try:
            claims = jwt.decode(token, self._secret, algorithms=[_ALGORITHM], options={"require": ["sub", "exp"]})
            return Principal(str(claims["sub"]), Role(claims["role"]), claims.get("unit_id"))
        except (jwt.PyJWTError, KeyError, ValueError):
            return None
