"""``GET /api/plans/{id}/dosage``: what a plan's patrols delivered at its hot spots (commander role).

Measured from the unit positions the service kept during the plan's shift (:mod:`web.plan_dosage`
says which unit walks which patrol); json, or ``?format=md|csv`` in kk, ru or en (times UTC+5).
Asked during the shift it gives the dose so far; ``final`` says whether fixes can still come in
(until five minutes after the shift's end).
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, timedelta, timezone
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import PlainTextResponse

from web.deps import Commander, PlansDep, ServiceDep
from web.plan_dosage import MAX_GAP, measure_plan

__all__ = ["LOCAL_OFFSET_H", "router"]

LOCAL_OFFSET_H = 5
"""Times of the report are shown in UTC+5 (Almaty)."""

router = APIRouter(prefix="/api/plans", tags=["plans"])


@router.get(
    "/{plan_id}/dosage",
    response_model=None,
    responses={
        200: {
            "description": "the dosage report",
            "content": {"application/json": {}, "text/markdown": {}, "text/csv": {}},
        }
    },
)
def get_dosage(
    plan_id: str,
    jobs: PlansDep,
    service: ServiceDep,
    _: Commander,
    format: Literal["json", "md", "csv"] = "json",
    lang: Literal["kk", "ru", "en"] = "ru",
) -> Any:
    """Per patrol and per hot spot: minutes present within 50 m, visits, Koper-window visits,
    delivered against planned minutes; the hot spots that got nothing; the share of patrol
    minutes inside any hot spot. The JSON also says when it was measured (``measured_at``, the
    service's clock) and whether the shift is ``before``, ``running`` (the dose so far) or ``over``."""
    s = jobs.store.status(plan_id)
    if s.get("status") != "done":
        raise HTTPException(
            status.HTTP_409_CONFLICT, detail=f"plan {plan_id} is {s.get('status')}: no routes to measure"
        )
    from patrol_planner.dosage import dosage_csv_rows, dosage_markdown
    from patrol_planner.i18n import messages

    now = service.clock()
    measured = measure_plan(jobs.store.folder(plan_id), s, service.store, now=now)
    m = messages(lang)
    name = f"dosage-{plan_id[:8]}"
    if format == "md":
        return PlainTextResponse(
            dosage_markdown(measured.dosage, m, offset_h=LOCAL_OFFSET_H, title=measured.plan.shift_label),
            media_type="text/markdown; charset=utf-8",
            headers={"Content-Disposition": f'inline; filename="{name}.{lang}.md"'},
        )
    if format == "csv":
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows(dosage_csv_rows(measured.dosage, m))
        return PlainTextResponse(
            out.getvalue(),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}.{lang}.csv"'},
        )
    tz = timezone(timedelta(hours=LOCAL_OFFSET_H))
    start, end = measured.plan.shift_start, measured.plan.shift_end
    return {
        "id": plan_id,
        **measured.dosage.as_dict(),
        "shift_start_local": measured.plan.shift_start.astimezone(tz).isoformat(),
        "shift_end_local": measured.plan.shift_end.astimezone(tz).isoformat(),
        "patrol_units": measured.units,
        "fixes": measured.fixes,
        "title": m("dosage_title"),
        "measured_at": now.astimezone(UTC).isoformat(),
        "state": "before" if now < start else "running" if now <= end else "over",
        # Fixes up to MAX_GAP past the end still count (a handheld that was out of coverage sends
        # its track late): until then the dose may still grow, after it it is kept (dosage.json).
        "final": now > end + MAX_GAP,
    }
