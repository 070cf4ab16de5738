r"""Foot-patrol routes: a prize-collecting team orienteering problem, solved with PyVRP.

Formulation
-----------
Patrols :math:`k` start and end at their booth within the shift :math:`[0, H]`. Hot spot
:math:`i` has risk :math:`r_{ib}` in revisit block :math:`b` (blocks of 2 h). A *visit* is a
dwell of :math:`d` seconds (15 min by default: Koper 1995 found about 15 minutes of presence
gives the longest residual deterrence) starting inside its block. Choose routes to

.. math:: \max \sum_{(i,b)\ \text{visited}} r_{ib} \; - \; \varepsilon \cdot \text{metres walked}

subject to: each (hot spot, block) is visited at most once by all patrols together (so no hot
spot is covered twice while another goes uncovered), walking times on the street network, dwell
times, the block's time window, and the return to the booth by the end of the shift. The hottest
hot spots carry risk in every block, so they are revisited about every ``revisit_s`` where the
budget allows. A visit in block :math:`b` must start in the window
:math:`[bT + \varphi_i, bT + \varphi_i + 0.6T]` (:math:`T` = ``revisit_s``), so two visits of one
hot spot are at least :math:`0.4T` (48 minutes) apart, never one long stay split in two; the
phases :math:`\varphi_i \in [0, 0.4T]` are spread over the hot spots (and drawn afresh with a
seed), so some window is always open.

Each (hot spot, block) is an optional PyVRP client with a prize; each booth a depot with its
patrols as vehicles. PyVRP (Wouda, Lan and Kool 2024; 0.14 is an iterated local search) runs
for a fixed number of iterations, with a wall-clock cap: the same seed gives the same plan unless
the cap binds. A greedy baseline ("walk to the nearest unvisited hot spot") is kept for comparison.

The start decides most of the plan (:mod:`patrol_planner._areas`): the hot spots are grouped
into areas (linked by walks of at most 10 minutes), each patrol is given an area on a fluid
model of what patrols yield there, and the routes walked area by area are PyVRP's initial
solution. From PyVRP's own
random start the local search rarely moves a patrol between distant clusters, so the outcome
hung on the seed (0.095 to 0.114 risk per patrol-hour over seeds 0-4 on the bench's 100,000-node
city); from the areas' start 500 iterations give 0.128 and ten times as many 0.129
(``SolverSettings(start="random", leg_limit_s=None)`` is the method before).

Walking times between two hot spots are searched only up to ``leg_limit_s`` (an hour): a patrol
never walks longer than that from one stop to the next (from its booth, as far as the shift
allows). That bounds the searches of the travel-time matrix to a neighbourhood of each hot spot.

Unpredictability: with a ``seed``, prizes are jittered (multiplicative log-normal noise) before
solving, which changes which hot spots are chosen and in which order; the plan is accepted only
if its *true* covered risk is within ``tolerance`` (5 %) of the best plan found, else the noise
is halved and the solve repeated.
"""

from __future__ import annotations

import math
import time as _time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from numpy.typing import NDArray

from patrol_planner._areas import AreaModel, spot_areas
from patrol_planner._graph import WalkGraph
from patrol_planner.io import Booth
from patrol_planner.shift import HotSpot, Shift

__all__ = ["PatrolPlan", "PatrolRoute", "SolverSettings", "Stop", "assign_patrols", "greedy_routes", "plan_routes"]

_PRIZE_TOTAL = 1e9  # all risk of the shift, in prize units; a metre walked costs 1


@dataclass(frozen=True)
class Stop:
    """A dwell at a hot spot: when (local time and seconds into the shift) and what it covers."""

    spot: int
    node: int
    lat: float
    lon: float
    block: int
    arrive_s: float
    depart_s: float
    risk_covered: float

    @property
    def dwell_s(self) -> float:
        return self.depart_s - self.arrive_s


@dataclass
class PatrolRoute:
    """One foot patrol's closed walk from its booth and back."""

    patrol_id: str
    booth: Booth
    booth_node: int
    stops: list[Stop]
    length_m: float = 0.0
    walking_s: float = 0.0
    end_s: float = 0.0
    path: list[int] = field(default_factory=list)  # node sequence booth -> ... -> booth

    @property
    def risk_covered(self) -> float:
        return float(sum(s.risk_covered for s in self.stops))


