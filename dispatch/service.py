"""The dispatch service: ingest alerts, rank units by ETA, commit, answer.

Adapters (the MQTT bridge, later an HTTP intake) hand raw payloads to :class:`DispatchService`;
it validates them (:mod:`dispatch.intake`), asks :class:`geo.Router` for the nearest units by
travel time, commits the alert to the :class:`~dispatch.store.Store` and only then answers through
the :class:`~dispatch.ports.Notifier`. An adapter may acknowledge its transport once an ingest
method has returned; when the store is down the method raises :class:`~dispatch.store.StoreError`
and the adapter must not acknowledge.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from dispatch.domain import (
    APP102_SENDER,
    Alert,
    AlertSource,
    AlertStatus,
    Device,
    Unit,
    UnitStatus,
)
from dispatch.intake import App102Report, Rejected, SosAlert, UnitPosition, parse_message
from dispatch.ports import Ack, AckStatus, Notifier, RejectReason
from dispatch.store import Store, StoreError
from geo import OutsideServiceArea, Recommendation, Router

__all__ = ["DispatchService", "utc_now"]

log = logging.getLogger(__name__)


def utc_now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(timezone.utc)


class DispatchService:
    """Turns incoming alerts into committed, ranked alerts and answers the senders.

    Parameters
    ----------
    store
        Where alerts and unit positions are committed.
    router
        Ranks units by travel time on the street network; the service places its units on it.
    devices
        The SOS device registry, by id.
    units
        The unit registry (seed positions); positions the store already knows from position
        messages take precedence over seed positions when :meth:`open` runs.
    notifier
        Sends acks to SOS devices; may be attached later with :meth:`attach_notifier`.
    recommend_k
        How many units to recommend per alert; None for all reachable units.
    max_payload_bytes
        Larger payloads are rejected unread.
    max_clock_skew
        How far in the future a message's ``ts`` may lie.
    clock
        Returns the current UTC time (tests may pin it).

    Examples
    --------
    >>> service = DispatchService(store, router, devices=devices, units=units).open()  # doctest: +SKIP
    >>> service.ingest_sos("btn-1", b'{"event_id": "e1", "ts": "...", "kind": "press"}')  # doctest: +SKIP
    Ack(event_id='e1', alert_id=1, status=<AckStatus.ACCEPTED: 'accepted'>, ...)
    """

    def __init__(
        self,
        store: Store,
        router: Router,
        *,
        devices: Mapping[str, Device],
        units: Iterable[Unit] = (),
        notifier: Notifier | None = None,
        recommend_k: int | None = 3,
        max_payload_bytes: int = 16 * 1024,
        max_clock_skew: timedelta = timedelta(minutes=5),
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        if recommend_k is not None and recommend_k < 1:
            msg = f"recommend_k must be a positive number of units or None, got {recommend_k!r}"
            raise ValueError(msg)
        if max_payload_bytes < 1:
            msg = f"max_payload_bytes must be positive, got {max_payload_bytes!r}"
            raise ValueError(msg)
        self.store = store
        self.router = router
        self.devices: dict[str, Device] = dict(devices)
        self.notifier = notifier
        self.recommend_k = recommend_k
        self.max_payload_bytes = max_payload_bytes
        self.max_clock_skew = max_clock_skew
        self.clock = clock
        self._seed_units = list(units)
        self._units: dict[str, Unit] = {}
        self._lock = threading.RLock()  # guards the router, the units and the counters
        self._accepted: Counter[str] = Counter()
        self._duplicates: Counter[str] = Counter()
        self._rejected: Counter[str] = Counter()
        self._positions = 0
        self._store_errors = 0

    # set-up -------------------------------------------------------------------------------

    def open(self) -> DispatchService:
        """Merge the unit registry with positions the store remembers and place units on the router."""
        known = {u.id: u for u in self.store.list_units()}
        units = []
        for seed in self._seed_units:
            unit = seed.copy()
            old = known.get(unit.id)
            if old is not None:
                unit.status = old.status
                if old.position_ts is not None:  # measured after the seed file was written
                    unit.lat, unit.lon, unit.position_ts = old.lat, old.lon, old.position_ts
            units.append(unit)
        with self._lock:
            self._units = {u.id: u for u in units}
            placed = sum(self._place(unit) for unit in units)
        self.store.save_units(units)
        self._warm_up()
        log.info(
            "dispatch open: %d units (%d available on the streets), %d SOS devices",
            len(units),
            placed,
            len(self.devices),
        )
        return self

    def _warm_up(self) -> None:
        """Rank once now, so the first real alert does not wait for the router's compiled code to load."""
        started = time.perf_counter()
        with self._lock:
            points = [(u.lat, u.lon) for u in self._units.values()] + [self.router.network.center]
        for lat, lon in points[:1] + points[-1:]:
            try:
                with self._lock:
                    self.router.recommend(lat, lon, k=1)
                break
            except OutsideServiceArea:
                continue
        log.debug("router warm-up took %.2f s", time.perf_counter() - started)

    def attach_notifier(self, notifier: Notifier) -> None:
        """Set who sends acks (the MQTT bridge attaches itself)."""
        self.notifier = notifier

    def _place(self, unit: Unit) -> bool:
        """Put an available unit on the router; True if it can now be recommended."""
        if unit.status is not UnitStatus.AVAILABLE:
            self.router.remove_unit(unit.id)
            return False
        try:
            self.router.place_unit(unit.id, unit.kind.value, unit.lat, unit.lon)
        except OutsideServiceArea as e:
            self.router.remove_unit(unit.id)
            log.warning(
                "unit %r at (%.6f, %.6f) is %.0f m from the nearest street: not recommendable",
                unit.id,
                unit.lat,
                unit.lon,
                e.distance_m,
            )
            return False
        return True

    # ingest -------------------------------------------------------------------------------

    def ingest_sos(self, device_id: str, payload: bytes) -> Ack:
        """Ingest one SOS message from ``{root}/sos/{device_id}/alert``.

        The alert is committed before the ack is sent. A redelivered ``event_id`` is answered with
        the ack of the alert stored the first time.

        Raises
        ------
        StoreError
            If the alert could not be committed; nothing was acknowledged.
        """
        now = self.clock()
        try:
            message = parse_message(
                SosAlert, payload, now=now, max_bytes=self.max_payload_bytes, max_clock_skew=self.max_clock_skew
            )
            device = self.devices.get(device_id)
            if device is None:
                msg = f"device {device_id!r} is not in the device registry"
                raise Rejected(RejectReason.UNKNOWN_DEVICE, msg, event_id=message.event_id)
            existing = self.store.find_alert(AlertSource.SOS, device_id, message.event_id)
            if existing is not None:
                ack = self._accepted_ack(existing, created=False)
            else:
                recommendations, snap_m = self._rank(device.lat, device.lon, event_id=message.event_id)
                alert = Alert(
                    source=AlertSource.SOS,
                    sender=device_id,
                    event_id=message.event_id,
                    event_ts=message.ts,
                    received_at=now,
                    lat=device.lat,
                    lon=device.lon,
                    status=AlertStatus.TEST if message.kind == "test" else AlertStatus.NEW,
                    kind=message.kind,
                    site=device.site,
                    snap_distance_m=snap_m,
                    recommendations=recommendations,
                )
                stored, created = self._commit(alert)
                ack = self._accepted_ack(stored, created=created)
        except Rejected as rejection:
            ack = self._reject(rejection, source=f"sos/{device_id}")
        except StoreError:
            self._count_store_error()
            raise
        except Exception as e:  # a bug must not kill the bridge: answer and log with traceback
            log.exception("internal error on SOS message from device %r", device_id)
            ack = self._reject(Rejected(RejectReason.INTERNAL_ERROR, f"{type(e).__name__}: {e}"), source="sos")
        self._notify(device_id, ack)
        return ack

    def ingest_app102(self, payload: bytes) -> Ack:
        """Ingest one report from the Police 102 app (``{root}/app102/report``).

        Raises
        ------
        StoreError
            If the alert could not be committed.
        """
        now = self.clock()
        try:
            message = parse_message(
                App102Report,
                payload,
                now=now,
                max_bytes=self.max_payload_bytes,
                max_clock_skew=self.max_clock_skew,
            )
            existing = self.store.find_alert(AlertSource.APP102, APP102_SENDER, message.event_id)
            if existing is not None:
                return self._accepted_ack(existing, created=False)
            recommendations, snap_m = self._rank(message.lat, message.lon, event_id=message.event_id)
            alert = Alert(
                source=AlertSource.APP102,
                sender=APP102_SENDER,
                event_id=message.event_id,
                event_ts=message.ts,
                received_at=now,
                lat=message.lat,
                lon=message.lon,
                accuracy_m=message.accuracy_m,
                category=message.category,
                text=message.text,
                snap_distance_m=snap_m,
                recommendations=recommendations,
            )
            stored, created = self._commit(alert)
            return self._accepted_ack(stored, created=created)
        except Rejected as rejection:
            return self._reject(rejection, source="app102")
        except StoreError:
            self._count_store_error()
            raise
        except Exception as e:
            log.exception("internal error on a 102 report")
            return self._reject(Rejected(RejectReason.INTERNAL_ERROR, f"{type(e).__name__}: {e}"), source="app102")

    def update_unit_position(self, unit_id: str, payload: bytes) -> RejectReason | None:
        """Move a unit (``{root}/units/{unit_id}/position``).

        Returns
        -------
        None when the position was applied, else why it was not (also counted and logged).

        Raises
        ------
        StoreError
            If the position could not be committed.
        """
        try:
            message = parse_message(
                UnitPosition,
                payload,
                now=self.clock(),
                max_bytes=self.max_payload_bytes,
                max_clock_skew=self.max_clock_skew,
            )
            with self._lock:
                unit = self._units.get(unit_id)
                if unit is None:
                    msg = f"unit {unit_id!r} is not in the unit registry"
                    raise Rejected(RejectReason.UNKNOWN_UNIT, msg)
                if unit.position_ts is not None and message.ts < unit.position_ts:
                    msg = (
                        f"position of unit {unit_id!r} at {message.ts.isoformat()} is older than the "
                        f"known one at {unit.position_ts.isoformat()}"
                    )
                    raise Rejected(RejectReason.STALE_POSITION, msg)
                if unit.status is UnitStatus.AVAILABLE:
                    try:
                        self.router.place_unit(unit.id, unit.kind.value, message.lat, message.lon)
                    except OutsideServiceArea as e:
                        msg = (
                            f"position ({message.lat:.6f}, {message.lon:.6f}) of unit {unit_id!r} is "
                            f"{e.distance_m:.0f} m from the nearest street; the unit stays where it was"
                        )
                        raise Rejected(RejectReason.OUTSIDE_SERVICE_AREA, msg) from e
                moved = unit.copy()
                moved.lat, moved.lon, moved.position_ts = message.lat, message.lon, message.ts
                self.store.save_unit(moved)
                self._units[unit_id] = moved
                self._positions += 1
            return None
        except Rejected as rejection:
            self._reject(rejection, source=f"units/{unit_id}")
            return rejection.reason
        except StoreError:
            self._count_store_error()
            raise
        except Exception as e:
            log.exception("internal error on a position of unit %r", unit_id)
            self._reject(Rejected(RejectReason.INTERNAL_ERROR, f"{type(e).__name__}: {e}"), source="units")
            return RejectReason.INTERNAL_ERROR

    # reading ------------------------------------------------------------------------------

    def units(self) -> list[Unit]:
        """Snapshot of the registry's units with their current positions and statuses, by id."""
        with self._lock:
            return [u.copy() for _, u in sorted(self._units.items())]

    def metrics(self) -> dict[str, Any]:
        """Counters since start: accepted and duplicate alerts by source, rejections by reason."""
        with self._lock:
            return {
                "accepted": dict(self._accepted),
                "duplicates": dict(self._duplicates),
                "rejected": {reason.value: self._rejected[reason.value] for reason in RejectReason},
                "positions": self._positions,
                "store_errors": self._store_errors,
            }

    # helpers ------------------------------------------------------------------------------

    def _rank(self, lat: float, lon: float, *, event_id: str) -> tuple[tuple[Recommendation, ...], float]:
        with self._lock:
            try:
                recommendations = self.router.recommend(lat, lon, k=self.recommend_k)
                snap = self.router.snap(lat, lon)
            except OutsideServiceArea as e:
                msg = (
                    f"location ({lat:.6f}, {lon:.6f}) is {e.distance_m:.0f} m from the nearest street, "
                    f"outside the service area"
                )
                raise Rejected(RejectReason.OUTSIDE_SERVICE_AREA, msg, event_id=event_id) from e
        return tuple(recommendations), snap.distance_m

    def _commit(self, alert: Alert) -> tuple[Alert, bool]:
        stored, created = self.store.add_alert(alert)
        if created:
            first = stored.recommendations[0] if stored.recommendations else None
            log.info(
                "alert %d committed: %s from %r event %r, nearest %s",
                stored.id,
                stored.source.value,
                stored.sender,
                stored.event_id,
                "none" if first is None else f"{first.unit_id} ({first.eta_s:.0f} s)",
            )
        return stored, created

    def _accepted_ack(self, alert: Alert, *, created: bool) -> Ack:
        with self._lock:
            (self._accepted if created else self._duplicates)[alert.source.value] += 1
        if not created:
            log.info("redelivery of event %r from %r: alert %d already stored", alert.event_id, alert.sender, alert.id)
        return Ack(event_id=alert.event_id, alert_id=alert.id, status=AckStatus.ACCEPTED)

    def _reject(self, rejection: Rejected, *, source: str) -> Ack:
        with self._lock:
            self._rejected[rejection.reason.value] += 1
        log.warning("rejected message on %s: %s: %s", source, rejection.reason.value, rejection.detail)
        return Ack(
            event_id=rejection.event_id,
            alert_id=None,
            status=AckStatus.REJECTED,
            reason=rejection.reason,
            detail=rejection.detail,
        )

    def _count_store_error(self) -> None:
        with self._lock:
            self._store_errors += 1

    def _notify(self, device_id: str, ack: Ack) -> None:
        if self.notifier is None:
            return
        try:
            self.notifier.send_ack(device_id, ack)
        except Exception:  # the alert is committed; a failed ack must not undo that
            log.exception("could not send ack for event %r to device %r", ack.event_id, device_id)
