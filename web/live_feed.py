"""The live map's event feed: every committed alert, unit and button change, numbered by the global change sequence.

:class:`LiveFeed` hears the global change stream of the replicas (it is a
:class:`~dispatch.ports.ChangeListener` with ``change_committed``: every change committed by this
replica or another, in ``seq`` order) and keeps the last ``capacity`` events. **An event's SSE id
is its change's ``seq``** (``changes.seq``, written in the same transaction as the change, in
commit order across replicas), so an id means the same on every replica. A client that
reconnects, to this replica or another, sends the last id it saw (``Last-Event-ID``, or
``?after=``) and is sent every change after it (:meth:`LiveFeed.resume`):

- from memory when this process has heard every change after it and still holds them;
- otherwise (the process started after it, or the buffer moved on) from the database
  (:meth:`~dispatch.service.DispatchService.changes_since`, each object in its current state, once
  per object), then live from memory, with nothing between the two lost;
- an id this replica has not heard yet but the database has committed (another replica is ahead
  by a few milliseconds) is resumed from: nothing at or before it is sent again.

It sends one ``reset`` event, and the client loads a fresh snapshot, only when it truly cannot
replay: an id that is not a number (``<epoch>.<n>`` from before) or beyond the newest committed
change, older than what the ``changes`` table keeps, or more than ``max_replay`` changes behind (a
snapshot is then cheaper). The route is ``GET /map/events`` (:mod:`web.routes.live_map`).

Buttons' supervision changes (offline, back, event closed) are changes too: they are committed with
a ``device`` row carrying the button as the map shows it, so they are numbered and replayed alike.

Events that are not changes themselves but follow from one, meant for one audience only (a unit's
handheld ``order`` and ``withdrawn``, :mod:`web.handheld`), carry the ``seq`` of the change they
follow from. Every replica derives them from the same stream in the same order, and one change
gives at most one such event per audience, so their ids are the map's: replayed from memory on any
replica that holds them; where memory cannot, the unit's stream is reset with its current order
(they are not kept in the database). Only the stream of that audience sends them.

Such events are derived only for an audience this replica is *listened* for: one of its streams is
open, or was asked for (:meth:`LiveFeed.now`, :meth:`LiveFeed.resume`) or ended less than
``listen_grace_s`` ago. Deriving a unit's order costs database reads and a route; every replica
hears every change, and most units have no handheld open on a given replica. A reconnect is
replayed from memory only from the point its audience has been listened for without a break
(otherwise it is reset with the current order, as the handheld also reloads it on every connect).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

from dispatch.domain import Alert, Unit
from dispatch.ports import Change, ChangeListener
from dispatch.service import DispatchService
from web.schemas import AlertOut, UnitOut

__all__ = ["LiveFeed", "Resume", "alert_json", "parse_event_id", "unit_json"]

_RESET = "event: reset\ndata: {}\n\n"
_MAX_ID_DIGITS = 18  # a BIGINT


@dataclass(frozen=True, slots=True)
class _Event:
    pos: int  # this process's filing order
    seq: int  # the change's seq: the SSE id
    frame: str  # the whole SSE message
    audience: str | None = None  # None: the live map's streams
    notice: bool = False  # not a change: sent to every stream open when it is filed, never replayed


@dataclass(frozen=True, slots=True)
class Resume:
    """Where one event stream starts.

    Parameters
    ----------
    after
        The stream sends only events of changes after this ``seq``.
    pos
        ... filed in this process after this position.
    replay
        SSE frames read from the database (changes up to where ``pos`` was), sent first.
    source
        ``memory``, ``database`` or ``fresh`` (a new stream from now): for logs and tests.
    """

    after: int
    pos: int
    replay: str = ""
    source: str = "memory"


def alert_json(alert: Alert) -> dict[str, Any]:
    """An alert as the map and the API show it (without its orders)."""
    return AlertOut.of(alert).model_dump(mode="json", exclude={"orders"})


def unit_json(unit: Unit, view: dict[str, Any]) -> dict[str, Any]:
    """A unit with its freshness, as the map and the API show it."""
    return UnitOut.of(unit, view).model_dump(mode="json")


def _plan_notice(plan: dict[str, Any]) -> dict[str, Any]:
    """The live map's ``plan`` event: which plan was issued when (the page reloads ``/map/plan``)."""
    return {"plan_id": plan.get("plan_id"), "issued_at": plan.get("issued_at")}


