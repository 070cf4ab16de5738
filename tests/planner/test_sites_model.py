"""The siting model: MILP = brute force = spopt on small instances; greedy, order, backup, floor, moves, pipeline."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pulp
import pytest
from scipy import sparse
from spopt.locate import MCLP
from test_sites_data import brute_eta, city_graph

from patrol_planner.siting import best_moves, build_order, covered_weight, greedy, run_siting, solve_mclp
from patrol_planner.siting_types import SitingRequest


def random_instance(seed: int, n_d: int = 40, n_s: int = 12, density: float = 0.15):
    rng = np.random.default_rng(seed)
    a = rng.random((n_d, n_s)) < density
    w = rng.integers(1, 20, n_d).astype(float)
    return w, a


def brute_force(w, a, existing, add) -> float:
    free = [j for j in range(a.shape[1]) if j not in set(existing)]
    return max(covered_weight(w, a, list(existing) + list(c)) for c in itertools.combinations(free, add))


@pytest.mark.parametrize("seed", range(6))
def test_milp_equals_brute_force_and_spopt_and_greedy_never_beats_it(seed: int) -> None:
    w, a = random_instance(seed)
    existing, add = [0, 5], 3
    sol = solve_mclp(w, sparse.csr_matrix(a), existing, add, time_limit_s=30)
    assert sol.status == "optimal" and sol.gap == 0.0
    assert set(existing) <= set(sol.chosen.tolist()) and sol.added.size == add
    assert sol.covered_weight == pytest.approx(brute_force(w, a, existing, add))
    assert sol.covered_weight == pytest.approx(covered_weight(w, a, sol.chosen))  # claimed = recomputed
    # spopt's MCLP with the existing sites predefined, on the same matrix (cost 0 = covered, 2 = not).
    cost = np.where(a, 0.0, 2.0)
    predefined = np.zeros(a.shape[1], dtype=int)
    predefined[existing] = 1
    ref = MCLP.from_cost_matrix(
        cost, w, service_radius=1.0, p_facilities=len(existing) + add, predefined_facilities_arr=predefined
    )
    ref = ref.solve(pulp.PULP_CBC_CMD(msg=False))
    assert pulp.value(ref.problem.objective) == pytest.approx(sol.covered_weight)
    g = greedy(w, a, existing, add)
    assert g.size == add and not set(g.tolist()) & set(existing)
    assert covered_weight(w, a, existing + g.tolist()) <= sol.covered_weight + 1e-9


def test_greedy_is_beaten_where_it_is_known_to_fail() -> None:
    # One big site covering the middle of two halves; two sites covering one half each are better.
    w = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    a = np.zeros((6, 3), dtype=bool)
    a[[1, 2, 3, 4], 0] = True
    a[[0, 1, 2], 1] = True
    a[[3, 4, 5], 2] = True
    sol = solve_mclp(w, a, [], 2)
    assert sol.covered_weight == 6.0 and sorted(sol.added.tolist()) == [1, 2]
    assert greedy(w, a, [], 2)[0] == 0 and covered_weight(w, a, greedy(w, a, [], 2)) == 5.0


def test_build_order_is_greedy_on_the_chosen_sites_with_cumulative_weight() -> None:
    w, a = random_instance(11, n_d=200, n_s=30, density=0.08)
    sol = solve_mclp(w, a, [0, 1, 2], 8)
    order = build_order(w, a, [0, 1, 2], sol.added)
    assert sorted(j for j, _, _ in order) == sorted(sol.added.tolist())
    marginals = [m for _, m, _ in order]
    assert marginals == sorted(marginals, reverse=True)  # coverage is submodular: greedy gains fall
    assert order[-1][2] == pytest.approx(sol.covered_weight)
    first = [j for j, _, _ in order[:3]]
    assert order[2][2] == pytest.approx(covered_weight(w, a, [0, 1, 2, *first]))


def test_backup_coverage_is_lexicographic_after_the_primary_objective() -> None:
    # Sites 1 and 2 cover the same demand; only site 2 also reaches the school, which site 0 reaches too.
    w = np.array([5.0, 1.0])
    a = np.array([[False, True, True, False], [False, False, False, True]])
    school = np.array([[True, False, True, False]])
    plain = solve_mclp(w, a, [0], 1)
    assert plain.added.tolist() in ([1], [2])  # a tie without the backup sites
    backed = solve_mclp(w, a, [0], 1, backup=school)
    assert backed.added.tolist() == [2] and backed.backup_covered_twice == 1
    assert backed.covered_weight == plain.covered_weight == 5.0  # primary first: never traded away
    # A backup site is never bought with covered weight: site 3 covers more than the school gains.
    w2 = np.array([5.0, 9.0])
    traded = solve_mclp(w2, a, [0], 1, backup=school)
    assert traded.added.tolist() == [3] and traded.backup_covered_twice == 0


def test_district_floor_moves_a_booth_to_the_worse_district_and_says_when_it_cannot() -> None:
    # District 0 is heavy, district 1 light; two new sites; each site covers one point.
    w = np.array([10.0, 9.0, 8.0, 1.0])
    a = np.eye(4, dtype=bool)
    district = np.array([0, 0, 0, 1])
    free = solve_mclp(w, a, [], 2, district=district)
    assert sorted(free.added.tolist()) == [0, 1] and free.floor_met is None
    floored = solve_mclp(w, a, [], 2, district=district, district_floor=0.3)
    assert sorted(floored.added.tolist()) == [0, 3] and floored.floor_met is True
    impossible = solve_mclp(w, a, [], 2, district=district, district_floor=0.9)
    assert impossible.floor_met is False and impossible.covered_weight == free.covered_weight


def test_moving_an_existing_booth_gains_what_it_should() -> None:
    # Booth 0 covers one light point; candidate 3 covers a heavy one nobody else reaches.
    w = np.array([1.0, 4.0, 3.0, 7.0])
    a = np.zeros((4, 4), dtype=bool)
    a[0, 0] = a[1, 1] = a[2, 2] = a[3, 3] = True
    sol = solve_mclp(w, a, [0], 1)
    assert sol.added.tolist() == [3]
    x, y = np.array([0.0, 10.0, 20.0, 30.0]), np.zeros(4)
    moves, gain, status = best_moves(w, a, [0], sol.added, 1, site_x=x, site_y=y)
    assert status == "optimal" and gain == pytest.approx(4.0 - 1.0)
    assert moves == [(0, 1, pytest.approx(3.0))]
    assert best_moves(w, a, [0], sol.added, 0, site_x=x, site_y=y) == ([], 0.0, "optimal")


def _points(path: Path, pts: list[tuple[str, float, float, float | None]]) -> Path:
    feats = []
    for ident, lat, lon, weight in pts:
        props: dict[str, object] = {"id": ident}
        if weight is not None:
            props["weight"] = weight
        feats.append({"type": "Feature", "geometry": {"type": "Point", "coordinates": [lon, lat]}, "properties": props})
    path.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    return path


def test_run_siting_claims_what_the_walking_network_gives(tmp_path: Path) -> None:
    g = city_graph()
    net = g.network
    rng = np.random.default_rng(5)
    nodes = rng.choice(np.unique(g.u), 260, replace=False)
    dl, do = net.node_lat[nodes[:200]] + 1e-4, net.node_lon[nodes[:200]]
    demand = _points(
        tmp_path / "demand.geojson",
        [(f"p{i}", a, b, float(rng.integers(1, 9))) for i, (a, b) in enumerate(zip(dl, do, strict=True))],
    )
    existing = _points(
        tmp_path / "booths.geojson",
        [(f"b{i}", net.node_lat[n], net.node_lon[n], None) for i, n in enumerate(nodes[200:203])],
    )
    cands = _points(
        tmp_path / "cands.geojson",
        [(f"c{i}", net.node_lat[n], net.node_lon[n], None) for i, n in enumerate(nodes[203:])],
    )
    req = SitingRequest(
        network=Path("unused.osm"), existing=existing, add=6, walk_min=4.0, demand=demand, candidates=cands, move=1
    )
    res = run_siting(req, router=g.router)
    assert [s.id for s in res.existing] == ["b0", "b1", "b2"] and len(res.added) == 6
    assert res.solver_status == "optimal" and res.optimality_gap == 0.0
    assert res.greedy_covered_share <= res.covered_share + 1e-12
    assert res.covered_share_existing < res.covered_share
    # Recompute from the chosen sites with an independent Dijkstra of the ETA.
    lat = np.array([s.lat for s in res.existing] + [s.lat for s in res.added])
    lon = np.array([s.lon for s in res.existing] + [s.lon for s in res.added])
    eta = brute_eta(g, dl, do, lat, lon).min(axis=1)
    w = np.array([json.loads(demand.read_text())["features"][i]["properties"]["weight"] for i in range(200)])
    assert res.covered_weight == pytest.approx(float(w[eta <= 240].sum()))
    assert res.total_weight == pytest.approx(w.sum())
    assert res.added[-1].cumulative_share == pytest.approx(res.covered_share)
    assert all(u.id not in {f"p{i}" for i in np.flatnonzero(eta <= 240)} for u in res.uncovered)
    assert res.summary()["added"][0]["id"].startswith("c")
    for m in res.moves:
        assert m.from_id.startswith("b") and m.to_id.startswith("c") and m.gain_weight > 0
