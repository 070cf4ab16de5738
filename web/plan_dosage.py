"""The dose a plan's patrols delivered, measured from the unit positions the service kept (issue 14).

A plan names its patrols ``P01``, ``P02``...; a patrol is walked by its *unit*. Which unit walks
which patrol is :func:`patrol_units`, the one place the dosage reads it from:

- an issued plan: the units it was issued to (``POST /api/plans/{id}/issue`` keeps them in the
  plan's status as ``"issued": {"units": {"P01": "foot-3", ...}}``, patrol -> unit);
- a plan never issued: the unit of the same id as the patrol (a unit registered as ``P01``);
  so does a patrol the issue left out.

The measuring itself is :func:`patrol_planner.dosage.measure_dosage`; here the plan's folder and
the store's position history (``unit_positions``) are read. When the shift is over the result is
also kept as ``dosage.json`` in the plan's folder, so the quarterly report still has it once the
positions are pruned (``QORGAU_POSITION_RETENTION_DAYS``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dispatch import Store

if TYPE_CHECKING:  # the planner loads with the first dosage, not with the service
    from patrol_planner.dosage import Dosage, PlanStops

__all__ = [
    "DistrictDosage",
    "MeasuredPlan",
    "dosage_by_district",
    "measure_plan",
    "patrol_units",
]


SNAPSHOT = "dosage.json"
MAX_GAP = timedelta(seconds=300)
"""Fixes this far outside the shift are read too: the track is interpolated up to the shift's edges."""


def patrol_units(patrols: list[str], status: Mapping[str, Any]) -> dict[str, str]:
    """``{patrol: unit}`` of a plan: the units it was issued to (``status["issued"]["units"]``), else
    the unit of the patrol's own id."""
    given = (status.get("issued") or {}).get("units") or {}
    return {p: str(given.get(p) or p) for p in patrols}


@dataclass(frozen=True)
class MeasuredPlan:
    plan: PlanStops
    dosage: Dosage
    units: dict[str, str]
    """``{patrol: unit}`` the dosage was measured with."""
    fixes: int


def measure_plan(folder: Path, status: Mapping[str, Any], store: Store, *, now: datetime) -> MeasuredPlan:
    """The dosage of the plan in ``folder`` from the positions ``store`` kept of its patrols' units."""
    from patrol_planner.dosage import Positions, measure_dosage, read_plan

    plan = read_plan(folder)
    units = patrol_units(plan.patrols, status)
    rows = store.positions_between(plan.shift_start - MAX_GAP, plan.shift_end + MAX_GAP, units=units.values())
    positions = Positions(
        np.array([r[0] for r in rows], dtype=object),
        np.array([r[1].timestamp() for r in rows], dtype=float),
        np.array([r[2] for r in rows], dtype=float),
        np.array([r[3] for r in rows], dtype=float),
    )
    to_patrol = {u: p for p, u in units.items()}
    dosage = measure_dosage(plan, positions, unit_to_patrol=to_patrol)
    if now > plan.shift_end + MAX_GAP:  # the shift is over: keep what it delivered
        snap = {"measured_at": now.astimezone(UTC).isoformat(), "patrol_units": units, **dosage.as_dict()}
        tmp = folder / (SNAPSHOT + ".tmp")
        tmp.write_text(json.dumps(snap, ensure_ascii=False, indent=1), encoding="utf-8")
        tmp.replace(folder / SNAPSHOT)
    return MeasuredPlan(plan, dosage, units, len(rows))


@dataclass
class DistrictDosage:
    """Planned and delivered patrol minutes at the hot spots of one district (no unit, no patrol)."""

    district: str
    plans: int = 0
    planned_min: float = 0.0
    delivered_min: float = 0.0


def dosage_by_district(
    plans: list[tuple[Path, Mapping[str, Any]]],
    store: Store,
    start: datetime,
    end: datetime,
    *,
    district_of: Any,
    now: datetime,
    retention: timedelta | None,
) -> list[DistrictDosage]:
    """Per district, the planned and delivered minutes of the finished plans whose shifts start in ``[start, end)``.

    ``plans`` are ``(folder, status)`` of done plans; ``district_of(lat, lon)`` names a hot spot's
    district (None: outside them). A plan whose shift began before the retention horizon is taken
    from its ``dosage.json`` (its positions are pruned); without one it is left out.
    """
    from patrol_planner.dosage import read_plan

    out: dict[str, DistrictDosage] = {}
    outside = "(outside districts)"
    horizon = now - retention if retention is not None else None
    for folder, status in plans:
        try:
            plan = read_plan(folder)
        except (OSError, ValueError):
            continue
        if not (start <= plan.shift_start < end) or now <= plan.shift_end + MAX_GAP:
            continue
        snap_path = folder / SNAPSHOT
        if horizon is not None and plan.shift_start - MAX_GAP < horizon:
            if not snap_path.is_file():
                continue
            spots = json.loads(snap_path.read_text(encoding="utf-8"))["hot_spots"]
            figures = {h: (float(v["planned_min"]), float(v["delivered_min"])) for h, v in spots.items()}
        else:
            d = measure_plan(folder, status, store, now=now).dosage
            figures = {h: (t.planned_min, t.delivered_min) for h, t in d.hot_spots.items()}
        where = plan.hot_spots()
        seen: set[str] = set()
        for h, (planned, delivered) in figures.items():
            if h not in where:
                continue
            name = district_of(*where[h]) or outside
            row = out.setdefault(name, DistrictDosage(name))
            row.planned_min += planned
            row.delivered_min += delivered
            if name not in seen:
                row.plans += 1
                seen.add(name)
    return [out[k] for k in sorted(out)]