@dataclass(frozen=True)
class SolverSettings:
    """How hard PyVRP works: iterations (deterministic) and a wall-clock cap (seconds).

    ``start``: ``"areas"`` (patrols given to areas of hot spots, see :mod:`patrol_planner._areas`)
    or ``"random"`` (PyVRP's own random start, the method of the plans before issue 14's speed-up).
    ``leg_limit_s``: the longest walk between two hot spots searched for and planned (``None``:
    half the shift, as before).
    """

    iterations: int = 500
    time_limit_s: float = 30.0
    tolerance: float = 0.05
    noise: float = 0.3
    dwell_s: float = 900.0
    revisit_s: float = 7200.0
    start: str = "areas"
    leg_limit_s: float | None = 3600.0

    def __post_init__(self) -> None:
        if self.start not in ("areas", "random"):
            msg = f"start must be 'areas' or 'random', got {self.start!r}"
            raise ValueError(msg)


@dataclass
class PatrolPlan:
    """Routes for the patrols of one shift and how much risk they cover."""

    shift: Shift
    routes: list[PatrolRoute]
    hotspots: list[HotSpot]
    total_risk: float  # expected incidents in the shift, all cells
    spots_risk: float  # of which at the candidate hot spots
    seed: int | None
    method: str
    solve_s: float = 0.0
    iterations: int = 0
    best_found_risk: float = 0.0
    attempts: int = 1
    walk_speed_mps: float = 1.4
    dwell_s: float = 900.0
    notes: list[str] = field(default_factory=list)

    @property
    def risk_covered(self) -> float:
        return float(sum(r.risk_covered for r in self.routes))

    @property
    def patrol_hours(self) -> float:
        return len(self.routes) * self.shift.duration_s / 3600.0

    @property
    def risk_per_patrol_hour(self) -> float:
        return self.risk_covered / self.patrol_hours if self.routes else 0.0

    def visits(self) -> set[tuple[int, int]]:
        """(hot spot, block) pairs covered."""
        return {(s.spot, s.block) for r in self.routes for s in r.stops}


def assign_patrols(booths: Sequence[Booth], patrols: int, booth_risk: Sequence[float]) -> list[int]:
    """Booth index of each patrol: round-robin over the booths with risk nearby, most risk first."""
    if patrols < 1:
        msg = f"the number of patrols must be positive, got {patrols}"
        raise ValueError(msg)
    if not booths:
        msg = "no booths: patrols need a booth to start from"
        raise ValueError(msg)
    order = sorted(range(len(booths)), key=lambda i: (-booth_risk[i], i))
    with_risk = [i for i in order if booth_risk[i] > 0]
    order = with_risk or order  # booths with nothing nearby get no patrol while others have risk
    return [order[k % len(order)] for k in range(patrols)]


@dataclass
class _Problem:
    shift_s: int
    dwell_s: int
    revisit_s: float
    booth_nodes: NDArray[np.int64]
    booth_leg_s: NDArray[np.float64]  # off-street walk from the booth to its node
    patrol_booth: list[int]
    spots: list[HotSpot]
    times: NDArray[np.float64]  # (booths + spots) square walking-time matrix, inf if far
    clients: list[tuple[int, int, float]]  # (spot position, block, risk)
    speed_mps: float = 1.4
    windows: list[tuple[int, int]] = field(default_factory=list)  # earliest, latest start of each client's dwell


def _problem(
    graph: WalkGraph,
    booths: Sequence[Booth],
    patrol_booth: list[int],
    spots: Sequence[HotSpot],
    shift: Shift,
    settings: SolverSettings,
) -> _Problem:
    net = graph.network
    bx, by = net.to_xy(np.array([b.lat for b in booths]), np.array([b.lon for b in booths]))
    snaps = graph.snap_xy(bx, by)
    booth_nodes = np.where(snaps.fraction <= 0.5, graph.u[snaps.segment], graph.v[snaps.segment])
    end_x = np.where(snaps.fraction <= 0.5, graph.x0[snaps.segment], graph.x1[snaps.segment])
    end_y = np.where(snaps.fraction <= 0.5, graph.y0[snaps.segment], graph.y1[snaps.segment])
    leg = np.hypot(end_x - bx, end_y - by) / graph.walk_speed_mps
    spot_nodes = np.array([s.node for s in spots], dtype=np.int64)
    nodes = np.concatenate([booth_nodes, spot_nodes])
    nb = len(booths)
    half = shift.duration_s / 2
    if settings.leg_limit_s is None or settings.leg_limit_s >= half:
        times = graph.time_matrix(nodes, limit_s=half)
    else:
        # From the booths that send patrols as far as half the shift (the others stay inf: no
        # route starts there); between hot spots only up to the leg limit (bounded searches, a
        # neighbourhood each). Walking is two-way: a column is its row.
        times = np.full((nodes.size, nodes.size), np.inf)
        times[nb:, nb:] = graph.time_matrix(spot_nodes, limit_s=settings.leg_limit_s)
        used = np.array(sorted(set(patrol_booth)), dtype=np.int64)
        rows = graph.times_from(booth_nodes[used], nodes, limit_s=half)
        times[used, :] = rows
        times[:, used] = rows.T
    times[:nb, :] += leg[:, None]
    times[:, :nb] += leg[None, :]
    np.fill_diagonal(times, 0.0)
    p = _Problem(
        int(shift.duration_s),
        int(settings.dwell_s),
        settings.revisit_s,
        booth_nodes,
        leg,
        patrol_booth,
        list(spots),
        times,
        [],
        graph.walk_speed_mps,
    )
    n = len(spots)
    golden = (np.arange(n) * 0.6180339887) % 1.0  # spread phases, the same every day
    return _with_windows(p, np.asarray(golden * (1 - _WINDOW_FRAC) * settings.revisit_s, dtype=np.float64))


