"""Incident history as arrays, and what happened to the rows that could not be used.

Times are *local* wall-clock times in the plan's time zone (``Incidents.timezone``), stored as
naive ``datetime64[s]``: a shift of 22:00-06:00 is a question about local hours. Rows known only
to the month (police.uk publishes ``2024-03``) keep the first of the month and
``hour_known=False``; they count for where, not for when in the day.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pyproj import CRS, Transformer

from geo.network import utm_crs_for

__all__ = [
    "DEFAULT_OFFICER_WEIGHT",
    "OFFICER_CATEGORIES",
    "Incidents",
    "LoadReport",
    "Projection",
    "TrainingNote",
    "hours_mask",
    "officer_discovered",
    "parse_hours",
    "training_incidents",
]


@dataclass(frozen=True)
class LoadReport:
    """How many rows were read, kept, and why the others were not used."""

    source: str
    rows: int
    kept: int = 0
    missing_coordinates: int = 0
    missing_time: int = 0
    invalid_coordinates: int = 0
    outside_area: int = 0
    month_only: int = 0
    layout: str = ""

    @property
    def dropped(self) -> int:
        """Rows not used, for any reason."""
        return self.missing_coordinates + self.missing_time + self.invalid_coordinates + self.outside_area

    def as_dict(self) -> dict[str, int | str]:
        """Plain fields for JSON and reports."""
        return {
            "source": self.source,
            "layout": self.layout,
            "rows": self.rows,
            "kept": self.kept,
            "missing_coordinates": self.missing_coordinates,
            "missing_time": self.missing_time,
            "invalid_coordinates": self.invalid_coordinates,
            "outside_area": self.outside_area,
            "month_only": self.month_only,
        }

    def summary(self) -> str:
        """One line for logs and the command line."""
        parts = [f"{self.kept:,} of {self.rows:,} incidents used"]
        for label, n in (
            ("without coordinates", self.missing_coordinates),
            ("without a time", self.missing_time),
            ("with impossible coordinates", self.invalid_coordinates),
            ("outside the network's area", self.outside_area),
        ):
            if n:
                parts.append(f"{n:,} {label}")
        if self.month_only:
            parts.append(f"{self.month_only:,} known only to the month")
        return "; ".join(parts)


@dataclass(frozen=True)
class Incidents:
    """Incidents with coordinates, local time and category, as parallel arrays."""

    lat: NDArray[np.float64]
    lon: NDArray[np.float64]
    occurred_at: NDArray[np.datetime64]
    category: NDArray[np.object_]
    hour_known: NDArray[np.bool_]
    timezone: str = "Asia/Almaty"
    label: str = "incidents"
    synthetic: bool = False
    officer: NDArray[np.bool_] | None = None
    """True where the incident was discovered by officers (not reported by the public); None: unknown."""
    _xy: dict[str, tuple[NDArray[np.float64], NDArray[np.float64]]] = field(
        default_factory=dict, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        n = self.lat.size
        for name in ("lon", "occurred_at", "category", "hour_known"):
            if getattr(self, name).size != n:
                msg = f"Incidents.{name} has {getattr(self, name).size} values, lat has {n}"
                raise ValueError(msg)
        if self.officer is not None and self.officer.size != n:
            msg = f"Incidents.officer has {self.officer.size} values, lat has {n}"
            raise ValueError(msg)

    def __len__(self) -> int:
        return int(self.lat.size)

    @classmethod
    def from_arrays(
        cls,
        lat: NDArray[Any] | list[float],
        lon: NDArray[Any] | list[float],
        occurred_at: NDArray[Any] | list[Any],
        category: NDArray[Any] | list[str] | str = "incident",
        *,
        hour_known: NDArray[Any] | None = None,
        timezone: str = "Asia/Almaty",
        label: str = "incidents",
        synthetic: bool = False,
        officer: NDArray[Any] | None = None,
    ) -> Incidents:
        """Build from arrays; ``occurred_at`` is local time (anything ``numpy.datetime64`` takes)."""
        lat_a = np.asarray(lat, dtype=np.float64)
        t = np.asarray(occurred_at, dtype="datetime64[s]")
        cat = (
            np.full(lat_a.size, category, dtype=object)
            if isinstance(category, str)
            else np.asarray(category, dtype=object)
        )
        hk = np.ones(lat_a.size, dtype=bool) if hour_known is None else np.asarray(hour_known, dtype=bool)
        off = None if officer is None else np.asarray(officer, dtype=bool)
        return cls(lat_a, np.asarray(lon, dtype=np.float64), t, cat, hk, timezone, label, synthetic, off)

    def subset(self, mask: NDArray[np.bool_] | NDArray[np.int64]) -> Incidents:
        """The incidents selected by a boolean mask or an index array."""
        return replace(
            self,
            lat=self.lat[mask],
            lon=self.lon[mask],
            occurred_at=self.occurred_at[mask],
            category=self.category[mask],
            hour_known=self.hour_known[mask],
            officer=None if self.officer is None else self.officer[mask],
            _xy={},
        )

    def between(self, start: np.datetime64, end: np.datetime64) -> Incidents:
        """Incidents with ``start <= occurred_at < end`` (local time)."""
        return self.subset((self.occurred_at >= start) & (self.occurred_at < end))

    @property
    def hour(self) -> NDArray[np.int64]:
        """Local hour of day, 0-23 (0 where only the month is known)."""
        day = self.occurred_at.astype("datetime64[D]")
        hour: NDArray[np.int64] = ((self.occurred_at - day).astype("timedelta64[h]").astype(np.int64)) % 24
        return hour

    def xy(self, crs: CRS) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Metric coordinates in ``crs`` (cached per CRS)."""
        key = crs.to_wkt()
        if key not in self._xy:
            tr = Transformer.from_crs(4326, crs, always_xy=True)
            x, y = tr.transform(self.lon, self.lat)
            self._xy[key] = (np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))
        return self._xy[key]

    @property
    def span(self) -> tuple[np.datetime64, np.datetime64]:
        """First and last local time."""
        if not len(self):
            msg = "no incidents"
            raise ValueError(msg)
        return self.occurred_at.min(), self.occurred_at.max()


