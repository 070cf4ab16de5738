"""A binary min-heap on two parallel arrays (keys, values), compiled with numba.

For the searches of :mod:`geo` and of :mod:`patrol_planner`: call them from ``@njit`` code with
preallocated arrays; each returns the new size.
"""

from __future__ import annotations

from numba import njit

__all__ = ["heap_pop", "heap_push"]


@njit(cache=True, nogil=True)
def heap_push(hk, hv, size, key, val):  # pragma: no cover - compiled
    i = size
    while i > 0:
        parent = (i - 1) >> 1
        if hk[parent] <= key:
            break
        hk[i] = hk[parent]
        hv[i] = hv[parent]
        i = parent
    hk[i] = key
    hv[i] = val
    return size + 1


@njit(cache=True, nogil=True)
def heap_pop(hk, hv, size):  # pragma: no cover - compiled
    key, val = hk[0], hv[0]
    size -= 1
    if size > 0:
        lk, lv = hk[size], hv[size]
        i = 0
        while True:
            child = 2 * i + 1
            if child >= size:
                break
            if child + 1 < size and hk[child + 1] < hk[child]:
                child += 1
            if lk <= hk[child]:
                break
            hk[i] = hk[child]
            hv[i] = hv[child]
            i = child
        hk[i] = lk
        hv[i] = lv
    return key, val, size
