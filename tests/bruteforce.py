"""An independent, slow reference for unit ranking: scan snapping + networkx Dijkstra.

It rebuilds each mode's graph from the network's segments and the documented rules (walk: every
walkable segment both ways at the walking speed; drive: drivable segments, one-ways respected, at
their speed; each restricted to its largest (strongly) connected component), snaps by scanning every
segment, splits segments at the snapped points, and runs networkx's full Dijkstra. It shares no
code with :mod:`geo.routing` but the :class:`~geo.network.StreetNetwork` it reads.
"""

from __future__ import annotations

import networkx as nx
import numpy as np
import shapely

from geo.network import StreetNetwork

UNIT_MODES = {"booth": "walk", "foot": "walk", "car": "drive"}


def mode_edges(net: StreetNetwork, mode: str, walk_speed: float = 1.4) -> list[tuple[int, int, float, float, bool, bool]]:
    """(u, v, time_s, length_m, forward_ok, backward_ok) for the mode's largest component."""
    g = nx.DiGraph()
    rows = []
    for i in range(net.n_segments):
        if mode == "walk" and not net.seg_walk[i]:
            continue
        if mode == "drive" and not net.seg_drive[i]:
            continue
        u, v, ln = int(net.seg_u[i]), int(net.seg_v[i]), float(net.seg_length_m[i])
        if mode == "walk":
            t, back = ln / walk_speed, True
        else:
            t, back = ln / (float(net.seg_speed_kmh[i]) / 3.6), not bool(net.seg_oneway[i])
        rows.append((u, v, t, ln, True, back))
        g.add_edge(u, v)
        if back:
            g.add_edge(v, u)
    comps = nx.weakly_connected_components(g) if mode == "walk" else nx.strongly_connected_components(g)
    biggest = max(comps, key=len)
    return [r for r in rows if r[0] in biggest and r[1] in biggest]


class BruteForce:
    """Reference ETAs for one network."""

    def __init__(self, net: StreetNetwork, walk_speed: float = 1.4) -> None:
        self.net = net
        self.walk_speed = walk_speed
        self.edges = {m: mode_edges(net, m, walk_speed) for m in ("walk", "drive")}
        self.lines = {
            m: shapely.linestrings(
                [[(net.node_x[u], net.node_y[u]), (net.node_x[v], net.node_y[v])] for u, v, *_ in e]
            )
            for m, e in self.edges.items()
        }

    def snap(self, lat: float, lon: float, mode: str) -> tuple[int, float, float]:
        """(edge index, fraction, distance) by scanning every segment of the mode."""
        x, y = self.net.to_xy(lat, lon)
        p = shapely.points(float(x), float(y))
        d = shapely.distance(self.lines[mode], p)
        i = int(np.argmin(d))
        line = self.lines[mode][i]
        t = float(shapely.line_locate_point(line, p, normalized=True)) if line.length > 0 else 0.0
        return i, t, float(d[i])

    def etas(self, units: dict[str, tuple[str, float, float]], lat: float, lon: float) -> dict[str, tuple[float, float]]:
        """ETA (s) and path length (m) of every reachable unit to the point."""
        out: dict[str, tuple[float, float]] = {}
        for mode in ("walk", "drive"):
            mine = {uid: (kind, ulat, ulon) for uid, (kind, ulat, ulon) in units.items() if UNIT_MODES[kind] == mode}
            if not mine:
                continue
            alert_edge, alert_t, alert_d = self.snap(lat, lon, mode)
            # Points to insert per edge: (fraction, name)
            cuts: dict[int, list[tuple[float, object]]] = {alert_edge: [(alert_t, "ALERT")]}
            legs = {}
            for uid, (_, ulat, ulon) in mine.items():
                e, t, d = self.snap(ulat, ulon, mode)
                cuts.setdefault(e, []).append((t, ("U", uid)))
                legs[uid] = d
            g = nx.DiGraph()

            def add(a, b, t, ln):
                if g.has_edge(a, b) and g[a][b]["t"] <= t:
                    return
                g.add_edge(a, b, t=t, l=ln)

            for idx, (u, v, t, ln, fwd, back) in enumerate(self.edges[mode]):
                chain = [(0.0, u)] + sorted(cuts.get(idx, []), key=lambda c: c[0]) + [(1.0, v)]
                for (fa, na), (fb, nb) in zip(chain[:-1], chain[1:]):
                    share = fb - fa
                    if fwd:
                        add(na, nb, share * t, share * ln)
                    if back:
                        add(nb, na, share * t, share * ln)
            rev = g.reverse(copy=False)
            pred, times = nx.dijkstra_predecessor_and_distance(rev, "ALERT", weight="t")
            for uid in mine:
                node = ("U", uid)
                if node not in times:
                    continue
                length, at = 0.0, node
                while at != "ALERT":  # follow the shortest-path tree back to the alert
                    nxt = pred[at][0]
                    length += g[at][nxt]["l"]
                    at = nxt
                leg = legs[uid] + alert_d
                out[uid] = (times[node] + leg / self.walk_speed, length + leg)
        return out
