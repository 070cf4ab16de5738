"""The HTTP API's armour: body size limits, login throttling, CORS, security headers, safe request bodies.

:func:`install_hardening` wraps an app (:func:`web.create_app` calls it) with

- a **request body limit** (413 with a JSON ``detail``; larger limits per path prefix, e.g. the
  plans API's inline incidents), enforced on the declared ``Content-Length`` and on the bytes that
  actually arrive (chunked bodies);
- **CORS closed by default**: no ``Access-Control-Allow-Origin`` unless origins are listed
  (``QORGAU_CORS_ORIGINS``);
- **security headers on every response**: ``X-Content-Type-Options: nosniff``, ``X-Frame-Options:
  DENY``, ``Referrer-Policy: no-referrer``, ``Cross-Origin-Opener-Policy: same-origin`` and a
  Content-Security-Policy. HTML pages get ``script-src 'self'`` plus the SHA-256 of each inline
  script of that very page (the live map's generated set-up code), so no other inline script runs;
  everything else gets ``default-src 'none'``.

:class:`LoginThrottle` limits failed sign-ins per client address and username (and per address
across usernames): ``POST /api/token`` and the map's ``/login`` answer 429 with ``Retry-After``.

:class:`RequestBody` is the base of the API's request models: no string field may carry a NUL
character (PostgreSQL cannot store one), and ids are bounded to the database's integer range.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import math
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import FastAPI, HTTPException, Path
from pydantic import BaseModel, Field, field_validator
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "MAX_ID",
    "AlertIdPath",
    "BoundedId",
    "HttpHardening",
    "LoginThrottle",
    "RequestBody",
    "content_security_policy",
    "install_hardening",
    "origin_of",
]

log = logging.getLogger(__name__)

from dispatch.intake import MAX_ID  # noqa: E402  (the largest alert id: a PostgreSQL integer)

AlertIdPath = Annotated[int, Path(ge=1, le=MAX_ID, description="an alert id")]


class RequestBody(BaseModel):
    """A JSON request body whose strings the store can keep: a NUL character is refused (422)."""

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        if isinstance(value, str) and "\x00" in value:
            msg = "must not contain a NUL character (\\u0000)"
            raise ValueError(msg)
        return value


BoundedId = Annotated[int, Field(ge=1, le=MAX_ID)]
"""An alert id in a request body."""


# -- settings -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class HttpHardening:
    """What :func:`install_hardening` enforces.

    Parameters
    ----------
    max_request_bytes
        Largest request body; larger ones get 413.
    max_request_bytes_by_prefix
        Larger (or smaller) limits for paths starting with a prefix (the longest prefix wins).
    cors_origins
        Origins that may call the API from a browser; empty: none (no CORS headers at all).
    login_max_failures
        Failed sign-ins allowed per client address and username within ``login_window_s``
        (four times as many per address across usernames); then 429 until the oldest leaves.
    login_window_s
        The sliding window of the login throttle.
    tile_origins
        Origins the live map may load tile images from (the configured tile server's).
    """

    max_request_bytes: int = 1024 * 1024
    max_request_bytes_by_prefix: Mapping[str, int] = field(default_factory=dict)
    cors_origins: Sequence[str] = ()
    login_max_failures: int = 10
    login_window_s: float = 300.0
    tile_origins: Sequence[str] = ()

    def __post_init__(self) -> None:
        if self.max_request_bytes <= 0:
            msg = f"max_request_bytes must be positive, got {self.max_request_bytes}"
            raise ValueError(msg)
        if self.login_max_failures < 1 or self.login_window_s <= 0:
            msg = f"the login throttle needs >= 1 failure in a positive window, got {self.login_max_failures} in {self.login_window_s} s"
            raise ValueError(msg)

    def limit_for(self, path: str) -> int:
        """The body limit of a request to ``path``."""
        best = ""
        for prefix in self.max_request_bytes_by_prefix:
            if path.startswith(prefix) and len(prefix) > len(best):
                best = prefix
        return self.max_request_bytes_by_prefix[best] if best else self.max_request_bytes


def origin_of(url: str) -> str | None:
    """``https://tiles.example`` of ``https://tiles.example/{z}/{x}/{y}.png``; None for a relative URL."""
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc.replace('{s}', '*')}"  # {s}.tile.example: any subdomain


# -- request body size --------------------------------------------------------------------------


