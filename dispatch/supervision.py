"""Supervision of SOS buttons, as an alarm-receiving centre does it: heartbeats, last wills, flapping.

The rules
---------
- **Signs of life**: a heartbeat (``{root}/sos/{id}/heartbeat``, ``{"ts", "seq"?}``), an
  ``{"state": "online", "ts"}`` status (``{root}/sos/{id}/status``), or an alert from the button
  (a press or a daily self-test, ``kind: "test"``) received less than the silence limit ago. A
  sign of life only updates the button's last-seen time in memory: no database write.
- **Silent**: a button not heard for ``misses`` heartbeat intervals (3 x 30 s by default; a button
  never heard since the service started counts from the start) goes **offline**, cause ``silent``.
- **Disconnected**: ``{"state": "offline"}`` on the status topic, which the broker publishes as the
  button's MQTT last will when its connection drops without a DISCONNECT, puts it offline at once,
  cause ``disconnected``.
- **One event per outage, flapping debounced**: going offline opens a device-offline event. When
  the button is heard again the event records ``back_at`` but stays open for the flap window
  (``QORGAU_FLAP_WINDOW_S``); a drop within that window is counted in the same event
  (``drops`` + 1) instead of opening another. Once the button has stayed online for the whole
  window the event closes. So a button that drops and returns any number of times, each return
  shorter than the window, raises exactly one event.
- Opening, return, repeated drop and closing are state changes: each is written to the
  ``device_events`` table and to the hash-chained audit trail in the same transaction, and told
  to the listeners (the live map). Open events are read back when the service starts. A button
  first heard since the start (``unknown`` -> ``online``) changes nothing that is stored or
  announced: the live map draws ``unknown`` and ``online`` buttons alike.

:class:`DeviceSupervisor` is a :class:`~dispatch.ports.ChangeListener` of the dispatch service
(it hears committed alerts: presses and tests are signs of life) and the MQTT bridge hands it
heartbeats and statuses (:meth:`DeviceSupervisor.heartbeat`, :meth:`DeviceSupervisor.report_status`).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal, Protocol, runtime_checkable

from pydantic import AwareDatetime, Field
from sqlalchemy import func, select

from dispatch.domain import SYSTEM, Alert, AlertSource, Device, Unit
from dispatch.intake import Message, Rejected, parse_message
from dispatch.models import AlertRow, DeviceEventRow
from dispatch.ports import ChangeKind, RejectReason
from dispatch.store import Store, StoreError
from dispatch.watcher import Watcher

__all__ = [
    "DeviceEvent",
    "DeviceHeartbeat",
    "DeviceListener",
    "DeviceState",
    "DeviceStatusMessage",
    "DeviceSupervisor",
    "OfflineCause",
    "SupervisionPolicy",
]

log = logging.getLogger(__name__)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class DeviceState(StrEnum):
    """What the dispatcher is told about a button."""

    ONLINE = "online"
    """Heard within the silence limit."""
    OFFLINE = "offline"
    """Silent for the silence limit, or disconnected (last will); an offline event is open."""
    UNKNOWN = "unknown"
    """Not heard since the service started, and the silence limit has not passed yet."""


class OfflineCause(StrEnum):
    """Why a button went offline."""

    SILENT = "silent"
    """No heartbeat, status or alert for ``misses`` heartbeat intervals."""
    DISCONNECTED = "disconnected"
    """Its MQTT connection dropped (the broker published its last will) or it said it goes offline."""


class DeviceHeartbeat(Message):
    """``{root}/sos/{device_id}/heartbeat``: the button is alive."""

    ts: AwareDatetime
    seq: Annotated[int, Field(ge=0)] | None = None


class DeviceStatusMessage(Message):
    """``{root}/sos/{device_id}/status``: ``online`` on connect, ``offline`` as the MQTT last will."""

    state: Literal["online", "offline"]
    ts: AwareDatetime | None = None


@dataclass(frozen=True, slots=True)
class SupervisionPolicy:
    """How buttons are supervised.

    Parameters
    ----------
    heartbeat_interval
        How often buttons send a heartbeat (``QORGAU_HEARTBEAT_INTERVAL_S``).
    misses
        Heartbeats missed in a row before a button is offline.
    flap_window
        A button must stay online this long after an outage for its event to close; a drop
        within it is counted in the same event (``QORGAU_FLAP_WINDOW_S``).
    self_test_max_age
        A button whose last self-test press is older is reported (``QORGAU_SELF_TEST_MAX_AGE_S``).
    """

    heartbeat_interval: timedelta = timedelta(seconds=30)
    misses: int = 3
    flap_window: timedelta = timedelta(seconds=120)
    self_test_max_age: timedelta = timedelta(hours=24)

    def __post_init__(self) -> None:
        if self.heartbeat_interval <= timedelta(0):
            msg = f"heartbeat_interval must be positive, got {self.heartbeat_interval}"
            raise ValueError(msg)
        if self.misses < 1:
            msg = f"misses must be at least 1, got {self.misses}"
            raise ValueError(msg)
        if self.flap_window < timedelta(0):
            msg = f"flap_window must not be negative, got {self.flap_window}"
            raise ValueError(msg)

    @property
    def silence_limit(self) -> timedelta:
        """A button not heard for this long is offline."""
        return self.heartbeat_interval * self.misses


@dataclass(frozen=True, slots=True)
class DeviceEvent:
    """One device-offline event (a row of ``device_events``)."""

    id: int
    device_id: str
    cause: str
    opened_at: datetime
    drops: int
    last_drop_at: datetime
    last_cause: str
    back_at: datetime | None = None
    closed_at: datetime | None = None

    @property
    def open(self) -> bool:
        return self.closed_at is None

    def to_json(self) -> dict[str, Any]:
        def iso(t: datetime | None) -> str | None:
            return None if t is None else t.isoformat()

        return {
            "id": self.id,
            "device_id": self.device_id,
            "cause": self.cause,
            "opened_at": iso(self.opened_at),
            "drops": self.drops,
            "last_drop_at": iso(self.last_drop_at),
            "last_cause": self.last_cause,
            "back_at": iso(self.back_at),
            "closed_at": iso(self.closed_at),
            "open": self.open,
        }


def _already_written(stored: DeviceEvent, event: DeviceEvent, action: str) -> bool:
    """Whether the stored event already says what ``action`` would write (read under its row lock)."""
    if stored.closed_at is not None:
        return True  # a closed outage is over: nothing more is written to it
    if action == "device_online":
        return stored.back_at is not None and stored.drops == event.drops
    if action == "device_offline_again":
        return stored.drops >= event.drops
    return False


def _to_event(row: DeviceEventRow) -> DeviceEvent:
    return DeviceEvent(
        id=row.id,
        device_id=row.device_id,
        cause=row.cause,
        opened_at=row.opened_at,
        drops=row.drops,
        last_drop_at=row.last_drop_at,
        last_cause=row.last_cause,
        back_at=row.back_at,
        closed_at=row.closed_at,
    )


def _event_state(event: DeviceEvent) -> DeviceState:
    """The state a button is in once ``event`` is written: offline until it is back or closed."""
    return DeviceState.OFFLINE if event.back_at is None and event.closed_at is None else DeviceState.ONLINE


@runtime_checkable
class DeviceListener(Protocol):
    """Hears every supervision change of a button (the live map's event feed).

    Called after the change is committed; must only record it and return at once.
    """

    def device_changed(self, device: dict[str, Any]) -> None:
        """``device`` is the button as ``GET /api/devices`` shows it."""
        ...


@dataclass
class _Tracked:
    """What the supervisor knows about one button (in memory)."""

    state: DeviceState = DeviceState.UNKNOWN
    last_seen: datetime | None = None
    seen_via: str | None = None
    seq: int | None = None
    event: DeviceEvent | None = None  # the open event, offline or recovering
    history: list[str] = field(default_factory=list)


class DeviceSupervisor:
    """Last-seen per button, offline events with flap debouncing, persisted and audited.

    Parameters
    ----------
    store
        Where events and audit entries are written (the dispatch store).
    devices
        The SOS device registry, by id.
    policy
        Heartbeat interval, misses, flap window, self-test age.
    clock
        The current UTC time (tests may pin it).
    max_payload_bytes, max_clock_skew
        As for alerts: larger payloads and a ``ts`` further in the future are rejected.

    Examples
    --------
    >>> supervisor = DeviceSupervisor(store, devices, policy=SupervisionPolicy()).open()  # doctest: +SKIP
    >>> service.add_listener(supervisor)  # presses and self-tests are signs of life  # doctest: +SKIP
    >>> supervisor.start_watcher()  # doctest: +SKIP
    >>> supervisor.heartbeat("btn-1", b'{"ts": "2026-11-29T10:00:00Z", "seq": 17}')  # doctest: +SKIP
    """

    def __init__(
        self,
        store: Store,
        devices: Mapping[str, Device],
        *,
        policy: SupervisionPolicy | None = None,
        clock: Callable[[], datetime] = _utc_now,
        max_payload_bytes: int = 16 * 1024,
        max_clock_skew: timedelta = timedelta(minutes=5),
    ) -> None:
        self.store = store
        self.devices: dict[str, Device] = dict(devices)
        self.policy = policy or SupervisionPolicy()
        self.clock = clock
        self.max_payload_bytes = max_payload_bytes
        self.max_clock_skew = max_clock_skew
        self.started_at = clock()
        self._lock = threading.RLock()
        self._tracked: dict[str, _Tracked] = {d: _Tracked() for d in self.devices}
        self._heard: queue.SimpleQueue[tuple[str, datetime, str]] = queue.SimpleQueue()
        self._listeners: list[DeviceListener] = []
        self._watcher: Watcher | None = None
        self._heartbeats = 0
        self._rejected: Counter[str] = Counter()
        self._opened = 0
        self._redrops = 0
        self._closed = 0
        self._store_errors = 0
        self.leading: Callable[[], bool] = lambda: True
        """Whether this replica writes device events (set by :meth:`start_watcher`; always on SQLite)."""
        self._led = True  # open() read the store: a leader from the start needs no resync

    # set-up -------------------------------------------------------------------------------

    def open(self) -> DeviceSupervisor:
        """Read the open events back from the store (they survive a restart) and start the clock."""
        events = self._read_open_events()
        self.started_at = self.clock()
        with self._lock:
            for event in events:
                tracked = self._tracked.get(event.device_id)
                if tracked is None:
                    log.warning(
                        "open offline event %d of device %r, which is no longer registered", event.id, event.device_id
                    )
                    continue
                tracked.event = event
                tracked.state = DeviceState.OFFLINE if event.back_at is None else DeviceState.UNKNOWN
        log.info(
            "device supervision open: %d buttons, %d open offline events, silence limit %.0f s, flap window %.0f s",
            len(self.devices),
            len(events),
            self.policy.silence_limit.total_seconds(),
            self.policy.flap_window.total_seconds(),
        )
        return self

    def _read_open_events(self) -> list[DeviceEvent]:
        stmt = select(DeviceEventRow).where(DeviceEventRow.closed_at.is_(None)).order_by(DeviceEventRow.id)
        with self.store.session("read open device events") as session:
            return [_to_event(r) for r in session.scalars(stmt)]

    def resync(self) -> int:
        """Take the open events from the store as the truth (a follower, or a leader that just took over).

        With replicas only the leader writes device events; every replica hears every sign of
        life (last-seen stays its own) and reads the leader's events back with this. Returns how
        many buttons changed state here.
        """
        by_device = {e.device_id: e for e in self._read_open_events()}
        changed = 0
        with self._lock:
            for device_id, tracked in self._tracked.items():
                event = by_device.get(device_id)
                if event is None:
                    state = tracked.state
                    if state is DeviceState.OFFLINE:
                        state = DeviceState.ONLINE if tracked.last_seen is not None else DeviceState.UNKNOWN
                else:
                    state = DeviceState.OFFLINE if event.back_at is None else DeviceState.ONLINE
                if state is not tracked.state:
                    changed += 1
                tracked.event, tracked.state = event, state
        return changed

    def add_listener(self, listener: DeviceListener) -> None:
        """Tell ``listener`` about every button change from now on."""
        self._listeners.append(listener)

    def start_watcher(self, *, interval_s: float | None = None, when: Callable[[], bool] | None = None) -> None:
        """Check for silent buttons and ending flap windows from a background thread until :meth:`close`.

        ``when`` says whether this replica leads (with replicas: only the leader checks and writes
        device events; a follower only records signs of life and resyncs from the store (:meth:`resync`)
        on each tick, and a replica that becomes the leader resyncs before its first check).
        """
        if self._watcher is not None:
            return
        if when is not None:
            self.leading = when
        tick = interval_s or max(0.02, min(1.0, self.policy.heartbeat_interval.total_seconds() / 4))
        self.started_at = self.clock()  # buttons never heard are silent from when we listen
        self._watcher = Watcher(
            self.tick,
            interval_s=tick,
            name="qorgau-supervision",
            what="device supervision check",
            retry_on=(StoreError,),
        )
        self._watcher.start()

    def tick(self) -> None:
        """:meth:`check` (the leader) or :meth:`resync` (a follower) from the watcher; a store outage is counted."""
        try:
            leading = self.leading()
            if leading and not self._led:
                self.resync()  # what the previous leader wrote is the truth to go on from
            self._led = leading
            if leading:
                self.check()
            else:
                self.resync()
        except StoreError:
            self._led = False  # resync again before the next check
            self._count_store_error()
            raise

    def close(self) -> None:
        """Stop the watcher."""
        if self._watcher is not None:
            self._watcher.close()
            self._watcher = None

    # input from the bridge ----------------------------------------------------------------

    def heartbeat(self, device_id: str, payload: bytes) -> RejectReason | None:
        """A heartbeat from ``{root}/sos/{device_id}/heartbeat``; None when taken.

        Raises
        ------
        StoreError
            The button came back online and that could not be written; nothing changed.
        """
        now = self.clock()
        try:
            message = parse_message(
                DeviceHeartbeat, payload, now=now, max_bytes=self.max_payload_bytes, max_clock_skew=self.max_clock_skew
            )
            self._known(device_id)
        except Rejected as rejection:
            return self._reject(rejection, device_id, "heartbeat")
        with self._lock:
            self._heartbeats += 1
            tracked = self._tracked[device_id]
            if message.seq is not None and tracked.seq is not None and message.seq < tracked.seq:
                log.info(
                    "heartbeat of device %r counts back from %d to %d: it restarted",
                    device_id,
                    tracked.seq,
                    message.seq,
                )
            tracked.seq = message.seq
        # Received late (a loaded bridge, a redelivery), a heartbeat sent before the button went
        # offline must not bring it back (the silence still counts from its receipt).
        self.seen(device_id, now, via="heartbeat", sent_at=message.ts)
        return None

    def report_status(self, device_id: str, payload: bytes) -> RejectReason | None:
        """A status from ``{root}/sos/{device_id}/status``; None when taken.

        ``offline`` (the last will) puts the button offline at once. ``online`` is a sign of life
        at its ``ts`` (a retained ``online`` older than the silence limit proves nothing and is
        ignored); without a ``ts`` it counts as received now.

        Raises
        ------
        StoreError
            The change could not be written; nothing changed (the bridge retries).
        """
        now = self.clock()
        try:
            message = parse_message(
                DeviceStatusMessage,
                payload,
                now=now,
                max_bytes=self.max_payload_bytes,
                max_clock_skew=self.max_clock_skew,
            )
            self._known(device_id)
        except Rejected as rejection:
            return self._reject(rejection, device_id, "status")
        if message.state == "offline":
            self._drop(device_id, OfflineCause.DISCONNECTED, now)
            return None
        at = now if message.ts is None else min(now, message.ts)
        if now - at > self.policy.silence_limit:
            log.info(
                "ignoring an 'online' status of device %r from %s: older than the silence limit",
                device_id,
                at.isoformat(),
            )
            return None
        self.seen(device_id, now, via="status", sent_at=message.ts)
        return None

    def _known(self, device_id: str) -> None:
        if device_id not in self.devices:
            msg = f"device {device_id!r} is not in the device registry"
            raise Rejected(RejectReason.UNKNOWN_DEVICE, msg)

    def _reject(self, rejection: Rejected, device_id: str, what: str) -> RejectReason:
        with self._lock:
            self._rejected[rejection.reason.value] += 1
        log.warning("rejected %s of device %r: %s: %s", what, device_id, rejection.reason.value, rejection.detail)
        return rejection.reason

    # ChangeListener: presses and self-tests are signs of life -----------------------------

    def alert_changed(self, alert: Alert) -> None:
        """An SOS alert received within the silence limit proves its button alive (applied by the watcher)."""
        if alert.source is not AlertSource.SOS or alert.sender not in self.devices:
            return
        if self.clock() - alert.received_at <= self.policy.silence_limit:
            self._heard.put((alert.sender, alert.received_at, f"alert:{alert.kind or 'press'}"))

    def unit_changed(self, unit: Unit) -> None:
        """Units are not supervised here."""

    # the rules ----------------------------------------------------------------------------

    def seen(self, device_id: str, at: datetime, *, via: str, sent_at: datetime | None = None) -> None:
        """Record a sign of life; an offline button comes back online (written and audited).

        ``sent_at`` is when the message says it was sent: one sent before the button's drop was
        received, is no return (it was queued behind the drop).

        Raises
        ------
        StoreError
            The return could not be written; the button stays offline.
        """
        changed = None
        with self._lock:
            tracked = self._tracked.get(device_id)
            if tracked is None:
                return
            if tracked.last_seen is None or at > tracked.last_seen:
                tracked.last_seen, tracked.seen_via = at, via
            if tracked.state is DeviceState.ONLINE:
                return
            dropped = tracked.event.last_drop_at if tracked.event is not None else None
            if (
                tracked.state is DeviceState.OFFLINE
                and dropped is not None
                and sent_at is not None
                and sent_at <= dropped
            ):
                log.info(
                    "device %r: a %s sent %s predates its drop: still offline", device_id, via, sent_at.isoformat()
                )
                return
            if not self.leading():  # a follower records the sign of life; the leader writes a return
                if tracked.state is DeviceState.UNKNOWN:
                    tracked.state = DeviceState.ONLINE
                return
            if tracked.event is not None and tracked.event.back_at is None:
                event = replace(tracked.event, back_at=at)
                self._write(event, "device_online", {"via": via})
                tracked.event = event
                log.info("device %r is back online (%s) after event %d", device_id, via, event.id)
                changed = tracked  # back from an outage: the dispatcher is told
            tracked.state = DeviceState.ONLINE
            # First heard since the start (unknown -> online) is no news for the map: not announced.
            view = None if changed is None else self._view(device_id, tracked)
        self._announce([view])

    def _drop(self, device_id: str, cause: OfflineCause, now: datetime) -> dict[str, Any] | None:
        """Put a button offline: reuse its open event (flapping) or open a new one; announce it."""
        with self._lock:
            tracked = self._tracked[device_id]
            if tracked.state is DeviceState.OFFLINE or not self.leading():
                return None  # a follower leaves the drop to the leader, which heard the same message
            event = tracked.event
            if event is not None and event.back_at is not None and now - event.back_at > self.policy.flap_window:
                self._close(tracked, now)  # it was back long enough: that outage is over
                event = None
            if event is None:
                event = self._write_new(device_id, cause, now)
                self._opened += 1
                log.warning("device %r is offline (%s): event %d opened", device_id, cause.value, event.id)
            else:
                event = replace(event, drops=event.drops + 1, last_drop_at=now, last_cause=cause.value, back_at=None)
                self._write(event, "device_offline_again", {"cause": cause.value})
                self._redrops += 1
                log.warning(
                    "device %r is offline again (%s) within the flap window: event %d, drop %d",
                    device_id,
                    cause.value,
                    event.id,
                    event.drops,
                )
            tracked.event = event
            tracked.state = DeviceState.OFFLINE
            view = self._view(device_id, tracked)
        self._announce([view])
        return view

    def _close(self, tracked: _Tracked, now: datetime) -> None:
        assert tracked.event is not None
        event = replace(tracked.event, closed_at=now)
        self._write(event, "device_event_closed", {})
        tracked.event = None
        self._closed += 1
        log.info(
            "offline event %d of device %r closed: online since %s",
            event.id,
            event.device_id,
            event.back_at.isoformat() if event.back_at else "?",
        )

    def check(self, now: datetime | None = None) -> list[str]:
        """Apply signs of life from alerts, close events whose flap window passed, put silent buttons offline.

        Returns the ids of the buttons that changed.
        """
        now = now or self.clock()
        while True:
            try:
                device_id, at, via = self._heard.get_nowait()
            except queue.Empty:
                break
            try:
                self.seen(device_id, at, via=via)
            except StoreError:
                self._heard.put((device_id, at, via))  # not lost: the next check tries again
                raise
        changed: list[str] = []
        limit = self.policy.silence_limit
        for device_id in list(self._tracked):
            with self._lock:
                tracked = self._tracked[device_id]
                event = tracked.event
                if (
                    event is not None
                    and event.back_at is not None
                    and tracked.state is DeviceState.ONLINE
                    and now - event.back_at >= self.policy.flap_window
                ):
                    self._close(tracked, now)
                    closed_view = self._view(device_id, tracked)
                else:
                    closed_view = None
                reference = tracked.last_seen or self.started_at
                silent = tracked.state is not DeviceState.OFFLINE and now - max(reference, self.started_at) > limit
            if closed_view is not None:
                changed.append(device_id)
                self._announce([closed_view])
            if silent and self._drop(device_id, OfflineCause.SILENT, now) is not None:
                changed.append(device_id)
        return changed

    # persistence --------------------------------------------------------------------------

    def _write_new(self, device_id: str, cause: OfflineCause, now: datetime) -> DeviceEvent:
        with self.store.transaction(f"open an offline event of device {device_id!r}") as tx:
            # Under the lock that orders commits: two replicas that both act as the leader for a
            # moment (one has not yet noticed its lock is gone) open one event, not two.
            tx.serialise()
            stmt = select(DeviceEventRow).where(
                DeviceEventRow.device_id == device_id, DeviceEventRow.closed_at.is_(None)
            )
            already = tx.session.scalars(stmt.order_by(DeviceEventRow.id.desc()).limit(1)).first()
            if already is not None:
                log.info(
                    "device %r already has open offline event %d (another replica wrote it)", device_id, already.id
                )
                return _to_event(already)
            row = DeviceEventRow(
                device_id=device_id,
                cause=cause.value,
                opened_at=now,
                drops=1,
                last_drop_at=now,
                last_cause=cause.value,
                back_at=None,
                closed_at=None,
            )
            tx.session.add(row)
            tx.session.flush()
            event = _to_event(row)
            tx.note_change(ChangeKind.DEVICE, device_id, self._change_view(event))
            tx.audit(
                "device_offline", actor=SYSTEM, after={"device_id": device_id, **event.to_json()}, only_changes=False
            )
        return event

    def _write(self, event: DeviceEvent, action: str, extra: dict[str, Any]) -> None:
        with self.store.transaction(f"{action} of device {event.device_id!r}") as tx:
            row = tx.session.get(DeviceEventRow, event.id, with_for_update=True)
            if row is None:
                msg = f"device event {event.id} is missing from the store"
                raise StoreError(msg)
            stored = _to_event(row)
            if _already_written(stored, event, action):  # by another replica that led a moment ago
                log.info("device event %d: %s was already written (another replica)", event.id, action)
                return
            before = stored.to_json()
            for name in ("drops", "last_drop_at", "last_cause", "back_at", "closed_at"):
                setattr(row, name, getattr(event, name))
            after = {**event.to_json(), **extra}
            tx.note_change(ChangeKind.DEVICE, event.device_id, self._change_view(event))
            tx.audit(
                action,
                actor=SYSTEM,
                before={"device_id": event.device_id, **before},
                after={"device_id": event.device_id, **after},
                only_changes=False,
            )

    def _change_view(self, event: DeviceEvent) -> dict[str, Any]:
        """The button on the change stream once ``event`` is written: as the live map shows it
        (:meth:`_view`'s fields), so any replica's map can show it, and replay it from the table."""
        tracked = self._tracked.get(event.device_id) or _Tracked()
        shown = None if event.closed_at is not None else event  # a closed event is over, as devices_view shows it
        return self._view(event.device_id, replace(tracked, state=_event_state(event), event=shown))

    def _count_store_error(self) -> None:
        with self._lock:
            self._store_errors += 1

    def _announce(self, views: Iterable[dict[str, Any] | None]) -> None:
        for view in views:
            if view is None:
                continue
            for listener in self._listeners:
                try:
                    listener.device_changed(view)
                except Exception:
                    log.exception("device listener %r failed", listener)

    # reading ------------------------------------------------------------------------------

    def state(self, device_id: str) -> DeviceState:
        with self._lock:
            return self._tracked[device_id].state

    def _view(
        self, device_id: str, tracked: _Tracked, *, last_test: datetime | None = None, with_test: bool = False
    ) -> dict[str, Any]:
        device = self.devices[device_id]
        view: dict[str, Any] = {
            "id": device_id,
            "site": device.site.value,
            "lat": device.lat,
            "lon": device.lon,
            "state": tracked.state.value,
            "last_seen": None if tracked.last_seen is None else tracked.last_seen.isoformat(),
            "last_seen_via": tracked.seen_via,
            "heartbeat_seq": tracked.seq,
            "event": None if tracked.event is None else tracked.event.to_json(),
        }
        if with_test:
            view["last_self_test_at"] = None if last_test is None else last_test.isoformat()
            view["self_test_overdue"] = last_test is None or self.clock() - last_test > self.policy.self_test_max_age
        return view

    def devices_view(self) -> list[dict[str, Any]]:
        """Every registered button: site, position, state, last seen, open event, last self-test."""
        tests = self.last_self_tests()
        with self._lock:
            return [
                self._view(d, self._tracked[d], last_test=tests.get(d), with_test=True) for d in sorted(self._tracked)
            ]

    def last_self_tests(self) -> dict[str, datetime]:
        """The newest self-test press (``kind: "test"``) per button, from the store."""
        stmt = (
            select(AlertRow.sender, func.max(AlertRow.received_at))
            .where(AlertRow.source == AlertSource.SOS.value, AlertRow.kind == "test")
            .group_by(AlertRow.sender)
        )
        with self.store.session("read the last self-tests") as session:
            rows = session.execute(stmt).all()
        return {sender: ts for sender, ts in rows if ts is not None}

    def overdue_self_tests(self) -> list[dict[str, Any]]:
        """Buttons whose last self-test is older than ``self_test_max_age`` (or that never tested)."""
        return [
            {"id": v["id"], "site": v["site"], "last_self_test_at": v["last_self_test_at"]}
            for v in self.devices_view()
            if v["self_test_overdue"]
        ]

    def events(
        self, *, device_id: str | None = None, open_only: bool = False, limit: int = 100, offset: int = 0
    ) -> list[DeviceEvent]:
        """Offline events, newest first."""
        stmt = select(DeviceEventRow).order_by(DeviceEventRow.id.desc())
        if device_id is not None:
            stmt = stmt.where(DeviceEventRow.device_id == device_id)
        if open_only:
            stmt = stmt.where(DeviceEventRow.closed_at.is_(None))
        with self.store.session("read device events") as session:
            return [_to_event(r) for r in session.scalars(stmt.limit(limit).offset(offset))]

    def metrics(self) -> dict[str, Any]:
        """Counters since start: heartbeats, rejections by reason, events opened, repeated drops, closed."""
        with self._lock:
            states = Counter(t.state.value for t in self._tracked.values())
            return {
                "heartbeats": self._heartbeats,
                "rejected": dict(self._rejected),
                "events_opened": self._opened,
                "drops_within_flap_window": self._redrops,
                "events_closed": self._closed,
                "store_errors": self._store_errors,
                "devices": {s.value: states.get(s.value, 0) for s in DeviceState},
            }
