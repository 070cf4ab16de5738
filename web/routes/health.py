"""Health and metrics.

Routes (roles)::

    GET  /healthz        200 when the database and every extra check answer, else 503 (anyone)
    GET  /metrics        Prometheus text format (no sign-in; bind to a private address)
    GET  /api/metrics    the service's counters as JSON (admin, commander, dispatcher, viewer)
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from web.deps import ContextDep, MetricsReader, ServiceDep
from web.telemetry import CONTENT_TYPE, render

__all__ = ["router"]

router = APIRouter(tags=["health"])


@router.get("/api/metrics")
def metrics(service: ServiceDep, _: MetricsReader) -> dict[str, Any]:
    return service.metrics()


@router.get("/healthz")
def healthz(ctx: ContextDep) -> JSONResponse:
    service = ctx.service
    results = {"database": service.store.ping()}
    for name, check in ctx.checks.items():
        try:
            results[name] = bool(check())
        except Exception:  # a failing check reports unhealthy, it does not fail the endpoint
            results[name] = False
    details: dict[str, Any] = {}
    for name, probe in ctx.probes.items():
        try:
            details[name] = probe()
            results[name] = bool(details[name].get("ok"))
        except Exception as e:
            details[name] = {"ok": False, "error": f"{type(e).__name__}: {e}"}
            results[name] = False
    healthy = all(results.values())
    body = {
        "status": "ok" if healthy else "degraded",
        "replica": ctx.replica,
        "checks": {name: "ok" if ok else "failing" for name, ok in results.items()},
        **details,
        "metrics": service.metrics(),
    }
    return JSONResponse(body, status_code=200 if healthy else 503)


@router.get("/metrics", response_class=PlainTextResponse)
def prometheus_metrics(ctx: ContextDep) -> Response:
    """Counters, queue depths and the ingest latency histogram in the Prometheus text format."""
    labels = {} if ctx.replica is None else {"replica": ctx.replica}
    return Response(render(ctx.collectors, labels=labels), media_type=CONTENT_TYPE)
