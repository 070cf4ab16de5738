"""HTTP routes of device supervision and the false-alarm report.

Routes (roles)::

    GET /api/devices                   every SOS button: site, position, state (online/offline/unknown),
                                       last_seen, the open offline event, last self-test (admin, dispatcher,
                                       commander, viewer)
    GET /api/device-events             offline events, newest first; ?device_id&open=true&limit&offset (same)
    GET /api/reports/self-tests        buttons without a self-test in the last 24 h (same)
    GET /api/reports/false-alarms      ?from&to&group_by=device|site&format=json|csv&lang=kk|ru|en: presses,
                                       false alarms and rate (commander, viewer, dispatcher)

Without a :class:`~dispatch.supervision.DeviceSupervisor` (a service that does not supervise its
buttons) ``/api/devices`` lists the registry with state ``unknown`` and the event routes are empty.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import PlainTextResponse
from pydantic import AwareDatetime

from dispatch.auth import require_role
from dispatch.domain import Role
from dispatch.intake import MAX_ID
from dispatch.reports import catalogue, false_alarm_csv, false_alarm_rates, report_window
from dispatch.service import DispatchService
from dispatch.supervision import DeviceSupervisor

__all__ = ["mount_supervision"]

R = Role
DEVICE_READERS = require_role(R.ADMIN, R.DISPATCHER, R.COMMANDER, R.VIEWER)
FA_READERS = require_role(R.COMMANDER, R.VIEWER, R.DISPATCHER)


def mount_supervision(app: FastAPI, service: DispatchService, supervisor: DeviceSupervisor | None) -> None:
    """Add the supervision routes to ``app``; the live map's feed hears the supervisor's changes."""
    app.state.supervisor = supervisor
    feed = getattr(app.state, "live_feed", None)
    if supervisor is not None and feed is not None:
        supervisor.add_listener(feed)

    @app.get("/api/devices", dependencies=[Depends(DEVICE_READERS)])
    def list_devices() -> list[dict[str, Any]]:
        if supervisor is not None:
            return supervisor.devices_view()
        return [
            {"id": d.id, "site": d.site.value, "lat": d.lat, "lon": d.lon, "state": "unknown", "last_seen": None,
             "event": None}
            for _, d in sorted(service.devices.items())
        ]  # fmt: skip

    @app.get("/api/device-events", dependencies=[Depends(DEVICE_READERS)])
    def device_events(
        device_id: Annotated[str | None, Query(max_length=128)] = None,
        open: bool = False,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,  # larger: 500 from PostgreSQL's bigint (schemathesis)
    ) -> list[dict[str, Any]]:
        if supervisor is None:
            return []
        events = supervisor.events(device_id=device_id, open_only=open, limit=limit, offset=offset)
        return [e.to_json() for e in events]

    @app.get("/api/reports/self-tests", dependencies=[Depends(DEVICE_READERS)])
    def self_tests() -> dict[str, Any]:
        if supervisor is None:
            return {"max_age_s": None, "overdue": []}
        return {
            "max_age_s": supervisor.policy.self_test_max_age.total_seconds(),
            "overdue": supervisor.overdue_self_tests(),
        }

    @app.get("/api/reports/false-alarms", response_model=None, dependencies=[Depends(FA_READERS)],
             responses={200: {"content": {"application/json": {}, "text/csv": {}}, "description": "the report"}})
    def false_alarms(
        request: Request,
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
                false_alarm_csv(rows, group_by, lang=lang), media_type="text/csv",
                headers={"Content-Disposition": f'attachment; filename="false-alarms-{group_by}.csv"'},
            )  # fmt: skip
        t = catalogue(lang)
        labels = {k: t[k] for k in ("fa_title", f"fa_{group_by}", "fa_presses", "fa_false_alarms", "fa_rate")}
        if group_by == "site":
            labels.update({f"site_{r.key}": t.get(f"site_{r.key}", r.key) for r in rows})
        return {
            "from": start.isoformat(), "to": end.isoformat(), "group_by": group_by, "lang": lang,
            "labels": labels, "groups": [r.to_json() for r in rows],
        }  # fmt: skip
