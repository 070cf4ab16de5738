"""The dose delivered: how many minutes the patrols were present at the plan's hot spots.

Hot-spot policing works through dosage: Koper (1995) found that 10-16 minutes of presence deter
longest, and the Peterborough experiment (Ariel, Weinborn and Sherman 2016) counted minutes, not
visits. This module measures a shift's positions against its plan:

- *present*: a patrol is at a hot spot while its interpolated track is within ``radius_m`` (50 m)
  of it. Tracks are interpolated every ``step_s`` between fixes at most ``max_gap_s`` apart; a
  longer gap is not walked (the patrol's whereabouts are unknown, nothing is counted).
- *visit*: an unbroken stay at one hot spot (interruptions under ``merge_s`` are bridged). A *Koper
  visit* lasts at least 10 minutes (the window's start); those beyond 16 minutes are counted as
  ``long_visits`` as well (presence past the point of most deterrence).
- *delivered*: per patrol and planned hot spot, the minutes present during the shift, capped at
  the minutes the plan gave that patrol there. Positions of units that are no patrol of the plan,
  and minutes at hot spots not in a patrol's own plan, deliver nothing.

Everything is pure computation; :func:`read_plan`, :func:`read_positions` read the files.
"""

from __future__ import annotations

import csv
import gzip
import json
import xml.etree.ElementTree as ET
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from patrol_planner.i18n import Messages

__all__ = [
    "Dosage",
    "PlanStops",
    "PlannedStop",
    "Positions",
    "dosage_csv_rows",
    "dosage_markdown",
    "measure_dosage",
    "read_patrol_map",
    "read_plan",
    "read_positions",
]

KOPER_MIN_S = 600.0
KOPER_MAX_S = 960.0
_EARTH_M = 6_371_008.8


@dataclass(frozen=True)
class PlannedStop:
    patrol: str
    hot_spot: str
    lat: float
    lon: float
    arrive: datetime
    depart: datetime

    @property
    def planned_s(self) -> float:
        return (self.depart - self.arrive).total_seconds()


@dataclass(frozen=True)
class PlanStops:
    """A plan's stops and its shift (UTC), as ``routes.geojson`` of ``qorgau plan`` has them."""

    stops: list[PlannedStop]
    shift_start: datetime
    shift_end: datetime
    patrols: list[str]
    shift_label: str = ""

    def hot_spots(self) -> dict[str, tuple[float, float]]:
        return {s.hot_spot: (s.lat, s.lon) for s in self.stops}


@dataclass(frozen=True)
class Positions:
    """Position fixes: unit, time (seconds since the epoch, UTC), lat, lon; any order."""

    unit: NDArray[np.object_]
    t_s: NDArray[np.float64]
    lat: NDArray[np.float64]
    lon: NDArray[np.float64]
    skipped: int = 0
    """Rows that could not be read (no unit, time or coordinates), counted."""

    def __len__(self) -> int:
        return int(self.t_s.size)


@dataclass
class Tally:
    planned_min: float = 0.0
    delivered_min: float = 0.0
    present_min: float = 0.0
    visits: int = 0
    koper_visits: int = 0
    long_visits: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "planned_min": round(self.planned_min, 2),
            "delivered_min": round(self.delivered_min, 2),
            "delivered_share": round(self.delivered_min / self.planned_min, 4) if self.planned_min else 0.0,
            "present_min": round(self.present_min, 2),
            "visits": self.visits,
            "koper_visits": self.koper_visits,
            "long_visits": self.long_visits,
        }


@dataclass
class Dosage:
    """What the shift delivered against its plan."""

    total: Tally
    patrols: dict[str, Tally]
    hot_spots: dict[str, Tally]
    tracked_min: float
    """Minutes of patrol track inside the shift (gaps over ``max_gap_s`` excluded)."""
    in_hot_spots_min: float
    """Of those, minutes within ``radius_m`` of any of the plan's hot spots."""
    radius_m: float
    shift_start: datetime
    shift_end: datetime
    ignored_fixes: int = 0
    """Fixes of units that are no patrol of the plan (they deliver nothing)."""
    unmatched_units: list[str] = field(default_factory=list)

    @property
    def nothing(self) -> list[str]:
        """Planned hot spots where no planned minute was delivered."""
        return sorted(h for h, t in self.hot_spots.items() if t.planned_min > 0 and t.delivered_min == 0)

    def as_dict(self) -> dict[str, Any]:
        """``qorgau plan dosage --json`` (the issue's keys first)."""
        t = self.total.as_dict()
        return {
            "delivered_share": t["delivered_share"],
            "planned_min": t["planned_min"],
            "delivered_min": t["delivered_min"],
            "koper_visits": t["koper_visits"],
            "visits": t["visits"],
            "patrols": {p: v.as_dict() for p, v in sorted(self.patrols.items())},
            "hot_spots": {h: v.as_dict() for h, v in sorted(self.hot_spots.items())},
            "hot_spots_with_nothing": self.nothing,
            "long_visits": t["long_visits"],
            "tracked_min": round(self.tracked_min, 2),
            "in_hot_spots_min": round(self.in_hot_spots_min, 2),
            "in_hot_spots_share": round(self.in_hot_spots_min / self.tracked_min, 4) if self.tracked_min else 0.0,
            "radius_m": self.radius_m,
            "shift_start": self.shift_start.isoformat(),
            "shift_end": self.shift_end.isoformat(),
            "ignored_fixes": self.ignored_fixes,
            "unmatched_units": self.unmatched_units,
        }


