"""The walking graph of a :class:`geo.Router`, seen from the planner: a thin adapter over geo.

Built on the router's public walk graph (:meth:`geo.Router.graph`): segment arrays ``u``/``v``/
``time``/``length`` and the CSR arrays. Every search and every snap is geo's
(:func:`geo.reachable`, :func:`geo.travel_times`, :func:`geo.shortest_paths`,
:meth:`geo.ModeGraph.snap_many`); this class only names them the planner's way.
"""

from __future__ import annotations

import hashlib
import math
import threading

import numpy as np
from numpy.typing import NDArray

from geo import ModeGraph, Router, SegmentSnaps, reachable, shortest_paths, travel_times

__all__ = ["SegmentSnaps", "WalkGraph"]


class WalkGraph:
    """The router's walking graph: nodes, two-way segments, bounded searches.

    Node ids are the network's node indices. Segments are the walk graph's local segments
    (``u``, ``v``, ``length_m``, ``time_s``), all of them in the largest connected component.
    """

    def __init__(self, router: Router) -> None:
        g = router.graph("walk")
        net = router.network
        self.router = router
        self.network = net
        self.graph: ModeGraph = g
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
        # Matrices of recent plans: a plan for the same shift and history (another seed, more or
        # fewer patrols, so a nested set of hot spots) is served from here without a search.
        self._matrices: list[tuple[NDArray[np.int64], float, NDArray[np.float64]]] = []
        self.matrix_hits = 0
        # Snaps of recent point sets: a plan snaps its incidents to filter them by distance and
        # again for the booths' coverage; the second is served from here.
        self._snaps: list[tuple[bytes, SegmentSnaps]] = []
        self._snaps_lock = threading.Lock()
        self.snap_hits = 0
        self._seg_keys: NDArray[np.int64] | None = None
        self._seg_lengths: NDArray[np.float64] | None = None

    @property
    def total_length_m(self) -> float:
        """Length of all walkable street in the graph (each way counted once)."""
        return float(self.length_m.sum())

    # -- snapping ----------------------------------------------------------------------------
    def snap_xy(self, x: NDArray[np.float64], y: NDArray[np.float64]) -> SegmentSnaps:
        """Snap many metric points onto their nearest walk segment (geo's grid snapper).

        The snaps of the last few large point sets are kept (keyed by the points' bytes) and
        handed out again for the same points; callers must not change them.
        """
        x, y = np.ascontiguousarray(x, dtype=np.float64), np.ascontiguousarray(y, dtype=np.float64)
        if x.size < 10_000:
            return self.graph.snap_many(x, y)
        key = hashlib.blake2b(x.tobytes() + y.tobytes(), digest_size=16).digest()
        with self._snaps_lock:
            for k, snaps in self._snaps:
                if k == key:
                    self.snap_hits += 1
                    return snaps
        snaps = self.graph.snap_many(x, y)
        with self._snaps_lock:
            self._snaps = [(key, snaps), *self._snaps[:2]]
        return snaps

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
        return reachable(self.graph, sources, cutoff_s=limit_s, seed_s=seed_t, group=group, targets=targets)

    def time_matrix(self, nodes: NDArray[np.int64], *, limit_s: float = math.inf) -> NDArray[np.float64]:
        """Walking times (s) between every pair of ``nodes``; ``inf`` beyond ``limit_s``.

        The last few matrices are kept: when every node was in one of them (with the same
        limit), the answer is sliced from it, not searched again.
        """
        nodes = np.asarray(nodes, dtype=np.int64)
        for kept, limit, matrix in self._matrices:
            if limit != limit_s:
                continue
            order = np.argsort(kept, kind="stable")
            pos = np.searchsorted(kept[order], nodes)
            pos = np.minimum(pos, kept.size - 1)
            if np.array_equal(kept[order][pos], nodes):
                idx = order[pos]
                self.matrix_hits += 1
                out: NDArray[np.float64] = matrix[np.ix_(idx, idx)].copy()
                np.fill_diagonal(out, 0.0)
                return out
        out = travel_times(self.graph, nodes, nodes, cutoff_s=limit_s)
        np.fill_diagonal(out, 0.0)
        self._matrices = [(nodes.copy(), limit_s, out.copy()), *self._matrices[:3]]
        return out

    def times_from(
        self, sources: NDArray[np.int64], targets: NDArray[np.int64], *, limit_s: float = math.inf
    ) -> NDArray[np.float64]:
        """Walking times (s) from each of ``sources`` to each of ``targets``; ``inf`` beyond ``limit_s``."""
        return travel_times(self.graph, sources, targets, cutoff_s=limit_s)

    def paths(self, pairs: list[tuple[int, int]]) -> list[list[int]]:
        """Shortest walking paths (node lists) for ``(from, to)`` pairs."""
        return shortest_paths(self.graph, pairs)

    def path_lengths_m(self, paths: list[list[int]]) -> list[float]:
        """Length (m) of each walk along consecutive nodes (the shortest segment between each pair)."""
        steps = [len(p) - 1 for p in paths if len(p) > 1]
        out = [0.0] * len(paths)
        if not steps:
            return out
        keys, lengths = self._segment_lengths()
        a = np.concatenate([np.asarray(p[:-1], dtype=np.int64) for p in paths if len(p) > 1])
        b = np.concatenate([np.asarray(p[1:], dtype=np.int64) for p in paths if len(p) > 1])
        want = a * self.n_nodes + b
        pos = np.minimum(np.searchsorted(keys, want), keys.size - 1)
        if np.any(keys[pos] != want):
            msg = "a path steps between nodes that no walk segment joins"
            raise ValueError(msg)
        step = lengths[pos].tolist()
        at = 0
        for i, p in enumerate(paths):
            if len(p) > 1:
                n = len(p) - 1
                out[i] = float(sum(step[at : at + n]))  # summed in order, as a loop over the steps would
                at += n
        return out

    def _segment_lengths(self) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
        """Sorted keys ``from * n + to`` of every walk step (both ways) and its shortest length."""
        if self._seg_keys is None:
            n = self.n_nodes
            keys = np.concatenate([self.u * n + self.v, self.v * n + self.u])
            lengths = np.concatenate([self.length_m, self.length_m])
            order = np.lexsort((lengths, keys))
            keys, lengths = keys[order], lengths[order]
            first = np.concatenate([[True], keys[1:] != keys[:-1]])
            self._seg_keys, self._seg_lengths = keys[first], lengths[first]
        return self._seg_keys, self._seg_lengths  # type: ignore[return-value]
