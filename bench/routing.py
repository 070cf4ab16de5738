"""Time per recommendation (top 3) against two peers on the same graphs, fleets and alerts.

* **qorgau**: :meth:`geo.Router.recommend` - snapping both ways and the compiled reverse search
  that stops once the top 3 are final.
* **networkx**: one ``single_source_dijkstra_path_length`` per mode per alert over the reversed
  graph from the alert's entry node, then the units' nodes looked up (the classic approach).
* **pandana** 0.8 (contraction hierarchies): ``set_pois`` + ``nearest_pois`` per mode. Pandana answers
  for *every* node at once, so two figures: a call after units moved (what a live fleet costs per
  alert) and the same call divided by the number of alerts (a fleet that never moves).

The peers get each unit at its nearest exit node and the alert at its nearest entry node (they
cannot start mid-street); ETA adds the same off-street legs. Their top-3 agreement with qorgau is
reported: differences come only from that node snapping.

Fleet: 20 % booths (up to 30 m off a street), 50 % foot patrols and 30 % cars (GPS positions on a
street with 5 m noise). Alerts: random places within 50 m of a walkable street.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from dataclasses import dataclass

import networkx as nx
import numpy as np
import pandas as pd

from geo import Router, StreetNetwork
from geo.routing import UNIT_MODES


@dataclass
class Scenario:
    name: str
    network: StreetNetwork
    n_units: int
    n_alerts: int
    seed: int = 1
    n_networkx: int = 100


def _points_on(
    net: StreetNetwork, router: Router, mode: str, n: int, rng: np.random.Generator, off_m: float, *, gaussian: bool
) -> list[tuple[float, float]]:
    g = router.graph(mode)
    pick = rng.integers(g.size, size=n)
    t = rng.random(n)
    x = g.x0[pick] * (1 - t) + g.x1[pick] * t
    y = g.y0[pick] * (1 - t) + g.y1[pick] * t
    if gaussian:
        x, y = x + rng.normal(0, off_m, n), y + rng.normal(0, off_m, n)
    else:
        x, y = x + rng.uniform(-off_m, off_m, n), y + rng.uniform(-off_m, off_m, n)
    lat, lon = net.to_latlon(x, y)
    return list(zip(lat.tolist(), lon.tolist(), strict=True))


def make_fleet(
    net: StreetNetwork, router: Router, n_units: int, rng: np.random.Generator
) -> dict[str, tuple[str, float, float]]:
    n_booth, n_foot = int(0.2 * n_units), int(0.5 * n_units)
    n_car = n_units - n_booth - n_foot
    fleet: dict[str, tuple[str, float, float]] = {}
    for i, p in enumerate(_points_on(net, router, "walk", n_booth, rng, 30, gaussian=False)):
        fleet[f"booth-{i}"] = ("booth", *p)
    for i, p in enumerate(_points_on(net, router, "walk", n_foot, rng, 5, gaussian=True)):
        fleet[f"foot-{i}"] = ("foot", *p)
    for i, p in enumerate(_points_on(net, router, "drive", n_car, rng, 5, gaussian=True)):
        fleet[f"car-{i}"] = ("car", *p)
    return fleet


def percentiles(samples_s: list[float]) -> dict[str, float]:
    a = np.asarray(samples_s) * 1e3
    return {"median_ms": float(np.median(a)), "p99_ms": float(np.percentile(a, 99)), "n": int(a.size)}


@contextlib.contextmanager
def quiet_stdout():
    """Pandana prints from C++: silence file descriptor 1 while it runs."""
    sys.stdout.flush()
    saved = os.dup(1)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 1)
        try:
            yield
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)


def _nearest_entry(router: Router, lat: float, lon: float, mode: str, *, entry: bool) -> tuple[int, float]:
    """(node, seconds incl. the off-street leg) of the cheapest node to enter/leave a point by."""
    snap = router.snap(lat, lon, mode, check_area=False)
    g = router.graph(snap.mode)
    i = g.local_segment(snap.segment)
    options = g.entries(i, snap.fraction) if entry else g.exits(i, snap.fraction)
    node, t, _ = min(options, key=lambda o: o[1])
    return node, t + snap.distance_m / router.walk_speed_mps


def run(scenario: Scenario) -> dict:
    net = scenario.network
    rng = np.random.default_rng(scenario.seed)
    t0 = time.perf_counter()
    router = Router(net)
    build_s = time.perf_counter() - t0
    fleet = make_fleet(net, router, scenario.n_units, rng)
    for uid, (kind, lat, lon) in fleet.items():
        router.place_unit(uid, kind, lat, lon)
    alerts = _points_on(net, router, "walk", scenario.n_alerts, rng, 50, gaussian=False)
    router.recommend(*alerts[0])  # compile / warm up

    ours, ours_cpu, ours_top = [], [], []
    for lat, lon in alerts:
        c = time.thread_time()
        t = time.perf_counter()
        top = router.recommend(lat, lon, k=3)
        ours.append(time.perf_counter() - t)
        # CPU time of this thread: what the search costs without the preemption of a shared box.
        ours_cpu.append(time.thread_time() - c)
        ours_top.append([r.unit_id for r in top])

    moves = []
    ids = list(fleet)
    for lat, lon in _points_on(net, router, "walk", 2000, rng, 5, gaussian=True):
        uid = ids[int(rng.integers(len(ids)))]
        kind = fleet[uid][0]
        if kind == "car":
            continue
        t = time.perf_counter()
        router.place_unit(uid, kind, lat, lon)
        moves.append(time.perf_counter() - t)
    # Put the fleet back where it was, so the peers see the same positions.
    for uid, (kind, lat, lon) in fleet.items():
        router.place_unit(uid, kind, lat, lon)

    # Peer inputs: every unit at its cheapest exit node, every alert at its cheapest entry node.
    unit_node = {
        uid: _nearest_entry(router, lat, lon, UNIT_MODES[kind], entry=False) for uid, (kind, lat, lon) in fleet.items()
    }
    alert_node = {
        m: [_nearest_entry(router, lat, lon, m, entry=True) for lat, lon in alerts] for m in ("walk", "drive")
    }
    by_mode = {m: [u for u, (kind, *_) in fleet.items() if UNIT_MODES[kind] == m] for m in ("walk", "drive")}

    # networkx: reversed graph per mode.
    nx_graphs = {}
    for m in ("walk", "drive"):
        g = router.graph(m)
        rev = nx.DiGraph()
        for b in range(net.n_nodes):
            for p in range(g.indptr[b], g.indptr[b + 1]):
                rev.add_edge(b, int(g.indices[p]), t=float(g.wt[p]))
        nx_graphs[m] = rev
    nx_times, nx_top = [], []
    n_nx = min(len(alerts), scenario.n_networkx)  # networkx is slow: a sample of the same alerts
    for q in range(n_nx):
        t = time.perf_counter()
        cands = []
        for m in ("walk", "drive"):
            node, leg = alert_node[m][q]
            dist = nx.single_source_dijkstra_path_length(nx_graphs[m], node, weight="t")
            for uid in by_mode[m]:
                un, ul = unit_node[uid]
                if un in dist:
                    cands.append((dist[un] + ul + leg, uid))
        cands.sort()
        nx_times.append(time.perf_counter() - t)
        nx_top.append([c[1] for c in cands[:3]])

    # pandana: contraction hierarchies per mode, on the reversed graph (distances to the units).
    import pandana

    pd_nets = {}
    with quiet_stdout():
        t = time.perf_counter()
        for m in ("walk", "drive"):
            g = router.graph(m)
            dst = np.repeat(np.arange(net.n_nodes), np.diff(g.indptr))
            nodes = pd.DataFrame({"x": net.node_x, "y": net.node_y})
            edges = pd.DataFrame({"from": dst, "to": g.indices, "t": g.wt})
            # Building the Network builds its contraction hierarchy; nearest_pois needs no precompute().
            pd_nets[m] = pandana.Network(nodes["x"], nodes["y"], edges["from"], edges["to"], edges[["t"]], twoway=False)
        pd_setup_s = time.perf_counter() - t
        pd_calls = []
        tables = {}
        for _ in range(5):  # each call = the fleet moved since the last alert
            t = time.perf_counter()
            for m in ("walk", "drive"):
                uids = by_mode[m]
                nodes_xy = np.array([unit_node[u][0] for u in uids])
                pnet = pd_nets[m]
                pnet.set_pois(
                    category="units",
                    maxdist=1800,
                    maxitems=10,
                    x_col=pd.Series(net.node_x[nodes_xy]),
                    y_col=pd.Series(net.node_y[nodes_xy]),
                )
                tables[m] = pnet.nearest_pois(1800, "units", num_pois=10, include_poi_ids=True)
            pd_calls.append(time.perf_counter() - t)
    # pandana's distances exclude the units' off-street legs: take its 10 nearest per mode and
    # add the legs, which is exact when the legs do not reorder units beyond the 10th.
    pd_top = []
    for q in range(len(alerts)):
        cands = []
        for m in ("walk", "drive"):
            node, leg = alert_node[m][q]
            row = tables[m].loc[node]
            for j in range(1, 11):
                d, pid = row[j], row[f"poi{j}"]
                if np.isfinite(d) and not math.isnan(pid):
                    uid = by_mode[m][int(pid)]
                    cands.append((d + unit_node[uid][1] + leg, uid))
        cands.sort()
        pd_top.append([c[1] for c in cands[:3]])

    def agreement(peer: list[list[str]]) -> float:
        return float(np.mean([a == b for a, b in zip(ours_top, peer, strict=False)]))

    return {
        "scenario": scenario.name,
        "label": net.label,
        "nodes": net.n_nodes,
        "walk_graph": router.graph_size("walk"),
        "drive_graph": router.graph_size("drive"),
        "units": len(fleet),
        "alerts": len(alerts),
        "router_build_s": build_s,
        "qorgau": percentiles(ours),
        "qorgau_cpu": percentiles(ours_cpu),
        "qorgau_move_unit": percentiles(moves),
        "networkx": percentiles(nx_times),
        "networkx_agreement": agreement(nx_top),
        "pandana_moving_fleet": percentiles(pd_calls),
        "pandana_static_fleet_per_alert_ms": float(np.median(pd_calls)) * 1e3 / len(alerts),
        "pandana_setup_s": pd_setup_s,
        "pandana_agreement": agreement(pd_top),
    }