def _json_response(status: int, detail: str, headers: Sequence[tuple[bytes, bytes]] = ()) -> tuple[Message, Message]:
    body = json.dumps({"detail": detail}).encode()
    start: Message = {
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers],
    }
    return start, {"type": "http.response.body", "body": body}


class BodySizeLimit:
    """ASGI middleware: 413 for a body over the limit (declared or streamed)."""

    def __init__(self, app: ASGIApp, *, options: HttpHardening) -> None:
        self.app = app
        self.options = options

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.options.limit_for(scope.get("path", ""))
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None:
            try:
                too_large = int(declared) > limit
            except ValueError:
                too_large = False  # the server has already refused a malformed length
            if too_large:
                await self._refuse(send, scope, int(declared), limit)
                return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise HTTPException(413, detail=_too_large_detail(received, limit, streamed=True))
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except HTTPException as e:  # raised by counting_receive outside FastAPI's handlers
            if e.status_code != 413 or started:
                raise
            await self._refuse(send, scope, received, limit)

    @staticmethod
    async def _refuse(send: Send, scope: Scope, size: int, limit: int) -> None:
        log.warning(
            "refused a %d-byte request body to %s %s (limit %d)", size, scope.get("method"), scope.get("path"), limit
        )
        start, body = _json_response(413, _too_large_detail(size, limit, streamed=False), [(b"connection", b"close")])
        await send(start)
        await send(body)


def _too_large_detail(size: int, limit: int, *, streamed: bool) -> str:
    what = f"more than {limit}" if streamed else str(size)
    return f"request body too large: {what} bytes, the limit is {limit}"


# -- security headers ---------------------------------------------------------------------------

_INLINE_SCRIPT = re.compile(rb"<script(?![^>]*\bsrc\s*=)[^>]*>(.*?)</script\s*>", re.DOTALL | re.IGNORECASE)
_STATIC_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
]
_SAME_ORIGIN_FRAME_HEADERS = [
    (b"x-frame-options", b"SAMEORIGIN") if k == b"x-frame-options" else (k, v) for k, v in _STATIC_HEADERS
]
"""A page that may sit in a frame of this service's own (its route sends ``X-Frame-Options: SAMEORIGIN``)."""
_API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
_WORKER_CSP = "default-src 'none'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
"""A service worker's script (it answers with ``Service-Worker-Allowed``) runs under its own CSP and must fetch."""
_DOC_PATHS = ("/docs", "/redoc")
_DOC_CDN = "https://cdn.jsdelivr.net"


def content_security_policy(
    html: bytes, *, tile_origins: Sequence[str] = (), docs: bool = False, same_origin_frame: bool = False
) -> str:
    """The CSP of an HTML page: its own inline scripts by hash, everything else from this origin.

    Parameters
    ----------
    html
        The page as sent.
    tile_origins
        Extra image origins (a tile server).
    docs
        The OpenAPI pages (``/docs``, ``/redoc``), which load Swagger UI / ReDoc from a CDN.
    same_origin_frame
        The page may be framed by this service's own pages (``frame-ancestors 'self'``): the plan
        map inside the commander's console. Every other page may be framed by nobody.
    """
    hashes = sorted(
        {
            "'sha256-" + base64.b64encode(hashlib.sha256(m.group(1)).digest()).decode() + "'"
            for m in _INLINE_SCRIPT.finditer(html)
        }
    )
    cdn = [_DOC_CDN] if docs else []
    scripts = " ".join(["'self'", *hashes, *cdn])
    styles = " ".join(["'self'", "'unsafe-inline'", *cdn])
    images = " ".join(["'self'", "data:", *tile_origins, *(["https://fastapi.tiangolo.com"] if docs else [])])
    return "; ".join(
        [
            "default-src 'self'",
            f"script-src {scripts}",
            f"style-src {styles}",
            f"img-src {images}",
            "connect-src 'self'",
            "font-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'self'" if same_origin_frame else "frame-ancestors 'none'",
        ]
    )


