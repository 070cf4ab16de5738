"""Open alerts of the last duplicate window, in a grid, for duplicate linking without a query.

Every new alert is compared with the open alerts of the same source received in the duplicate
window near it (:func:`dispatch.lifecycle.find_duplicate`). Asking the database for them cost a
query per alert that scanned every alert of the window (at 100 presses/s, tens of thousands): 40 %
of the ingest time. The service keeps them here instead: filled from the store at start, added
to on every commit, and told about every committed change (so a closed alert stops being a
candidate). Cells are at least the duplicate radius wide, so the 3 x 3 cells around a point hold
every alert within the radius.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Iterable
from datetime import datetime, timedelta
from itertools import islice

from dispatch.domain import Alert, AlertSource
from dispatch.lifecycle import OPEN

__all__ = ["RecentAlerts"]

_M_PER_DEG = 111_320.0


class RecentAlerts:
    """Open alerts received in the last ``window``, by source and grid cell.

    Parameters
    ----------
    window
        The duplicate window: older alerts are forgotten.
    radius_m
        The duplicate radius: the cell size (with a margin).
    per_cell
        At most this many of the earliest open alerts per cell are offered as candidates (a
        button pressed again and again must not slow its own ingest).
    """

    def __init__(self, window: timedelta, radius_m: float, *, per_cell: int = 25) -> None:
        self.window = window
        self.radius_m = radius_m
        self.per_cell = per_cell
        self._cell_deg = max(radius_m, 1.0) * 1.25 / _M_PER_DEG
        self._lon_deg: float | None = None
        self._cells: dict[tuple[AlertSource, int, int], deque[Alert]] = {}
        self._by_id: dict[int, tuple[AlertSource, int, int]] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._by_id)

    def _cell(self, source: AlertSource, lat: float, lon: float) -> tuple[AlertSource, int, int]:
        if self._lon_deg is None:
            # One longitude width for the whole grid, wide enough for the radius up to 1 degree
            # poleward of the first point seen (a city spans far less).
            self._lon_deg = self._cell_deg / max(math.cos(math.radians(min(abs(lat) + 1.0, 89.0))), 1e-6)
        return source, math.floor(lat / self._cell_deg), math.floor(lon / self._lon_deg)

    def load(self, alerts: Iterable[Alert]) -> None:
        """Start from the store's open alerts of the window (oldest first)."""
        for alert in sorted(alerts, key=lambda a: (a.received_at, a.id or 0)):
            self.add(alert)

    def add(self, alert: Alert) -> None:
        """Remember a committed alert (ignored unless open and stored)."""
        if alert.id is None or alert.status not in OPEN:
            return
        with self._lock:
            key = self._cell(alert.source, alert.lat, alert.lon)
            if alert.id in self._by_id:
                self._replace(alert)
                return
            self._cells.setdefault(key, deque()).append(alert.copy())
            self._by_id[alert.id] = key

    def changed(self, alert: Alert) -> None:
        """A committed change of an alert: a closed one is dropped, a link or status is updated."""
        if alert.id is None:
            return
        with self._lock:
            if alert.id not in self._by_id:
                return
            if alert.status not in OPEN:
                key = self._by_id.pop(alert.id)
                cell = self._cells.get(key)
                if cell is not None:
                    for i, other in enumerate(cell):
                        if other.id == alert.id:
                            del cell[i]
                            break
                return
            self._replace(alert)

    def _replace(self, alert: Alert) -> None:
        cell = self._cells.get(self._by_id[alert.id])  # type: ignore[index]
        for i, other in enumerate(cell or ()):
            if other.id == alert.id:
                cell[i] = alert.copy()  # type: ignore[index]
                return

    def candidates(self, source: AlertSource, lat: float, lon: float, now: datetime) -> list[Alert]:
        """Open alerts of ``source`` in the 3 x 3 cells around the point, received since ``now - window``."""
        since = now - self.window
        out: list[Alert] = []
        with self._lock:
            _, row, col = self._cell(source, lat, lon)
            for dr in (-1, 0, 1):
                for dc in (-1, 0, 1):
                    cell = self._cells.get((source, row + dr, col + dc))
                    if not cell:
                        continue
                    while cell and cell[0].received_at < since:  # expired: forget
                        self._by_id.pop(cell.popleft().id, None)  # type: ignore[arg-type]
                    out.extend(islice((a for a in cell if a.received_at >= since), self.per_cell))
        return out
