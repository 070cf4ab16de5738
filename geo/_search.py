"""Compiled (numba) Dijkstra that runs backwards from an alert and stops at the k-th unit.

Kept apart from :mod:`geo.routing` so that the Python side stays readable. Work arrays (``dist``,
``stamp``...) live as long as the graph and are invalidated by a generation counter instead of
being cleared, so a search costs what it visits, not the size of the city.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from geo.heap import heap_pop, heap_push


@njit(cache=True, nogil=True)
def _cand_push(hk, hv, hw, size, key, val, aux):  # pragma: no cover - compiled
    """Push onto the heap of unit candidates, which carries a third array (path length)."""
    i = size
    hk[i] = key
    hv[i] = val
    hw[i] = aux
    while i > 0:
        parent = (i - 1) >> 1
        if hk[parent] <= hk[i]:
            break
        hk[i], hk[parent] = hk[parent], hk[i]
        hv[i], hv[parent] = hv[parent], hv[i]
        hw[i], hw[parent] = hw[parent], hw[i]
        i = parent
    return size + 1


@njit(cache=True, nogil=True)
def _cand_pop(hk, hv, hw, size):  # pragma: no cover - compiled
    key, val, aux = hk[0], hv[0], hw[0]
    size -= 1
    if size > 0:
        hk[0], hv[0], hw[0] = hk[size], hv[size], hw[size]
        i = 0
        while True:
            left = 2 * i + 1
            if left >= size:
                break
            child = left
            if left + 1 < size and hk[left + 1] < hk[left]:
                child = left + 1
            if hk[i] <= hk[child]:
                break
            hk[i], hk[child] = hk[child], hk[i]
            hv[i], hv[child] = hv[child], hv[i]
            hw[i], hw[child] = hw[child], hw[i]
            i = child
    return key, val, aux, size


@njit(cache=True, nogil=True)
def reverse_search(
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
            csize = _cand_push(ck, cs, cl, csize, direct_t[j], s, direct_l[j])
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
            t, s, l, csize = _cand_pop(ck, cs, cl, csize)
            if best_gen[s] == gen and t == best_t[s]:
                best_gen[s] = -gen  # final
                if skip[s]:
                    continue
                out_s[n_out] = s
                out_t[n_out] = t
                out_l[n_out] = l
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
                csize = _cand_push(ck, cs, cl, csize, cand, s, ln + entry_l[e])
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
        t, s, l, csize = _cand_pop(ck, cs, cl, csize)
        if t > limit:
            break
        if best_gen[s] == gen and t == best_t[s]:
            best_gen[s] = -gen
            if skip[s]:
                continue
            out_s[n_out] = s
            out_t[n_out] = t
            out_l[n_out] = l
            n_out += 1
    return out_s, out_t, out_l, n_out


_warm = False


def warm_up() -> None:
    """Compile (or load from numba's cache) the search once per process, on a one-node graph.

    Called by :class:`geo.Router` so that the first alert does not pay the 1-3 s of compilation.
    """
    global _warm
    if _warm:
        return
    i64 = np.zeros(1, dtype=np.int64)
    f64 = np.zeros(1)
    none_i, none_f = np.empty(0, dtype=np.int64), np.empty(0)
    reverse_search(
        np.zeros(2, dtype=np.int64), none_i, none_f, none_f,
        np.zeros((1, 2)), np.zeros((1, 2)), 1,
        i64, f64, f64,
        np.full(1, -1, dtype=np.int64), none_i, none_i, none_f, none_f,
        none_i, none_f, none_f,
        none_f, none_f, none_i,
        np.empty(2), np.empty(2, dtype=np.int64), 1, np.inf, np.zeros(0, dtype=np.bool_),
    )  # fmt: skip
    _warm = True


@njit(cache=True, nogil=True)
def nearest_segment(px, py, x0, y0, x1, y1, cell_start, cell_items, gx, gy, cell_m, nx, ny):  # pragma: no cover
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