class SecurityHeaders:
    """ASGI middleware: security headers on every HTTP response; HTML gets a CSP naming its inline scripts."""

    def __init__(self, app: ASGIApp, *, options: HttpHardening) -> None:
        self.app = app
        self.options = options

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        docs = scope.get("path", "").startswith(_DOC_PATHS)
        held: Message | None = None
        chunks: list[bytes] = []
        framed = False  # the route lets this service's own pages frame it

        async def secured_send(message: Message) -> None:
            nonlocal held, framed
            if message["type"] == "http.response.start":
                given = message.get("headers", [])
                framed = (b"x-frame-options", b"SAMEORIGIN") in [(k.lower(), v.upper()) for k, v in given]
                headers = [(k, v) for k, v in given if k.lower() not in _OURS]
                headers += _SAME_ORIGIN_FRAME_HEADERS if framed else _STATIC_HEADERS
                message = {**message, "headers": headers}
                if _is_html(headers):
                    held = message  # its CSP depends on the body
                    return
                worker = any(k.lower() == b"service-worker-allowed" for k, _ in headers)
                policy = _WORKER_CSP if worker else _API_CSP
                await send({**message, "headers": [*headers, (b"content-security-policy", policy.encode())]})
                return
            if held is not None and message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                body = b"".join(chunks)
                csp = content_security_policy(
                    body, tile_origins=self.options.tile_origins, docs=docs, same_origin_frame=framed
                )
                await send({**held, "headers": [*held["headers"], (b"content-security-policy", csp.encode())]})
                held = None
                await send({"type": "http.response.body", "body": body})
                return
            await send(message)

        await self.app(scope, receive, secured_send)


_OURS = frozenset(k for k, _ in _STATIC_HEADERS) | {b"content-security-policy"}


def _is_html(headers: Sequence[tuple[bytes, bytes]]) -> bool:
    return any(k.lower() == b"content-type" and v.lower().startswith(b"text/html") for k, v in headers)


# -- login throttle -----------------------------------------------------------------------------


class LoginThrottle:
    """Failed sign-ins per (client address, username) and per address, in a sliding window.

    Parameters
    ----------
    max_failures
        Failures allowed per address and username in the window (per address: four times this).
    window_s
        The window.
    clock
        Monotonic seconds (tests pass their own).
    """

    def __init__(
        self, max_failures: int = 10, window_s: float = 300.0, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self.clock = clock
        self._failures: dict[tuple[str, str | None], deque[float]] = {}
        self._lock = threading.Lock()

    def _limits(self, address: str, username: str) -> list[tuple[tuple[str, str | None], int]]:
        return [((address, username), self.max_failures), ((address, None), self.max_failures * 4)]

    def _prune(self, now: float) -> None:
        for key in [k for k, q in self._failures.items() if not q or q[-1] <= now - self.window_s]:
            del self._failures[key]

    def retry_after_s(self, address: str, username: str) -> int | None:
        """Seconds until this address may try this username again; None when it may now."""
        now = self.clock()
        with self._lock:
            waits = []
            for key, limit in self._limits(address, username):
                q = self._failures.get(key)
                while q and q[0] <= now - self.window_s:
                    q.popleft()
                if q and len(q) >= limit:
                    waits.append(q[-limit] + self.window_s - now)
        return max(1, math.ceil(max(waits))) if waits else None

    def check(self, address: str, username: str) -> None:
        """Raise 429 (with ``Retry-After``) if the address has failed too often."""
        wait = self.retry_after_s(address, username)
        if wait is not None:
            log.warning("login throttled for %r from %s: %d s to wait", username, address, wait)
            raise HTTPException(
                429,
                detail=f"too many failed sign-ins from {address}: try again in {wait} s",
                headers={"Retry-After": str(wait)},
            )

    def failed(self, address: str, username: str) -> None:
        now = self.clock()
        with self._lock:
            if len(self._failures) > 100_000:
                self._prune(now)
            for key, _ in self._limits(address, username):
                self._failures.setdefault(key, deque(maxlen=self.max_failures * 4)).append(now)

    def succeeded(self, address: str, username: str) -> None:
        """A correct password clears that username's failures from that address."""
        with self._lock:
            self._failures.pop((address, username), None)


# -- wiring -------------------------------------------------------------------------------------


def install_hardening(app: FastAPI, options: HttpHardening | None = None) -> HttpHardening:
    """Add the body limit, CORS (if origins are listed) and security headers to ``app``.

    The login throttle (:class:`LoginThrottle`) is not middleware: :func:`web.create_app` makes
    one from the same options and hands it to the sign-in (:mod:`web.sign_in`).
    """
    options = options or HttpHardening()
    # add_middleware wraps: the last added runs first. Order on the way in: headers, body limit, CORS.
    if options.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(options.cors_origins),
            allow_credentials=False,
            allow_methods=["GET", "POST", "PUT", "PATCH"],
            allow_headers=["Authorization", "Content-Type"],
            max_age=600,
        )
    app.add_middleware(BodySizeLimit, options=options)
    app.add_middleware(SecurityHeaders, options=options)
    return options
