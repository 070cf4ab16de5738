"""Where each patrol works: hot spots grouped into areas, patrols given to areas (a solver's start).

PyVRP's local search moves a few visits at a time, so it cannot move a whole patrol from one
cluster of hot spots to another an hour's walk away: which patrol walks to which distant cluster
is decided by its start and rarely changed after (from a random start, the risk covered varied
from 0.095 to 0.114 per patrol-hour with the seed on the 100,000-node city). Here that decision
is taken first, on a model that is cheap to evaluate:

1. **Areas**: hot spots within ``link_s`` (10 minutes' walk) of one another, transitively, form
   an area (the connected components of the "short walk" graph).
2. **What an area yields**: a patrol from booth ``b`` is in area ``c`` from ``a`` to ``H - a``
   (``a``: its walk from the booth to the area's nearest hot spot, ``H``: the shift) and makes one
   visit per ``slot`` (the dwell plus the typical walk between the area's hot spots). In each
   revisit block the area's patrols make as many visits as their time in it allows, and take the
   block's highest prizes: the value is the sum of those (linear between whole visits). It is
   concave in the patrols added, the model of a fluid team (optimistic: by 6-9 % on the bench city).
3. **Assignment**: patrols are given one at a time where they add most; then a patrol moves to
   another area while that gains. A patrol that adds nothing anywhere stays free.

The routes are then walked area by area (:func:`patrol_planner.routes._greedy_visits` with each
patrol kept to its area) and handed to PyVRP as its initial solution; PyVRP's search then
improves them over the whole problem, across areas too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

__all__ = ["AreaModel", "spot_areas"]


def spot_areas(times: NDArray[np.float64], link_s: float) -> NDArray[np.int64]:
    """The area of each hot spot: connected components of ``times <= link_s`` (either way).

    Areas are numbered in the order of their first hot spot, so the same matrix always gives
    the same numbers."""
    n = times.shape[0]
    near = np.minimum(times, times.T) <= link_s
    area = np.full(n, -1, dtype=np.int64)
    count = 0
    for start in range(n):
        if area[start] >= 0:
            continue
        area[start] = count
        stack = [start]
        while stack:
            i = stack.pop()
            for j in np.flatnonzero(near[i] & (area < 0)).tolist():
                area[j] = count
                stack.append(j)
        count += 1
    return area


class AreaModel:
    """The fluid model of what patrols yield in an area, and the assignment of patrols to areas.

    Parameters
    ----------
    area
        Area of each hot spot (:func:`spot_areas`).
    spot_times
        Walking times between the hot spots (s).
    access
        ``access[b, i]``: walking time from booth ``b`` to hot spot ``i``, its off-street leg
        included (``inf`` beyond reach).
    client_spot, client_block, client_prize
        The (hot spot, block) visits on offer and their prizes.
    shift_s, revisit_s, dwell_s
        The shift's length, the revisit block and the dwell (s).
    """

    def __init__(
        self,
        area: NDArray[np.int64],
        spot_times: NDArray[np.float64],
        access: NDArray[np.float64],
        client_spot: NDArray[np.int64],
        client_block: NDArray[np.int64],
        client_prize: NDArray[np.float64],
        *,
        shift_s: float,
        revisit_s: float,
        dwell_s: float,
    ) -> None:
        self.n_areas = int(area.max()) + 1 if area.size else 0
        self.shift_s, self.revisit_s = float(shift_s), float(revisit_s)
        self.n_blocks = int(client_block.max()) + 1 if client_block.size else 0
        self.slot = np.empty(self.n_areas)
        self.access = np.full((access.shape[0], self.n_areas), np.inf)
        self._cums: dict[tuple[int, int], NDArray[np.float64]] = {}
        client_area = area[client_spot]
        for c in range(self.n_areas):
            members = np.flatnonzero(area == c)
            self.access[:, c] = access[:, members].min(axis=1)
            walk = 0.0
            if members.size > 1:
                sub = spot_times[np.ix_(members, members)].copy()
                np.fill_diagonal(sub, np.inf)
                walk = float(np.median(sub.min(axis=1)))
            self.slot[c] = dwell_s + walk
            for b in range(self.n_blocks):
                prizes = np.sort(client_prize[(client_area == c) & (client_block == b)])[::-1]
                self._cums[(c, b)] = np.concatenate([[0.0], np.cumsum(prizes)])
        self._values: dict[tuple[int, tuple[int, ...]], float] = {}

    def value(self, c: int, booths: Sequence[int]) -> float:
        """What patrols from ``booths`` (one entry per patrol) yield together in area ``c``."""
        key = (c, tuple(sorted(booths)))
        got = self._values.get(key)
        if got is not None:
            return got
        T, H = self.revisit_s, self.shift_s
        capacity = np.zeros(self.n_blocks)
        for b in key[1]:
            a = float(self.access[b, c])
            if not math.isfinite(a) or H - 2 * a < self.slot[c]:
                continue
            for k in range(self.n_blocks):
                capacity[k] += max(0.0, min(H - a, (k + 1) * T) - max(a, k * T)) / self.slot[c]
        total = 0.0
        for k in range(self.n_blocks):
            cum = self._cums[(c, k)]
            x = min(float(capacity[k]), cum.size - 1.0)
            i = int(x)
            total += float(cum[i]) + (float(cum[min(i + 1, cum.size - 1)]) - float(cum[i])) * (x - i)
        self._values[key] = total
        return total

    def assign(self, patrol_booth: Sequence[int]) -> list[int]:
        """The area of each patrol (``-1``: free, it adds nothing anywhere)."""
        K, A = len(patrol_booth), self.n_areas
        where = [-1] * K
        members: list[list[int]] = [[] for _ in range(A)]

        def gain(c: int, b: int) -> float:
            return self.value(c, [*members[c], b]) - self.value(c, members[c])

        def worth(c: int, b: int) -> float:
            """What booth ``b``'s patrol adds where it is (``c``; nothing when free)."""
            if c < 0:
                return 0.0
            rest = list(members[c])
            rest.remove(b)
            return self.value(c, members[c]) - self.value(c, rest)

        # Greedy: the (patrol, area) that adds most, the nearer patrol on a tie, until every
        # patrol is placed. Patrols of one booth are alike: the first unplaced one stands for all.
        for _ in range(K):
            best: tuple[float, float, int, int] | None = None
            seen: set[int] = set()
            for k in range(K):
                b = patrol_booth[k]
                if where[k] >= 0 or b in seen:
                    continue
                seen.add(b)
                for c in range(A):
                    g = gain(c, b)
                    key = (g, -float(self.access[b, c]), k, c)
                    if g > 0 and (best is None or key[:2] > best[:2]):
                        best = key
            if best is None:
                break
            k, c = best[2], best[3]
            where[k] = c
            members[c].append(patrol_booth[k])
        # Then, while anything gains: a patrol moves where it adds more than where it is, or two
        # patrols of different booths swap areas.
        for _ in range(4 * K):
            changed = False
            for k in range(K):
                b, c0 = patrol_booth[k], where[k]
                here = worth(c0, b)
                for c in range(A):
                    if c != c0 and gain(c, b) > here * (1 + 1e-9) + 1e-9:
                        if c0 >= 0:
                            members[c0].remove(b)
                        members[c].append(b)
                        where[k], changed = c, True
                        break
            for k in range(K):
                for m in range(k + 1, K):
                    bk, bm, ck, cm = patrol_booth[k], patrol_booth[m], where[k], where[m]
                    if bk == bm or ck == cm:
                        continue
                    before = self._total(ck, members) + self._total(cm, members)
                    swapped = {ck: _swap(members, ck, bk, bm), cm: _swap(members, cm, bm, bk)}
                    after = sum(self.value(c, mem) for c, mem in swapped.items() if c >= 0)
                    if after > before * (1 + 1e-9) + 1e-9:
                        for c, mem in swapped.items():
                            if c >= 0:
                                members[c] = mem
                        where[k], where[m], changed = cm, ck, True
            if not changed:
                break
        return where

    def _total(self, c: int, members: list[list[int]]) -> float:
        return self.value(c, members[c]) if c >= 0 else 0.0


def _swap(members: list[list[int]], c: int, out: int, into: int) -> list[int]:
    """Area ``c``'s booths with one patrol of ``out`` replaced by one of ``into``."""
    if c < 0:
        return []
    mem = list(members[c])
    mem.remove(out)
    mem.append(into)
    return mem
