"""The walking graph of a :class:`geo.Router` as arrays, with bounded searches and snapping.

Built on the router's public data (its ``walk`` mode graph: segment arrays ``u``/``v``/``time``/
``length`` and the reverse CSR ``indptr``/``indices``/``wt``/``wl``). Walking is two-way on every
segment, so the reverse CSR is also the forward one. A compiled Dijkstra that stops at a time
limit gives many-to-many travel-time matrices and the neighbourhoods of the network kernel; scipy's
csgraph rebuilds the few paths that are drawn.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit
from numpy.typing import NDArray
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra
from shapely import STRtree, linestrings, points

from geo import Router
from geo.heap import heap_pop, heap_push

__all__ = ["WalkGraph"]


@njit(cache=True, nogil=True)
def _bounded(indptr, indices, wt, sources, seed_t, group, n_groups, limit, targets_only, is_target):  # pragma: no cover
    """Dijkstra from each group of seeds, stopping at ``limit``; returns (group, node, time) triples.

    ``group[i]`` names the search that seed ``sources[i]`` (at time ``seed_t[i]``) belongs to;
    seeds of one group must be contiguous. With ``targets_only`` only nodes where ``is_target``
    is true are reported.
    """
    n = indptr.size - 1
    dist = np.full(n, np.inf)
    stamp = np.zeros(n, dtype=np.int64)
    done = np.zeros(n, dtype=np.int64)
    cap = indices.size + sources.size + 8
    hk = np.empty(cap)
    hv = np.empty(cap, dtype=np.int64)
    out_g = []
    out_n = []
    out_t = []
    s = 0
    gen = 0
    while s < sources.size:
        g = group[s]
        gen += 1
        size = 0
        while s < sources.size and group[s] == g:
            node = sources[s]
            t = seed_t[s]
            if stamp[node] != gen or t < dist[node]:
                stamp[node] = gen
                dist[node] = t
                size = heap_push(hk, hv, size, t, node)
            s += 1
        while size > 0:
            d, node, size = heap_pop(hk, hv, size)
            if done[node] == gen or d > dist[node]:
                continue
            if d > limit:
                break
            done[node] = gen
            if not targets_only or is_target[node]:
                out_g.append(g)
                out_n.append(node)
                out_t.append(d)
            for e in range(indptr[node], indptr[node + 1]):
                nb = indices[e]
                nd = d + wt[e]
                if nd <= limit and (stamp[nb] != gen or nd < dist[nb]):
                    stamp[nb] = gen
                    dist[nb] = nd
                    size = heap_push(hk, hv, size, nd, nb)
    return np.array(out_g, dtype=np.int64), np.array(out_n, dtype=np.int64), np.array(out_t, dtype=np.float64)


@dataclass(frozen=True, slots=True)
class SegmentSnaps:
    """Points snapped onto walk segments: local segment, fraction from ``u``, off-street distance."""

    segment: NDArray[np.int64]
    fraction: NDArray[np.float64]
    distance_m: NDArray[np.float64]


class WalkGraph:
    """The router's walking graph: nodes, two-way segments, compiled bounded searches.

    Node ids are the network's node indices. Segments are the walk graph's local segments
    (``u``, ``v``, ``length_m``, ``time_s``), all of them in the largest connected component.
    """

    def __init__(self, router: Router) -> None:
        g = router._graphs["walk"]
        net = router.network
        self.router = router
        self.network = net
        self.walk_speed_mps = router.walk_speed_mps
        self.u = np.asarray(g.u, dtype=np.int64)
        self.v = np.asarray(g.v, dtype=np.int64)
        self.length_m = np.asarray(g.length, dtype=np.float64)
        self.time_s = np.asarray(g.time, dtype=np.float64)
        self.indptr = np.asarray(g.indptr, dtype=np.int64)
        self.indices = np.asarray(g.indices, dtype=np.int64)
        self.wt = np.asarray(g.wt, dtype=np.float64)
        self.n_nodes = net.n_nodes
        in_graph = np.zeros(self.n_nodes, dtype=bool)
        in_graph[self.u] = True
        in_graph[self.v] = True
        self.in_graph = in_graph
        self.nodes = np.flatnonzero(in_graph)
        self.x0, self.y0 = net.node_x[self.u], net.node_y[self.u]
        self.x1, self.y1 = net.node_x[self.v], net.node_y[self.v]
        self.mid_x = (self.x0 + self.x1) / 2
        self.mid_y = (self.y0 + self.y1) / 2
        self._tree: STRtree | None = None
        self._csr: csr_matrix | None = None

    @property
    def total_length_m(self) -> float:
        """Length of all walkable street in the graph (each way counted once)."""
        return float(self.length_m.sum())

    # -- snapping ----------------------------------------------------------------------------
    def snap_xy(self, x: NDArray[np.float64], y: NDArray[np.float64]) -> SegmentSnaps:
        """Snap many metric points onto their nearest walk segment (one STRtree query)."""
        if self._tree is None:
            lines = linestrings(
                np.stack([np.stack([self.x0, self.y0], 1), np.stack([self.x1, self.y1], 1)], 1)
            )
            self._tree = STRtree(lines)
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        if x.size == 0:
            empty = np.zeros(0)
            return SegmentSnaps(np.zeros(0, dtype=np.int64), empty, empty)
        (qi, si), dist = self._tree.query_nearest(points(x, y), return_distance=True, all_matches=False)
        seg = np.empty(x.size, dtype=np.int64)
        dd = np.empty(x.size)
        seg[qi] = si
        dd[qi] = dist
        dx, dy = self.x1[seg] - self.x0[seg], self.y1[seg] - self.y0[seg]
        l2 = dx * dx + dy * dy
        with np.errstate(invalid="ignore", divide="ignore"):
            t = np.where(l2 > 0, ((x - self.x0[seg]) * dx + (y - self.y0[seg]) * dy) / l2, 0.0)
        return SegmentSnaps(seg, np.clip(t, 0.0, 1.0), dd)

    def nearest_node_xy(self, x: NDArray[np.float64], y: NDArray[np.float64]) -> NDArray[np.int64]:
        """The graph node nearest along the street to each point (the closer end of its segment)."""
        s = self.snap_xy(x, y)
        return np.where(s.fraction <= 0.5, self.u[s.segment], self.v[s.segment])

    # -- searches ----------------------------------------------------------------------------
    def bounded_times(
        self,
        sources: NDArray[np.int64],
        *,
        limit_s: float,
        seed_t: NDArray[np.float64] | None = None,
        group: NDArray[np.int64] | None = None,
        targets: NDArray[np.int64] | None = None,
    ) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]:
        """Walking times from each source (or group of seeds) to every node within ``limit_s``.

        Returns ``(group, node, time_s)`` triples; a group is one search (by default each source
        is its own group, numbered by position). With ``targets`` only those nodes are reported.
        """
        src = np.asarray(sources, dtype=np.int64)
        st = np.zeros(src.size) if seed_t is None else np.asarray(seed_t, dtype=np.float64)
        grp = np.arange(src.size, dtype=np.int64) if group is None else np.asarray(group, dtype=np.int64)
        if src.size and np.any(np.diff(grp) < 0):
            order = np.argsort(grp, kind="stable")
            src, st, grp = src[order], st[order], grp[order]
        is_target = np.zeros(self.n_nodes, dtype=np.bool_)
        if targets is not None:
            is_target[np.asarray(targets, dtype=np.int64)] = True
        n_groups = int(grp.max()) + 1 if grp.size else 0
        lim = float(limit_s) if math.isfinite(limit_s) else 1e300
        return _bounded(self.indptr, self.indices, self.wt, src, st, grp, n_groups, lim, targets is not None, is_target)

    def time_matrix(self, nodes: NDArray[np.int64], *, limit_s: float = math.inf) -> NDArray[np.float64]:
        """Walking times (s) between every pair of ``nodes``; ``inf`` beyond ``limit_s``."""
        nodes = np.asarray(nodes, dtype=np.int64)
        g, n, t = self.bounded_times(nodes, limit_s=limit_s, targets=nodes)
        pos = np.full(self.n_nodes, -1, dtype=np.int64)
        pos[nodes] = np.arange(nodes.size)
        out = np.full((nodes.size, nodes.size), np.inf)
        # Several positions may share one node: fill by node, then copy columns.
        first = np.full(self.n_nodes, -1, dtype=np.int64)
        first[nodes[::-1]] = np.arange(nodes.size)[::-1]
        out[g, first[n]] = t
        cols = first[nodes]
        out = out[:, cols]
        np.fill_diagonal(out, 0.0)
        return out

    def _graph_csr(self) -> csr_matrix:
        if self._csr is None:
            # csr_matrix sums duplicate entries: keep the fastest of parallel segments instead.
            w = np.maximum(self.wt, 1e-9)
            dst = np.repeat(np.arange(self.n_nodes), np.diff(self.indptr))
            key = self.indices * self.n_nodes + dst
            order = np.lexsort((w, key))
            first = np.ones(order.size, dtype=bool)
            first[1:] = key[order][1:] != key[order][:-1]
            keep = order[first]
            self._csr = csr_matrix((w[keep], (self.indices[keep], dst[keep])), shape=(self.n_nodes, self.n_nodes))
        return self._csr

    def paths(self, pairs: list[tuple[int, int]]) -> list[list[int]]:
        """Shortest walking paths (node lists) for ``(from, to)`` pairs."""
        if not pairs:
            return []
        sources = sorted({a for a, _ in pairs})
        _, pred = dijkstra(self._graph_csr(), directed=True, indices=sources, return_predecessors=True)
        row = {s: i for i, s in enumerate(sources)}
        out = []
        for a, b in pairs:
            p = pred[row[a]]
            path = [b]
            while path[-1] != a:
                prev = int(p[path[-1]])
                if prev < 0:
                    msg = f"no walking path from node {a} to node {b}"
                    raise ValueError(msg)
                path.append(prev)
            out.append(path[::-1])
        return out
