"""Reports for commanders: response times, false alarms and overdue self-tests of SOS buttons.

Routes (roles)::

    GET /api/reports/response-times    ?from&to&group_by&format=json|csv (commander, viewer)
    GET /api/reports/false-alarms      ?from&to&group_by=device|site&format=json|csv&lang=kk|ru|en: presses,
                                       false alarms and rate (commander, viewer, dispatcher)
    GET /api/reports/self-tests        buttons without a self-test in the last 24 h (admin, dispatcher,
                                       commander, viewer)
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import PlainTextResponse
from pydantic import AwareDatetime

from dispatch.reports import catalogue, false_alarm_csv, false_alarm_rates, report_window, summarize, to_csv
from web.deps import DeviceReader, DistrictsDep, FalseAlarmReader, ReportReader, ServiceDep, SupervisorDep

__all__ = ["router"]

router = APIRouter(prefix="/api/reports", tags=["reports"])

_REPORT: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/json": {}, "text/csv": {}}, "description": "the report"}
}


@router.get("/response-times", response_model=None, responses=_REPORT)
def response_times(
    service: ServiceDep,
    districts: DistrictsDep,
    _: ReportReader,
    from_: Annotated[AwareDatetime | None, Query(alias="from")] = None,
    to: AwareDatetime | None = None,
    group_by: Literal["district", "unit", "source", "priority"] = "priority",
    format: Literal["json", "csv"] = "json",
) -> Any:
    try:
        start, end = report_window(from_, to, service.clock())
    except ValueError as e:
        raise HTTPException(422, detail=str(e)) from e
    if group_by == "district" and districts is None:
        raise HTTPException(422, detail="group_by=district needs a districts GeoJSON (--districts / QORGAU_DISTRICTS)")
    groups = summarize(service.store.alerts_received_between(start, end), group_by, districts=districts)
    if format == "csv":
        return PlainTextResponse(
            to_csv(groups, group_by),
            media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="response-times-{group_by}.csv"'},
        )
    return {
        "from": start.isoformat(),
        "to": end.isoformat(),
        "group_by": group_by,
        "groups": [g.to_json() for g in groups],
    }


@router.get("/self-tests")
def self_tests(supervisor: SupervisorDep, _: DeviceReader) -> dict[str, Any]:
    if supervisor is None:
        return {"max_age_s": None, "overdue": []}
    return {
        "max_age_s": supervisor.policy.self_test_max_age.total_seconds(),
        "overdue": supervisor.overdue_self_tests(),
    }


@router.get("/false-alarms", response_model=None, responses=_REPORT)
def false_alarms(
    service: ServiceDep,
    _: FalseAlarmReader,
    from_: Annotated[AwareDatetime | None, Query(alias="from")] = None,
    to: AwareDatetime | None = None,
    group_by: Literal["device", "site"] = "site",
    format: Literal["json", "csv"] = "json",
    lang: Literal["kk", "ru", "en"] = "ru",
) -> Any:
    try:
        start, end = report_window(from_, to, service.clock())
    except ValueError as e:
        raise HTTPException(422, detail=str(e)) from e
    rows = false_alarm_rates(service.store.alerts_received_between(start, end), group_by)
    if format == "csv":
        return PlainTextResponse(
            false_alarm_csv(rows, group_by, lang=lang),
            media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="false-alarms-{group_by}.csv"'},
        )
    t = catalogue(lang)
    labels = {k: t[k] for k in ("fa_title", f"fa_{group_by}", "fa_presses", "fa_false_alarms", "fa_rate")}
    if group_by == "site":
        labels.update({f"site_{r.key}": t.get(f"site_{r.key}", r.key) for r in rows})
    return {
        "from": start.isoformat(),
        "to": end.isoformat(),
        "group_by": group_by,
        "lang": lang,
        "labels": labels,
        "groups": [r.to_json() for r in rows],
    }
