"""The one binary min-heap of geo, compiled with numba: on two parallel arrays (keys, values), or three.

For the searches of :mod:`geo`: call them from ``@njit`` code with preallocated arrays; each
returns the new size. ``heap_push3``/``heap_pop3`` carry a third array beside the values (the
router's unit candidates carry their path length).
"""

from __future__ import annotations

from numba import njit

# The compiled functions take numba's types, not annotations: numba specialises each one for the arrays
# it is called with, and callers see Any (numba ships no types). Hence the ``no-untyped-def`` ignores.

__all__ = ["heap_pop", "heap_pop3", "heap_push", "heap_push3"]


@njit(cache=True, nogil=True)
def heap_push(hk, hv, size, key, val):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
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
def heap_pop(hk, hv, size):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
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


@njit(cache=True, nogil=True)
def heap_push3(hk, hv, hw, size, key, val, aux):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    """Push onto a heap that carries a third parallel array (``aux``, e.g. a path length)."""
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
def heap_pop3(hk, hv, hw, size):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    """Pop the smallest key of a three-array heap: ``(key, val, aux, new size)``."""
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
