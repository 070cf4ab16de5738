r"""Where new booths should go: the maximal covering location problem with the existing booths kept.

The model (MCLP, Church and ReVelle 1974; for police with backup coverage, Curtin,
Hayslett-McCall and Qiu 2010). Demand points :math:`i` with weights :math:`w_i`, sites :math:`j`
(existing booths :math:`E` and candidates), :math:`a_{ij} = 1` when site :math:`j` is within
``walk_min`` minutes' walk of :math:`i` (:func:`patrol_planner.siting_data.coverage_matrix`):

.. math::

    \max \sum_i w_i y_i \quad\text{s.t.}\quad y_i \le \sum_j a_{ij} x_j,\quad
    \sum_{j \notin E} x_j = N,\quad x_j = 1\ (j \in E),\quad x_j \in \{0, 1\},\ 0 \le y_i \le 1.

Solved exactly by SciPy's :func:`scipy.optimize.milp` (HiGHS) under a time limit, with the MIP
gap and status reported. The constraint matrix is built with :mod:`scipy.sparse` from the
coverage matrix, never by a loop over demand-site pairs; demand points already covered by the
existing booths (or by no candidate) are constants, and points with the same covering sites
(and district) are merged into one row, which keeps the MILP small.

Options:

- **District floor**: :math:`\sum_{i \in k} w_i y_i \ge f \cdot W_k` for every district
  :math:`k`; when no plan meets it the model is solved without it and says so
  (``floor_met = False``). Per-district shares are reported in any case.
- **Backup coverage** (``backup``: sites such as schools, hospitals and SOS buttons):
  *lexicographic*, after the primary objective. A second MILP keeps the primary covered weight
  at its optimum (the best found) and maximises the number of backup sites within reach of at
  least two booths.
- **Relocation** (:func:`best_moves`): on top of the plan, the best ``K`` existing booths to move
  to candidate sites, and the covered weight that gains.
- **Greedy** (:func:`greedy`): the classic heuristic baseline, each step the candidate that adds
  the most uncovered weight. **Build order** (:func:`build_order`): the chosen sites ordered the
  same way, with each one's marginal weight and the cumulative share.

:func:`run_siting` does the whole pipeline from a :class:`~patrol_planner.siting_types.SitingRequest`.

Example::

    cov = coverage_matrix(graph, d_lat, d_lon, s_lat, s_lon, walk_min=10)
    sol = solve_mclp(weights, cov, existing_idx=np.arange(50), add=170, time_limit_s=60)
    sol.added, sol.covered_weight, sol.status, sol.gap
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import sparse
from scipy.optimize import Bounds, LinearConstraint, linear_sum_assignment, milp

from geo import Router, load_network
from patrol_planner._graph import WalkGraph
from patrol_planner.area import within_area
from patrol_planner.incidents import parse_hours
from patrol_planner.io import read_booths, read_incidents, read_osm_bounds
from patrol_planner.siting_data import (
    Demand,
    coverage_matrix,
    default_candidates,
    demand_from_incidents,
    demand_from_points,
    district_index,
    read_districts,
    read_points,
)
from patrol_planner.siting_types import AddedSite, DistrictCoverage, Move, SiteFeature, SitingRequest, SitingResult

__all__ = [
    "MCLPSolution",
    "best_moves",
    "build_order",
    "covered_weight",
    "greedy",
    "run_siting",
    "solve_mclp",
]

log = logging.getLogger(__name__)

_UNCOVERED_SHOWN = 50
_MIP_REL_GAP = 1e-6
"""HiGHS stops when the answer is proven within this of the best possible (its default is 1e-4)."""


@dataclass(frozen=True)
class MCLPSolution:
    """The sites chosen by :func:`solve_mclp`, and how good the answer is known to be."""

    chosen: NDArray[np.int64]
    """Every site in the answer (existing and new), as column indices, sorted."""
    added: NDArray[np.int64]
    """The new sites (column indices), sorted."""
    covered_weight: float
    status: str
    """``"optimal"``, ``"time_limit"`` (best found) or ``"greedy"`` (no MILP answer in time)."""
    gap: float
    """Relative gap between the answer and the solver's bound on the best possible (0 when optimal)."""
    solve_s: float
    floor_met: bool | None = None
    """With a district floor: whether the answer meets it (None without one)."""
    backup_covered_twice: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _csr(coverage: Any) -> sparse.csr_matrix:
    m = sparse.csr_matrix(coverage).astype(bool)
    m.eliminate_zeros()
    return m


