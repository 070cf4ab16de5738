"""Booth siting benchmarks: the MCLP at 50,000 x 5,000 on a generated city, and on Almaty and Toronto.

``run(quick)`` measures and returns plain figures; ``render(figures)`` turns them into Markdown
lines for BENCHMARKS.md (``quick``: tiny sizes, a check that the bench runs, not a measurement).

1. **Scale**: a generated 10,000-node city (geo.generate_city), 50,000 demand points (the
   places of synthetic self-exciting incidents, weight 1 each), 5,000 candidates drawn from the
   default candidates (every 100 m along streets where a booth may stand), 50 existing booths,
   N = 170, 10 minutes' walk. Timed: the coverage sets on the walking network, the MILP
   (scipy.optimize.milp, HiGHS), greedy. spopt's MCLP (PuLP + CBC, its constraints built in
   Python) runs on a window it can handle, beside our MILP on the same window's matrix.
2. **Almaty** (osm/almaty_2012-03.osm.pbf): its ``amenity=police`` points as the existing booths,
   synthetic labelled incidents (patrol_planner.synthetic; not real), demand = the risk surface,
   N = 170 at 10 minutes.
3. **Toronto** (the U of T extract with the real Toronto Police MCI incidents near its streets):
   the two police points as existing booths, N = 10 at 5 minutes (the extract is about 2 km
   across: 170 booths at 10 minutes would cover all of it).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("QORGAU_SHARED_DATA", ROOT.parent / "shared" / "data"))

log = logging.getLogger("bench.sites")

__all__ = ["render", "run"]


def _shared(rel: str) -> Path:
    p = SHARED / rel
    if not p.is_file():
        msg = f"shared data missing: {p} (benchmarks read ../shared/data; it is never copied here)"
        raise FileNotFoundError(msg)
    return p


def _solve_table(w, cov, existing_idx, add: int, time_limit: float) -> dict:
    from patrol_planner.siting import build_order, covered_weight, greedy, solve_mclp

    total = float(w.sum())
    t = time.perf_counter()
    sol = solve_mclp(w, cov, existing_idx, add, time_limit_s=time_limit)
    milp_s = time.perf_counter() - t
    t = time.perf_counter()
    g = greedy(w, cov, existing_idx, add)
    greedy_s = time.perf_counter() - t
    order = build_order(w, cov, existing_idx, sol.added)
    k40 = min(40, len(order))
    return {
        "demand_points": int(cov.shape[0]),
        "sites": int(cov.shape[1]),
        "existing": len(existing_idx),
        "add": add,
        "coverage_pairs": int(cov.nnz),
        "milp_rows_after_merge": sol.extra["rows"],
        "status": sol.status,
        "gap": sol.gap,
        "milp_s": round(milp_s, 3),
        "greedy_s": round(greedy_s, 3),
        "share_existing": covered_weight(w, cov, existing_idx) / total,
        "share_milp": sol.covered_weight / total,
        "share_greedy": covered_weight(w, cov, np.concatenate([existing_idx, g])) / total,
        "first_k": k40,
        "share_first_k": order[k40 - 1][2] / total if order else covered_weight(w, cov, existing_idx) / total,
    }


def _spopt_window(w, cov, existing_idx, site_x, site_y, add: int, n_sites: int, time_limit: float) -> dict:
    """spopt's MCLP on the sites nearest the centre and the demand they can reach; our MILP on the same."""
    import pulp
    from spopt.locate import MCLP

    from patrol_planner.siting import solve_mclp

    cx, cy = float(np.median(site_x)), float(np.median(site_y))
    near = np.argsort(np.hypot(site_x - cx, site_y - cy), kind="stable")[:n_sites]
    sub_sites = np.sort(near)
    sub = cov[:, sub_sites]
    rows = np.flatnonzero(np.diff(sub.indptr) > 0)
    m = sub[rows]
    ws = w[rows]
    ex = np.flatnonzero(np.isin(sub_sites, existing_idx))
    t = time.perf_counter()
    ours = solve_mclp(ws, m, ex, add, time_limit_s=time_limit)
    ours_s = time.perf_counter() - t
    t = time.perf_counter()
    cost = np.where(m.toarray(), 0.0, 2.0)
    predefined = np.zeros(m.shape[1], dtype=int)
    predefined[ex] = 1
    model = MCLP.from_cost_matrix(
        cost, ws, service_radius=1.0, p_facilities=int(ex.size + add), predefined_facilities_arr=predefined
    )
    build_s = time.perf_counter() - t
    model = model.solve(pulp.PULP_CBC_CMD(msg=False, timeLimit=max(10, int(time_limit))))
    spopt_s = time.perf_counter() - t
    return {
        "demand_points": int(m.shape[0]),
        "sites": int(m.shape[1]),
        "existing": int(ex.size),
        "add": add,
        "milp_s": round(ours_s, 3),
        "milp_objective": ours.covered_weight,
        "spopt_s": round(spopt_s, 3),
        "spopt_build_s": round(build_s, 3),
        "spopt_objective": float(pulp.value(model.problem.objective)),
        "same_objective": bool(
            abs(float(pulp.value(model.problem.objective)) - ours.covered_weight)
            <= 1e-6 * max(1.0, ours.covered_weight)
        ),
    }


