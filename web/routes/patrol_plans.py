"""What is issued now (issue 14): a unit's current patrol plan, and the live map's "patrol plan" layer.

Routes (roles)::

    GET /api/units/{id}/plan   {"unit_id", "plan": PatrolPlan | null} (unit: its own; dispatcher, commander, viewer)
    GET /map/plan              the current plan's routes (with their units), stops and hot spots, GeoJSON
                               with ``plan_id`` (null when none is issued) (dispatcher, commander, viewer)

Plans are issued with ``POST /api/plans/{id}/issue`` (:mod:`web.routes.plans`); the handheld and
the map also hear a ``plan`` event on their streams when one is. A service without plans
answers ``plan: null`` and an empty layer.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from web.deps import ContextDep, Reader, UnitReader, own_unit
from web.plan_issue import plan_layer, unit_plan

__all__ = ["router"]

router = APIRouter(tags=["handheld"])


@router.get("/api/units/{unit_id}/plan")
def get_unit_plan(unit_id: str, ctx: ContextDep, who: UnitReader) -> dict[str, Any]:
    """The unit's current patrol plan: its stops with their times and its route (null when none)."""
    own_unit(who, unit_id)
    ctx.service.get_unit(unit_id)
    plan = None if ctx.plans is None else unit_plan(ctx.plans.store, unit_id, ctx.service.clock())
    return {"unit_id": unit_id, "plan": plan}


@router.get("/map/plan", include_in_schema=False)
def map_plan(ctx: ContextDep, _: Reader) -> JSONResponse:
    if ctx.plans is None:
        body: dict[str, Any] = {"plan_id": None, "type": "FeatureCollection", "features": []}
    else:
        body = plan_layer(ctx.plans.store, ctx.service.clock())
    return JSONResponse(body, headers={"Cache-Control": "no-store"})