_WINDOW_FRAC = 0.6  # a block's dwell-start window, as a share of the revisit interval


def _with_windows(p: _Problem, phase: NDArray[np.float64]) -> _Problem:
    """The (hot spot, block) clients with their start windows, for given phases."""
    used = sorted(set(p.patrol_booth))
    nb = len(p.booth_nodes)
    reach = p.times[used, nb:].min(axis=0) if p.spots else np.zeros(0)
    clients, windows = [], []
    T = p.revisit_s
    for i, s in enumerate(p.spots):
        # Reachable from some booth and back within the shift, with a dwell.
        if not (2 * reach[i] + p.dwell_s <= p.shift_s):
            continue
        for b, r in enumerate(s.block_risk):
            early = b * T + float(phase[i])
            late = min(early + _WINDOW_FRAC * T, p.shift_s - p.dwell_s - reach[i])
            if r > 0 and late >= early:
                clients.append((i, b, r))
                windows.append((math.ceil(early), int(late)))
    return replace(p, clients=clients, windows=windows)


def _solve_pyvrp(
    p: _Problem, prizes: NDArray[np.float64], seed: int, settings: SolverSettings, iterations: int
) -> tuple[list[list[tuple[int, int, int]]], int]:
    """Per patrol: [(client index, start time, end time)], and the iterations run."""
    from pyvrp import Client, Depot, Location, ProblemData, Route, Solution, VehicleType, solve
    from pyvrp.stop import MaxIterations, MaxRuntime, MultipleCriteria

    used = sorted(set(p.patrol_booth))
    depot_of = {b: k for k, b in enumerate(used)}
    nb_all = len(p.booth_nodes)
    # Locations: the used booths, then one per client (copies of a hot spot are separate
    # locations so that going straight from one copy to the next can be forbidden).
    loc_pos = list(used) + [nb_all + c[0] for c in p.clients]
    pos = np.array(loc_pos, dtype=np.int64)
    t = p.times[np.ix_(pos, pos)]
    big = 10 * p.shift_s
    dur = np.where(np.isfinite(t), np.rint(t), big).astype(np.int64)
    spot_of = np.array([-1] * len(used) + [c[0] for c in p.clients])
    same = (spot_of[:, None] == spot_of[None, :]) & (spot_of[:, None] >= 0)
    np.fill_diagonal(same, False)
    dur[same] = big
    dist = np.where(dur >= big, big, np.rint(np.where(np.isfinite(t), t, 0.0) * p.speed_mps)).astype(np.int64)
    locations = [Location(0.0, 0.0) for _ in loc_pos]
    depots = [Depot(k) for k in range(len(used))]
    clients = []
    for j, (early, late) in enumerate(p.windows):
        clients.append(
            Client(
                len(used) + j,
                service_duration=p.dwell_s,
                tw_early=early,
                tw_late=max(early, late),
                prize=int(max(1, round(prizes[j]))),
                required=False,
            )
        )
    counts: dict[int, int] = {}
    for b in p.patrol_booth:
        counts[b] = counts.get(b, 0) + 1
    vtypes = [
        VehicleType(
            counts[b],
            start_depot=depot_of[b],
            end_depot=depot_of[b],
            tw_early=0,
            tw_late=p.shift_s,
            shift_duration=p.shift_s,
            name=str(b),
        )
        for b in used
    ]
    # pyvrp's stub types the matrices np.ndarray[int] (a shape of int), not an int64 ndarray.
    data = ProblemData(locations, clients, depots, vtypes, [dist], [dur])  # type: ignore[list-item]
    stop = MultipleCriteria([MaxIterations(iterations), MaxRuntime(settings.time_limit_s)])
    init = None
    if settings.start == "areas":
        start = _area_start(p, prizes)
        routes = [Route(data, v, depot_of[p.patrol_booth[k]]) for k, v in enumerate(start) if v]
        init = Solution(data, routes) if routes else None
    res = solve(data, stop=stop, seed=seed, collect_stats=False, display=False, initial_solution=init)
    sol = res.best
    per_type: dict[int, list[list[tuple[int, int, int]]]] = {k: [] for k in range(len(used))}
    for route in sol.routes():
        visits = [(a.idx, int(a.start_time), int(a.end_time)) for a in route.schedule() if a.type.name == "CLIENT"]
        if route.has_time_warp():
            visits = []  # an infeasible route is not handed out
        per_type[route.vehicle_type()].append(visits)
    out: list[list[tuple[int, int, int]]] = []
    for b in p.patrol_booth:
        lst = per_type[depot_of[b]]
        out.append(lst.pop(0) if lst else [])
    return out, int(res.num_iterations)