def covered_weight(weights: ArrayLike, coverage: Any, chosen: ArrayLike) -> float:
    """The weight of the demand points within reach of at least one of the ``chosen`` sites."""
    w = np.asarray(weights, dtype=np.float64)
    a = _csr(coverage)
    cols = np.asarray(chosen, dtype=np.int64)
    if cols.size == 0:
        return 0.0
    hit = np.asarray(a[:, cols].sum(axis=1)).ravel() > 0
    return float(w[hit].sum())


def _covered_mask(a: sparse.csr_matrix, cols: NDArray[np.int64]) -> NDArray[np.bool_]:
    if cols.size == 0:
        return np.zeros(a.shape[0], dtype=bool)
    return np.asarray(a[:, cols].sum(axis=1)).ravel() > 0


def _greedy_steps(
    w: NDArray[np.float64], a: sparse.csr_matrix, base: NDArray[np.int64], pool: NDArray[np.int64], k: int
) -> tuple[list[int], list[float]]:
    """Pick ``k`` sites of ``pool``, each adding the most weight not yet covered by ``base`` + earlier picks.

    Gains are kept up to date incrementally (each newly covered point subtracts its weight from
    every site that covers it), so the whole run costs about one pass over the matrix.
    """
    covered = _covered_mask(a, base)
    uncovered_w = np.where(covered, 0.0, w)
    gains = np.full(a.shape[1], -np.inf)
    sub = a[:, pool]
    gains[pool] = np.asarray(sub.T @ uncovered_w).ravel()
    csc = a.tocsc()
    picks: list[int] = []
    marginals: list[float] = []
    for _ in range(min(k, pool.size)):
        j = int(np.argmax(gains))
        if not np.isfinite(gains[j]):
            break
        rows = csc.indices[csc.indptr[j] : csc.indptr[j + 1]]
        new = rows[~covered[rows]]
        picks.append(j)
        marginals.append(float(w[new].sum()))
        gains[j] = -np.inf
        if new.size:
            covered[new] = True
            dec = np.asarray(a[new].T @ w[new]).ravel()
            gains -= dec
    return picks, marginals


def greedy(weights: ArrayLike, coverage: Any, existing_idx: ArrayLike, add: int) -> NDArray[np.int64]:
    """The greedy heuristic: ``add`` new sites, each the one adding most uncovered weight (in pick order)."""
    w = np.asarray(weights, dtype=np.float64)
    a = _csr(coverage)
    existing = np.unique(np.asarray(existing_idx, dtype=np.int64))
    pool = np.setdiff1d(np.arange(a.shape[1]), existing)
    picks, _ = _greedy_steps(w, a, existing, pool, add)
    return np.asarray(picks, dtype=np.int64)


def build_order(
    weights: ArrayLike, coverage: Any, existing_idx: ArrayLike, added: ArrayLike
) -> list[tuple[int, float, float]]:
    """The order in which to build ``added``: each step the site adding most, given existing + earlier.

    Returns
    -------
    list
        ``(site, marginal_weight, cumulative_covered_weight)`` for k = 1 .. len(added); the
        cumulative weight includes what the existing booths cover.
    """
    w = np.asarray(weights, dtype=np.float64)
    a = _csr(coverage)
    existing = np.unique(np.asarray(existing_idx, dtype=np.int64))
    chosen = np.asarray(added, dtype=np.int64)
    picks, marginals = _greedy_steps(w, a, existing, chosen, chosen.size)
    total = covered_weight(w, a, existing)
    out = []
    for j, m in zip(picks, marginals, strict=True):
        total += m
        out.append((j, m, total))
    return out


