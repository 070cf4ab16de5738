"""Compiled (numba) Dijkstra that runs backwards from an alert and stops at the k-th unit.

Kept apart from :mod:`geo.routing` so that the Python side stays readable. Work arrays (``dist``,
``stamp``...) live as long as the graph and are invalidated by a generation counter instead of
being cleared, so a search costs what it visits, not the size of the city.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

import numpy as np
from numba import njit

from geo.heap import heap_pop, heap_pop3, heap_push, heap_push3

# The compiled functions take numba's types, not annotations: numba specialises each one for the arrays
# it is called with, and callers see Any (numba ships no types). Hence the ``no-untyped-def`` ignores.


@njit(cache=True, nogil=True)
def reverse_search(  # type: ignore[no-untyped-def]
    indptr,
    indices,
    wt,
    wl,
    state,
    trail,
    gen,
    seed_nodes,
    seed_t,
    seed_l,
    head,
    nxt,
    entry_slot,
    entry_t,
    entry_l,
    direct_slots,
    direct_t,
    direct_l,
    best_t,
    best_l,
    best_gen,
    heap_k,
    heap_n,
    k,
    limit,
    skip,
):  # pragma: no cover - compiled
    """Rank units by network time to the alert; return (slots, times, lengths) of the first ``k``.

    ``state[n] = (time to the alert, generation)`` and ``trail[n] = (length to the alert, next node
    towards the alert)``, kept in pairs so that a relaxation touches two cache lines, not four.
    The reverse CSR (``indptr``, ``indices``, ``wt``, ``wl``) lists for each node ``b`` the nodes
    ``a`` with a street ``a -> b``. Units hang off nodes through a linked list (``head``, ``nxt``)
    of entries, each giving the unit's slot and its time/length from the unit to that node.
    A unit's time is final once the search frontier has passed it, so the search stops when ``k``
    units are final, or when the frontier passes ``limit`` seconds (units beyond it are not wanted).
    A unit whose ``skip[slot]`` is set is passed over (not counted towards ``k``).
    """
    n_cand_cap = 2 * entry_slot.size + direct_slots.size + 1
    ck = np.empty(n_cand_cap)
    cs = np.empty(n_cand_cap, dtype=np.int64)
    cl = np.empty(n_cand_cap)
    csize = 0
    out_s = np.empty(k, dtype=np.int64)
    out_t = np.empty(k)
    out_l = np.empty(k)
    n_out = 0
    for j in range(direct_slots.size):
        s = direct_slots[j]
        if best_gen[s] != gen or direct_t[j] < best_t[s]:
            best_gen[s] = gen
            best_t[s] = direct_t[j]
            best_l[s] = direct_l[j]
            csize = heap_push3(ck, cs, cl, csize, direct_t[j], s, direct_l[j])
    hsize = 0
    for j in range(seed_nodes.size):
        node = seed_nodes[j]
        if state[node, 1] != gen or seed_t[j] < state[node, 0]:
            state[node, 0] = seed_t[j]
            state[node, 1] = gen
            trail[node, 0] = seed_l[j]
            trail[node, 1] = -1.0
            hsize = heap_push(heap_k, heap_n, hsize, seed_t[j], node)
    while hsize > 0:
        d, node, hsize = heap_pop(heap_k, heap_n, hsize)
        if d > limit:
            break  # no unit beyond the limit is wanted
        if d > state[node, 0]:
            continue  # a stale entry: the node was reached faster since
        ln = trail[node, 0]
        # Every unit whose best time is <= d is final: no unsettled node can improve it.
        while csize > 0 and ck[0] <= d:
            t, s, length, csize = heap_pop3(ck, cs, cl, csize)
            if best_gen[s] == gen and t == best_t[s]:
                best_gen[s] = -gen  # final
                if skip[s]:
                    continue
                out_s[n_out] = s
                out_t[n_out] = t
                out_l[n_out] = length
                n_out += 1
                if n_out == k:
                    return out_s, out_t, out_l, n_out
        e = head[node]
        while e >= 0:
            s = entry_slot[e]
            cand = d + entry_t[e]
            if best_gen[s] != -gen and (best_gen[s] != gen or cand < best_t[s]):
                best_gen[s] = gen
                best_t[s] = cand
                best_l[s] = ln + entry_l[e]
                csize = heap_push3(ck, cs, cl, csize, cand, s, ln + entry_l[e])
            e = nxt[e]
        for p in range(indptr[node], indptr[node + 1]):
            a = indices[p]
            nd = d + wt[p]
            if state[a, 1] != gen or nd < state[a, 0]:
                state[a, 0] = nd
                state[a, 1] = gen
                trail[a, 0] = ln + wl[p]
                trail[a, 1] = node
                hsize = heap_push(heap_k, heap_n, hsize, nd, a)
    while csize > 0 and n_out < k:
        t, s, length, csize = heap_pop3(ck, cs, cl, csize)
        if t > limit:
            break
        if best_gen[s] == gen and t == best_t[s]:
            best_gen[s] = -gen
            if skip[s]:
                continue
            out_s[n_out] = s
            out_t[n_out] = t
            out_l[n_out] = length
            n_out += 1
    return out_s, out_t, out_l, n_out


_warm = False
_SCIPY_BLAS = ("scipy.linalg.cython_blas", "scipy.linalg.cython_lapack")


@contextlib.contextmanager
def _without_scipy_blas() -> Iterator[None]:
    """Keep numba's first compile (or cache load) from importing scipy.linalg, in this block only.

    At its first compile numba imports its whole library of implementations, and with it
    scipy.linalg (every submodule, about 0.4 s of CPU) just to see whether np.dot and np.linalg
    may call scipy's BLAS and LAPACK inside compiled code. None of geo's searches uses either, so
    while they are loaded those two modules are made unimportable, as where scipy is absent:
    numba then does without BLAS for its np.dot (a plain loop, for compiled code that uses it;
    there is none in this project), and its np.linalg imports scipy when a compiled function
    that calls it is first typed. Nothing is hidden once scipy.linalg is in, or once numba's
    library was loaded (numba.np.arraymath), and the two names are given back on the way out.
    """
    if "numba.np.arraymath" in sys.modules or any(name in sys.modules for name in _SCIPY_BLAS):
        yield
        return
    for name in _SCIPY_BLAS:
        sys.modules[name] = None  # type: ignore[assignment]  # what `import` reads as "not installed"
    try:
        yield
    finally:
        for name in _SCIPY_BLAS:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]


def warm_up() -> None:
    """Compile (or load from numba's cache) what an alert runs, once per process, on a one-node graph.

    The search that ranks the units (and draws a route) and the snapping of a point onto its street.
    Called by :class:`geo.Router` so that the first alert does not pay the 1-3 s of compilation, nor
    the tenths of a second of loading them from the cache.
    """
    global _warm
    if _warm:
        return
    with _without_scipy_blas():
        _load_searches()
    _warm = True


def _load_searches() -> None:
    i64 = np.zeros(1, dtype=np.int64)
    f64 = np.zeros(1)
    none_i, none_f = np.empty(0, dtype=np.int64), np.empty(0)
    reverse_search(
        np.zeros(2, dtype=np.int64),
        none_i,
        none_f,
        none_f,
        np.zeros((1, 2)),
        np.zeros((1, 2)),
        1,
        i64,
        f64,
        f64,
        np.full(1, -1, dtype=np.int64),
        none_i,
        none_i,
        none_f,
        none_f,
        none_i,
        none_f,
        none_f,
        none_f,
        none_f,
        none_i,
        np.empty(2),
        np.empty(2, dtype=np.int64),
        1,
        np.inf,
        np.zeros(0, dtype=np.bool_),
    )
    one = np.zeros(1)
    nearest_segment(
        0.0, 0.0, one, one, one, one, np.zeros(2, dtype=np.int64), np.zeros(1, dtype=np.int64), 0.0, 0.0, 1.0, 1, 1
    )


@njit(cache=True, nogil=True)
def nearest_segment(px, py, x0, y0, x1, y1, cell_start, cell_items, gx, gy, cell_m, nx, ny):  # type: ignore[no-untyped-def]  # pragma: no cover
    """The segment nearest to (px, py) through a uniform grid of cells; exact.

    Rings of cells are searched outwards from the point's cell until the ring's distance lower
    bound exceeds the best distance found. Returns (segment, fraction, distance, x, y); among
    equidistant segments, the lowest index.
    """
    cx = int(np.floor((px - gx) / cell_m))
    cy = int(np.floor((py - gy) / cell_m))
    best = np.inf
    bi = -1
    bt = 0.0
    far = max(abs(cx), abs(cy), abs(nx - 1 - cx), abs(ny - 1 - cy))
    for r in range(far + 1):
        if (r - 1) * cell_m > best:
            break
        for i in range(max(cx - r, 0), min(cx + r, nx - 1) + 1):
            edge_col = i == cx - r or i == cx + r
            step = 1 if edge_col else 2 * r
            j = cy - r
            while j <= cy + r:
                if 0 <= j < ny:
                    c = i * ny + j
                    for q in range(cell_start[c], cell_start[c + 1]):
                        s = cell_items[q]
                        dx = x1[s] - x0[s]
                        dy = y1[s] - y0[s]
                        seg2 = dx * dx + dy * dy
                        t = 0.0
                        if seg2 > 0.0:
                            t = ((px - x0[s]) * dx + (py - y0[s]) * dy) / seg2
                            t = min(1.0, max(0.0, t))
                        ex = x0[s] + t * dx - px
                        ey = y0[s] + t * dy - py
                        d = np.sqrt(ex * ex + ey * ey)
                        if d < best or (d == best and s < bi):
                            best = d
                            bi = s
                            bt = t
                if step == 0:
                    break
                j += step
    sx = x0[bi] + bt * (x1[bi] - x0[bi])
    sy = y0[bi] + bt * (y1[bi] - y0[bi])
    return bi, bt, best, sx, sy


@njit(cache=True, nogil=True)
def nearest_segments(px, py, x0, y0, x1, y1, cell_start, cell_items, gx, gy, cell_m, nx, ny, far_m):  # type: ignore[no-untyped-def]  # pragma: no cover
    """:func:`nearest_segment` for many points: (segment, fraction, distance) arrays.

    A point more than ``far_m`` outside the grid is searched from the grid's nearest point and
    keeps its true distance; a non-finite point is searched from the grid's corner and gets
    distance ``inf``.
    """
    n = px.size
    seg = np.empty(n, dtype=np.int64)
    frac = np.empty(n)
    dist = np.empty(n)
    gx1 = gx + nx * cell_m
    gy1 = gy + ny * cell_m
    for p in range(n):
        x = px[p]
        y = py[p]
        finite = np.isfinite(x) and np.isfinite(y)
        qx = gx if np.isnan(x) else min(max(x, gx), gx1)
        qy = gy if np.isnan(y) else min(max(y, gy), gy1)
        far = not finite or np.sqrt((x - qx) ** 2 + (y - qy) ** 2) > far_m
        if not far:
            qx = x
            qy = y
        i, t, d, sx, sy = nearest_segment(qx, qy, x0, y0, x1, y1, cell_start, cell_items, gx, gy, cell_m, nx, ny)
        if far:
            d = np.sqrt((x - sx) ** 2 + (y - sy) ** 2) if finite else np.inf
        seg[p] = i
        frac[p] = t
        dist[p] = d
    return seg, frac, dist


@njit(cache=True, nogil=True)
def bounded_search(indptr, indices, wt, sources, seed_t, group, limit, targets_only, is_target):  # type: ignore[no-untyped-def]  # pragma: no cover
    """Dijkstra from each group of seeds, stopping at ``limit``; returns (group, node, time) triples.

    ``group[i]`` names the search that seed ``sources[i]`` (at time ``seed_t[i]``) belongs to;
    seeds of one group must be contiguous. With ``targets_only`` only nodes where ``is_target``
    is true are reported. Searches the CSR as given (row ``a`` lists the nodes ``a`` leads to).
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


@njit(cache=True, nogil=True)
def many_to_many(indptr, indices, wt, sources, col, n_cols, limit):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    """Dense times from each source to each column's node, ``inf`` beyond ``limit`` or unreachable.

    ``col[node]`` is the node's column (``-1``: not a target); the ``n_cols`` columns are distinct
    nodes. Each search stops as soon as every column's node is settled, or at ``limit``.
    """
    n = indptr.size - 1
    out = np.full((sources.size, n_cols), np.inf)
    dist = np.full(n, np.inf)
    stamp = np.zeros(n, dtype=np.int64)
    done = np.zeros(n, dtype=np.int64)
    cap = indices.size + 8
    hk = np.empty(cap)
    hv = np.empty(cap, dtype=np.int64)
    for s in range(sources.size):
        gen = s + 1
        left = n_cols
        src = sources[s]
        stamp[src] = gen
        dist[src] = 0.0
        size = heap_push(hk, hv, 0, 0.0, src)
        while size > 0:
            d, node, size = heap_pop(hk, hv, size)
            if done[node] == gen or d > dist[node]:
                continue
            if d > limit:
                break
            done[node] = gen
            c = col[node]
            if c >= 0:
                out[s, c] = d
                left -= 1
                if left == 0:
                    break
            for e in range(indptr[node], indptr[node + 1]):
                nb = indices[e]
                nd = d + wt[e]
                if nd <= limit and (stamp[nb] != gen or nd < dist[nb]):
                    stamp[nb] = gen
                    dist[nb] = nd
                    size = heap_push(hk, hv, size, nd, nb)
    return out


@njit(cache=True, nogil=True)
def path_search(indptr, indices, wt, pair_src, pair_dst):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    """Shortest paths for (source, target) pairs sorted by source: (flat nodes, offsets).

    Path ``j`` is ``nodes[offsets[j]:offsets[j + 1]]``, from its source to its target; an empty
    one means the target is unreachable. One Dijkstra per distinct source, stopped once all of
    that source's targets are settled; a node's predecessor changes only on a strict improvement.
    """
    n = indptr.size - 1
    m = pair_src.size
    dist = np.full(n, np.inf)
    stamp = np.zeros(n, dtype=np.int64)
    done = np.zeros(n, dtype=np.int64)
    want = np.zeros(n, dtype=np.int64)
    pred = np.full(n, -1, dtype=np.int64)
    cap = indices.size + 8
    hk = np.empty(cap)
    hv = np.empty(cap, dtype=np.int64)
    buf = np.empty(1024, dtype=np.int64)
    used = 0
    offsets = np.zeros(m + 1, dtype=np.int64)
    j = 0
    gen = 0
    while j < m:
        a = pair_src[j]
        gen += 1
        end = j
        left = 0
        while end < m and pair_src[end] == a:
            b = pair_dst[end]
            if want[b] != gen:
                want[b] = gen
                left += 1
            end += 1
        stamp[a] = gen
        dist[a] = 0.0
        pred[a] = -1
        size = heap_push(hk, hv, 0, 0.0, a)
        while size > 0 and left > 0:
            d, node, size = heap_pop(hk, hv, size)
            if done[node] == gen or d > dist[node]:
                continue
            done[node] = gen
            if want[node] == gen:
                left -= 1
            for e in range(indptr[node], indptr[node + 1]):
                nb = indices[e]
                nd = d + wt[e]
                if stamp[nb] != gen or nd < dist[nb]:
                    stamp[nb] = gen
                    dist[nb] = nd
                    pred[nb] = node
                    size = heap_push(hk, hv, size, nd, nb)
        for q in range(j, end):
            b = pair_dst[q]
            if done[b] == gen:
                k = 1
                x = b
                while x != a:
                    x = pred[x]
                    k += 1
                if used + k > buf.size:
                    grown = np.empty(max(2 * buf.size, used + k), dtype=np.int64)
                    grown[:used] = buf[:used]
                    buf = grown
                x = b
                pos = used + k - 1
                while True:
                    buf[pos] = x
                    if x == a:
                        break
                    x = pred[x]
                    pos -= 1
                used += k
            offsets[q + 1] = used
        j = end
    return buf[:used].copy(), offsets