def _stops(p: _Problem, per_patrol: list[list[tuple[int, int, int]]]) -> list[list[Stop]]:
    out = []
    for visits in per_patrol:
        stops = []
        for j, start, end in visits:
            i, b, r = p.clients[j]
            s = p.spots[i]
            stops.append(Stop(s.id, s.node, s.lat, s.lon, b, float(start), float(end), float(r)))
        out.append(stops)
    return out


def _finish(
    graph: WalkGraph,
    booths: Sequence[Booth],
    p: _Problem,
    stops: list[list[Stop]],
) -> list[PatrolRoute]:
    """Walk the legs on the street graph: paths, lengths, walking time, return time."""
    routes = []
    pairs: list[tuple[int, int]] = []
    for k, st in enumerate(stops):
        b = p.patrol_booth[k]
        seq = [int(p.booth_nodes[b])] + [s.node for s in st] + [int(p.booth_nodes[b])]
        pairs.extend((seq[i], seq[i + 1]) for i in range(len(seq) - 1) if seq[i] != seq[i + 1])
    paths = dict(zip(pairs, graph.paths(pairs), strict=True)) if pairs else {}
    leg_m = dict(zip(paths, graph.path_lengths_m(list(paths.values())), strict=True))
    for k, st in enumerate(stops):
        b = p.patrol_booth[k]
        bn = int(p.booth_nodes[b])
        seq = [bn] + [s.node for s in st] + [bn]
        full: list[int] = [bn]
        length = 2 * float(p.booth_leg_s[b]) * graph.walk_speed_mps if st else 0.0
        for i in range(len(seq) - 1):
            if seq[i] == seq[i + 1]:
                continue
            path = paths[(seq[i], seq[i + 1])]
            length += leg_m[(seq[i], seq[i + 1])]
            full.extend(path[1:])
        walking = length / graph.walk_speed_mps
        end = 0.0
        if st:
            last = st[-1]
            end = last.depart_s + float(p.times[b, len(p.booth_nodes) + _pos(p, last.spot)])
        routes.append(
            PatrolRoute(
                patrol_id=f"P{k + 1:02d}",
                booth=booths[b],
                booth_node=bn,
                stops=st,
                length_m=length,
                walking_s=walking,
                end_s=end,
                path=full if st else [],
            )
        )
    return routes


def _pos(p: _Problem, spot_id: int) -> int:
    return next(i for i, s in enumerate(p.spots) if s.id == spot_id)


def _prizes(p: _Problem, spots: Sequence[HotSpot]) -> NDArray[np.float64]:
    return np.array([c[2] for c in p.clients]) / max(1e-12, sum(s.risk for s in spots)) * _PRIZE_TOTAL


def _true_risk(p: _Problem, per_patrol: list[list[tuple[int, int, int]]]) -> float:
    return float(sum(p.clients[j][2] for visits in per_patrol for j, _, _ in visits))


