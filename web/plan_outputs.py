"""Write a plan's files for the commander: map, GeoJSON, GPX per patrol, plan.md and plan.csv.

Wires the planner (documents) to the map renderer; used by ``qorgau plan`` and ``POST /api/plans``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from geo import great_circle_m
from maps import render_plan_map
from patrol_planner.export import (
    PLAN_CSV_HEADER,
    booths_geojson,
    gpx_parts,
    hotspots_geojson,
    plan_csv_rows,
    plan_markdown,
    risk_cells_geojson,
    routes_geojson,
    streets_geojson,
)
from patrol_planner.i18n import messages
from patrol_planner.io import write_csv, write_geojson, write_gpx
from patrol_planner.planner import PlanBundle

__all__ = ["MAP_LABEL_KEYS", "plan_summary", "write_plan_outputs"]

MAP_LABEL_KEYS = (
    "layer_streets",
    "layer_risk",
    "layer_hotspots",
    "layer_booths",
    "layer_uncovered",
    "layer_route",
    "legend_risk",
    "stop",
    "arrive",
    "depart",
    "dwell_min",
    "risk",
    "booth",
    "hot_spot",
    "attribution",
)


def plan_summary(bundle: PlanBundle) -> dict[str, Any]:
    """Key figures of a plan (for the CLI's last line, the API and benchmarks)."""
    plan = bundle.plan
    return {
        "shift": plan.shift.label,
        "timezone": plan.shift.timezone,
        "patrols": len(plan.routes),
        "hotspots": len(bundle.risk.hotspots),
        "estimator": bundle.risk.estimator,
        "expected_incidents": round(bundle.risk.expected_per_shift, 4),
        "risk_covered": round(plan.risk_covered, 5),
        "risk_covered_share": round(plan.risk_covered / plan.total_risk, 4) if plan.total_risk else 0.0,
        "risk_per_patrol_hour": round(plan.risk_per_patrol_hour, 6),
        "seed": plan.seed,
        "solve_s": round(plan.solve_s, 2),
        "coverage": bundle.coverage.as_dict(),
        "incidents": bundle.report.as_dict(),
        "training": bundle.training.as_dict() if bundle.training is not None else None,
        "routes": [
            {
                "patrol": r.patrol_id,
                "booth": r.booth.id,
                "stops": len(r.stops),
                "length_m": round(r.length_m, 1),
                "walking_min": round(r.walking_s / 60, 1),
                "risk_covered": round(r.risk_covered, 6),
            }
            for r in plan.routes
        ],
    }


def write_plan_outputs(bundle: PlanBundle, out_dir: str | Path, *, lang: str = "ru") -> dict[str, Path]:
    """Write every file of the plan into ``out_dir`` (created if needed); returns them by name."""
    m = messages(lang)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    routes = routes_geojson(bundle)
    hot = hotspots_geojson(bundle)
    booths = booths_geojson(bundle)
    collection = {
        "type": "FeatureCollection",
        "features": routes["features"] + booths["features"] + hot["features"],
        "properties": {"shift": bundle.plan.shift.label, "timezone": bundle.plan.shift.timezone},
    }
    files["routes.geojson"] = write_geojson(out / "routes.geojson", collection)
    for route in bundle.plan.routes:
        name = f"patrol_{route.patrol_id}.gpx"
        files[name] = write_gpx(out / name, **gpx_parts(bundle, route, m))
    files["plan.csv"] = write_csv(out / "plan.csv", PLAN_CSV_HEADER, plan_csv_rows(bundle))
    labels = m.labels(*MAP_LABEL_KEYS)
    if bundle.synthetic or "synthetic" in bundle.network_label.lower():
        labels["warning"] = m("synthetic_warning")
    page = render_plan_map(
        routes=routes,
        hotspots=hot,
        booths=booths,
        labels=labels,
        risk_cells=risk_cells_geojson(bundle),
        streets=streets_geojson(bundle),
        title=f"{m('plan_title')}: {bundle.plan.shift.label}",
        distance_m=great_circle_m,
    )
    (out / "plan.html").write_text(page, encoding="utf-8")
    files["plan.html"] = out / "plan.html"
    (out / "summary.json").write_text(json.dumps(plan_summary(bundle), ensure_ascii=False, indent=1), encoding="utf-8")
    files["summary.json"] = out / "summary.json"
    names = [
        "plan.html",
        "routes.geojson",
        *[n for n in files if n.endswith(".gpx")],
        "plan.csv",
        "plan.md",
        "summary.json",
    ]
    (out / "plan.md").write_text(plan_markdown(bundle, m, files=names), encoding="utf-8")
    files["plan.md"] = out / "plan.md"
    return files
