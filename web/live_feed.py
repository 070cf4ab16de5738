"""The live map's event feed: every committed alert, unit and button change, numbered, for SSE.

:class:`LiveFeed` hears every committed change from the
:class:`~dispatch.service.DispatchService` (it is a :class:`~dispatch.ports.ChangeListener`) and
the :class:`~dispatch.supervision.DeviceSupervisor`, numbers it (``<epoch>.<n>``; the epoch
changes with every start of the service) and keeps the last ``capacity`` events. A client that
reconnects sends the last id it saw (``Last-Event-ID``, or ``?after=``) and gets everything after
it; when the feed cannot replay that (another epoch, or older than the buffer) it sends one
``reset`` event and the client loads a fresh snapshot, so no alert is ever missing after a
reconnect. The route is ``GET /map/events`` (:mod:`web.routes.live_map`).

An event may be meant for one audience only (a unit's handheld, :mod:`web.handheld`): it is
numbered in the same sequence, so replay works alike, but only that audience's stream sends it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import threading
from collections import deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

from dispatch.domain import Alert, Unit
from dispatch.service import DispatchService
from web.schemas import AlertOut, UnitOut

__all__ = ["LiveFeed", "alert_json", "unit_json"]

_RESET = "event: reset\ndata: {}\n\n"


@dataclass(frozen=True, slots=True)
class _Event:
    seq: int
    kind: str
    frame: str  # the whole SSE message
    audience: str | None = None  # None: the live map's streams


def alert_json(alert: Alert) -> dict[str, Any]:
    """An alert as the map and the API show it (without its orders)."""
    return AlertOut.of(alert).model_dump(mode="json", exclude={"orders"})


def unit_json(unit: Unit, view: dict[str, Any]) -> dict[str, Any]:
    """A unit with its freshness, as the map and the API show it."""
    return UnitOut.of(unit, view).model_dump(mode="json")


class LiveFeed:
    """Numbered alert and unit changes for the live map's event streams (thread-safe).

    The service calls :meth:`alert_changed` and :meth:`unit_changed` after each commit, from any
    thread; event streams (asyncio) read :meth:`since` and wait to be woken.
    """

    def __init__(self, service: DispatchService, *, capacity: int = 20_000) -> None:
        self.epoch = secrets.token_hex(4)
        self._service = service
        self._lock = threading.Lock()
        self._events: deque[_Event] = deque(maxlen=capacity)
        self._seq = 0
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self.generation = 0
        self.closed = False

    # ChangeListener -----------------------------------------------------------------------

    def alert_changed(self, alert: Alert) -> None:
        self._publish("alert", alert_json(alert))

    def unit_changed(self, unit: Unit) -> None:
        self._publish("unit", unit_json(unit, self._service.unit_view(unit)))

    def device_changed(self, device: dict[str, Any]) -> None:
        """A button went offline, came back or its offline event closed (:mod:`dispatch.supervision`)."""
        self._publish("device", device)

    def _publish(self, kind: str, data: dict[str, Any]) -> None:
        self.publish(kind, data)

    def publish(self, kind: str, data: dict[str, Any], *, audience: str | None = None) -> None:
        """File an event; with ``audience``, only streams of that audience send it."""
        body = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
        with self._lock:
            self._seq += 1
            seq = self._seq
            frame = f"id: {self.epoch}.{seq}\nevent: {kind}\ndata: {body}\n\n"
            self._events.append(_Event(seq, kind, frame, audience))
            waiters = list(self._waiters)
        self._wake(waiters)

    @staticmethod
    def _wake(waiters: Iterable[tuple[asyncio.AbstractEventLoop, asyncio.Event]]) -> None:
        for loop, event in waiters:
            with contextlib.suppress(RuntimeError):  # that loop has closed: its stream is gone
                loop.call_soon_threadsafe(event.set)

    # reading ------------------------------------------------------------------------------

    @property
    def last_seq(self) -> int:
        with self._lock:
            return self._seq

    def event_id(self, seq: int) -> str:
        return f"{self.epoch}.{seq}"

    def resume_point(self, last_event_id: str | None) -> int | None:
        """The number to resume after, or None when the client needs a fresh snapshot."""
        if not last_event_id:
            return None
        epoch, _, seq = last_event_id.strip().partition(".")
        if epoch != self.epoch or not seq.isdigit():
            return None
        n = int(seq)
        return n if n <= self.last_seq else None

    def since(self, seq: int, *, limit: int = 5000, audience: str | None = None) -> list[_Event] | None:
        """Events of ``audience`` after ``seq`` (oldest first, at most ``limit``); None when some were dropped."""
        with self._lock:
            if seq >= self._seq:
                return []
            if not self._events or self._events[0].seq > seq + 1:
                return None
            found = []
            for event in reversed(self._events):
                if event.seq <= seq:
                    break
                if event.audience == audience:
                    found.append(event)
        found.reverse()
        return found[:limit]

    # streams ------------------------------------------------------------------------------

    def subscribe(self, loop: asyncio.AbstractEventLoop, event: asyncio.Event) -> None:
        with self._lock:
            self._waiters.add((loop, event))

    def unsubscribe(self, loop: asyncio.AbstractEventLoop, event: asyncio.Event) -> None:
        with self._lock:
            self._waiters.discard((loop, event))

    @property
    def streams(self) -> int:
        """Event streams open now."""
        with self._lock:
            return len(self._waiters)

    def drop_streams(self) -> None:
        """End every open event stream (clients reconnect and resume); new ones are served."""
        with self._lock:
            self.generation += 1
            waiters = list(self._waiters)
        self._wake(waiters)

    def close(self) -> None:
        """End every open stream and refuse new ones (before the HTTP server stops)."""
        self.closed = True
        self.drop_streams()

    async def stream(
        self,
        start: int | None,
        *,
        heartbeat_s: float,
        retry_ms: int = 1000,
        audience: str | None = None,
        prelude: str = "",
    ) -> AsyncIterator[str]:
        """The SSE frames for one client, from after ``start`` (None: tell it to reset).

        ``audience`` picks whose events are sent (None: the live map's); ``prelude`` is sent first.
        """
        loop = asyncio.get_running_loop()
        wake = asyncio.Event()
        self.subscribe(loop, wake)
        generation = self.generation
        try:
            yield f"retry: {retry_ms}\n\n"
            if prelude:
                yield prelude
            if start is None:
                yield _RESET
                return
            cursor = start
            while not self.closed and self.generation == generation:
                wake.clear()
                top = self.last_seq
                batch = self.since(cursor, audience=audience)
                if batch is None:
                    yield _RESET
                    return
                if batch:
                    cursor = batch[-1].seq
                    yield "".join(e.frame for e in batch)
                    continue
                cursor = max(cursor, top)  # nothing of this audience up to there
                try:
                    await asyncio.wait_for(wake.wait(), timeout=heartbeat_s)
                except TimeoutError:
                    yield ": keep-alive\n\n"
        finally:
            self.unsubscribe(loop, wake)