def _merge_rows(
    m: sparse.csr_matrix, w: NDArray[np.float64], key: NDArray[np.int64]
) -> tuple[sparse.csr_matrix, NDArray[np.float64], NDArray[np.int64]]:
    """Merge rows with the same covering sites and the same ``key`` (district): weights add up."""
    if m.shape[0] == 0:
        return m, w, key
    rng = np.random.default_rng(12345)
    r1, r2 = rng.random(m.shape[1]), rng.random(m.shape[1])
    m.sort_indices()
    h1 = np.asarray(m @ r1).ravel()
    h2 = np.asarray(m @ r2).ravel()
    nnz = np.diff(m.indptr)
    table = np.rec.fromarrays([h1, h2, nnz, key])
    _, first, inverse = np.unique(table, return_index=True, return_inverse=True)
    merged_w = np.asarray(np.bincount(inverse.ravel(), weights=w, minlength=first.size), dtype=np.float64)
    return m[first], merged_w, key[first]


def _mclp(
    w: NDArray[np.float64],
    a: sparse.csr_matrix,
    fixed: NDArray[np.int64],
    free: NDArray[np.int64],
    count: int,
    *,
    time_limit_s: float,
    keep_at_least: tuple[NDArray[np.int64], int] | None = None,
    district: NDArray[np.int64] | None = None,
    district_floor: float | None = None,
    backup: sparse.csr_matrix | None = None,
) -> MCLPSolution:
    """Choose ``count`` sites of ``free`` with ``fixed`` kept, maximising covered weight (see the module)."""
    t0 = time.perf_counter()
    n_d, _ = a.shape
    pre = _covered_mask(a, fixed)
    sub = a[:, free]
    reach = np.diff(sub.indptr) > 0
    rows = np.flatnonzero(~pre & reach)
    dkey = np.full(n_d, -1, dtype=np.int64) if district is None else np.asarray(district, dtype=np.int64)
    m, wr, kr = _merge_rows(sub[rows], w[rows], dkey[rows])
    n_x, n_y = free.size, m.shape[0]
    pre_w = float(w[pre].sum())
    # y_i - sum_j m_ij x_j <= 0
    cover = sparse.hstack([-m.astype(np.float64), sparse.identity(n_y, format="csr")], format="csr")
    cons = [LinearConstraint(cover, -np.inf, 0.0)]
    card = sparse.csr_matrix(np.concatenate([np.ones(n_x), np.zeros(n_y)])[None, :])
    cons.append(LinearConstraint(card, count, count))
    if keep_at_least is not None:
        cols, least = keep_at_least
        row = np.zeros(n_x + n_y)
        row[np.searchsorted(free, cols)] = 1.0
        cons.append(LinearConstraint(sparse.csr_matrix(row[None, :]), least, np.inf))
    floor_rows: list[tuple[NDArray[np.float64], float]] = []
    if district is not None and district_floor is not None and district_floor > 0:
        names = np.unique(dkey[dkey >= 0])
        total_k = np.bincount(
            dkey[dkey >= 0], weights=w[dkey >= 0], minlength=int(names.max()) + 1 if names.size else 0
        )
        pre_k = np.bincount(dkey[(dkey >= 0) & pre], weights=w[(dkey >= 0) & pre], minlength=total_k.size)
        for k in names.tolist():
            row = np.zeros(n_x + n_y)
            row[n_x + np.flatnonzero(kr == k)] = wr[kr == k]
            need = district_floor * total_k[k] - pre_k[k]
            if need > 0:
                floor_rows.append((row, need * (1 - 1e-9)))
    floor_cons = [LinearConstraint(sparse.csr_matrix(r[None, :]), lb, np.inf) for r, lb in floor_rows]
    c = np.concatenate([np.zeros(n_x), -wr])
    integrality = np.concatenate([np.ones(n_x), np.zeros(n_y)])
    options: Any = {"time_limit": max(0.1, float(time_limit_s)), "mip_rel_gap": _MIP_REL_GAP, "disp": False}
    floor_met: bool | None = None
    res = milp(c, constraints=cons + floor_cons, integrality=integrality, bounds=Bounds(0, 1), options=options)
    if floor_cons:
        floor_met = res.status in (0, 1) and res.x is not None
        if not floor_met:
            log.info("siting: the district floor %.3f cannot be met; solved without it", district_floor)
            res = milp(c, constraints=cons, integrality=integrality, bounds=Bounds(0, 1), options=options)
    chosen_free: NDArray[np.int64]
    if res.x is not None and res.status in (0, 1):
        chosen_free = free[res.x[:n_x] > 0.5]
        status = "optimal" if res.status == 0 else "time_limit"
        bound = pre_w - float(res.mip_dual_bound) if res.mip_dual_bound is not None else math.inf
    else:
        status, bound = "greedy", math.inf
        chosen_free = np.zeros(0, dtype=np.int64)
    # The greedy answer is the floor: a time-limited MILP that found worse is not reported.
    if status != "optimal" and keep_at_least is None and floor_met is not True:
        g_cols = np.asarray(_greedy_steps(w, a, fixed, free, count)[0], dtype=np.int64)
        mine = covered_weight(w, a, np.concatenate([fixed, chosen_free])) if chosen_free.size else -1.0
        if covered_weight(w, a, np.concatenate([fixed, g_cols])) > mine:
            chosen_free = g_cols
    chosen = np.unique(np.concatenate([fixed, chosen_free]))
    value = covered_weight(w, a, chosen)
    if value > 0 and math.isfinite(bound):
        gap = max(0.0, (bound - value) / value)
        gap = 0.0 if status == "optimal" and gap < 1e-9 else gap
    else:
        gap = 0.0 if status == "optimal" else 1.0
    solution = MCLPSolution(
        chosen=chosen,
        added=np.unique(chosen_free),
        covered_weight=value,
        status=status,
        gap=float(gap),
        solve_s=time.perf_counter() - t0,
        floor_met=floor_met,
        extra={"rows": int(n_y), "columns": int(n_x), "pre_covered_weight": pre_w},
    )
    if backup is None or backup.shape[0] == 0:
        return solution
    return _with_backup(solution, w, a, m, wr, fixed, free, count, backup, time_limit_s, floor_rows, pre_w)


