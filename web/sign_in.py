"""The one sign-in: username and password against the store, throttled and audited.

Both ``POST /api/token`` (a bearer token) and the live map's ``POST /login`` (a session cookie)
call :func:`authenticate`; they differ only in how they answer.
"""

from __future__ import annotations

import logging

from dispatch.auth import verify_password
from dispatch.domain import User
from dispatch.service import DispatchService
from web.hardening import LoginThrottle

__all__ = ["Throttled", "authenticate"]

log = logging.getLogger(__name__)


class Throttled(Exception):
    """Too many failed sign-ins from this address: try again in ``retry_after_s``."""

    def __init__(self, address: str, retry_after_s: int) -> None:
        self.address = address
        self.retry_after_s = retry_after_s
        msg = f"too many failed sign-ins from {address}: try again in {retry_after_s} s"
        super().__init__(msg)


def authenticate(
    service: DispatchService,
    throttle: LoginThrottle,
    username: str,
    password: str,
    *,
    client: str | None,
    via: str | None = None,
) -> User | None:
    """The user if the password is right (and the user not disabled), else None.

    Every attempt that is not throttled is audited (``login`` or ``login_failed``, with the client
    address and, for the map, ``via``) and counted by the throttle.

    Raises
    ------
    Throttled
        When this client has failed too often for this username (or any).
    """
    address = client or "unknown"
    wait = throttle.retry_after_s(address, username)
    if wait is not None:
        log.warning("login throttled for %r from %s: %d s to wait", username, address, wait)
        raise Throttled(address, wait)
    found = service.store.get_user(username)
    ok = found is not None and not found[0].disabled and verify_password(found[1], password)
    after = {"client": client} if via is None else {"client": client, "via": via}
    service.store.audit("login" if ok else "login_failed", actor=username, after=after)
    (throttle.succeeded if ok else throttle.failed)(address, username)
    return found[0] if ok and found is not None else None
