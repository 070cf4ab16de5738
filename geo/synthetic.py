"""A generated city: a jittered street grid with avenues, one-way streets, a river and bridges.

Used by the demo (which must run on a fresh install with no map data) and by benchmarks that need
a city larger than the real extracts. It is *not a real place*; its label says so.
"""

from __future__ import annotations

import math

import numpy as np

from geo.network import StreetNetwork

__all__ = ["ALMATY_CENTER", "generate_city"]

#: Republic Square, Almaty: where the generated city is centred by default.
ALMATY_CENTER = (43.2389, 76.9455)


def generate_city(
    n_nodes: int = 10_000,
    *,
    seed: int = 0,
    center: tuple[float, float] = ALMATY_CENTER,
    block_m: float = 110.0,
    bridge_every: int = 12,
) -> StreetNetwork:
    """Generate a street grid of about ``n_nodes`` intersections.

    Every 10th street is a two-way primary avenue (60 km/h), every 5th a secondary (50 km/h),
    the rest residential (30 km/h) with every other one one-way for cars, alternating direction.
    A river runs east-west through the middle: only every ``bridge_every``-th north-south street
    crosses it (on a bridge: ``seg_bridge``). About 4 % of residential blocks are missing, and footpaths cut diagonally through
    some blocks (walkable, not drivable). Intersections are jittered by up to 15 % of a block.

    The result is deterministic for a given ``seed``.
    """
    if n_nodes < 16:
        msg = f"n_nodes must be at least 16 for a city, got {n_nodes}"
        raise ValueError(msg)
    rng = np.random.default_rng(seed)
    cols = max(4, round(math.sqrt(n_nodes)))
    rows = max(4, round(n_nodes / cols))
    lat0, lon0 = center
    m_per_deg_lat = 111_320.0
    m_per_deg_lon = 111_320.0 * math.cos(math.radians(lat0))
    jj, ii = np.meshgrid(np.arange(cols), np.arange(rows))
    jitter = rng.uniform(-0.15, 0.15, size=(2, rows, cols)) * block_m
    x = (jj - (cols - 1) / 2) * block_m + jitter[0]
    y = (ii - (rows - 1) / 2) * block_m + jitter[1]
    river_row = rows // 2  # the river flows between rows river_row - 1 and river_row
    y = y + np.where(ii >= river_row, 2 * block_m, 0.0)  # the river is wide
    lat = (lat0 + y / m_per_deg_lat).ravel()
    lon = (lon0 + x / m_per_deg_lon).ravel()

    def node(i: int, j: int) -> int:
        return i * cols + j

    def street_class(k: int) -> str:
        if k % 10 == 0:
            return "primary"
        if k % 5 == 0:
            return "secondary"
        return "residential"

    u: list[int] = []
    v: list[int] = []
    hw: list[str] = []
    oneway: list[bool] = []
    bridge: list[bool] = []
    # East-west streets (along rows).
    for i in range(rows):
        cls = street_class(i)
        one = cls == "residential" and i % 2 == 1
        reverse = one and (i // 2) % 2 == 1
        for j in range(cols - 1):
            if cls == "residential" and rng.random() < 0.04:
                continue
            a, b = node(i, j), node(i, j + 1)
            if reverse:
                a, b = b, a
            u.append(a)
            v.append(b)
            hw.append(cls)
            oneway.append(one)
            bridge.append(False)
    # North-south streets (along columns); the river cuts all but the bridges.
    for j in range(cols):
        cls = street_class(j)
        one = cls == "residential" and j % 2 == 1
        reverse = one and (j // 2) % 2 == 1
        for i in range(rows - 1):
            if i + 1 == river_row and j % bridge_every != bridge_every // 2:
                continue
            if cls == "residential" and i + 1 != river_row and rng.random() < 0.04:
                continue
            a, b = node(i, j), node(i + 1, j)
            if reverse:
                a, b = b, a
            u.append(a)
            v.append(b)
            hw.append(cls)
            oneway.append(one)
            bridge.append(i + 1 == river_row)
    # Footpaths across some blocks (not across the river).
    for i in range(rows - 1):
        if i + 1 == river_row:
            continue
        for j in range(cols - 1):
            if rng.random() < 0.05:
                u.append(node(i, j))
                v.append(node(i + 1, j + 1))
                hw.append("footway")
                oneway.append(False)
                bridge.append(False)
    return StreetNetwork.from_arrays(
        lat,
        lon,
        u,
        v,
        np.array(hw, dtype=object),
        oneway=oneway,
        bridge=bridge,
        label=f"generated city (synthetic, {rows * cols} nodes, seed {seed}; not a real place)",
    )