def _scale(quick: bool) -> dict:
    from geo import Router, generate_city
    from patrol_planner import WalkGraph
    from patrol_planner.siting_data import coverage_matrix, default_candidates
    from patrol_planner.synthetic import self_exciting_incidents

    n_nodes, n_demand, n_cand, n_exist, add, window = (
        (2000, 3000, 300, 10, 20, 60) if quick else (100_000, 50_000, 5000, 50, 170, 400)
    )
    net = generate_city(n_nodes, seed=1)
    graph = WalkGraph(Router(net))
    inc = self_exciting_incidents(net, n_demand, seed=2, n_hotspots=80, spread_m=600.0)
    rng = np.random.default_rng(3)
    pick = rng.choice(len(inc), size=min(n_demand, len(inc)), replace=False)
    d_lat, d_lon = inc.lat[pick], inc.lon[pick]
    w = np.ones(pick.size)
    t0 = time.perf_counter()
    pool = default_candidates(graph)
    cand = [pool[i] for i in np.sort(rng.choice(len(pool), size=min(n_cand, len(pool)), replace=False))]
    ex = rng.choice(pick.size, size=n_exist, replace=False)
    s_lat = np.concatenate([d_lat[ex], [c.lat for c in cand]])
    s_lon = np.concatenate([d_lon[ex], [c.lon for c in cand]])
    cov = coverage_matrix(graph, d_lat, d_lon, s_lat, s_lon, walk_min=10.0)
    cover_s = time.perf_counter() - t0
    log.info("sites: coverage %s pairs in %.1f s", cov.nnz, cover_s)
    existing_idx = np.arange(n_exist)
    table = _solve_table(w, cov, existing_idx, add, time_limit=10.0 if quick else 40.0)
    total_s = time.perf_counter() - t0
    sx, sy = net.to_xy(s_lat, s_lon)
    spopt = _spopt_window(w, cov, existing_idx, sx, sy, max(2, add // 8), window, time_limit=60.0)
    log.info("sites: spopt window %.1f s vs milp %.2f s", spopt["spopt_s"], spopt["milp_s"])
    return {
        "label": net.label,
        "nodes": net.n_nodes,
        "candidate_pool": len(pool),
        "coverage_s": round(cover_s, 3),
        "total_s": round(total_s, 3),
        **table,
        "spopt_window": spopt,
    }


def _real(name: str, quick: bool) -> dict:
    from geo import Router, load_network
    from patrol_planner import WalkGraph, read_booths, read_incidents, read_osm_bounds, within_area
    from patrol_planner.siting_data import Demand, coverage_matrix, default_candidates, demand_from_incidents
    from patrol_planner.synthetic import self_exciting_incidents

    t0 = time.perf_counter()
    if name == "almaty":
        net = load_network(_shared("osm/almaty_2012-03.osm.pbf"))
        graph = WalkGraph(Router(net))
        booths = read_booths(_shared("osm/almaty_2012-03_police_fire_hospital.geojson"))
        inc = self_exciting_incidents(net, 3000 if quick else 20_000, seed=7, n_hotspots=60)
        # N = 40: the booths a ministry can afford in a year; candidates every 250 m of street.
        walk, add, incidents_label = 10.0, (20 if quick else 40), "synthetic self-exciting (not real)"
    else:
        osm = _shared("osm/toronto_uoft_2020-11.osm.gz")
        net = load_network(osm)
        graph = WalkGraph(Router(net))
        from patrol_planner import Booth

        booths = [Booth("tps-hq", 43.6616, -79.3866), Booth("uoft", 43.66487, -79.40098)]
        raw, report = read_incidents(_shared("crime/toronto_mci_2014_2021.csv.gz"), timezone="America/Toronto")
        inc, _ = within_area(raw, graph, bounds=read_osm_bounds(osm), report=report)
        walk, add, incidents_label = 5.0, (4 if quick else 10), "Toronto Police MCI 2014-2021 (real)"
    load_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    demand = demand_from_incidents(inc, graph)
    cand = default_candidates(graph, spacing_m=250.0 if name == "almaty" else 100.0)
    if quick and name == "almaty":  # the central district only (osm/PROVENANCE.md), for seconds
        lat0, lon0, lat1, lon1 = 43.22, 76.88, 43.28, 76.98
        cand = [c for c in cand if lat0 <= c.lat <= lat1 and lon0 <= c.lon <= lon1][::4]
        inside = (demand.lat >= lat0) & (demand.lat <= lat1) & (demand.lon >= lon0) & (demand.lon <= lon1)
        demand = Demand(
            [i for i, k in zip(demand.ids, inside, strict=True) if k],
            demand.lat[inside],
            demand.lon[inside],
            demand.weight[inside],
            demand.sources,
        )
    s_lat = np.array([b.lat for b in booths] + [c.lat for c in cand])
    s_lon = np.array([b.lon for b in booths] + [c.lon for c in cand])
    cov = coverage_matrix(graph, demand.lat, demand.lon, s_lat, s_lon, walk_min=walk)
    cover_s = time.perf_counter() - t1
    table = _solve_table(demand.weight, cov, np.arange(len(booths)), add, time_limit=10.0 if quick else 60.0)
    return {
        "network": net.label,
        "incidents": len(inc),
        "incidents_label": incidents_label,
        "walk_min": walk,
        "candidates": len(cand),
        "load_s": round(load_s, 3),
        "coverage_s": round(cover_s, 3),
        "total_s": round(time.perf_counter() - t1, 3),
        **table,
    }


def run(quick: bool) -> dict:
    """Measure everything; ``quick`` at tiny sizes (seconds, not for the record)."""
    return {
        "scale": _scale(quick),
        "almaty": _real("almaty", quick),
        "toronto": _real("toronto", quick),
        "quick": quick,
    }


def _pct(x: float) -> str:
    return f"{100 * x:.2f} %"


def render(figures: dict) -> list[str]:
    """Markdown lines for BENCHMARKS.md."""
    s, sp = figures["scale"], figures["scale"]["spopt_window"]
    lines = [
        "## Booth siting: maximal covering location with the existing booths kept",
        "",
        f"**Scale.** {s['label']}; {s['demand_points']:,} demand points (synthetic incidents, weight 1), "
        f"{s['sites'] - s['existing']:,} candidates (of {s['candidate_pool']:,} default ones), {s['existing']} existing "
        f"booths, N = {s['add']}, 10 minutes' walk; {s['coverage_pairs']:,} covering pairs, "
        f"{s['milp_rows_after_merge']:,} MILP rows after merging equal rows.",
        "",
        "| step | seconds |",
        "|---|---|",
        f"| coverage sets on the walking network (bounded searches from every site) | {s['coverage_s']:.1f} |",
        f"| MILP (scipy `milp`, HiGHS): status {s['status']}, gap {s['gap']:.2g} | {s['milp_s']:.1f} |",
        f"| greedy baseline | {s['greedy_s']:.2f} |",
        f"| **total** (with build order) | **{s['total_s']:.1f}** |",
        "",
        f"Covered: existing only {_pct(s['share_existing'])}, greedy {_pct(s['share_greedy'])}, "
        f"**MILP {_pct(s['share_milp'])}**; the first {s['first_k']} of the build order {_pct(s['share_first_k'])}. "
        f"Target: within 60 s in all: **{'met' if s['total_s'] <= 60 else 'not met'}**.",
        "",
        f"spopt 0.7 (PuLP + CBC) on a window it can handle ({sp['demand_points']:,} demand points x {sp['sites']} sites, "
        f"{sp['existing']} existing, N = {sp['add']}): {sp['spopt_s']:.1f} s ({sp['spopt_build_s']:.1f} s of it building "
        f"the model) vs {sp['milp_s']:.2f} s for ours; same objective: **{'yes' if sp['same_objective'] else 'no'}** "
        f"({sp['spopt_objective']:g} vs {sp['milp_objective']:g}).",
        "",
        "**Real data.** Demand = the risk surface (space-time KDE, 100 m cells) of the incidents; candidates along "
        "streets where a booth may stand, every 250 m in Almaty and every 100 m in Toronto.",
        "",
        "| city | incidents | walk | existing | N | candidates | existing only | after N (MILP) | greedy | gap | first k | share after k | seconds |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, title in (("almaty", "Almaty 2012 extract, police points"), ("toronto", "Toronto U of T extract")):
        r = figures[key]
        lines.append(
            f"| {title} | {r['incidents']:,} {r['incidents_label']} | {r['walk_min']:g} min | {r['existing']} | {r['add']} | "
            f"{r['candidates']:,} | {_pct(r['share_existing'])} | **{_pct(r['share_milp'])}** | {_pct(r['share_greedy'])} | "
            f"{r['gap']:.2g} ({r['status']}) | {r['first_k']} | {_pct(r['share_first_k'])} | {r['total_s']:.1f} |"
        )
    lines += [
        "",
        "Seconds: demand, candidates, coverage, MILP, greedy and build order (not loading the network and incidents).",
        "",
    ]
    if figures.get("quick"):
        lines.insert(2, "_Quick run (tiny sizes): not for the record._")
        lines.insert(3, "")
    return lines
