"""One travel mode's street graph (:class:`ModeGraph`) and the one snapper of geo.

A :class:`ModeGraph` holds the streets one mode may use as CSR arrays, for the compiled searches
of :mod:`geo.travel` and of the router, and a uniform grid of its segments for exact nearest-segment
queries, one point at a time (:meth:`ModeGraph.snap_xy`, the router's hot path) or many at once
(:meth:`ModeGraph.snap_many`, the planner's incidents and booths), with the same compiled search.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from geo._search import nearest_segment, nearest_segments
from geo.network import StreetNetwork

__all__ = ["Mode", "ModeGraph", "SegmentSnaps"]

Mode = Literal["walk", "drive"]

_FAR_M = 20_000.0
"""Farther than this outside a graph's grid, snapping starts from the grid's edge."""


@dataclass(frozen=True, slots=True)
class SegmentSnaps:
    """Points snapped onto a mode's segments: local segment, fraction from ``u``, off-street distance (m)."""

    segment: NDArray[np.int64]
    fraction: NDArray[np.float64]
    distance_m: NDArray[np.float64]


class ModeGraph:
    """One mode's street graph: reverse adjacency for searches, a segment index for snapping.

    Get one with :meth:`geo.Router.graph`. Node ids are the network's node indices
    (``0 .. node_x.size - 1``); only the nodes of the mode's largest connected component have
    streets. *Local* segment ``i`` (``0 .. size - 1``) is network segment ``segments[i]``.

    Attributes
    ----------
    mode
        ``"walk"`` or ``"drive"``.
    segments
        Network segment index of each local segment (sorted).
    u, v, length, time
        Local segments' end nodes, metres and seconds for this mode.
    fwd_ok, bwd_ok
        Whether the mode may use a local segment from ``u`` to ``v``, and from ``v`` to ``u``.
    indptr, indices, wt, wl
        The *reverse* CSR: row ``b`` lists every node ``a`` with a street ``a -> b``, with its
        time ``wt`` (s) and length ``wl`` (m). :meth:`forward_csr` gives the forward one.
    node_x, node_y
        Metric coordinates of every node (the network's, not copied).
    size, n_nodes
        Number of local segments, and of nodes that have one.
    """

    def __init__(self, net: StreetNetwork, mode: Mode, walk_speed_mps: float) -> None:
        self.mode = mode
        self.node_x, self.node_y = net.node_x, net.node_y
        self._forward: tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64], NDArray[np.float64]] | None = (
            None
        )
        usable = net.seg_walk if mode == "walk" else net.seg_drive
        seg = np.flatnonzero(usable)
        n = net.n_nodes
        if seg.size == 0:
            self.segments = seg
            self.size = self.n_nodes = 0
            self.indptr = np.zeros(n + 1, dtype=np.int64)
            self.indices = np.zeros(0, dtype=np.int64)
            self.wt = self.wl = np.zeros(0)
            return
        u, v = net.seg_u[seg], net.seg_v[seg]
        length = net.seg_length_m[seg]
        if mode == "walk":
            fwd_ok = np.ones(seg.size, dtype=bool)
            bwd_ok = np.ones(seg.size, dtype=bool)
            time_s = length / walk_speed_mps
        else:
            fwd_ok = np.ones(seg.size, dtype=bool)
            bwd_ok = ~net.seg_oneway[seg]
            time_s = length / (net.seg_speed_kmh[seg] / 3.6)
        # Keep the largest (strongly, for cars) connected component.
        labels = net.components(mode)
        used = np.zeros(n, dtype=bool)
        used[u] = True
        used[v] = True
        counts = np.bincount(labels[used])
        biggest = int(np.argmax(counts))
        keep = (labels[u] == biggest) & (labels[v] == biggest)
        self.segments = seg[keep]
        self.u, self.v = u[keep], v[keep]
        self.length = length[keep]
        self.time = time_s[keep]
        self.fwd_ok, self.bwd_ok = fwd_ok[keep], bwd_ok[keep]
        self.size = int(self.segments.size)
        self.n_nodes = int(np.count_nonzero(np.bincount(np.concatenate([self.u, self.v]), minlength=n)))
        # Reverse CSR: row b lists every a with a street a -> b, for searches from an alert.
        src = np.concatenate([self.u[self.fwd_ok], self.v[self.bwd_ok]])
        dst = np.concatenate([self.v[self.fwd_ok], self.u[self.bwd_ok]])
        t_all = np.concatenate([self.time[self.fwd_ok], self.time[self.bwd_ok]])
        l_all = np.concatenate([self.length[self.fwd_ok], self.length[self.bwd_ok]])
        order = np.lexsort((src, dst))
        self.indptr = np.searchsorted(dst[order], np.arange(n + 1)).astype(np.int64)
        self.indices = src[order].astype(np.int64)
        self.wt = t_all[order].astype(np.float64)
        self.wl = l_all[order].astype(np.float64)
        self.x0, self.y0 = net.node_x[self.u], net.node_y[self.u]
        self.x1, self.y1 = net.node_x[self.v], net.node_y[self.v]
        self._build_grid()

    def _build_grid(self) -> None:
        """A uniform grid of cells over the segments' bounding boxes, for exact nearest queries."""
        lengths = np.hypot(self.x1 - self.x0, self.y1 - self.y0)
        self.cell_m = float(np.clip(2 * np.median(lengths), 25.0, 250.0))
        self.gx = float(min(self.x0.min(), self.x1.min()))
        self.gy = float(min(self.y0.min(), self.y1.min()))
        ix0 = np.floor((np.minimum(self.x0, self.x1) - self.gx) / self.cell_m).astype(np.int64)
        ix1 = np.floor((np.maximum(self.x0, self.x1) - self.gx) / self.cell_m).astype(np.int64)
        iy0 = np.floor((np.minimum(self.y0, self.y1) - self.gy) / self.cell_m).astype(np.int64)
        iy1 = np.floor((np.maximum(self.y0, self.y1) - self.gy) / self.cell_m).astype(np.int64)
        self.nx, self.ny = int(ix1.max()) + 1, int(iy1.max()) + 1
        wx, wy = ix1 - ix0 + 1, iy1 - iy0 + 1
        per_seg = wx * wy
        seg = np.repeat(np.arange(self.size, dtype=np.int64), per_seg)
        k = np.arange(per_seg.sum()) - np.repeat(np.cumsum(per_seg) - per_seg, per_seg)
        cell = (
            (np.repeat(ix0, per_seg) + k // np.repeat(wy, per_seg)) * self.ny
            + np.repeat(iy0, per_seg)
            + k % np.repeat(wy, per_seg)
        )
        order = np.argsort(cell, kind="stable")
        self.cell_items = seg[order]
        self.cell_start = np.searchsorted(cell[order], np.arange(self.nx * self.ny + 1)).astype(np.int64)

    def snap_xy(self, x: float, y: float) -> tuple[int, float, float, float, float]:
        """Nearest segment (local index), fraction along it, distance, snapped x and y.

        A point more than :data:`_FAR_M` outside the grid is searched from the nearest point of
        the grid instead (the grid's ring search would otherwise walk every ring in between: a
        point on the other side of the planet took minutes); its distance stays the true one, and
        it is outside any service area anyway.
        """
        gx1, gy1 = self.gx + self.nx * self.cell_m, self.gy + self.ny * self.cell_m
        qx, qy = min(max(x, self.gx), gx1), min(max(y, self.gy), gy1)
        far = math.hypot(x - qx, y - qy) > _FAR_M or not (math.isfinite(x) and math.isfinite(y))
        i, t, dist, sx, sy = nearest_segment(
            qx if far else x,
            qy if far else y,
            self.x0,
            self.y0,
            self.x1,
            self.y1,
            self.cell_start,
            self.cell_items,
            self.gx,
            self.gy,
            self.cell_m,
            self.nx,
            self.ny,
        )
        if far:
            dist = math.hypot(x - sx, y - sy) if math.isfinite(x) and math.isfinite(y) else math.inf
        return int(i), float(t), float(dist), float(sx), float(sy)

    def snap_many(self, x: ArrayLike, y: ArrayLike) -> SegmentSnaps:
        """Snap many metric points at once: the same grid search as :meth:`snap_xy`, compiled in one loop.

        Each point gets exactly what :meth:`snap_xy` gives it (local segment, fraction from ``u``,
        distance); a non-finite point gets distance ``inf``.
        """
        px = np.ascontiguousarray(x, dtype=np.float64).reshape(-1)
        py = np.ascontiguousarray(y, dtype=np.float64).reshape(-1)
        if px.shape != py.shape:
            msg = f"x and y must have the same number of points, got {px.size} and {py.size}"
            raise ValueError(msg)
        seg, frac, dist = nearest_segments(
            px,
            py,
            self.x0,
            self.y0,
            self.x1,
            self.y1,
            self.cell_start,
            self.cell_items,
            self.gx,
            self.gy,
            self.cell_m,
            self.nx,
            self.ny,
            _FAR_M,
        )
        return SegmentSnaps(seg, frac, dist)

    def forward_csr(self) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64], NDArray[np.float64]]:
        """``(indptr, indices, wt, wl)`` with row ``a`` listing every ``b`` of a street ``a -> b``.

        Walking is two-way on every segment, so for ``walk`` this is the reverse CSR itself.
        """
        if self.mode == "walk" or self.size == 0:
            return self.indptr, self.indices, self.wt, self.wl
        if self._forward is None:
            n = self.indptr.size - 1
            src = np.concatenate([self.u[self.fwd_ok], self.v[self.bwd_ok]])
            dst = np.concatenate([self.v[self.fwd_ok], self.u[self.bwd_ok]])
            t_all = np.concatenate([self.time[self.fwd_ok], self.time[self.bwd_ok]])
            l_all = np.concatenate([self.length[self.fwd_ok], self.length[self.bwd_ok]])
            order = np.lexsort((dst, src))
            self._forward = (
                np.searchsorted(src[order], np.arange(n + 1)).astype(np.int64),
                dst[order].astype(np.int64),
                t_all[order].astype(np.float64),
                l_all[order].astype(np.float64),
            )
        return self._forward

    def local_segment(self, segment: int) -> int:
        """The local index of network segment ``segment`` (e.g. :attr:`geo.Snap.segment`) in this graph.

        Raises
        ------
        ValueError
            When this mode's graph does not hold that segment.
        """
        i = int(np.searchsorted(self.segments, segment))
        if i >= self.size or self.segments[i] != segment:
            msg = f"segment {segment} is not in the {self.mode} graph"
            raise ValueError(msg)
        return i

    def entries(self, i: int, t: float) -> tuple[tuple[int, float, float], ...]:
        """(node, time, length) to reach the point at fraction ``t`` of local segment ``i`` from a node."""
        out = []
        if self.fwd_ok[i]:
            out.append((int(self.u[i]), t * self.time[i], t * self.length[i]))
        if self.bwd_ok[i]:
            out.append((int(self.v[i]), (1 - t) * self.time[i], (1 - t) * self.length[i]))
        return tuple(out)

    def exits(self, i: int, t: float) -> tuple[tuple[int, float, float], ...]:
        """(node, time, length) from the point at fraction ``t`` of local segment ``i`` to a node."""
        out = []
        if self.fwd_ok[i]:
            out.append((int(self.v[i]), (1 - t) * self.time[i], (1 - t) * self.length[i]))
        if self.bwd_ok[i]:
            out.append((int(self.u[i]), t * self.time[i], t * self.length[i]))
        return tuple(out)

    def along(self, i: int, t_from: float, t_to: float) -> tuple[float, float] | None:
        """Time and length along local segment ``i`` from one fraction to another, if allowed."""
        if t_to >= t_from and self.fwd_ok[i]:
            return (t_to - t_from) * self.time[i], (t_to - t_from) * self.length[i]
        if t_to <= t_from and self.bwd_ok[i]:
            return (t_from - t_to) * self.time[i], (t_from - t_to) * self.length[i]
        return None
