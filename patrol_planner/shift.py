"""A shift and its hot spots: the risk surface for that shift's hours, turned into places to stand.

Risk is in *expected incidents per shift*: the estimator's surface (trained on the incidents of
the shift's local hours, so a night shift uses the night's pattern) is scaled to the mean number
of such incidents per day over the last year. A *hot spot* is one grid cell of that surface,
stood at the street node nearest to where its incidents happened; cells do not overlap, so the
risk of distinct hot spots never double counts. A shift is cut into blocks of ``revisit_s``
(2 hours by default): one dwell per hot spot and block counts, with that block's share of the
hot spot's risk (from the hour-of-day profile of the same incidents).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
from numpy.typing import NDArray

from patrol_planner._graph import WalkGraph
from patrol_planner.evaluation import events_xy
from patrol_planner.hotspots import DEFAULT_ESTIMATOR, Grid, Segments, Surface, make_estimator
from patrol_planner.incidents import Incidents, hours_mask

__all__ = ["HotSpot", "RiskMap", "Shift", "risk_map"]

_EPOCH = np.datetime64("1970-01-01T00:00:00", "s")
_DAY_S = 86_400.0


@dataclass(frozen=True)
class Shift:
    """A shift in local time: ``start`` and ``end`` are naive local datetimes in ``timezone``."""

    start: datetime
    end: datetime
    timezone: str = "Asia/Almaty"

    @classmethod
    def parse(cls, text: str, *, on: date, timezone: str = "Asia/Almaty") -> Shift:
        """``"22:00-06:00"`` starting on ``on``; an end before the start is the next morning."""
        try:
            a, b = (datetime.strptime(p.strip(), "%H:%M").time() for p in text.split("-"))
        except ValueError as e:
            msg = f"not a shift like '22:00-06:00': {text!r}"
            raise ValueError(msg) from e
        ZoneInfo(timezone)  # raises for an unknown zone
        start = datetime.combine(on, a)
        end = datetime.combine(on, b)
        if end <= start:
            end += timedelta(days=1)
        return cls(start, end, timezone)

    @property
    def duration_s(self) -> float:
        return (self.end - self.start).total_seconds()

    @property
    def hours(self) -> tuple[int, int]:
        """Local hours ``[start, end)`` the shift touches (for time-of-day filtering)."""
        end_h = self.end.hour + (1 if self.end.minute or self.end.second else 0)
        if self.duration_s >= _DAY_S:
            return (0, 0)
        return self.start.hour, end_h % 24

    @property
    def label(self) -> str:
        return f"{self.start:%Y-%m-%d %H:%M}-{self.end:%H:%M}"

    def at(self, offset_s: float) -> datetime:
        """Local time ``offset_s`` seconds into the shift."""
        return self.start + timedelta(seconds=float(offset_s))

    def utc(self, offset_s: float) -> datetime:
        """UTC time ``offset_s`` seconds into the shift (for GPX)."""
        local = self.at(offset_s).replace(tzinfo=ZoneInfo(self.timezone))
        return local.astimezone(ZoneInfo("UTC"))

    def utc_offset(self) -> str:
        """``+05:00`` for Almaty: the zone's offset at the shift's start."""
        off = self.start.replace(tzinfo=ZoneInfo(self.timezone)).utcoffset() or timedelta(0)
        minutes = int(off.total_seconds() // 60)
        sign = "+" if minutes >= 0 else "-"
        return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


@dataclass(frozen=True)
class HotSpot:
    """A place to stand: a grid cell's risk, at the street node nearest to its incidents."""

    id: int
    node: int
    lat: float
    lon: float
    risk: float  # expected incidents per shift in the cell
    block_risk: tuple[float, ...]  # the same, per revisit block
    cell: int


@dataclass(frozen=True)
class RiskMap:
    """The risk surface of one shift and its hot spots (best first)."""

    surface: Surface
    risk: NDArray[np.float64]  # per grid cell, expected incidents per shift
    hotspots: list[HotSpot]
    block_share: NDArray[np.float64]
    expected_per_shift: float
    estimator: str
    trained_until: datetime
    training_events: int
    crs: object

    @property
    def total_risk(self) -> float:
        return float(self.risk.sum())


