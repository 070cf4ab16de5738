"""The unit registry of the running service: every unit in memory, the available ones on the router.

:class:`Fleet` is the one place that knows where each unit is and what it is doing, ranks units
for an alert (freshness policy, staffing hours) and registers, changes and retires units.

Locking
-------
Two locks, always taken in this order:

``writes`` (shared with :class:`~dispatch.assignment.Dispatcher` and
:class:`~dispatch.escalation.Escalator`)
    Held across the database transaction by every change that reads a unit from memory, decides
    on it and writes it back: assignment, closing, escalation, status, registry and position
    changes (and acknowledgements, see :meth:`~dispatch.assignment.Dispatcher.acknowledge`). It
    stays that wide because the in-memory registry, not the database, decides
    whether a unit is free (the unit rows are not read back and locked inside the transaction),
    and the memory must be updated in commit order; a narrower lock would let two orders take
    one unit, or a position message write back the status a concurrent assignment replaced.
The fleet's own lock
    Guards the in-memory units and the router, and is held only for in-memory work, never across
    a database round trip. Ranking, snapshots and routes take only this lock, so the ingest path
    (and re-ranking an alert, which changes only the alert) never waits for another request's
    transaction. The counters have a leaf lock of their own (:mod:`dispatch.counters`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from dispatch.counters import ServiceCounters
from dispatch.domain import Alert, Unit, UnitKind, UnitStatus
from dispatch.errors import Conflict, NotFound
from dispatch.intake import Rejected, UnitPosition
from dispatch.lifecycle import (
    DispatchPolicy,
    StalePolicy,
    is_stale,
    rank_units,
    recommendable,
)
from dispatch.outbox import Outbox
from dispatch.ports import RejectReason
from dispatch.store import Store, StoreError, Tx, deadlocked, unit_snapshot
from geo import OutsideServiceArea, Recommendation, Router

__all__ = ["Exclusions", "Fleet"]

log = logging.getLogger(__name__)

_MERGE_ATTEMPTS = 3
"""How often a replica's start merges the unit registry again after PostgreSQL broke a deadlock there."""

Exclusions = tuple[set[str], set[str]]
"""Units that are stale and units outside their staffing hours at one moment."""


