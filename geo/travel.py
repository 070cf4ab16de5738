"""Many-to-many travel times, bounded searches and shortest paths on a :class:`geo.ModeGraph`.

Every graph search of Qorgau outside the router's own per-alert search is here, compiled with
numba (bounded Dijkstra on the mode graph's forward CSR, one search per source, each stopping at
the cutoff or once every wanted node is settled). Node ids are the network's node indices; a node
outside the mode's connected component is reached by nothing but itself.

Public names::

    t = travel_times(router.graph("walk"), sources, targets, cutoff_s=900.0)   # (S, T) seconds, inf beyond
    grp, node, t = reachable(graph, sources, cutoff_s=600.0)                    # sparse triples
    paths = shortest_paths(graph, [(a, b), ...])                                # node lists
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numpy.typing import ArrayLike, NDArray

from geo._search import bounded_search, many_to_many, path_search
from geo.graph import ModeGraph

__all__ = ["reachable", "shortest_paths", "travel_times"]


def _nodes(graph: ModeGraph, nodes: ArrayLike, what: str) -> NDArray[np.int64]:
    a = np.asarray(nodes, dtype=np.int64).reshape(-1)
    n = graph.indptr.size - 1
    if a.size and (a.min() < 0 or a.max() >= n):
        msg = f"{what} must be node ids in 0..{n - 1}"
        raise ValueError(msg)
    return a


def travel_times(
    graph: ModeGraph,
    sources: ArrayLike,
    targets: ArrayLike | None = None,
    *,
    cutoff_s: float = math.inf,
) -> NDArray[np.float64]:
    """Fastest travel times (s) of the graph's mode from each source node to each target node.

    Parameters
    ----------
    graph
        A mode's graph, e.g. ``router.graph("walk")``.
    sources, targets
        Node ids (the network's node indices); repeats are allowed. ``targets=None`` means every
        node id.
    cutoff_s
        Times above this are not searched for (each search stops there).

    Returns
    -------
    NDArray[np.float64]
        Shape ``(len(sources), len(targets))`` (or ``(len(sources), n)`` for every node): entry
        ``[i, j]`` is the time from ``sources[i]`` to ``targets[j]``, ``0`` when they are the same
        node, and ``inf`` when the target is farther than ``cutoff_s`` or unreachable.
    """
    src = _nodes(graph, sources, "sources")
    n = graph.indptr.size - 1
    indptr, indices, wt, _ = graph.forward_csr()
    lim = float(cutoff_s) if math.isfinite(cutoff_s) else 1e300
    if targets is None:
        col = np.arange(n, dtype=np.int64)
        every: NDArray[np.float64] = many_to_many(indptr, indices, wt, src, col, n, lim)
        return every
    tgt = _nodes(graph, targets, "targets")
    uniq, inverse = np.unique(tgt, return_inverse=True)
    col = np.full(n, -1, dtype=np.int64)
    col[uniq] = np.arange(uniq.size)
    out = _in_threads(indptr, indices, wt, src, col, int(uniq.size), lim)
    return out if uniq.size == tgt.size and np.array_equal(uniq, tgt) else out[:, inverse.reshape(-1)]


MIN_SOURCES_PER_THREAD = 16


def _in_threads(indptr, indices, wt, src, col, n_cols: int, lim: float) -> NDArray[np.float64]:  # type: ignore[no-untyped-def]
    """:func:`many_to_many` with the sources split over the cores (it releases the GIL; one
    search per source, so the rows are the same however they are split)."""
    workers = min(os.cpu_count() or 1, 8, src.size // MIN_SOURCES_PER_THREAD)
    if workers <= 1:
        one: NDArray[np.float64] = many_to_many(indptr, indices, wt, src, col, n_cols, lim)
        return one
    parts = np.array_split(src, workers)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="many-to-many") as pool:
        rows = list(pool.map(lambda part: many_to_many(indptr, indices, wt, part, col, n_cols, lim), parts))
    return np.vstack(rows)


def reachable(
    graph: ModeGraph,
    sources: ArrayLike,
    *,
    cutoff_s: float,
    seed_s: ArrayLike | None = None,
    group: ArrayLike | None = None,
    targets: ArrayLike | None = None,
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]:
    """Every node within ``cutoff_s`` of each source (or group of seeds), as sparse triples.

    Parameters
    ----------
    graph
        A mode's graph.
    sources
        Seed node ids.
    cutoff_s
        Nodes farther than this are not reported (``inf``: the whole component).
    seed_s
        Time already spent when a seed starts (default ``0``), e.g. an off-street leg.
    group
        The search each seed belongs to; the seeds of a group start one search together (a
        multi-source Dijkstra). By default each seed is its own group, numbered by position.
    targets
        Report only these nodes.

    Returns
    -------
    tuple
        ``(group, node, time_s)`` arrays, one entry per node reached within ``cutoff_s`` by a
        group, in the order the searches settle them (groups in increasing order).
    """
    src = _nodes(graph, sources, "sources")
    st = np.zeros(src.size) if seed_s is None else np.asarray(seed_s, dtype=np.float64).reshape(-1)
    grp = np.arange(src.size, dtype=np.int64) if group is None else np.asarray(group, dtype=np.int64).reshape(-1)
    if st.size != src.size or grp.size != src.size:
        msg = f"seed_s and group must have one entry per source ({src.size}), got {st.size} and {grp.size}"
        raise ValueError(msg)
    if src.size and np.any(np.diff(grp) < 0):
        order = np.argsort(grp, kind="stable")
        src, st, grp = src[order], st[order], grp[order]
    n = graph.indptr.size - 1
    is_target = np.zeros(n, dtype=np.bool_)
    if targets is not None:
        is_target[_nodes(graph, targets, "targets")] = True
    lim = float(cutoff_s) if math.isfinite(cutoff_s) else 1e300
    indptr, indices, wt, _ = graph.forward_csr()
    found: tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]] = bounded_search(
        indptr, indices, wt, src, st, grp, lim, targets is not None, is_target
    )
    return found


def shortest_paths(graph: ModeGraph, pairs: list[tuple[int, int]]) -> list[list[int]]:
    """The fastest path of the graph's mode for each ``(from, to)`` pair of node ids, as node lists.

    Each path starts at ``from`` and ends at ``to`` (``[from]`` when they are equal).

    Raises
    ------
    ValueError
        When a pair's ``to`` cannot be reached from its ``from``.
    """
    if not pairs:
        return []
    p = _nodes(graph, np.asarray(pairs, dtype=np.int64).reshape(-1), "pairs").reshape(-1, 2)
    order = np.argsort(p[:, 0], kind="stable")
    indptr, indices, wt, _ = graph.forward_csr()
    flat, offsets = path_search(indptr, indices, wt, p[order, 0].copy(), p[order, 1].copy())
    out: list[list[int]] = [[] for _ in pairs]
    for q, j in enumerate(order.tolist()):
        path = flat[offsets[q] : offsets[q + 1]].tolist()
        if not path:
            a, b = pairs[j]
            msg = f"no {graph.mode} path from node {a} to node {b}"
            raise ValueError(msg)
        out[j] = path
    return out