def _block_shares(hours: NDArray[np.int64], shift: Shift, revisit_s: float) -> NDArray[np.float64]:
    """Share of the shift's risk in each block, from the hour-of-day profile (+1 per hour smoothing)."""
    n_blocks = max(1, math.ceil(shift.duration_s / revisit_s))
    per_hour = np.bincount(hours, minlength=24).astype(np.float64) + 1.0
    shares = np.zeros(n_blocks)
    step = 300.0  # integrate in 5-minute steps
    for k in range(int(shift.duration_s // step)):
        off = k * step
        shares[min(int(off // revisit_s), n_blocks - 1)] += per_hour[shift.at(off).hour]
    normalised: NDArray[np.float64] = shares / shares.sum()
    return normalised


def risk_map(
    incidents: Incidents,
    graph: WalkGraph,
    shift: Shift,
    *,
    estimator: str = DEFAULT_ESTIMATOR,
    cell_m: float = 100.0,
    n_spots: int = 60,
    revisit_s: float = 7200.0,
) -> RiskMap:
    """The risk of ``shift`` per grid cell, and its ``n_spots`` hottest cells as hot spots.

    The estimator is trained on the incidents before the shift (before the day after the last
    incident, when the shift is later than the history) whose local hour falls in the shift.
    Incidents known only to the month count for every shift.
    """
    if not len(incidents):
        msg = "no incidents to estimate risk from"
        raise ValueError(msg)
    last = incidents.occurred_at.max()
    at = min(
        np.datetime64(shift.start, "s"), (last + np.timedelta64(1, "D")).astype("datetime64[D]").astype("datetime64[s]")
    )
    at_s = float((at - _EPOCH).astype(np.float64))
    in_hours = hours_mask(incidents.hour, shift.hours) | ~incidents.hour_known
    train = incidents.subset(in_hours & (incidents.occurred_at < at))
    if not len(train):
        msg = f"no incidents in the shift's hours ({shift.hours[0]:02d}-{shift.hours[1]:02d}) before {at}"
        raise ValueError(msg)
    net = graph.network
    model = make_estimator(estimator)
    segments = Segments.from_graph(graph) if estimator == "network" else None
    ev = events_xy(train, net.crs, graph if segments is not None else None)
    grid = Grid.covering(graph.mid_x, graph.mid_y, cell_m=cell_m)
    surf = model.predict(ev, at_s, grid, segments)
    year = ev.t_s >= at_s - 365 * _DAY_S
    span_days = min(365.0, max(1.0, (at_s - float(ev.t_s.min())) / _DAY_S))
    # Incidents per day in the shift's hours, scaled to the share of the day the shift covers.
    hours_covered = shift.duration_s / 3600.0
    share_of_hours = min(1.0, hours_covered / max(1, _hours_len(shift.hours)))
    expected = float(np.count_nonzero(year)) / span_days * share_of_hours
    total = float(surf.cells.sum())
    risk = surf.cells / total * expected if total > 0 else surf.cells * 0.0
    shares = _block_shares(train.hour[train.hour_known & (ev.t_s >= at_s - 365 * _DAY_S)], shift, revisit_s)
    # Hot spots: the hottest cells, each at the node nearest to the mean of its incidents.
    order = np.argsort(-risk, kind="stable")
    order = order[risk[order] > 0][: max(0, n_spots * 3)]
    cells_of_events = grid.cell_of(ev.x, ev.y)
    cx, cy = grid.centres()
    px, py = cx[order].copy(), cy[order].copy()
    if cells_of_events.size:
        sums_x = np.bincount(
            np.maximum(cells_of_events, 0), weights=ev.x * (cells_of_events >= 0), minlength=grid.n_cells
        )
        sums_y = np.bincount(
            np.maximum(cells_of_events, 0), weights=ev.y * (cells_of_events >= 0), minlength=grid.n_cells
        )
        cnt = np.bincount(
            np.maximum(cells_of_events, 0), weights=(cells_of_events >= 0).astype(float), minlength=grid.n_cells
        )
        has = cnt[order] > 0
        px[has] = sums_x[order][has] / cnt[order][has]
        py[has] = sums_y[order][has] / cnt[order][has]
    nodes = graph.nearest_node_xy(px, py) if order.size else np.zeros(0, dtype=np.int64)
    spots: list[HotSpot] = []
    seen: dict[int, int] = {}
    merged_risk: list[float] = []
    for c, node in zip(order.tolist(), nodes.tolist(), strict=True):
        if node in seen:  # two cells at one street corner: one hot spot
            merged_risk[seen[node]] += float(risk[c])
            continue
        if len(spots) >= n_spots:
            continue
        seen[node] = len(spots)
        merged_risk.append(float(risk[c]))
        spots.append(
            HotSpot(len(spots), int(node), float(net.node_lat[node]), float(net.node_lon[node]), 0.0, (), int(c))
        )
    spots = [
        HotSpot(s.id, s.node, s.lat, s.lon, r, tuple(float(r * b) for b in shares), s.cell)
        for s, r in zip(spots, merged_risk, strict=True)
    ]
    return RiskMap(
        surface=surf,
        risk=risk,
        hotspots=spots,
        block_share=shares,
        expected_per_shift=expected,
        estimator=estimator,
        trained_until=at.astype(datetime),
        training_events=len(train),
        crs=net.crs,
    )


def _hours_len(hours: tuple[int, int]) -> int:
    start, end = hours
    if start == end:
        return 24
    return (end - start) % 24