class Fleet:
    """The units in memory and on the router; ranking; the unit registry's changes.

    Parameters
    ----------
    store
        Where units and their audit entries are committed.
    router
        Ranks units by travel time; available units are placed on it.
    policy
        Freshness policy and time zone of staffing hours.
    clock
        The current UTC time.
    outbox
        Hears every committed unit change.
    counters
        Counts positions and store outages.
    writes
        The lock held across the transactions that change units (see the module's docstring).
    recommend_k
        How many units to recommend per alert; None for all reachable units.
    """

    def __init__(
        self,
        store: Store,
        router: Router,
        *,
        policy: DispatchPolicy,
        clock: Callable[[], datetime],
        outbox: Outbox,
        counters: ServiceCounters,
        writes: threading.RLock,
        recommend_k: int | None,
    ) -> None:
        self.store = store
        self.router = router
        self.policy = policy
        self.clock = clock
        self.outbox = outbox
        self.counters = counters
        self.writes = writes
        self.recommend_k = recommend_k
        self.zone = ZoneInfo(policy.timezone)
        self.opened_at: datetime = clock()
        self._units: dict[str, Unit] = {}
        self._lock = threading.RLock()  # the units and the router: in-memory work only
        self._positions_pruned_at: datetime | None = None

    # set-up -------------------------------------------------------------------------------

    def open(self, seed_units: Iterable[Unit]) -> int:
        """Merge the seed units with the units the store remembers, place them, store the merge.

        Returns how many units are available on the streets.

        The stored units are read and the merge written back in one transaction, their rows locked
        (PostgreSQL, in id order, before the commit lock): a replica that starts while others assign and free units must
        not write back a status or alert it read a moment before (chaos ``--replicas`` found a
        unit held by two alerts that way).
        """
        seeds = list(seed_units)
        for attempt in range(1, _MERGE_ATTEMPTS + 1):
            try:
                return self._open([seed.copy() for seed in seeds])
            except StoreError as e:
                if attempt == _MERGE_ATTEMPTS or not deadlocked(e):
                    raise
                # Replicas starting together: one locked the rows another had just inserted while
                # this one waited for the lock; PostgreSQL broke the cycle here: merge again.
                log.warning("merging the unit registry met a deadlock (attempt %d), merging again", attempt)
        msg = "unreachable"  # the loop returns or raises
        raise AssertionError(msg)

    def _open(self, seeds: list[Unit]) -> int:
        ids = sorted({u.id for u in seeds} | {u.id for u in self.store.list_units()})
        with self.store.transaction("merge the unit registry") as tx:
            # The stored rows first (in id order), then the commit lock: an assignment holds its
            # unit's row until it takes that lock to commit, so holding the lock while waiting for
            # the row deadlocked a replica starting during dispatch (chaos --replicas).
            for uid in ids:
                tx.unit(uid)
            tx.serialise()  # replicas starting together on an empty database: one inserts, the next finds
            known = {uid: u for uid in ids if (u := tx.unit(uid)) is not None}
            units = []
            seeded = set()
            for unit in seeds:
                seeded.add(unit.id)
                old = known.get(unit.id)
                if old is not None:
                    unit.status, unit.retired, unit.alert_id = old.status, old.retired, old.alert_id
                    unit.staff_from, unit.staff_to = old.staff_from or unit.staff_from, old.staff_to or unit.staff_to
                    if old.position_ts is not None:  # measured after the seed file was written
                        unit.lat, unit.lon, unit.position_ts = old.lat, old.lon, old.position_ts
                units.append(unit)
            units.extend(u for u in known.values() if u.id not in seeded)  # registered through the API
            for unit in units:
                tx.save_unit(unit)
        self.opened_at = self.clock()
        with self._lock:
            self._units = {u.id: u for u in units}
            placed = sum(self._place(unit) for unit in units)
        return placed

    def warm_up(self) -> None:
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

    def __len__(self) -> int:
        return len(self._units)

    def __contains__(self, unit_id: object) -> bool:
        return unit_id in self._units

    # in memory ----------------------------------------------------------------------------

    def _place(self, unit: Unit) -> bool:
        """Put an available unit on the router; True if it can now be recommended (lock held)."""
        if unit.status is not UnitStatus.AVAILABLE or unit.retired:
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

    def put(self, *units: Unit) -> None:
        """Record committed units in memory and on the router (after their transaction)."""
        with self._lock:
            for unit in units:
                self._units[unit.id] = unit
                self._place(unit)

    def apply_remote(self, unit: Unit) -> None:
        """A unit as another replica committed it (the change stream): in memory and on the router."""
        with self._lock:
            self._units[unit.id] = unit.copy()
            self._place(unit)

    def take_off_router(self, unit: Unit) -> None:
        """Record a committed unit that must not be recommended (busy or retired)."""
        with self._lock:
            self._units[unit.id] = unit
            self.router.remove_unit(unit.id)

    def unit(self, unit_id: str) -> Unit:
        """The unit itself, not a copy (callers holding ``writes`` copy before they change it).

        Raises
        ------
        NotFound
            No unit with that id.
        """
        unit = self._units.get(unit_id)
        if unit is None:
            msg = f"unit {unit_id!r} does not exist"
            raise NotFound(msg)
        return unit

    def find(self, unit_id: str) -> Unit | None:
        """The unit itself, or None."""
        return self._units.get(unit_id)

    @staticmethod
    def release(tx: Tx, unit: Unit, *, alert_id: int | None, actor: str) -> Unit:
        """Free ``unit`` of its alert inside ``tx``, audited; the caller puts the copy back after commit."""
        freed = unit.copy()
        freed.status, freed.alert_id = UnitStatus.AVAILABLE, None
        tx.save_unit(freed)
        tx.audit(
            "unit_change",
            actor=actor,
            unit_id=unit.id,
            alert_id=alert_id,
            before=unit_snapshot(unit),
            after=unit_snapshot(freed),
        )
        return freed

    def get(self, unit_id: str) -> Unit:
        """A copy of the unit; NotFound if there is none."""
        with self._lock:
            return self.unit(unit_id).copy()

    def units(self) -> list[Unit]:
        """Copies of all units, by id."""
        with self._lock:
            return [u.copy() for _, u in sorted(self._units.items())]

    # ranking ------------------------------------------------------------------------------

    def is_stale(self, unit: Unit, now: datetime) -> bool:
        return is_stale(unit, now, stale_after=self.policy.stale_after, since=self.opened_at)

    def view(self, unit: Unit) -> dict[str, Any]:
        """A unit as the dispatcher sees it: with freshness and whether it can be recommended now."""
        now = self.clock()
        seen = unit.position_ts
        return {
            "stale": self.is_stale(unit, now),
            "position_age_s": None if seen is None else round((now - seen).total_seconds(), 1),
            "recommendable": recommendable(unit, now.astimezone(self.zone).time())
            and not (self.policy.stale_policy is StalePolicy.EXCLUDE and self.is_stale(unit, now)),
        }

    def exclusions(self, now: datetime) -> Exclusions:
        """Units that are stale and units outside their staffing hours now (once per batch)."""
        local = now.astimezone(self.zone).time()
        with self._lock:
            stale = {u.id for u in self._units.values() if self.is_stale(u, now)}
            unstaffed = {u.id for u in self._units.values() if not recommendable(u, local)}
        return stale, unstaffed

    def rank(
        self,
        lat: float,
        lon: float,
        *,
        event_id: str | None = None,
        exclusions: Exclusions | None = None,
    ) -> tuple[tuple[Recommendation, ...], float]:
        """Units by ETA after the freshness policy and staffing hours; and the snap distance.

        Raises
        ------
        Rejected
            The location is outside the service area.
        """
        stale, unstaffed = exclusions if exclusions is not None else self.exclusions(self.clock())
        k = self.recommend_k
        exclude_stale = self.policy.stale_policy is StalePolicy.EXCLUDE
        skip = unstaffed | stale if exclude_stale else unstaffed
        # With the penalty policy a stale patrol may fall behind others: search a few more.
        extra = 0 if exclude_stale or k is None else len(stale)
        with self._lock:
            try:
                found = self.router.recommend(lat, lon, k=None if k is None else k + extra, exclude=skip)
                snap = self.router.snap(lat, lon)
            except OutsideServiceArea as e:
                msg = (
                    f"location ({lat:.6f}, {lon:.6f}) is {e.distance_m:.0f} m from the nearest street, "
                    f"outside the service area"
                )
                raise Rejected(RejectReason.OUTSIDE_SERVICE_AREA, msg, event_id=event_id) from e
        ranked = rank_units(found, stale, policy=self.policy.stale_policy, penalty_s=self.policy.stale_penalty_s, k=k)
        return ranked, snap.distance_m

    def route(self, unit: Unit, alert: Alert) -> tuple[tuple[float, float], ...]:
        """The unit's fastest path to the alert; a straight line if the router cannot route it."""
        with self._lock:  # a unit placed only for this route must never be recommended meanwhile
            placed = unit.id in self.router.unit_ids
            try:
                if not placed:
                    self.router.place_unit(unit.id, unit.kind.value, unit.lat, unit.lon)
                return tuple(self.router.route(unit.id, alert.lat, alert.lon))
            except (KeyError, ValueError) as e:  # OutsideServiceArea is a ValueError
                log.warning(
                    "no street route for unit %r to alert %s (%s): sending a straight line", unit.id, alert.id, e
                )
                return ((unit.lat, unit.lon), (alert.lat, alert.lon))
            finally:
                if not placed:
                    self.router.remove_unit(unit.id)

    # the registry -------------------------------------------------------------------------

    def _check_on_streets(self, unit: Unit) -> None:
        with self._lock:
            inside = self.router.in_service_area(unit.lat, unit.lon)
        if not inside:
            msg = f"position ({unit.lat:.6f}, {unit.lon:.6f}) of unit {unit.id!r} is outside the service area"
            raise ValueError(msg)

    def create(self, unit: Unit, *, actor: str) -> Unit:
        """Register a unit (see :meth:`DispatchService.create_unit`)."""
        with self.writes:
            if unit.id in self._units:
                msg = f"unit {unit.id!r} already exists"
                raise Conflict(msg, current=self._units[unit.id].status.value)
            self._check_on_streets(unit)
            new = unit.copy()
            new.alert_id = None
            with self.store.transaction(f"register unit {unit.id!r}") as tx:
                tx.save_unit(new)
                tx.audit("unit_create", actor=actor, unit_id=new.id, after=unit_snapshot(new), only_changes=False)
            self.put(new)
            self.outbox.announce(units=(new,))
        return new.copy()

    def update(self, unit_id: str, changes: dict[str, Any], *, actor: str) -> None:
        """Change a unit's name, staffing hours or booth position (see :meth:`DispatchService.update_unit`)."""
        allowed = {"name", "staff_from", "staff_to", "lat", "lon"}
        unknown = set(changes) - allowed
        if unknown:
            msg = f"cannot change {sorted(unknown)} of a unit; changeable: {sorted(allowed)}"
            raise ValueError(msg)
        with self.writes:
            unit = self.unit(unit_id)
            if unit.retired:
                msg = f"unit {unit_id!r} is retired"
                raise Conflict(msg, current="retired")
            changed = unit.copy()
            for name, value in changes.items():
                setattr(changed, name, value)
            changed = Unit(**{f: getattr(changed, f) for f in Unit.__dataclass_fields__})  # re-validate
            if "lat" in changes or "lon" in changes:
                self._check_on_streets(changed)
            if changes:
                with self.store.transaction(f"update unit {unit_id!r}") as tx:
                    tx.save_unit(changed)
                    tx.audit(
                        "unit_change",
                        actor=actor,
                        unit_id=unit_id,
                        before=unit_snapshot(unit),
                        after=unit_snapshot(changed),
                    )
                self.put(changed)
                self.outbox.announce(units=(changed,))

    def retire(self, unit_id: str, *, actor: str) -> Unit:
        """Take a unit out of service for good (see :meth:`DispatchService.retire_unit`)."""
        with self.writes:
            unit = self.unit(unit_id)
            if unit.alert_id is not None:
                msg = f"unit {unit_id!r} holds alert {unit.alert_id}: close or re-assign it first"
                raise Conflict(msg, current=unit.status.value)
            retired = unit.copy()
            retired.retired, retired.status = True, UnitStatus.OFFLINE
            with self.store.transaction(f"retire unit {unit_id!r}") as tx:
                tx.save_unit(retired)
                tx.audit(
                    "unit_retire",
                    actor=actor,
                    unit_id=unit_id,
                    before=unit_snapshot(unit),
                    after=unit_snapshot(retired),
                )
            self.take_off_router(retired)
            self.outbox.announce(units=(retired,))
        return retired.copy()

    def set_status(self, unit: Unit, status: UnitStatus, *, actor: str) -> Unit:
        """Set the status of a unit that holds no alert (caller holds ``writes`` and checked ``unit``)."""
        if unit.alert_id is not None:
            msg = f"unit {unit.id!r} holds alert {unit.alert_id}: it cannot become {status.value} before it is closed"
            raise Conflict(msg, current=unit.status.value)
        if status is unit.status:
            return unit.copy()
        with self.store.transaction(f"set status of unit {unit.id!r}") as tx:
            stored = tx.unit(unit.id)  # the database decides (locked): another replica may have assigned it
            if stored is not None and stored.alert_id is not None:
                msg = f"unit {unit.id!r} holds alert {stored.alert_id}: it cannot become {status.value} before it is closed"
                raise Conflict(msg, current=stored.status.value)
            changed = unit.copy()
            changed.status = status
            tx.save_unit(changed)
            tx.audit(
                "unit_status", actor=actor, unit_id=unit.id, before=unit_snapshot(unit), after=unit_snapshot(changed)
            )
        self.put(changed)
        self.outbox.announce(units=(changed,))
        return changed.copy()

    # positions ----------------------------------------------------------------------------

    def move(
        self,
        newest: dict[str, tuple[int, UnitPosition]],
        *,
        superseded: int,
        track: dict[str, list[UnitPosition]] | None = None,
    ) -> tuple[list[Unit], list[tuple[int, Rejected, str]]]:
        """Apply the newest position of each unit of a batch in one write; the moved units and refusals.

        ``track`` holds every accepted position of the batch per unit (the newest last); the moved
        units' tracks are kept in the position history, pruned after ``policy.position_retention``.

        Raises
        ------
        StoreError
            If the positions could not be committed (the router may already show them).
        """
        moved: list[Unit] = []
        rejections: list[tuple[int, Rejected, str]] = []
        with self.writes:
            for unit_id, (i, message) in newest.items():
                try:
                    moved.append(self._moved_unit(unit_id, message))
                except Rejected as rejection:
                    rejections.append((i, rejection, f"units/{unit_id}"))
                except Exception as e:
                    log.exception("internal error on a position of unit %r", unit_id)
                    rejections.append((i, Rejected(RejectReason.INTERNAL_ERROR, f"{type(e).__name__}: {e}"), "units"))
            try:
                if moved:
                    self.store.save_positions(moved, track=self._tracks(moved, track or {}))
            except StoreError:
                self.counters.store_error()
                raise
            self._maybe_prune_positions()
            with self._lock:
                for unit in moved:
                    self._units[unit.id] = unit
            self.counters.positions(len(moved), superseded=superseded)
        return moved, rejections

    def _tracks(
        self, moved: list[Unit], track: dict[str, list[UnitPosition]]
    ) -> dict[str, list[tuple[datetime, float, float]]]:
        """The batch's positions of each moved unit that are not older than its known one."""
        out: dict[str, list[tuple[datetime, float, float]]] = {}
        for unit in moved:
            known = self._units[unit.id].position_ts
            points = [(p.ts, p.lat, p.lon) for p in track.get(unit.id, ()) if known is None or p.ts >= known]
            if not points and unit.position_ts is not None:
                points = [(unit.position_ts, unit.lat, unit.lon)]
            out[unit.id] = points
        return out

    def _maybe_prune_positions(self, every: timedelta = timedelta(hours=1)) -> None:
        """Prune the position history past its retention, at most once per ``every`` (caller holds ``writes``)."""
        keep = self.policy.position_retention
        now = self.clock()
        if keep is None or (self._positions_pruned_at is not None and now - self._positions_pruned_at < every):
            return
        self._positions_pruned_at = now
        try:
            self.store.prune_positions(now - keep)
        except StoreError:  # positions are committed; pruning waits for the next hour
            log.warning("could not prune the position history", exc_info=True)

    def _moved_unit(self, unit_id: str, message: UnitPosition) -> Unit:
        """The unit at its new position, placed on the router (caller holds ``writes``); or Rejected."""
        unit = self._units.get(unit_id)
        if unit is None:
            msg = f"unit {unit_id!r} is not in the unit registry"
            raise Rejected(RejectReason.UNKNOWN_UNIT, msg)
        if unit.kind is UnitKind.BOOTH:
            msg = f"unit {unit_id!r} is a booth: its position is fixed by the registry"
            raise Rejected(RejectReason.FIXED_POSITION, msg)
        if unit.position_ts is not None and message.ts < unit.position_ts:
            msg = (
                f"position of unit {unit_id!r} at {message.ts.isoformat()} is older than the "
                f"known one at {unit.position_ts.isoformat()}"
            )
            raise Rejected(RejectReason.STALE_POSITION, msg)
        if unit.status is UnitStatus.AVAILABLE and not unit.retired:
            try:
                with self._lock:
                    self.router.place_unit(unit.id, unit.kind.value, message.lat, message.lon)
            except OutsideServiceArea as e:
                msg = (
                    f"position ({message.lat:.6f}, {message.lon:.6f}) of unit {unit_id!r} is "
                    f"{e.distance_m:.0f} m from the nearest street; the unit stays where it was"
                )
                raise Rejected(RejectReason.OUTSIDE_SERVICE_AREA, msg) from e
        moved = unit.copy()
        moved.lat, moved.lon, moved.position_ts = message.lat, message.lon, message.ts
        return moved
