"""A booth-siting answer as files for a meeting: map, GeoJSON, build-order sheet and table, summary.

Wires the siting model (:mod:`patrol_planner.siting`) to the map renderer
(:func:`maps.render_sites_map`); used by ``qorgau sites`` and ``POST /api/sites`` alike, so both
write the same files:

- ``sites.html``: the offline map (existing and new booths with their build order, the walking
  areas, uncovered hot spots, districts);
- ``sites.geojson``: the same features for a GIS;
- ``sites.md`` and ``sites.csv``: the build order (k, site, position, extra risk covered,
  cumulative share), coverage per district, existing booths alone against after, the optimality
  gap, the greedy baseline and what went in;
- ``summary.json``: :meth:`SitingResult.summary`.

Texts come from ``web/locales/sites.<lang>.json`` (kk, ru, en); times are the city's local time.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias
from zoneinfo import ZoneInfo

from geo import Router, load_network
from patrol_planner.i18n import Messages
from patrol_planner.siting_types import SiteFeature, SitingRequest, SitingResult
from web.pages import street_layers, utc_label
from web.site_inputs import check_siting_request, read_feature_collection

if TYPE_CHECKING:
    from shapely.geometry.base import BaseGeometry

__all__ = [
    "AREA_MINUTES",
    "SITES_CSV_HEADER",
    "SITE_FILES",
    "SiteSolver",
    "WalkingAreas",
    "areas_geojson",
    "make_sites",
    "sites_csv_rows",
    "sites_geojson",
    "sites_markdown",
    "sites_messages",
    "write_site_outputs",
]

LANGS = ("kk", "ru", "en")
_LOCALES = Path(__file__).with_name("locales")

AREA_MINUTES = (5.0, 10.0)
"""The walking areas the map always draws (and ``--walk-min`` beside them)."""

SITE_FILES = ("sites.html", "sites.geojson", "sites.md", "sites.csv", "summary.json")
"""Every file a siting run writes."""

SITES_CSV_HEADER = (
    "section",
    "k",
    "id",
    "name",
    "lat",
    "lon",
    "marginal_weight",
    "cumulative_share",
    "total_weight",
    "covered_weight",
    "covered_share",
    "covered_share_existing",
)
"""``sites.csv`` is one long table; ``section`` says what a row is: ``added`` (the build order, k =
1..N), ``existing``, ``moved`` (``name`` the booth moved, ``id`` where to, ``marginal_weight`` the
gain), ``district``, ``total`` (everything, after against existing alone) and ``greedy``."""

SiteSolver = Callable[..., SitingResult]
"""``run_siting(request, *, router=None) -> SitingResult`` (:mod:`patrol_planner.siting`)."""
WalkingAreas: TypeAlias = "Callable[[Any, list[SiteFeature], list[float]], Mapping[float, BaseGeometry]]"
"""``walking_areas(router, sites, minutes) -> {minutes: geometry}`` (:mod:`patrol_planner.siting_data`)."""


def sites_messages(lang: str) -> Messages:
    """The siting texts in ``lang`` (``web/locales/sites.<lang>.json``)."""
    if lang not in LANGS:
        msg = f"language must be one of {', '.join(LANGS)}, got {lang!r}"
        raise ValueError(msg)
    catalogue: dict[str, str] = json.loads((_LOCALES / f"sites.{lang}.json").read_text(encoding="utf-8"))
    return Messages(lang, catalogue)


def _point(lat: float, lon: float, props: dict[str, Any]) -> dict[str, Any]:
    return {"type": "Feature", "geometry": {"type": "Point", "coordinates": [lon, lat]}, "properties": props}


def _collection(features: list[dict[str, Any]], **props: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "FeatureCollection", "features": features}
    if props:
        out["properties"] = props
    return out


def areas_geojson(areas: Mapping[float, BaseGeometry]) -> dict[str, Any]:
    """The walking areas as (Multi)Polygon features with ``kind`` and ``minutes``, shortest first."""
    import shapely  # with a siting's results only: serve's start does not load shapely
    from shapely.geometry import mapping

    features = []
    for minutes in sorted(areas):
        geom = areas[minutes]
        if geom.is_empty:
            continue
        simple = shapely.set_precision(geom, 1e-6)  # about 0.1 m: smaller files, the same areas
        features.append(
            {"type": "Feature", "geometry": mapping(simple), "properties": {"kind": "walking_area", "minutes": minutes}}
        )
    return _collection(features)


def _district_name(props: dict[str, Any]) -> str:
    return str(props.get("name") or props.get("id") or "")


def _districts_with_coverage(result: SitingResult, districts: dict[str, Any] | None) -> dict[str, Any] | None:
    if not districts:
        return None
    by_name = {d.name: d for d in result.districts}
    features = []
    for f in districts.get("features", []):
        props = dict(f.get("properties") or {})
        name = _district_name(props)
        props.update(kind="district", name=name)
        d = by_name.get(name)
        if d is not None:
            props.update(
                total_weight=d.total_weight,
                covered_weight=d.covered_weight,
                covered_share=d.covered_share,
                covered_share_existing=d.covered_share_existing,
            )
        features.append({"type": "Feature", "geometry": f["geometry"], "properties": props})
    return _collection(features)


def sites_geojson(
    result: SitingResult,
    *,
    areas: Mapping[float, BaseGeometry] | None = None,
    districts: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Every feature of the answer: booths (``kind`` ``existing``/``added``/``moved``), uncovered
    points, walking areas and districts with their coverage."""
    features = [_point(s.lat, s.lon, {"kind": "existing", "id": s.id}) for s in result.existing]
    features += [
        _point(
            a.lat,
            a.lon,
            {
                "kind": "added",
                "k": k,
                "id": a.id,
                "marginal_weight": a.marginal_weight,
                "cumulative_share": a.cumulative_share,
            },
        )
        for k, a in enumerate(result.added, 1)
    ]
    features += [
        _point(mv.lat, mv.lon, {"kind": "moved", "id": mv.to_id, "from": mv.from_id, "gain_weight": mv.gain_weight})
        for mv in result.moves
    ]
    features += [
        _point(u.lat, u.lon, {"kind": "uncovered", "rank": i, "id": u.id, "weight": u.weight})
        for i, u in enumerate(result.uncovered, 1)
    ]
    features += areas_geojson(areas or {})["features"]
    features += (_districts_with_coverage(result, districts) or {"features": []})["features"]
    return _collection(features, walk_min=result.walk_min, covered_share=result.covered_share)