def plan_routes(
    graph: WalkGraph,
    booths: Sequence[Booth],
    spots: Sequence[HotSpot],
    shift: Shift,
    *,
    patrols: int,
    total_risk: float,
    seed: int | None = None,
    settings: SolverSettings = SolverSettings(),
    progress: Callable[[str], None] | None = None,
) -> PatrolPlan:
    """Routes for ``patrols`` foot patrols from ``booths`` over ``spots`` in ``shift``.

    Parameters
    ----------
    graph
        The walking graph (walking speed is the router's).
    booths
        Where patrols start and end; patrols are spread over them, booths with most risk
        within 15 minutes' walk first.
    spots
        Candidate hot spots with their risk per block (:func:`patrol_planner.risk_map`).
    total_risk
        Expected incidents in the whole area during the shift (for shares in reports).
    seed
        None: the best plan found. An int: a varied plan within ``settings.tolerance`` of it.
    """
    started = _time.perf_counter()
    patrol_booth = _booth_assignment(graph, booths, spots, patrols)
    p = _problem(graph, booths, patrol_booth, spots, shift, settings)
    notes: list[str] = []
    base_prizes = _prizes(p, spots)
    if progress:
        progress(f"solving: {len(p.clients)} hot-spot visits, {patrols} patrols")
    if not p.clients:
        notes.append("no hot spot can be reached from the booths and back within the shift")
        best: list[list[tuple[int, int, int]]] = [[] for _ in patrol_booth]
        its = 0
    else:
        best, its = _solve_pyvrp(p, base_prizes, 0, settings, settings.iterations)
    best_risk = _true_risk(p, best)
    chosen, attempts = best, 1
    if seed is not None and p.clients:
        rng = np.random.default_rng(seed)
        noise = settings.noise
        chosen = []
        for attempt in range(3):
            attempts += 1
            # Fresh phases (when in the block each hot spot is visited) and jittered prizes.
            pv = _with_windows(p, rng.uniform(0, (1 - _WINDOW_FRAC) * settings.revisit_s, size=len(p.spots)))
            prizes = _prizes(pv, spots) * np.exp(rng.normal(0.0, noise, size=len(pv.clients)))
            if progress:
                progress(f"varying the plan (seed {seed}, noise {noise:.2f})")
            cand, more = _solve_pyvrp(pv, prizes, seed + 1 + attempt, settings, settings.iterations)
            its += more
            r = _true_risk(pv, cand)
            if r > best_risk:
                best_risk = r
            if r >= (1 - settings.tolerance) * best_risk:
                chosen, p = cand, pv
                break
            noise /= 2
        if not chosen:
            notes.append(
                f"seed {seed}: no varied plan within {settings.tolerance:.0%} of the best; the best plan is used"
            )
            chosen = best
    routes = _finish(graph, booths, p, _stops(p, chosen))
    return PatrolPlan(
        shift=shift,
        routes=routes,
        hotspots=list(spots),
        total_risk=total_risk,
        spots_risk=float(sum(s.risk for s in spots)),
        seed=seed,
        method="pyvrp",
        solve_s=_time.perf_counter() - started,
        iterations=its,
        best_found_risk=best_risk,
        attempts=attempts,
        walk_speed_mps=graph.walk_speed_mps,
        dwell_s=settings.dwell_s,
        notes=notes,
    )


def _booth_assignment(graph: WalkGraph, booths: Sequence[Booth], spots: Sequence[HotSpot], patrols: int) -> list[int]:
    net = graph.network
    bx, by = net.to_xy(np.array([b.lat for b in booths]), np.array([b.lon for b in booths]))
    nodes = graph.nearest_node_xy(bx, by)
    risk_at = np.zeros(graph.n_nodes)
    for s in spots:
        risk_at[s.node] += s.risk
    g, reached, _ = graph.bounded_times(nodes, limit_s=900.0, targets=np.array([s.node for s in spots], dtype=np.int64))
    near = np.zeros(len(booths))
    np.add.at(near, g, risk_at[reached])
    return assign_patrols(booths, patrols, near.tolist())