def parse_event_id(value: str | None) -> int | None:
    """The ``seq`` an SSE id names, or None for none or garbage."""
    if value is None:
        return None
    text = value.strip()
    if not text or not text.isascii() or not text.isdigit() or len(text) > _MAX_ID_DIGITS:
        return None
    return int(text)


def _frame(seq: int, kind: str, data: dict[str, Any]) -> str:
    body = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return f"id: {seq}\nevent: {kind}\ndata: {body}\n\n"


class LiveFeed:
    """The change stream's events for the live map's and the handhelds' event streams (thread-safe).

    The change stream calls :meth:`change_committed` in ``seq`` order, from the committing thread or
    the stream's poller; event streams (asyncio) read what was filed after their position and wait
    to be woken. :meth:`attach` registers the feed (and the listeners that file into it) with the
    service.

    Parameters
    ----------
    service
        The dispatch service whose change stream the feed hears.
    capacity
        Events kept in memory for replay.
    max_replay
        The most changes a reconnect is replayed from the database; beyond, it is reset (default
        ``capacity``).
    listen_grace_s
        How long an audience stays listened for after its last stream ended or was asked for.
    """

    def __init__(
        self,
        service: DispatchService,
        *,
        capacity: int = 20_000,
        max_replay: int | None = None,
        listen_grace_s: float = 300.0,
    ) -> None:
        if capacity < 1:
            msg = f"capacity must be positive, got {capacity!r}"
            raise ValueError(msg)
        self._service = service
        self.capacity = capacity
        self.max_replay = capacity if max_replay is None else max_replay
        self.listen_grace_s = listen_grace_s
        self._lock = threading.Lock()
        # per audience: the seq from which its events were derived without a break, its open
        # streams, and when it was last asked for or its last stream ended (time.monotonic())
        self._listened_from: dict[str, int] = {}
        self._open: dict[str, int] = {}
        self._last_wanted: dict[str, float] = {}
        self._events: deque[_Event] = deque()
        self._pos = 0
        self._top = 0  # the newest seq filed (or the point the feed hears from)
        self._horizon = 0  # memory replays every change after any seq >= this
        self._devices: dict[str, dict[str, Any]] = {}  # each button's newest change
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self.generation = 0
        self.closed = False
        self.replays = {"memory": 0, "database": 0, "reset": 0}
        """How reconnects were served since the start."""

    def attach(self, *followers: ChangeListener) -> LiveFeed:
        """Hear the service's change stream from now on, with ``followers`` (listeners that file into
        this feed, e.g. the handhelds'), registered at the same point of the stream."""
        floor = self._service.add_listener(self, *followers)
        with self._lock:
            self._horizon = max(self._horizon, floor)
            self._top = max(self._top, floor)
        return self

    # ChangeListener -----------------------------------------------------------------------

    def alert_changed(self, alert: Alert) -> None:
        """Not called: the feed hears :meth:`change_committed` (the protocol's other half)."""

    def unit_changed(self, unit: Unit) -> None:
        """Not called: the feed hears :meth:`change_committed`."""

    def change_committed(self, change: Change) -> None:
        items: list[tuple[str, dict[str, Any]]] = [("alert", alert_json(a)) for a in change.alerts]
        items += [("unit", unit_json(u, self._service.unit_view(u))) for u in change.units]
        items += [("device", dict(d)) for d in change.devices]
        items += [("plan", _plan_notice(p)) for p in change.plans]
        self._file(change.seq, items, None)

    def publish(self, kind: str, data: dict[str, Any], *, seq: int | None = None, audience: str | None = None) -> None:
        """File an event that follows from change ``seq``; with ``audience``, only streams of that audience send it.

        Without ``seq`` it is a local notice (e.g. a plan issued through this replica): its id is the
        newest change heard, so it never moves a client's ``Last-Event-ID`` past a change it was not
        sent; open streams send it, replay does not (the page reloads what it points to).
        """
        if seq is None:
            with self._lock:
                top = self._top
            self._file(top, [(kind, data)], audience, notice=True)
        else:
            self._file(seq, [(kind, data)], audience)

    def _file(
        self, seq: int, items: list[tuple[str, dict[str, Any]]], audience: str | None, *, notice: bool = False
    ) -> None:
        frames = [(kind, data, _frame(seq, kind, data)) for kind, data in items]
        with self._lock:
            seq = max(seq, self._top) if notice else seq
            if seq < self._top:  # heard after a later one (never, in seq order): memory no longer replays across it
                self._horizon = max(self._horizon, self._top)
            for kind, data, frame in frames:
                self._pos += 1
                self._events.append(_Event(self._pos, seq, frame, audience, notice))
                if kind == "device" and audience is None and "id" in data:
                    self._devices[str(data["id"])] = data
            self._top = max(self._top, seq)
            while len(self._events) > self.capacity:
                self._horizon = max(self._horizon, self._events.popleft().seq)
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
        """The newest change filed: a snapshot read after this holds everything up to it."""
        with self._lock:
            return self._top

    @property
    def horizon(self) -> int:
        """Memory replays every change after any ``seq`` at or above this."""
        with self._lock:
            return self._horizon

    def device(self, device_id: str) -> dict[str, Any] | None:
        """The button as its newest supervision change (from any replica) shows it, if one was heard."""
        with self._lock:
            return self._devices.get(device_id)

    def now(self, *, audience: str | None = None) -> Resume:
        """A stream from now on (after a fresh snapshot); ``audience`` is listened for from here."""
        with self._lock:
            if audience is not None:
                self._want(audience)
            return Resume(self._top, self._pos, source="fresh")

    def listened(self, audience: str) -> bool:
        """Whether events for ``audience`` are wanted here (see the module's docstring)."""
        with self._lock:
            return self._listened(audience)

    def _listened(self, audience: str) -> bool:
        """:meth:`listened`, the lock held; forgets an audience whose grace has passed."""
        if audience not in self._listened_from:
            return False
        if self._open.get(audience, 0) > 0:
            return True
        if time.monotonic() - self._last_wanted.get(audience, 0.0) < self.listen_grace_s:
            return True
        del self._listened_from[audience]
        return False

    def _want(self, audience: str) -> int:
        """Listen for ``audience`` (lock held); the seq from which its events are complete."""
        if not self._listened(audience):
            self._listened_from[audience] = self._top
        self._last_wanted[audience] = time.monotonic()
        return self._listened_from[audience]

    def resume(self, last_event_id: str | None, *, audience: str | None = None) -> Resume | None:
        """Where a stream that saw ``last_event_id`` resumes, or None when it needs a fresh snapshot.

        Memory first; the live map's audience (None) from the database when memory cannot; a unit's
        audience is reset then (its events are not in the database).

        Raises
        ------
        StoreError
            The database could not be reached when it was needed.
        """
        seq = parse_event_id(last_event_id)
        with self._lock:
            top, horizon, pos = self._top, self._horizon, self._pos
            if audience is not None:  # its events after ``seq`` are here only if listened for since then
                horizon = max(horizon, self._want(audience))
            memory = None if seq is None or not horizon <= seq <= top else Resume(seq, self._position_after(seq))
        if seq is None:
            return self._count(None)
        if memory is not None:
            return self._count(memory)
        if seq > top:  # another replica may have committed it already: this one hears it within ms
            _, newest, _ = self._service.change_bounds(seq, seq)
            return self._count(Resume(seq, pos) if seq <= newest else None)
        if audience is not None:
            return self._count(None)
        oldest, _, count = self._service.change_bounds(seq, top)
        if oldest is None or seq + 1 < oldest or count > self.max_replay:
            return self._count(None)
        changes = self._service.changes_since(seq, count + 1, until=top) if count else []
        return self._count(Resume(seq, pos, self._replay(changes), source="database"))

    def _count(self, resume: Resume | None) -> Resume | None:
        with self._lock:
            self.replays["reset" if resume is None else resume.source] += 1
        return resume

    def _position_after(self, seq: int) -> int:
        """The position after which every buffered event of a change after ``seq`` lies (lock held)."""
        pos = self._pos
        for event in reversed(self._events):
            if event.seq <= seq:
                break
            pos = event.pos - 1
        return pos

    def _replay(self, changes: list[Change]) -> str:
        """SSE frames for changes read from the database: each object once, at its newest change."""
        newest: dict[tuple[str, str], tuple[int, str, dict[str, Any]]] = {}
        for change in changes:
            for alert in change.alerts:
                newest.pop(("alert", str(alert.id)), None)
                newest[("alert", str(alert.id))] = (change.seq, "alert", alert_json(alert))
            for unit in change.units:
                newest.pop(("unit", unit.id), None)
                newest[("unit", unit.id)] = (change.seq, "unit", unit_json(unit, self._service.unit_view(unit)))
            for device in change.devices:
                key = ("device", str(device.get("id")))
                newest.pop(key, None)
                newest[key] = (change.seq, "device", dict(device))
            for plan in change.plans:  # the newest issue is what the map reloads
                newest.pop(("plan", ""), None)
                newest[("plan", "")] = (change.seq, "plan", _plan_notice(plan))
        return "".join(_frame(seq, kind, data) for seq, kind, data in newest.values())

    def _after(self, pos: int, after: int, audience: str | None, limit: int = 5000) -> tuple[list[_Event], int] | None:
        """Events of ``audience`` filed after ``pos`` of changes after ``after``, and the new position;
        None when the buffer dropped some of them (the client reconnects and resumes)."""
        with self._lock:
            if not self._events or pos >= self._pos:
                return [], max(pos, self._pos)
            first = self._events[0].pos
            if pos < first - 1:
                return None
            found: list[_Event] = []
            new_pos = pos
            for event in itertools.islice(self._events, pos - first + 1, None):
                new_pos = event.pos
                if (event.notice or event.seq > after) and event.audience == audience:
                    found.append(event)
                    if len(found) >= limit:
                        break
            return found, new_pos

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
        start: Resume | None,
        *,
        heartbeat_s: float,
        retry_ms: int = 1000,
        audience: str | None = None,
        prelude: str = "",
    ) -> AsyncIterator[str]:
        """The SSE frames for one client from ``start`` (None: tell it to reset).

        ``audience`` picks whose events are sent (None: the live map's); ``prelude`` is sent first.
        When the buffer drops events this client has not been sent yet (a very slow client), the
        stream ends: the browser reconnects with its last id and is replayed from the database.
        """
        loop = asyncio.get_running_loop()
        wake = asyncio.Event()
        self.subscribe(loop, wake)
        generation = self.generation
        if audience is not None:
            with self._lock:
                self._want(audience)
                self._open[audience] = self._open.get(audience, 0) + 1
        try:
            yield f"retry: {retry_ms}\n\n"
            if prelude:
                yield prelude
            if start is None:
                yield _RESET
                return
            if start.replay:
                yield start.replay
            pos = start.pos
            while not self.closed and self.generation == generation:
                wake.clear()
                found = self._after(pos, start.after, audience)
                if found is None:
                    return
                batch, pos = found
                if batch:
                    yield "".join(e.frame for e in batch)
                    continue
                try:
                    await asyncio.wait_for(wake.wait(), timeout=heartbeat_s)
                except TimeoutError:
                    yield ": keep-alive\n\n"
        finally:
            self.unsubscribe(loop, wake)
            if audience is not None:
                with self._lock:
                    self._open[audience] -= 1
                    self._last_wanted[audience] = time.monotonic()
