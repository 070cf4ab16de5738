"""Issuing a patrol plan (issue 14): each patrol's route to its unit, and what is issued now.

A done plan (:mod:`web.plan_jobs`) is issued by a commander: each patrol becomes a
:class:`dispatch.PatrolPlan` for one registered unit, which the dispatch service audits and sends
(over MQTT, ``{root}/units/{unit_id}/plan``, through its :class:`~dispatch.PlanSender` port). The
issue is kept with the plan, as ``issued.json`` in its folder (and ``issued`` in its status), so
the handheld (``GET /api/units/{id}/plan``) and the live map's "patrol plan" layer
(``GET /map/plan``) read it after a restart too.

Which unit walks which patrol: the request may map them (``{"units": {"P01": "foot-1"}}``, every
patrol to a different registered foot or car unit); without a mapping, the plan's patrols in
order (P01, P02, ...) go to the registered foot units in order of their ids (422 if there are
fewer foot units than patrols).

What is issued now: of the issued plans whose shift has not ended, those whose shift has begun
come first, then the one that begins soonest; among equals the last issued. A unit's current plan
is the newest-issued such plan that includes it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fastapi import HTTPException, status

from dispatch import DispatchService, PatrolPlan, PlanStop, UnitKind
from web.jobs import JobStore

__all__ = ["IssuedPlan", "current_issued", "default_units", "issue_plan", "plan_layer", "unit_plan"]

ISSUED = "issued.json"
_UNPROCESSABLE = 422


@dataclass(frozen=True, slots=True)
class IssuedPlan:
    """One issued plan as kept in ``issued.json``."""

    plan_id: str
    record: dict[str, Any]

    @property
    def start(self) -> datetime:
        return datetime.fromisoformat(self.record["shift_start"])

    @property
    def end(self) -> datetime:
        return datetime.fromisoformat(self.record["shift_end"])

    @property
    def issued_at(self) -> datetime:
        return datetime.fromisoformat(self.record["issued_at"])


def _routes(store: JobStore, plan_id: str) -> dict[str, Any]:
    path = store.folder(plan_id) / "routes.geojson"
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _patrols(collection: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each patrol's route feature and stops, in patrol order."""
    out: dict[str, dict[str, Any]] = {}
    for f in collection["features"]:
        p = f["properties"]
        if p.get("kind") == "route":
            out.setdefault(p["patrol"], {"stops": []})["route"] = f
    for f in collection["features"]:
        p = f["properties"]
        if p.get("kind") == "stop" and p["patrol"] in out:
            out[p["patrol"]]["stops"].append(f)
    return dict(sorted(out.items()))