def _greedy_visits(
    p: _Problem,
    value: NDArray[np.float64],
    *,
    area: NDArray[np.int64] | None = None,
    where: Sequence[int] | None = None,
) -> list[list[tuple[int, int, int]]]:
    """Per patrol: [(client, start, end)] of walking to the nearest open visit, patrols in turn.

    The patrol whose clock is earliest moves next, to the nearest (hot spot, block) not yet
    taken whose window is open on arrival and from which it gets back to its booth in time (ties:
    the higher ``value``, then the first client); with nothing open it waits 5 minutes, or goes
    home at the end. With ``area`` and ``where`` a patrol takes only the visits of its own area
    (``where[k]``, ``-1``: any) and never stays on at one hot spot for its next block's visit (a
    start for PyVRP, where that is forbidden)."""
    nb, K = len(p.booth_nodes), len(p.patrol_booth)
    visits: list[list[tuple[int, int, int]]] = [[] for _ in range(K)]
    if not p.clients:
        return visits
    spot = np.array([c[0] for c in p.clients], dtype=np.int64)
    early = np.array([w[0] for w in p.windows], dtype=np.float64)
    late = np.array([w[1] for w in p.windows], dtype=np.float64)
    to_spot = p.times[:, nb + spot]  # from every matrix position to each client's hot spot
    back = p.times[nb + spot, :nb]  # from each client's hot spot to every booth
    free = np.ones(spot.size, dtype=bool)
    allowed = [
        area[spot] == where[k] if area is not None and where is not None and where[k] >= 0 else free.copy()
        for k in range(K)
    ]
    clock = [0.0] * K
    here = [int(b) for b in p.patrol_booth]  # matrix positions
    active = [True] * K
    while any(active):
        k = min((i for i in range(K) if active[i]), key=lambda i: (clock[i], i))
        home = p.patrol_booth[k]
        travel = to_spot[here[k]]
        arrive = clock[k] + travel
        # A window open now (no waiting for later ones), and back home by the end of the shift.
        ok = free & allowed[k] & (early <= arrive) & (arrive <= late)
        ok &= arrive + p.dwell_s + back[:, home] <= p.shift_s
        if area is not None and here[k] >= nb:
            ok &= spot != here[k] - nb
        cand = np.flatnonzero(ok)
        if cand.size == 0:
            # Nothing open now: wait (5 minutes) for a window to open, or go home at the end.
            if clock[k] + 300 >= p.shift_s:
                active[k] = False
            else:
                clock[k] += 300
            continue
        j = int(cand[np.lexsort((cand, -value[cand], travel[cand]))[0]])
        start = float(arrive[j])
        free[j] = False
        visits[k].append((j, int(start), int(start + p.dwell_s)))
        clock[k] = start + p.dwell_s
        here[k] = nb + int(spot[j])
    return visits


_AREA_LINK_S = 600.0  # hot spots within 10 minutes' walk of each other are one area


def _area_start(p: _Problem, prizes: NDArray[np.float64]) -> list[list[int]]:
    """PyVRP's initial solution: each patrol's clients, walked in the area it is given."""
    nb = len(p.booth_nodes)
    spot_times = p.times[nb:, nb:]
    area = spot_areas(spot_times, _AREA_LINK_S)
    model = AreaModel(
        area,
        spot_times,
        p.times[:nb, nb:],
        np.array([c[0] for c in p.clients], dtype=np.int64),
        np.array([c[1] for c in p.clients], dtype=np.int64),
        np.asarray(prizes, dtype=np.float64),
        shift_s=p.shift_s,
        revisit_s=p.revisit_s,
        dwell_s=p.dwell_s,
    )
    where = model.assign(p.patrol_booth)
    return [[j for j, _, _ in v] for v in _greedy_visits(p, prizes, area=area, where=where)]


def greedy_routes(
    graph: WalkGraph,
    booths: Sequence[Booth],
    spots: Sequence[HotSpot],
    shift: Shift,
    *,
    patrols: int,
    total_risk: float,
    settings: SolverSettings = SolverSettings(),
) -> PatrolPlan:
    """The baseline: each patrol walks to the nearest hot spot not yet visited in the current block.

    Patrols move in turn (the one whose clock is earliest moves next). A hot spot is eligible if
    the dwell can start within its block and the patrol can still get back to its booth by the
    end of the shift; a patrol with nothing eligible waits for the next block, or goes home.
    """
    started = _time.perf_counter()
    patrol_booth = _booth_assignment(graph, booths, spots, patrols)
    p = _problem(graph, booths, patrol_booth, spots, shift, settings)
    visits = _greedy_visits(p, np.array([c[2] for c in p.clients]))
    routes = _finish(graph, booths, p, _stops(p, visits))
    return PatrolPlan(
        shift=shift,
        routes=routes,
        hotspots=list(spots),
        total_risk=total_risk,
        spots_risk=float(sum(s.risk for s in spots)),
        seed=None,
        method="greedy",
        solve_s=_time.perf_counter() - started,
        walk_speed_mps=graph.walk_speed_mps,
        dwell_s=settings.dwell_s,
    )