def _with_backup(
    primary: MCLPSolution,
    w: NDArray[np.float64],
    a: sparse.csr_matrix,
    m: sparse.csr_matrix,
    wr: NDArray[np.float64],
    fixed: NDArray[np.int64],
    free: NDArray[np.int64],
    count: int,
    backup: sparse.csr_matrix,
    time_limit_s: float,
    floor_rows: list[tuple[NDArray[np.float64], float]],
    pre_w: float,
) -> MCLPSolution:
    """The lexicographic second stage: primary weight kept, backup sites covered twice maximised."""
    t0 = time.perf_counter()
    b = sparse.csr_matrix(backup, dtype=bool)
    n_x, n_y, n_b = free.size, m.shape[0], b.shape[0]
    have = np.asarray(b[:, fixed].sum(axis=1)).ravel().astype(np.float64)
    # 2 z_b - sum_{j free} b_bj x_j <= have_b
    bf = b[:, free].astype(np.float64)
    twice = sparse.hstack([-bf, sparse.csr_matrix((n_b, n_y)), 2.0 * sparse.identity(n_b, format="csr")], format="csr")
    cover = sparse.hstack(
        [-m.astype(np.float64), sparse.identity(n_y, format="csr"), sparse.csr_matrix((n_y, n_b))], format="csr"
    )
    card = sparse.csr_matrix(np.concatenate([np.ones(n_x), np.zeros(n_y + n_b)])[None, :])
    keep = sparse.csr_matrix(np.concatenate([np.zeros(n_x), wr, np.zeros(n_b)])[None, :])
    target = primary.covered_weight - pre_w
    cons = [
        LinearConstraint(cover, -np.inf, 0.0),
        LinearConstraint(card, count, count),
        LinearConstraint(twice, -np.inf, have),
        LinearConstraint(keep, target - 1e-7 * max(1.0, abs(target)), np.inf),
    ]
    if primary.floor_met:
        for row, lb in floor_rows:
            full = np.concatenate([row, np.zeros(n_b)])
            cons.append(LinearConstraint(sparse.csr_matrix(full[None, :]), lb, np.inf))
    c = np.concatenate([np.zeros(n_x + n_y), -np.ones(n_b)])
    integrality = np.concatenate([np.ones(n_x), np.zeros(n_y), np.ones(n_b)])
    options: Any = {"time_limit": max(0.1, float(time_limit_s)), "mip_rel_gap": _MIP_REL_GAP, "disp": False}
    res = milp(c, constraints=cons, integrality=integrality, bounds=Bounds(0, 1), options=options)
    chosen = primary.chosen
    status = primary.status
    if res.x is not None and res.status in (0, 1):
        cand = np.unique(np.concatenate([fixed, free[res.x[:n_x] > 0.5]]))
        if covered_weight(w, a, cand) >= primary.covered_weight - 1e-9 * max(1.0, primary.covered_weight):
            chosen = cand
        if int(res.status) == 1 and status == "optimal":
            status = "time_limit"
    twice_n = int(np.count_nonzero(np.asarray(b[:, chosen].sum(axis=1)).ravel() >= 2))
    return MCLPSolution(
        chosen=chosen,
        added=np.setdiff1d(chosen, fixed),
        covered_weight=covered_weight(w, a, chosen),
        status=status,
        gap=primary.gap,
        solve_s=primary.solve_s + time.perf_counter() - t0,
        floor_met=primary.floor_met,
        backup_covered_twice=twice_n,
        extra={**primary.extra, "backup_stage_s": time.perf_counter() - t0},
    )


