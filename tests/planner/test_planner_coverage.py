"""Booth coverage against an independent Dijkstra; a plan on Almaty with synthetic self-exciting incidents."""

from __future__ import annotations

from datetime import date
from functools import lru_cache

import numpy as np
import pytest
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import dijkstra
from support import ALMATY_PBF, TORONTO_BOOTHS, shared, toronto_extract, toronto_graph, toronto_risk

from geo import Router, load_network
from patrol_planner import WalkGraph, read_booths
from patrol_planner.coverage import booth_coverage
from patrol_planner.export import plan_markdown
from patrol_planner.i18n import messages
from patrol_planner.planner import make_plan
from patrol_planner.routes import SolverSettings
from patrol_planner.shift import Shift
from patrol_planner.synthetic import self_exciting_incidents

ALMATY_AMENITIES = shared("osm/almaty_2012-03_police_fire_hospital.geojson")
CENTRAL_ALMATY = (43.22, 76.88, 43.28, 76.98)  # the central district of osm/PROVENANCE.md


def _independent_times(graph: WalkGraph, lat: np.ndarray, lon: np.ndarray, booths: list) -> np.ndarray:
    """Walking seconds from the nearest booth to each point: scipy Dijkstra with booths as extra nodes."""
    n = graph.n_nodes
    rows, cols, w = list(graph.u), list(graph.v), list(graph.time_s)
    bx, by = graph.network.to_xy(np.array([b.lat for b in booths]), np.array([b.lon for b in booths]))
    s = graph.snap_xy(bx, by)
    src = n  # one virtual source joined to both ends of each booth's segment
    for k in range(len(booths)):
        leg = s.distance_m[k] / graph.walk_speed_mps
        seg = s.segment[k]
        for node, frac in ((graph.u[seg], s.fraction[k]), (graph.v[seg], 1 - s.fraction[k])):
            rows.append(src)
            cols.append(int(node))
            w.append(leg + frac * graph.time_s[seg] + 1e-12)
    best: dict[tuple[int, int], float] = {}
    for r, c, wt in zip(rows, cols, w, strict=True):
        key = (min(r, c), max(r, c))  # walking is two-way; the shortest of parallel segments counts
        best[key] = min(wt, best.get(key, np.inf))
    keys = list(best)
    m = coo_matrix(
        ([best[k] for k in keys], ([k[0] for k in keys], [k[1] for k in keys])), shape=(n + 1, n + 1)
    ).tocsr()
    d = dijkstra(m, directed=False, indices=src)[:n]
    x, y = graph.network.to_xy(lat, lon)
    p = graph.snap_xy(x, y)
    t = graph.time_s[p.segment]
    return (
        np.minimum(d[graph.u[p.segment]] + p.fraction * t, d[graph.v[p.segment]] + (1 - p.fraction) * t)
        + p.distance_m / graph.walk_speed_mps
    )


def test_booth_coverage_on_toronto_matches_an_independent_dijkstra() -> None:
    inc, _ = toronto_extract()
    risk = toronto_risk()
    cov = booth_coverage(toronto_graph(), TORONTO_BOOTHS, inc, risk)
    t = _independent_times(toronto_graph(), inc.lat, inc.lon, TORONTO_BOOTHS)
    for minutes in (5, 10):
        assert cov.incident_share[minutes] == pytest.approx(np.mean(t <= minutes * 60), abs=2 / len(inc))
    assert 0 < cov.incident_share[5] < cov.incident_share[10] <= 1
    assert 0 < cov.risk_share[5] <= cov.risk_share[10] <= 1
    spot_t = _independent_times(
        toronto_graph(),
        np.array([s.lat for s in risk.hotspots]),
        np.array([s.lon for s in risk.hotspots]),
        TORONTO_BOOTHS,
    )
    far = {s.id for s, tt in zip(risk.hotspots, spot_t, strict=True) if tt > 600 + 1}
    near = {s.id for s, tt in zip(risk.hotspots, spot_t, strict=True) if tt < 600 - 1}
    listed = {s.id for s, _ in cov.uncovered}
    assert far <= listed and not (listed & near)
    d = cov.as_dict()
    assert set(d["risk_share"]) == {"5", "10"} and len(d["uncovered_hotspots"]) == len(cov.uncovered)


@lru_cache(maxsize=1)
def _almaty() -> WalkGraph:
    return WalkGraph(Router(load_network(ALMATY_PBF)))


def test_synthetic_incidents_are_self_exciting_and_labelled() -> None:
    net = _almaty().network
    inc = self_exciting_incidents(net, 6000, seed=3, days=180)
    assert inc.synthetic and "synthetic" in inc.label
    assert 5000 < len(inc) < 7000 and inc.occurred_at.min() >= np.datetime64("2025-01-01")
    np.testing.assert_array_equal(self_exciting_incidents(net, 6000, seed=3, days=180).lat, inc.lat)

    def near_repeat_ratio(branching: float) -> float:
        """Pairs within 100 m and a day, against the same places at shuffled times."""
        from scipy.spatial import cKDTree

        ev = self_exciting_incidents(net, 6000, seed=3, days=180, branching=branching)
        x, y = ev.xy(net.crs)
        t = (ev.occurred_at - ev.occurred_at.min()).astype(np.float64) / 86_400
        pairs = cKDTree(np.stack([x, y], 1)).query_pairs(100.0, output_type="ndarray")
        shuffled = np.random.default_rng(0).permutation(t)
        close = lambda tt: np.count_nonzero(np.abs(tt[pairs[:, 0]] - tt[pairs[:, 1]]) <= 1)  # noqa: E731
        return close(t) / close(shuffled)

    assert near_repeat_ratio(0.4) > 1.15  # triggered offspring: near repeats
    assert near_repeat_ratio(0.0) < 1.08  # background only: none beyond chance


def test_a_plan_on_almaty_with_synthetic_incidents() -> None:
    graph = _almaty()
    inc = self_exciting_incidents(graph.network, 20_000, seed=5, n_hotspots=30, area=CENTRAL_ALMATY)
    booths = read_booths(ALMATY_AMENITIES)
    assert len(booths) == 40  # amenity=police in the 2012 extract
    shift = Shift.parse("20:00-02:00", on=date(2026, 1, 2), timezone="Asia/Almaty")
    bundle = make_plan(inc, graph, booths, shift, patrols=4, settings=SolverSettings(iterations=300, time_limit_s=60))
    plan = bundle.plan
    assert len(plan.routes) == 4 and plan.risk_covered > 0
    assert len({r.booth.id for r in plan.routes}) == 4  # four booths, those with most risk nearby
    assert bundle.coverage.risk_share[10] > 0
    for r in plan.routes:
        assert r.stops, r.patrol_id
        assert r.path[0] == r.path[-1] == r.booth_node and r.end_s <= shift.duration_s
    md = plan_markdown(bundle, messages("ru"))
    assert messages("ru")("synthetic_warning") in md and "UTC+05:00" in md
    assert bundle.report.outside_area >= 0 and bundle.report.kept == len(bundle.incidents)
