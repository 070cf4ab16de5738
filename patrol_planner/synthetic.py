"""Synthetic incidents from a self-exciting (Hawkes) point process on a street network.

No public incident data with coordinates exists for a Kazakh city, so the Almaty tests and the
benchmarks on generated cities use incidents drawn from this documented process. They are
labelled synthetic (``Incidents.synthetic``) and never presented as real.

The process (Mohler et al. 2011, "Self-exciting point process modeling of crime", JASA 106):

- *Background*: ``n_hotspots`` centres at random street nodes, with log-normal weights (a few
  places carry most crime). Background events pick a centre by weight and land on a street node
  within a Gaussian distance (``spread_m``) of it, at uniform days over ``days`` and at an hour
  drawn from a night-heavy daily profile.
- *Triggering*: every event has ``Poisson(branching)`` offspring, each an exponential delay
  (mean ``trigger_days``) later and a Gaussian ``trigger_m`` away, at a street node; offspring
  have offspring in turn (near-repeat victimisation). ``branching < 1`` keeps the process stable;
  the expected total is ``n_background / (1 - branching)``.
- Coordinates are the chosen street node's, moved by up to 15 m (an address off the kerb).
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
from scipy.spatial import cKDTree

from geo import StreetNetwork
from patrol_planner.incidents import Incidents

__all__ = ["HOURLY_PROFILE", "self_exciting_incidents"]

#: Relative frequency of crime by local hour: low in the morning, high in the evening and night.
HOURLY_PROFILE = np.array(
    [6, 5, 4, 3, 2, 1.5, 1.5, 2, 3, 3.5, 4, 4.5, 5, 5, 5, 5.5, 6, 6.5, 7, 7.5, 8, 8, 7.5, 7], dtype=np.float64
)

_CATEGORIES = np.array(["theft", "robbery", "assault", "hooliganism", "fraud", "vehicle theft"], dtype=object)
_CATEGORY_P = np.array([0.4, 0.12, 0.18, 0.15, 0.1, 0.05])


def self_exciting_incidents(
    network: StreetNetwork,
    n: int,
    *,
    seed: int = 0,
    start: datetime = datetime(2025, 1, 1),
    days: int = 365,
    n_hotspots: int = 40,
    spread_m: float = 250.0,
    branching: float = 0.4,
    trigger_days: float = 7.0,
    trigger_m: float = 100.0,
    timezone: str = "Asia/Almaty",
    area: tuple[float, float, float, float] | None = None,
) -> Incidents:
    """About ``n`` incidents over ``days`` from ``start`` (local time), deterministic per ``seed``.

    ``area`` (``min_lat, min_lon, max_lat, max_lon``) limits the hot spot centres to a district.
    """
    if not 0 <= branching < 1:
        msg = f"branching must be in [0, 1) for a stable process, got {branching}"
        raise ValueError(msg)
    rng = np.random.default_rng(seed)
    walk = network.seg_walk
    degree = np.bincount(np.concatenate([network.seg_u[walk], network.seg_v[walk]]), minlength=network.n_nodes)
    nodes = np.flatnonzero(degree > 0)
    xy = np.stack([network.node_x[nodes], network.node_y[nodes]], axis=1)
    tree = cKDTree(xy)
    pool = np.arange(nodes.size)
    if area is not None:
        lat0, lon0, lat1, lon1 = area
        la, lo = network.node_lat[nodes], network.node_lon[nodes]
        pool = np.flatnonzero((la >= lat0) & (la <= lat1) & (lo >= lon0) & (lo <= lon1))
        if not pool.size:
            msg = f"no street node in the area {area}"
            raise ValueError(msg)
    centres = rng.choice(pool, size=min(n_hotspots, pool.size), replace=False)
    weight = rng.lognormal(0.0, 1.0, size=centres.size)
    weight /= weight.sum()
    n_bg = max(1, round(n * (1 - branching)))
    c = rng.choice(centres.size, size=n_bg, p=weight)
    pts = xy[centres[c]] + rng.normal(0.0, spread_m, size=(n_bg, 2))
    t = rng.uniform(0.0, days, size=n_bg)  # days since start
    all_pts, all_t = [pts], [t]
    parents_pts, parents_t = pts, t
    while parents_t.size:
        k = rng.poisson(branching, size=parents_t.size)
        idx = np.repeat(np.arange(parents_t.size), k)
        if not idx.size:
            break
        ct = parents_t[idx] + rng.exponential(trigger_days, size=idx.size)
        cp = parents_pts[idx] + rng.normal(0.0, trigger_m, size=(idx.size, 2))
        keep = ct < days
        parents_pts, parents_t = cp[keep], ct[keep]
        all_pts.append(parents_pts)
        all_t.append(parents_t)
    pts = np.concatenate(all_pts)
    t = np.concatenate(all_t)
    _, nearest = tree.query(pts)
    at = xy[nearest] + rng.uniform(-15.0, 15.0, size=(nearest.size, 2))
    lat, lon = network.to_latlon(at[:, 0], at[:, 1])
    hour = rng.choice(24, size=t.size, p=HOURLY_PROFILE / HOURLY_PROFILE.sum())
    day = np.floor(t).astype(np.int64)
    seconds = day * 86_400 + hour * 3600 + rng.integers(0, 3600, size=t.size)
    when = np.datetime64(start, "s") + seconds.astype("timedelta64[s]")
    order = np.argsort(when, kind="stable")
    return Incidents.from_arrays(
        lat[order],
        lon[order],
        when[order],
        rng.choice(_CATEGORIES, size=t.size, p=_CATEGORY_P)[order],
        timezone=timezone,
        label=f"synthetic self-exciting incidents (seed {seed}; not real)",
        synthetic=True,
    )