def solve_mclp(
    weights: ArrayLike,
    coverage: Any,
    existing_idx: ArrayLike,
    add: int,
    *,
    time_limit_s: float = 60.0,
    district: ArrayLike | None = None,
    district_floor: float | None = None,
    backup: Any | None = None,
) -> MCLPSolution:
    """Solve the MCLP with the existing sites kept (see the module docstring for the model).

    Parameters
    ----------
    weights
        One weight per demand point (row of ``coverage``).
    coverage
        Boolean ``(n_demand, n_sites)`` matrix (sparse or dense): which sites cover which points.
    existing_idx
        Columns of the existing booths, always in the answer.
    add
        How many new sites (N) to choose among the other columns.
    time_limit_s
        The solver's time limit (each stage).
    district, district_floor
        The district index of each demand point (``-1``: none), and the least covered share
        each district must reach when feasible.
    backup
        Boolean ``(n_backup, n_sites)``: which sites reach which backup site (schools, ...).
    """
    w = np.asarray(weights, dtype=np.float64)
    a = _csr(coverage)
    if w.shape != (a.shape[0],):
        msg = f"weights has {w.size} values for {a.shape[0]} demand points"
        raise ValueError(msg)
    if np.any(~np.isfinite(w)) or np.any(w < 0):
        msg = "weights must be finite and >= 0"
        raise ValueError(msg)
    existing = np.unique(np.asarray(existing_idx, dtype=np.int64))
    if existing.size and (existing.min() < 0 or existing.max() >= a.shape[1]):
        msg = f"existing_idx must be columns in 0..{a.shape[1] - 1}"
        raise ValueError(msg)
    free = np.setdiff1d(np.arange(a.shape[1], dtype=np.int64), existing)
    if not 0 <= add <= free.size:
        msg = f"cannot add {add} sites: there are {free.size} candidates"
        raise ValueError(msg)
    if district_floor is not None and not 0 <= district_floor <= 1:
        msg = f"district_floor must be a share in [0, 1], got {district_floor}"
        raise ValueError(msg)
    return _mclp(
        w,
        a,
        existing,
        free,
        add,
        time_limit_s=time_limit_s,
        district=None if district is None else np.asarray(district, dtype=np.int64),
        district_floor=district_floor,
        backup=None if backup is None else sparse.csr_matrix(backup, dtype=bool),
    )