# -- measuring ------------------------------------------------------------------------------


def _track(t: NDArray[np.float64], lat: NDArray[np.float64], lon: NDArray[np.float64], *, step_s: float, max_gap_s: float, t0: float, t1: float) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], float]:  # fmt: skip
    """Samples every ``step_s`` inside [t0, t1) along the track, each standing for ``step_s``."""
    order = np.argsort(t, kind="stable")
    t, lat, lon = t[order], lat[order], lon[order]
    ts, las, los = [], [], []
    for i in range(t.size - 1):
        a, b = t[i], t[i + 1]
        if b <= a or b - a > max_gap_s or b <= t0 or a >= t1:
            continue
        start = max(a, t0)
        grid = np.arange(np.ceil((start - a) / step_s) * step_s + a, min(b, t1), step_s)
        if not grid.size:
            continue
        f = (grid - a) / (b - a)
        ts.append(grid)
        las.append(lat[i] + (lat[i + 1] - lat[i]) * f)
        los.append(lon[i] + (lon[i + 1] - lon[i]) * f)
    if not ts:
        empty = np.zeros(0)
        return empty, empty, empty, 0.0
    tt = np.concatenate(ts)
    return tt, np.concatenate(las), np.concatenate(los), float(tt.size * step_s)


def _visits(present: NDArray[np.bool_], t: NDArray[np.float64], *, step_s: float, merge_s: float) -> list[float]:
    """Durations (s) of unbroken stays, bridging interruptions shorter than ``merge_s``."""
    idx = np.flatnonzero(present)
    if not idx.size:
        return []
    out: list[float] = []
    start = prev = t[idx[0]]
    for k in idx[1:]:
        if t[k] - prev > merge_s:
            out.append(prev - start + step_s)
            start = t[k]
        prev = t[k]
    out.append(prev - start + step_s)
    return out


def measure_dosage(
    plan: PlanStops,
    positions: Positions,
    *,
    unit_to_patrol: Mapping[str, str] | None = None,
    radius_m: float = 50.0,
    step_s: float = 5.0,
    max_gap_s: float = 300.0,
    merge_s: float = 60.0,
) -> Dosage:
    """Measure ``positions`` against ``plan`` (see the module's definitions).

    ``unit_to_patrol`` maps unit ids to the plan's patrol ids; a unit whose id is a patrol's id
    (``P01``) is that patrol without a mapping.
    """
    mapping = dict(unit_to_patrol or {})
    patrol_set = set(plan.patrols)
    spots = plan.hot_spots()
    spot_ids = sorted(spots)
    s_lat = np.radians(np.array([spots[h][0] for h in spot_ids]))
    s_lon = np.radians(np.array([spots[h][1] for h in spot_ids]))
    t0, t1 = plan.shift_start.timestamp(), plan.shift_end.timestamp()

    planned: dict[tuple[str, str], float] = defaultdict(float)
    for s in plan.stops:
        planned[s.patrol, s.hot_spot] += s.planned_s / 60.0
    patrols = {p: Tally() for p in plan.patrols}
    hot = {h: Tally() for h in spot_ids}
    for (p, h), m in planned.items():
        patrols[p].planned_min += m
        hot[h].planned_min += m
    total = Tally(planned_min=sum(planned.values()))

    units = positions.unit.astype(str)
    ignored = 0
    unmatched: list[str] = []
    tracked = inside = 0.0
    for unit in sorted(set(units.tolist())):
        patrol = mapping.get(unit, unit)
        sel = units == unit
        if patrol not in patrol_set:
            ignored += int(sel.sum())
            unmatched.append(unit)
            continue
        t, la, lo, minutes_s = _track(
            positions.t_s[sel], positions.lat[sel], positions.lon[sel], step_s=step_s, max_gap_s=max_gap_s, t0=t0, t1=t1
        )
        tracked += minutes_s / 60.0
        if not t.size or not spot_ids:
            continue
        # Equirectangular metres about each hot spot: exact enough within 50 m.
        rl, ro = np.radians(la)[:, None], np.radians(lo)[:, None]
        dx = (ro - s_lon[None, :]) * np.cos((rl + s_lat[None, :]) / 2)
        dy = rl - s_lat[None, :]
        near = np.hypot(dx, dy) * _EARTH_M <= radius_m
        inside += float(near.any(axis=1).sum() * step_s / 60.0)
        for j, h in enumerate(spot_ids):
            if not near[:, j].any():
                continue
            present_min = float(near[:, j].sum() * step_s / 60.0)
            durations = _visits(near[:, j], t, step_s=step_s, merge_s=merge_s)
            koper = int(sum(d >= KOPER_MIN_S for d in durations))
            long = int(sum(d > KOPER_MAX_S for d in durations))
            delivered = min(present_min, planned.get((patrol, h), 0.0))
            for tally in (patrols[patrol], hot[h], total):
                tally.present_min += present_min
                tally.visits += len(durations)
                tally.koper_visits += koper
                tally.long_visits += long
                tally.delivered_min += delivered
    return Dosage(
        total=total,
        patrols=patrols,
        hot_spots=hot,
        tracked_min=tracked,
        in_hot_spots_min=inside,
        radius_m=radius_m,
        shift_start=plan.shift_start,
        shift_end=plan.shift_end,
        ignored_fixes=ignored,
        unmatched_units=unmatched,
    )