@dataclass(frozen=True)
class Projection:
    """A metric plane for a study area: the UTM zone of its centre."""

    crs: CRS

    @classmethod
    def for_points(cls, lat: NDArray[np.float64], lon: NDArray[np.float64]) -> Projection:
        """The UTM zone holding the median point."""
        return cls(utm_crs_for(float(np.median(lat)), float(np.median(lon))))


def parse_hours(text: str) -> tuple[int, int]:
    """``"22:00-06:00"`` or ``"22-6"`` -> ``(22, 6)``: start hour inclusive, end hour exclusive."""
    try:
        a, b = text.split("-")
        start = int(a.split(":")[0])
        end = int(b.split(":")[0])
    except ValueError as e:
        msg = f"not an hour range like '22:00-06:00': {text!r}"
        raise ValueError(msg) from e
    if not (0 <= start <= 23 and 0 <= end <= 24):
        msg = f"hours must be 0-24, got {text!r}"
        raise ValueError(msg)
    return start, end % 24


def hours_mask(hour: NDArray[np.int64], hours: tuple[int, int] | None) -> NDArray[np.bool_]:
    """Whether each local hour falls in ``[start, end)``, wrapping past midnight; all if None."""
    if hours is None:
        return np.ones(hour.size, dtype=bool)
    start, end = hours
    if start == end:
        return np.ones(hour.size, dtype=bool)
    if start < end:
        return (hour >= start) & (hour < end)
    return (hour >= start) | (hour < end)


#: Categories that are, as a rule, discovered by officers rather than reported by the public
#: (police.uk's proactive categories; lower case). An ``officer`` column, where a file has one, wins.
OFFICER_CATEGORIES: frozenset[str] = frozenset(
    {"drugs", "possession of weapons", "drug offence", "drug offences", "weapons possession", "public order"}
)

#: By default the planner leaves officer-discovered incidents out of its training (weight 0).
DEFAULT_OFFICER_WEIGHT = 0.0


def officer_discovered(incidents: Incidents) -> NDArray[np.bool_]:
    """Which incidents officers discovered: the file's own flag, else the category (OFFICER_CATEGORIES)."""
    if incidents.officer is not None:
        return incidents.officer
    cats = np.array([str(c).strip().lower() for c in incidents.category], dtype=object)
    return np.isin(cats, list(OFFICER_CATEGORIES))


@dataclass(frozen=True)
class TrainingNote:
    """What a plan was trained on: the guard against feedback loops, for the plan sheet."""

    public: int
    officer: int
    officer_used: int
    officer_weight: float
    flagged_by: str
    """``"column"`` (the file says who initiated each incident) or ``"category"``."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "public": self.public,
            "officer_discovered": self.officer,
            "officer_used": self.officer_used,
            "officer_weight": self.officer_weight,
            "flagged_by": self.flagged_by,
        }


def training_incidents(
    incidents: Incidents, *, officer_weight: float = DEFAULT_OFFICER_WEIGHT
) -> tuple[Incidents, TrainingNote]:
    """The incidents a plan trains on: every public report, and officer-discovered ones down-weighted.

    Patrols find crime where they go; a model trained on what they found sends them back there
    (Ensign et al. 2018; Lum and Isaac 2016). Officer-discovered incidents are kept with
    probability ``officer_weight`` (0: left out, the default; 1: counted like public reports), by a
    deterministic low-discrepancy thinning so the same file always trains the same plan.
    """
    if not 0.0 <= officer_weight <= 1.0:
        msg = f"officer_weight must be in [0, 1], got {officer_weight}"
        raise ValueError(msg)
    officer = officer_discovered(incidents)
    idx = np.flatnonzero(officer)
    # Weyl sequence k * (golden ratio - 1) mod 1: an even spread, so every area keeps its share.
    keep_officer = idx[(np.arange(idx.size) * 0.6180339887498949) % 1.0 < officer_weight]
    keep = ~officer
    keep[keep_officer] = True
    note = TrainingNote(
        public=int((~officer).sum()),
        officer=int(idx.size),
        officer_used=int(keep_officer.size),
        officer_weight=officer_weight,
        flagged_by="column" if incidents.officer is not None else "category",
    )
    return incidents.subset(keep), note