def sites_csv_rows(result: SitingResult) -> list[list[Any]]:
    """The rows of ``sites.csv`` under :data:`SITES_CSV_HEADER`."""
    r6 = round
    rows: list[list[Any]] = [
        ["added", k, a.id, "", a.lat, a.lon, r6(a.marginal_weight, 6), r6(a.cumulative_share, 6), "", "", "", ""]
        for k, a in enumerate(result.added, 1)
    ]
    rows += [["existing", "", s.id, "", s.lat, s.lon, "", "", "", "", "", ""] for s in result.existing]
    rows += [
        ["moved", "", mv.to_id, mv.from_id, mv.lat, mv.lon, r6(mv.gain_weight, 6), "", "", "", "", ""]
        for mv in result.moves
    ]
    rows += [
        [
            "district",
            "",
            "",
            d.name,
            "",
            "",
            "",
            "",
            r6(d.total_weight, 6),
            r6(d.covered_weight, 6),
            r6(d.covered_share, 6),
            r6(d.covered_share_existing, 6),
        ]
        for d in result.districts
    ]
    rows.append(
        [
            "total",
            len(result.added),
            "",
            "",
            "",
            "",
            "",
            "",
            r6(result.total_weight, 6),
            r6(result.covered_weight, 6),
            r6(result.covered_share, 6),
            r6(result.covered_share_existing, 6),
        ]
    )
    rows.append(["greedy", len(result.added), "", "", "", "", "", "", "", "", r6(result.greedy_covered_share, 6), ""])
    return rows


