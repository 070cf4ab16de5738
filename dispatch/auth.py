"""Who may do what: OAuth2 password flow with signed JWTs, Argon2id password hashes, roles.

Every API route but ``/healthz`` and the login itself (``POST /api/token``) needs a bearer token.
Routes declare their roles with :func:`require_role`, which other rooms reuse for their routers::

    from dispatch.auth import require_role
    router = APIRouter(dependencies=[Depends(require_role("commander"))])

or, to get the caller::

    def create_plan(who: Annotated[Principal, Depends(require_role("commander"))]) -> ...

A bootstrap admin token (``QORGAU_ADMIN_TOKEN``) is accepted as an ``admin`` bearer token, for
scripted set-up (creating the first users). Without credentials a route answers 401; with a role it
does not list, 403.

Browsers (the live map, :mod:`dispatch.live`) sign in through a form and hold the same JWT in the
``qorgau_session`` cookie (``HttpOnly``, ``SameSite=Strict``). A request without a bearer token
is authenticated by that cookie; one that would change something (any method but GET, HEAD,
OPTIONS) must then also carry the ``X-Qorgau-Request`` header, which a page of another site
cannot add without a CORS pre-flight that this service never grants (CSRF defence on top of
SameSite).
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from fastapi import Depends, HTTPException, Request, status
from fastapi.security import OAuth2PasswordBearer

from dispatch.domain import Role, User

__all__ = [
    "BOOTSTRAP_ADMIN",
    "CSRF_HEADER",
    "SESSION_COOKIE",
    "Authenticator",
    "Principal",
    "RoleGuard",
    "hash_password",
    "require_role",
    "verify_password",
]

BOOTSTRAP_ADMIN = "bootstrap-admin"
"""The actor recorded for requests made with ``QORGAU_ADMIN_TOKEN``."""

SESSION_COOKIE = "qorgau_session"
"""The cookie that carries a browser's token (HttpOnly, SameSite=Strict)."""

CSRF_HEADER = "X-Qorgau-Request"
"""Requests that change something and are authenticated by the cookie alone must send this header."""

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

_hasher = PasswordHasher()  # Argon2id with the library's (RFC 9106 low-memory) parameters
_ALGORITHM = "HS256"


def hash_password(password: str) -> str:
    """An Argon2id hash of ``password`` (salted; the parameters are stored in the hash)."""
    if len(password) < 8:
        msg = f"a password needs at least 8 characters, got {len(password)}"
        raise ValueError(msg)
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
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
        now = now or datetime.now(timezone.utc)
        claims: dict[str, Any] = {
            "sub": user.username,
            "role": user.role.value,
            "iat": int(now.timestamp()),
            "exp": int((now + self.token_ttl).timestamp()),
        }
        if user.unit_id is not None:
            claims["unit_id"] = user.unit_id
        return jwt.encode(claims, self._secret, algorithm=_ALGORITHM)

    def principal(self, token: str) -> Principal | None:
        """Who the token belongs to; None for an invalid or expired one."""
        if self._admin_token is not None and hmac.compare_digest(token.encode(), self._admin_token.encode()):
            return Principal(BOOTSTRAP_ADMIN, Role.ADMIN)
        try:
            claims = jwt.decode(token, self._secret, algorithms=[_ALGORITHM], options={"require": ["sub", "exp"]})
            return Principal(str(claims["sub"]), Role(claims["role"]), claims.get("unit_id"))
        except (jwt.PyJWTError, KeyError, ValueError):
            return None


_bearer = OAuth2PasswordBearer(tokenUrl="/api/token", auto_error=False)


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": "Bearer"})


def current_principal(request: Request, token: Annotated[str | None, Depends(_bearer)]) -> Principal:
    """The caller, or 401."""
    auth: Authenticator | None = getattr(request.app.state, "auth", None)
    if auth is None:
        msg = "the app has no Authenticator in app.state.auth"
        raise RuntimeError(msg)
    if not token:
        token = request.cookies.get(SESSION_COOKIE)
        if token and request.method not in _SAFE_METHODS and not request.headers.get(CSRF_HEADER):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                detail=f"a request signed in by the session cookie must send the {CSRF_HEADER} header",
            )
    if not token:
        raise _unauthorized("not signed in: send a bearer token from POST /api/token")
    principal = auth.principal(token)
    if principal is None:
        raise _unauthorized("the token is invalid or expired")
    return principal


class RoleGuard:
    """A FastAPI dependency that lets through the listed roles (403 for others, 401 without a token)."""

    def __init__(self, *roles: Role | str) -> None:
        if not roles:
            msg = "require_role needs at least one role"
            raise ValueError(msg)
        self.roles = frozenset(Role(r) for r in roles)

    def __call__(self, principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
        if principal.role not in self.roles:
            allowed = ", ".join(sorted(r.value for r in self.roles))
            raise HTTPException(
                status.HTTP_403_FORBIDDEN, detail=f"role {principal.role.value!r} may not do this (needs: {allowed})"
            )
        return principal

    def __repr__(self) -> str:
        return f"require_role({', '.join(sorted(r.value for r in self.roles))})"


def require_role(*roles: Role | str) -> RoleGuard:
    """A dependency admitting only ``roles``; it returns the :class:`Principal`."""
    return RoleGuard(*roles)