def best_moves(
    weights: ArrayLike,
    coverage: Any,
    existing_idx: ArrayLike,
    added: ArrayLike,
    k: int,
    *,
    site_x: ArrayLike,
    site_y: ArrayLike,
    time_limit_s: float = 60.0,
) -> tuple[list[tuple[int, int, float]], float, str]:
    """The best ``k`` existing booths to move to candidate sites, on top of the plan ``added``.

    The new sites of the plan stay; at most ``k`` existing booths may leave their place for as
    many candidates not in the plan, maximising the covered weight (a MILP). Each booth moved is
    paired with the new place nearest to it (an assignment on metric distance).

    Returns
    -------
    tuple
        ``([(from_site, to_site, gain_weight), ...], total_gain_weight, status)``: a move's gain
        is what undoing that move alone would lose; the total is the gain of all of them.
    """
    w = np.asarray(weights, dtype=np.float64)
    a = _csr(coverage)
    existing = np.unique(np.asarray(existing_idx, dtype=np.int64))
    plan = np.unique(np.asarray(added, dtype=np.int64))
    if k <= 0 or existing.size == 0:
        return [], 0.0, "optimal"
    fixed = plan
    others = np.setdiff1d(np.arange(a.shape[1], dtype=np.int64), np.concatenate([existing, plan]))
    free = np.unique(np.concatenate([existing, others]))
    before = covered_weight(w, a, np.concatenate([existing, plan]))
    sol = _mclp(
        w,
        a,
        fixed,
        free,
        existing.size,
        time_limit_s=time_limit_s,
        keep_at_least=(existing, max(0, existing.size - k)),
    )
    if sol.covered_weight <= before + 1e-12 * max(1.0, before):
        return [], 0.0, sol.status
    gone = np.setdiff1d(existing, sol.chosen)
    new = np.setdiff1d(sol.chosen, np.concatenate([existing, plan]))
    x, y = np.asarray(site_x, dtype=np.float64), np.asarray(site_y, dtype=np.float64)
    dist = np.hypot(x[gone][:, None] - x[new][None, :], y[gone][:, None] - y[new][None, :])
    r, c = linear_sum_assignment(dist)
    moves = []
    for i, j in zip(r.tolist(), c.tolist(), strict=True):
        src, dst = int(gone[i]), int(new[j])
        undone = np.concatenate([np.setdiff1d(sol.chosen, [dst]), [src]])
        moves.append((src, dst, sol.covered_weight - covered_weight(w, a, undone)))
    moves.sort(key=lambda m: -m[2])
    return moves, sol.covered_weight - before, sol.status


# -- the whole pipeline --------------------------------------------------------------------------


def _features_of_booths(path: Path) -> list[SiteFeature]:
    return [SiteFeature(b.id, b.lat, b.lon) for b in read_booths(path)]


def _demand(request: SitingRequest, graph: WalkGraph) -> Demand:
    if (request.incidents is None) == (request.demand is None):
        msg = "give either incidents or demand points (not both, not neither)"
        raise ValueError(msg)
    if request.demand is not None:
        return demand_from_points(
            read_points(request.demand, what="demand points", weight=True), source=request.demand.name
        )
    assert request.incidents is not None
    inc, report = read_incidents(request.incidents, timezone=request.timezone)
    inc, report = within_area(inc, graph, bounds=read_osm_bounds(request.network), report=report)
    d = demand_from_incidents(inc, graph, hours=parse_hours(request.hours) if request.hours else None)
    return Demand(
        d.ids, d.lat, d.lon, d.weight, {**d.sources, "incidents_file": request.incidents.name, "load": report.as_dict()}
    )


