"""The dispatch service's counters since start (``GET /metrics``), behind a lock of their own.

Counting never waits for a database transaction: the counters share no lock with the unit
registry or the store.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from typing import Any

from dispatch.intake import Rejected
from dispatch.ports import Ack, AckStatus, RejectReason

__all__ = ["ServiceCounters"]

log = logging.getLogger(__name__)


class ServiceCounters:
    """Accepted and duplicate alerts by source, rejections by reason, positions, escalations, outages."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # a leaf lock: nothing else is taken while it is held
        self._accepted: Counter[str] = Counter()
        self._duplicates: Counter[str] = Counter()
        self._rejected: Counter[str] = Counter()
        self._positions = 0
        self._superseded_positions = 0
        self._flagged_positions = 0
        self._store_errors = 0
        self._escalations = 0
        self._found_stored = 0
        self._lost_races = 0

    def accepted(self, source: str, *, created: bool) -> None:
        """One alert accepted: new (``created``) or a duplicate delivery of a stored one."""
        with self._lock:
            (self._accepted if created else self._duplicates)[source] += 1

    def duplicate(self, source: str) -> None:
        with self._lock:
            self._duplicates[source] += 1

    def found_stored(self, n: int) -> None:
        """``n`` presses or reports of a batch were stored already (by another replica, or a
        redelivery): answered from the stored alert, not ranked."""
        with self._lock:
            self._found_stored += n

    def lost_to_another_commit(self, n: int) -> None:
        """``n`` new events of a batch were ranked here but committed first by another replica."""
        with self._lock:
            self._lost_races += n

    def reject(self, rejection: Rejected, *, source: str) -> Ack:
        """Count and log a refused message; the ack that tells its sender why."""
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

    def positions(self, applied: int, *, superseded: int) -> None:
        """Position messages taken: ``applied`` written, ``superseded`` by a later one of the batch."""
        with self._lock:
            self._positions += applied + superseded
            self._superseded_positions += superseded

    def flagged_position(self) -> None:
        """A handheld's fix less accurate than the limit: kept out of ranking."""
        with self._lock:
            self._flagged_positions += 1

    def store_error(self) -> None:
        with self._lock:
            self._store_errors += 1

    def escalated(self) -> None:
        with self._lock:
            self._escalations += 1

    def snapshot(self) -> dict[str, Any]:
        """The counters as :meth:`DispatchService.metrics` reports them."""
        with self._lock:
            return {
                "accepted": dict(self._accepted),
                "duplicates": dict(self._duplicates),
                "rejected": {reason.value: self._rejected[reason.value] for reason in RejectReason},
                "positions": self._positions,
                "positions_superseded": self._superseded_positions,
                "positions_flagged": self._flagged_positions,
                "store_errors": self._store_errors,
                "escalations": self._escalations,
                "ingest_found_stored": self._found_stored,
                "ingest_lost_races": self._lost_races,
            }