# -- files ----------------------------------------------------------------------------------


def _utc(text: str) -> datetime:
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if value.tzinfo is None:
        msg = f"time {text!r} has no UTC offset"
        raise ValueError(msg)
    return value.astimezone(UTC)


def read_plan(folder: str | Path) -> PlanStops:
    """The stops and shift of a plan written by ``qorgau plan --out DIR`` (its ``routes.geojson``)."""
    path = Path(folder)
    path = path / "routes.geojson" if path.is_dir() else path
    if not path.is_file():
        msg = f"{path}: no routes.geojson (give the --out folder of 'qorgau plan')"
        raise FileNotFoundError(msg)
    data = json.loads(path.read_text(encoding="utf-8"))
    stops: list[PlannedStop] = []
    starts: list[datetime] = []
    ends: list[datetime] = []
    patrols: list[str] = []
    label = ""
    for f in data.get("features", []):
        p = f.get("properties") or {}
        if p.get("kind") == "route":
            patrols.append(str(p["patrol"]))
            starts.append(_utc(p["start"]))
            ends.append(_utc(p["back_at_booth"]))
        elif p.get("kind") == "stop":
            lon, lat = f["geometry"]["coordinates"][:2]
            stops.append(
                PlannedStop(
                    str(p["patrol"]), str(p["hot_spot"]), float(lat), float(lon), _utc(p["arrive"]), _utc(p["depart"])
                )
            )
    summary = path.parent / "summary.json"
    if summary.is_file():
        label = str(json.loads(summary.read_text(encoding="utf-8")).get("shift", ""))
    if not patrols:
        msg = f"{path}: no routes in it"
        raise ValueError(msg)
    return PlanStops(stops, min(starts), max(ends), patrols, label)