def run_siting(request: SitingRequest, *, router: Router | None = None) -> SitingResult:
    """Answer a siting request from its files: demand, candidates, coverage, MILP, greedy, order, options.

    The network is loaded with :func:`geo.load_network` (unless a ``router`` on it is given);
    existing booths are read like the planner's booths (a units file's ``kind=booth``, or an
    OSM amenity extract's ``amenity=police``), candidates and backup sites as Point features
    with ``id``, districts as polygons.
    """
    if request.add < 0:
        msg = f"add must be >= 0, got {request.add}"
        raise ValueError(msg)
    if request.move < 0:
        msg = f"move must be >= 0, got {request.move}"
        raise ValueError(msg)
    t_all = time.perf_counter()
    r = router or Router(load_network(request.network))
    graph = WalkGraph(r)
    net = graph.network
    existing = _features_of_booths(request.existing)
    demand = _demand(request, graph)
    candidates = (
        read_points(request.candidates, what="candidates")
        if request.candidates is not None
        else default_candidates(graph)
    )
    sites = existing + candidates
    s_lat = np.array([s.lat for s in sites])
    s_lon = np.array([s.lon for s in sites])
    t0 = time.perf_counter()
    cov = coverage_matrix(graph, demand.lat, demand.lon, s_lat, s_lon, walk_min=request.walk_min)
    cover_s = time.perf_counter() - t0
    existing_idx = np.arange(len(existing), dtype=np.int64)
    districts = read_districts(request.districts) if request.districts is not None else []
    d_idx = district_index(districts, demand.lat, demand.lon) if districts else None
    backup_cov = None
    backup_pts: list[SiteFeature] = []
    if request.backup_sites is not None:
        backup_pts = read_points(request.backup_sites, what="backup sites")
        backup_cov = coverage_matrix(
            graph,
            np.array([p.lat for p in backup_pts]),
            np.array([p.lon for p in backup_pts]),
            s_lat,
            s_lon,
            walk_min=request.walk_min,
        )
    add = min(request.add, len(candidates))
    sol = solve_mclp(
        demand.weight,
        cov,
        existing_idx,
        add,
        time_limit_s=request.time_limit_s,
        district=d_idx,
        district_floor=request.district_floor if districts else None,
        backup=backup_cov,
    )
    g_cols = greedy(demand.weight, cov, existing_idx, add)
    total = demand.total_weight
    g_share = covered_weight(demand.weight, cov, np.concatenate([existing_idx, g_cols])) / total if total else 0.0
    order = build_order(demand.weight, cov, existing_idx, sol.added)
    added = [
        AddedSite(sites[j].id, sites[j].lat, sites[j].lon, marginal, cum / total if total else 0.0)
        for j, marginal, cum in order
    ]
    covered_existing = covered_weight(demand.weight, cov, existing_idx)
    moves: list[Move] = []
    move_gain = 0.0
    if request.move > 0 and existing:
        x, y = net.to_xy(s_lat, s_lon)
        found, move_gain, _ = best_moves(
            demand.weight,
            cov,
            existing_idx,
            sol.added,
            request.move,
            site_x=x,
            site_y=y,
            time_limit_s=request.time_limit_s,
        )
        moves = [Move(sites[f].id, sites[t].id, sites[t].lat, sites[t].lon, g) for f, t, g in found]
    final = _covered_mask(cov, sol.chosen)
    pre = _covered_mask(cov, existing_idx)
    district_rows: list[DistrictCoverage] = []
    ratio: float | None = None
    if districts and d_idx is not None:
        for k, dist in enumerate(districts):
            inside = d_idx == k
            tw = float(demand.weight[inside].sum())
            cw = float(demand.weight[inside & final].sum())
            ew = float(demand.weight[inside & pre].sum())
            district_rows.append(DistrictCoverage(dist.name, tw, cw, cw / tw if tw else 0.0, ew / tw if tw else 0.0))
        shares = [d.covered_share for d in district_rows if d.total_weight > 0]
        if shares and min(shares) > 0:
            ratio = max(shares) / min(shares)
    uncovered_idx = np.flatnonzero(~final & (demand.weight > 0))
    heaviest = uncovered_idx[np.argsort(-demand.weight[uncovered_idx], kind="stable")][:_UNCOVERED_SHOWN]
    twice = 0
    if backup_cov is not None:
        twice = int(np.count_nonzero(np.asarray(backup_cov[:, sol.chosen].sum(axis=1)).ravel() >= 2))
    sources: dict[str, Any] = {
        "network": request.network.name,
        "network_label": net.label,
        "existing": request.existing.name,
        "candidates": request.candidates.name
        if request.candidates is not None
        else "every 100 m along walkable streets",
        **demand.sources,
        "districts": request.districts.name if request.districts is not None else None,
        "district_floor": request.district_floor,
        "district_floor_met": sol.floor_met,
        "backup_sites": request.backup_sites.name if request.backup_sites is not None else None,
        "backup_objective": "lexicographic: after the covered weight" if backup_cov is not None else None,
        "move_gain_weight": move_gain,
        "coverage_pairs": int(cov.nnz),
        "coverage_s": round(cover_s, 3),
        "milp_rows": sol.extra.get("rows"),
        "total_s": round(time.perf_counter() - t_all, 3),
    }
    return SitingResult(
        existing=existing,
        added=added,
        covered_weight=sol.covered_weight,
        total_weight=total,
        covered_share=sol.covered_weight / total if total else 0.0,
        covered_share_existing=covered_existing / total if total else 0.0,
        optimality_gap=sol.gap,
        solver_status=sol.status,
        greedy_covered_share=g_share,
        walk_min=request.walk_min,
        solve_s=sol.solve_s,
        districts=district_rows,
        district_ratio=ratio,
        backup_sites=len(backup_pts),
        backup_covered_twice=twice,
        moves=moves,
        uncovered=[demand.feature(int(i)) for i in heaviest],
        demand_points=len(demand),
        candidate_sites=len(candidates),
        sources=sources,
    )