def _md_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    def cell(x: object) -> str:
        return str(x).replace("|", "\\|").replace("\n", " ")

    return [
        "| " + " | ".join(cell(h) for h in header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
        *("| " + " | ".join(cell(c) for c in row) + " |" for row in rows),
    ]


def _solver_text(result: SitingResult, m: Messages) -> str:
    key = {"optimal": "solver_optimal", "time_limit": "solver_time_limit", "greedy": "solver_greedy"}
    return m(key[result.solver_status]) if result.solver_status in key else result.solver_status


def _local(when: datetime, timezone: str) -> tuple[str, str]:
    tz = ZoneInfo(timezone)
    local = when.astimezone(tz)
    offset = local.utcoffset()
    label = utc_label(offset, timezone) if offset is not None else timezone
    return local.strftime("%Y-%m-%d %H:%M"), label


def sites_markdown(
    result: SitingResult,
    m: Messages,
    *,
    files: Sequence[str] = SITE_FILES,
    timezone: str = "Asia/Almaty",
    generated_at: datetime | None = None,
) -> str:
    """``sites.md``: the sheet a planner takes to a meeting."""
    time, tz = _local(generated_at or datetime.now(UTC), timezone)
    pct = "{:.1%}".format
    lines = [f"# {m('title')}", "", m("generated", time=time, tz=tz), "", m("walk_rule", m=result.walk_min), ""]
    if result.sources.get("synthetic"):
        lines += [f"**{m('synthetic_warning')}**", ""]
    gain = result.covered_share - result.covered_share_existing
    summary = [
        (m("existing_booths"), len(result.existing)),
        (m("new_booths"), len(result.added)),
        (m("demand_points"), result.demand_points),
        (m("candidate_sites"), result.candidate_sites),
        (m("total_weight"), f"{result.total_weight:.4g}"),
        (m("covered_existing"), pct(result.covered_share_existing)),
        (m("covered_after"), f"{pct(result.covered_share)} ({result.covered_weight:.4g})"),
        (m("gain"), f"{gain * 100:+.1f} pp"),
        (m("greedy"), pct(result.greedy_covered_share)),
        (m("gap"), f"{result.optimality_gap:.2%}"),
        (m("solver"), _solver_text(result, m)),
        (m("solve_time"), f"{result.solve_s:.1f}"),
    ]
    if result.district_ratio is not None:
        summary.append((m("district_ratio"), f"{result.district_ratio:.2f}"))
    lines += [f"## {m('summary')}", "", *_md_table(["", ""], summary), ""]
    lines += [f"## {m('build_order')}", "", m("build_order_note"), ""]
    header = [m("k"), m("id"), m("lat"), m("lon"), m("marginal_weight"), m("cumulative_share")]
    rows = [
        [k, a.id, f"{a.lat:.6f}", f"{a.lon:.6f}", f"{a.marginal_weight:.4g}", pct(a.cumulative_share)]
        for k, a in enumerate(result.added, 1)
    ]
    lines += [*(_md_table(header, rows) if rows else [m("none")]), ""]
    if result.districts:
        header = [
            m("district"),
            m("district_total"),
            m("district_covered"),
            m("district_share_existing"),
            m("district_share"),
        ]
        rows = [
            [
                d.name,
                f"{d.total_weight:.4g}",
                f"{d.covered_weight:.4g}",
                pct(d.covered_share_existing),
                pct(d.covered_share),
            ]
            for d in result.districts
        ]
        lines += [f"## {m('districts')}", "", *_md_table(header, rows), ""]
    if result.backup_sites:
        lines += [
            f"## {m('backup')}",
            "",
            m("backup_line", twice=result.backup_covered_twice, sites=result.backup_sites),
            "",
        ]
    if result.moves:
        header = [m("move_from"), m("move_to"), m("lat"), m("lon"), m("move_gain")]
        rows = [
            [mv.from_id, mv.to_id, f"{mv.lat:.6f}", f"{mv.lon:.6f}", f"{mv.gain_weight:.4g}"] for mv in result.moves
        ]
        lines += [f"## {m('moves')}", "", *_md_table(header, rows), ""]
    if result.uncovered:
        header = ["#", m("id"), m("lat"), m("lon"), m("weight")]
        rows = [
            [i, u.id, f"{u.lat:.6f}", f"{u.lon:.6f}", f"{u.weight:.4g}"] for i, u in enumerate(result.uncovered[:20], 1)
        ]
        lines += [f"## {m('uncovered')}", "", *_md_table(header, rows), ""]
    lines += [f"## {m('provenance')}", ""]
    lines += [f"- {k}: {json.dumps(v, ensure_ascii=False, default=str)}" for k, v in sorted(result.sources.items())]
    lines += ["", f"## {m('files')}", "", *(f"- `{name}`" for name in files), ""]
    return "\n".join(lines)


def _summary_lines(result: SitingResult, m: Messages) -> list[str]:
    return [
        m("walk_rule", m=result.walk_min),
        f"{m('covered_existing')}: {result.covered_share_existing:.1%}",
        f"{m('covered_after')}: {result.covered_share:.1%} (+{len(result.added)})",
        f"{m('greedy')}: {result.greedy_covered_share:.1%}; {m('gap')}: {result.optimality_gap:.2%}",
    ]


def write_site_outputs(
    result: SitingResult,
    out_dir: str | Path,
    *,
    lang: str = "ru",
    areas: Mapping[float, BaseGeometry] | None = None,
    districts: dict[str, Any] | None = None,
    streets: dict[str, Any] | None = None,
    timezone: str = "Asia/Almaty",
    generated_at: datetime | None = None,
) -> dict[str, Path]:
    """Write :data:`SITE_FILES` into ``out_dir`` (created if needed); returns them by name.

    Parameters
    ----------
    areas
        The booths' walking areas by minutes (``walking_areas`` of the model).
    districts
        The district polygons (GeoJSON with ``name``), drawn with their coverage.
    streets
        The base layer of the map (:func:`web.pages.street_layers`).
    """
    # Folium and pandas load with the first siting, not with serve.
    from maps import SITES_MAP_LABEL_KEYS, render_sites_map
    from patrol_planner.io import write_csv, write_geojson

    m = sites_messages(lang)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    generated_at = generated_at or datetime.now(UTC)
    files: dict[str, Path] = {}
    collection = sites_geojson(result, areas=areas, districts=districts)
    files["sites.geojson"] = write_geojson(out / "sites.geojson", collection)

    def kind(k: str) -> dict[str, Any]:
        return _collection([f for f in collection["features"] if f["properties"]["kind"] == k])

    labels = m.labels(*SITES_MAP_LABEL_KEYS)
    if result.sources.get("synthetic"):
        labels["warning"] = m("synthetic_warning")
    page = render_sites_map(
        existing=kind("existing"),
        added=kind("added"),
        labels=labels,
        areas=kind("walking_area"),
        uncovered=kind("uncovered"),
        districts=kind("district"),
        streets=streets,
        title=m("title"),
        summary_lines=_summary_lines(result, m),
    )
    (out / "sites.html").write_text(page, encoding="utf-8")
    files["sites.html"] = out / "sites.html"
    files["sites.csv"] = write_csv(out / "sites.csv", SITES_CSV_HEADER, sites_csv_rows(result))
    (out / "summary.json").write_text(json.dumps(result.summary(), ensure_ascii=False, indent=1), encoding="utf-8")
    files["summary.json"] = out / "summary.json"
    text = sites_markdown(result, m, files=SITE_FILES, timezone=timezone, generated_at=generated_at)
    (out / "sites.md").write_text(text, encoding="utf-8")
    files["sites.md"] = out / "sites.md"
    return files


def _model() -> tuple[SiteSolver, WalkingAreas]:
    """The siting model's two entry points (imported when a run starts: scipy and the solver are heavy)."""
    siting = importlib.import_module("patrol_planner.siting")
    data = importlib.import_module("patrol_planner.siting_data")
    solve: SiteSolver = siting.run_siting
    walking: WalkingAreas = data.walking_areas
    return solve, walking


def make_sites(
    request: SitingRequest,
    out_dir: str | Path,
    *,
    lang: str = "ru",
    router: Router | None = None,
    solve: SiteSolver | None = None,
    walking_areas: WalkingAreas | None = None,
    progress: Callable[[str], None] | None = None,
) -> tuple[SitingResult, dict[str, Path]]:
    """Check the question, answer it with the model, draw the walking areas and write the files.

    ``router`` is the walking network's router (built from ``request.network`` when None);
    ``solve`` and ``walking_areas`` default to the model's :func:`run_siting` and
    :func:`walking_areas`.

    Raises
    ------
    web.site_inputs.SitingInputError
        For a bad input, before anything heavy runs.
    """
    say = progress or (lambda _text: None)
    check_siting_request(request, network=router is None)
    districts = read_feature_collection(request.districts, option="--districts") if request.districts else None
    if solve is None or walking_areas is None:
        default_solve, default_areas = _model()
        solve = solve or default_solve
        walking_areas = walking_areas or default_areas
    if router is None:
        say("loading the street network")
        router = Router(load_network(request.network))
    say("solving")
    result = solve(request, router=router)
    say("walking areas")
    sites = [*result.existing, *(SiteFeature(a.id, a.lat, a.lon) for a in result.added)]
    minutes = sorted({*AREA_MINUTES, float(request.walk_min)})
    areas = walking_areas(router, sites, minutes) if sites else {}
    say("writing the files")
    files = write_site_outputs(
        result,
        out_dir,
        lang=lang,
        areas=areas,
        districts=districts,
        streets=street_layers(router.network),
        timezone=request.timezone,
    )
    return result, files