def _reading_order(unit_id: str) -> tuple[tuple[int, int, str], ...]:
    """Sort key of a unit id as people read it: ``foot-2`` before ``foot-10``."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", unit_id) if part)


def default_units(patrols: list[str], foot_units: list[str]) -> dict[str, str]:
    """Patrols (``P01``, ``P02``, ...) to foot units in reading order, when the commander names none:
    ``P01`` to ``foot-1``, ``P02`` to ``foot-2``, ``P10`` to ``foot-10`` (not ``foot-10`` second)."""
    return dict(zip(sorted(patrols, key=_reading_order), sorted(foot_units, key=_reading_order), strict=False))


def _mapping(service: DispatchService, patrols: list[str], given: dict[str, str] | None) -> dict[str, str]:
    if given is None:
        foot = [u.id for u in service.units() if u.kind is UnitKind.FOOT and not u.retired]
        if len(foot) < len(patrols):
            raise HTTPException(
                _UNPROCESSABLE,
                detail=f"the plan has {len(patrols)} patrols but only {len(foot)} foot units are registered: "
                'map the patrols to units, e.g. {"units": {"P01": "foot-1"}}',
            )
        return default_units(patrols, foot)
    missing = [p for p in patrols if p not in given]
    unknown = [p for p in given if p not in patrols]
    if missing or unknown:
        raise HTTPException(
            _UNPROCESSABLE,
            detail=f"map every patrol of the plan ({', '.join(patrols)}) to a unit"
            + (f"; missing: {', '.join(missing)}" if missing else "")
            + (f"; not in the plan: {', '.join(unknown)}" if unknown else ""),
        )
    return {p: given[p] for p in patrols}


def issue_plan(
    store: JobStore, plan_id: str, service: DispatchService, *, units: dict[str, str] | None, actor: str
) -> tuple[dict[str, Any], list[PatrolPlan]]:
    """Issue done plan ``plan_id``: build each unit's plan, have the service audit and send them,
    keep the issue with the plan. Returns the issue record and the plans sent."""
    record = store.status(plan_id)
    if record.get("status") != "done":
        raise HTTPException(
            status.HTTP_409_CONFLICT, detail=f"plan {plan_id} is {record.get('status')}: only a done plan can be issued"
        )
    patrols = _patrols(_routes(store, plan_id))
    mapping = _mapping(service, list(patrols), units)
    window = record.get("shift_window") or {}
    first = next(iter(patrols.values()))["route"]["properties"] if patrols else {}
    start = datetime.fromisoformat(window.get("start") or first["start"])
    end = datetime.fromisoformat(window["end"]) if window.get("end") else None
    if end is None:
        ends = [datetime.fromisoformat(p["route"]["properties"]["back_at_booth"]) for p in patrols.values()]
        end = max(ends, default=start)
    now = service.clock()
    shift = (record.get("summary") or {}).get("shift", "")
    # the plan's times were walked at the request's speed, else at the service's (PlanJobs.graph_for)
    speed = (record.get("request") or {}).get("walk_speed_mps") or service.router.walk_speed_mps
    plans = []
    for patrol, parts in patrols.items():
        route = parts["route"]
        stops = tuple(
            PlanStop(
                seq=int(s["properties"]["seq"]),
                hot_spot=int(s["properties"]["hot_spot"]),
                lat=float(s["geometry"]["coordinates"][1]),
                lon=float(s["geometry"]["coordinates"][0]),
                arrive=datetime.fromisoformat(s["properties"]["arrive"]),
                depart=datetime.fromisoformat(s["properties"]["depart"]),
                dwell_min=float(s["properties"]["dwell_min"]),
            )
            for s in sorted(parts["stops"], key=lambda s: int(s["properties"]["seq"]))
        )
        plans.append(
            PatrolPlan(
                plan_id=plan_id,
                patrol_id=patrol,
                unit_id=mapping[patrol],
                shift=shift,
                shift_start=start,
                shift_end=end,
                booth_id=str(route["properties"]["booth"]),
                stops=stops,
                route=tuple((float(c[1]), float(c[0])) for c in route["geometry"]["coordinates"]),
                issued_at=now,
                issued_by=actor,
                walk_speed_mps=float(speed),
            )
        )
    try:
        sent = service.issue_plan(plans, actor=actor)
    except ValueError as e:
        raise HTTPException(_UNPROCESSABLE, detail=str(e)) from e
    issued = {
        "plan_id": plan_id,
        "issued_at": now.isoformat(),
        "issued_by": actor,
        "shift": shift,
        "shift_start": start.isoformat(),
        "shift_end": end.isoformat(),
        "units": mapping,
        "sent": sent,
    }
    body = {**issued, "plans": {p.unit_id: p.to_json() for p in plans}}
    path = store.folder(plan_id) / ISSUED
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(body, ensure_ascii=False, indent=1), encoding="utf-8")
    tmp.replace(path)
    store.write_status(plan_id, issued=issued)
    return issued, plans


def _issued(store: JobStore) -> list[IssuedPlan]:
    out = []
    for path in store.root.glob(f"*/{ISSUED}"):
        try:
            out.append(IssuedPlan(path.parent.name, json.loads(path.read_text(encoding="utf-8"))))
        except (OSError, ValueError):
            continue  # being replaced right now, or damaged: not current
    return out


def current_issued(store: JobStore, now: datetime) -> list[IssuedPlan]:
    """The issued plans whose shift has not ended, the one to show first (see the module's notes)."""
    live = [p for p in _issued(store) if p.end > now]
    return sorted(live, key=lambda p: (p.start > now, p.start if p.start > now else now, -p.issued_at.timestamp()))


def unit_plan(store: JobStore, unit_id: str, now: datetime) -> dict[str, Any] | None:
    """The unit's current patrol plan (the wire form of ``PatrolPlan``), or None."""
    mine = [p for p in current_issued(store, now) if unit_id in p.record.get("plans", {})]
    if not mine:
        return None
    started = [p for p in mine if p.start <= now]
    best = max(started, key=lambda p: p.issued_at) if started else mine[0]
    plan: dict[str, Any] = best.record["plans"][unit_id]
    return plan


def plan_layer(store: JobStore, now: datetime) -> dict[str, Any]:
    """The live map's "patrol plan" layer: the current plan's routes (with their units) and hot spots."""
    live = current_issued(store, now)
    if not live:
        return {"plan_id": None, "type": "FeatureCollection", "features": []}
    shown = live[0]
    collection = _routes(store, shown.plan_id)
    unit_of = shown.record.get("units", {})
    features = []
    for f in collection["features"]:
        kind = f["properties"].get("kind")
        if kind in ("route", "stop"):
            features.append({**f, "properties": {**f["properties"], "unit_id": unit_of.get(f["properties"]["patrol"])}})
        elif kind == "hot_spot":
            features.append(f)
    return {
        "plan_id": shown.plan_id,
        "shift": shown.record.get("shift"),
        "shift_start": shown.record.get("shift_start"),
        "shift_end": shown.record.get("shift_end"),
        "issued_at": shown.record.get("issued_at"),
        "issued_by": shown.record.get("issued_by"),
        "type": "FeatureCollection",
        "features": features,
    }