def _rows_csv(path: Path) -> Iterable[dict[str, str]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", newline="") as f:
        yield from csv.DictReader(f)


def _gpx_points(path: Path) -> Iterable[tuple[str, str, str, str]]:
    ns = {"g": "http://www.topografix.com/GPX/1/1"}
    root = ET.parse(path).getroot()
    for k, trk in enumerate(root.iter("{http://www.topografix.com/GPX/1/1}trk")):
        name_el = trk.find("g:name", ns)
        unit = (name_el.text or "").strip() if name_el is not None else ""
        unit = unit or (path.stem if k == 0 else f"{path.stem}-{k + 1}")
        for pt in trk.iter("{http://www.topografix.com/GPX/1/1}trkpt"):
            when = pt.find("g:time", ns)
            yield unit, (when.text or "") if when is not None else "", pt.get("lat", ""), pt.get("lon", "")


def read_positions(paths: str | Path | Sequence[str | Path]) -> Positions:
    """Fixes from CSV (``unit_id, ts, lat, lon``; ``ts`` ISO 8601 with offset) or GPX tracks.

    A GPX track's unit is its ``<name>`` (else the file's name). Unreadable rows are skipped and
    counted, never guessed.
    """
    items = [paths] if isinstance(paths, str | Path) else list(paths)
    unit: list[str] = []
    t: list[float] = []
    lat: list[float] = []
    lon: list[float] = []
    skipped = 0
    for item in items:
        path = Path(item)
        if not path.is_file():
            msg = f"{path}: no such positions file"
            raise FileNotFoundError(msg)
        if path.suffix.lower() == ".gpx":
            rows: Iterable[tuple[str, str, str, str]] = _gpx_points(path)
        else:
            rows = (
                (r.get("unit_id", ""), r.get("ts", ""), r.get("lat", ""), r.get("lon", "")) for r in _rows_csv(path)
            )
        for u, ts, la, lo in rows:
            try:
                when = _utc(ts).timestamp()
                a, b = float(la), float(lo)
            except (TypeError, ValueError):
                skipped += 1
                continue
            if not u or not (-90 <= a <= 90 and -180 <= b <= 180):
                skipped += 1
                continue
            unit.append(u.strip())
            t.append(when)
            lat.append(a)
            lon.append(b)
    return Positions(np.array(unit, dtype=object), np.array(t), np.array(lat), np.array(lon), skipped)


def read_patrol_map(path: str | Path) -> dict[str, str]:
    """``unit_id, patrol`` rows: which unit walked which of the plan's patrols."""
    out: dict[str, str] = {}
    for r in _rows_csv(Path(path)):
        u, p = (r.get("unit_id") or "").strip(), (r.get("patrol") or "").strip()
        if u and p:
            out[u] = p
    return out


# -- the report -----------------------------------------------------------------------------


CSV_HEADER_KEYS = ("dosage_level", "dosage_id", "planned_min", "delivered_min", "dosage_share", "present_min",
                   "visits", "koper_visits", "long_visits")  # fmt: skip


def dosage_csv_rows(d: Dosage, m: Messages) -> list[list[object]]:
    """The report as CSV rows: one per patrol, one per hot spot, and the total."""
    rows: list[list[object]] = [[m(k) for k in CSV_HEADER_KEYS]]

    def row(level: str, ident: str, t: Tally) -> list[object]:
        v = t.as_dict()
        return [m(level), ident, v["planned_min"], v["delivered_min"], v["delivered_share"], v["present_min"],
                v["visits"], v["koper_visits"], v["long_visits"]]  # fmt: skip

    rows += [row("dosage_patrol", p, t) for p, t in sorted(d.patrols.items())]
    rows += [row("dosage_hot_spot", h, t) for h, t in sorted(d.hot_spots.items())]
    rows.append(row("dosage_total", "", d.total))
    return rows


def dosage_markdown(d: Dosage, m: Messages, *, offset_h: int = 5, title: str = "") -> str:
    """The shift-end report (times in local time, UTC+``offset_h``)."""
    from datetime import timedelta, timezone

    tz = timezone(timedelta(hours=offset_h))
    v = d.as_dict()
    lines = [
        f"# {m('dosage_title')}{(': ' + title) if title else ''}",
        "",
        m(
            "dosage_shift",
            start=d.shift_start.astimezone(tz).strftime("%Y-%m-%d %H:%M"),
            end=d.shift_end.astimezone(tz).strftime("%Y-%m-%d %H:%M"),
            offset=f"+{offset_h:02d}:00",
        ),
        "",
        m("dosage_definition", radius=f"{d.radius_m:g}"),
        "",
        m(
            "dosage_total_line",
            delivered=f"{v['delivered_min']:.0f}",
            planned=f"{v['planned_min']:.0f}",
            share=f"{100 * v['delivered_share']:.1f}",
            visits=v["visits"],
            koper=v["koper_visits"],
        ),
        m(
            "dosage_inside_line",
            inside=f"{v['in_hot_spots_min']:.0f}",
            tracked=f"{v['tracked_min']:.0f}",
            share=f"{100 * v['in_hot_spots_share']:.1f}",
        ),
        "",
    ]
    header = "| " + " | ".join(m(k) for k in CSV_HEADER_KEYS[1:]) + " |"
    for level, items in (("dosage_patrols", d.patrols), ("dosage_hot_spots", d.hot_spots)):
        lines += [f"## {m(level)}", "", header, "|" + "---|" * (len(CSV_HEADER_KEYS) - 1)]
        for ident, t in sorted(items.items()):
            x = t.as_dict()
            lines.append(
                f"| {ident} | {x['planned_min']:.1f} | {x['delivered_min']:.1f} | {100 * x['delivered_share']:.0f} % "
                f"| {x['present_min']:.1f} | {x['visits']} | {x['koper_visits']} | {x['long_visits']} |"
            )
        lines.append("")
    lines.append(f"## {m('dosage_nothing')}")
    lines.append("")
    lines.append(", ".join(d.nothing) if d.nothing else m("dosage_none"))
    if d.unmatched_units:
        lines += ["", m("dosage_unmatched", units=", ".join(d.unmatched_units), fixes=d.ignored_fixes)]
    return "\n".join(lines) + "\n"
