"""Booth coverage: how much of the risk, and of the incidents, lies within a short walk of a booth.

One multi-source walking search from all booths (each booth's off-street leg included) gives the
walking time to every street node within the largest threshold. An incident's time is that of
the nearer end of its street segment plus the walk along it and its own off-street leg; a grid
cell's risk counts at the street point nearest to its centre; a hot spot's at its node.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from patrol_planner._graph import WalkGraph
from patrol_planner.incidents import Incidents
from patrol_planner.io import Booth
from patrol_planner.shift import HotSpot, RiskMap

__all__ = ["BoothCoverage", "booth_coverage", "walk_times_from_booths"]


@dataclass(frozen=True)
class BoothCoverage:
    """Shares of risk and incidents within each threshold (minutes) of a booth, and the gaps."""

    minutes: tuple[int, ...]
    risk_share: dict[int, float]
    incident_share: dict[int, float]
    incidents: int
    uncovered: list[tuple[HotSpot, float]]  # hot spots beyond the largest threshold, with minutes (inf: unreachable)

    def as_dict(self) -> dict[str, Any]:
        return {
            "minutes": list(self.minutes),
            "risk_share": {str(m): round(v, 4) for m, v in self.risk_share.items()},
            "incident_share": {str(m): round(v, 4) for m, v in self.incident_share.items()},
            "incidents": self.incidents,
            "uncovered_hotspots": [
                {
                    "id": s.id,
                    "lat": s.lat,
                    "lon": s.lon,
                    "risk": round(s.risk, 5),
                    "walk_min": None if not np.isfinite(m) else round(m, 1),
                }
                for s, m in self.uncovered
            ],
        }


def walk_times_from_booths(graph: WalkGraph, booths: Sequence[Booth], *, limit_s: float) -> NDArray[np.float64]:
    """Walking time (s) from the nearest booth to every node; ``inf`` beyond ``limit_s``."""
    net = graph.network
    bx, by = net.to_xy(np.array([b.lat for b in booths]), np.array([b.lon for b in booths]))
    s = graph.snap_xy(bx, by)
    seg_t = graph.time_s[s.segment]
    leg = s.distance_m / graph.walk_speed_mps
    sources = np.concatenate([graph.u[s.segment], graph.v[s.segment]])
    seed_t = np.concatenate([leg + s.fraction * seg_t, leg + (1 - s.fraction) * seg_t])
    _, node, t = graph.bounded_times(
        sources, seed_t=seed_t, group=np.zeros(sources.size, dtype=np.int64), limit_s=limit_s
    )
    out = np.full(graph.n_nodes, np.inf)
    out[node] = t
    return out


def _point_times(
    graph: WalkGraph, node_t: NDArray[np.float64], x: NDArray[np.float64], y: NDArray[np.float64]
) -> NDArray[np.float64]:
    s = graph.snap_xy(x, y)
    seg_t = graph.time_s[s.segment]
    via_u = node_t[graph.u[s.segment]] + s.fraction * seg_t
    via_v = node_t[graph.v[s.segment]] + (1 - s.fraction) * seg_t
    return np.minimum(via_u, via_v) + s.distance_m / graph.walk_speed_mps


def booth_coverage(
    graph: WalkGraph,
    booths: Sequence[Booth],
    incidents: Incidents,
    risk: RiskMap,
    *,
    minutes: tuple[int, ...] = (5, 10),
) -> BoothCoverage:
    """Shares of the shift's risk and of ``incidents`` within ``minutes`` of walking from a booth."""
    limit = max(minutes) * 60.0
    node_t = walk_times_from_booths(graph, booths, limit_s=limit)
    ix, iy = incidents.xy(graph.network.crs)
    inc_t = _point_times(graph, node_t, ix, iy) if len(incidents) else np.zeros(0)
    cells = np.flatnonzero(risk.risk > 0)
    cx, cy = risk.surface.grid.centres()
    cell_t = _point_times(graph, node_t, cx[cells], cy[cells]) if cells.size else np.zeros(0)
    total = float(risk.risk[cells].sum()) or 1.0
    risk_share = {m: float(risk.risk[cells][cell_t <= m * 60].sum()) / total for m in minutes}
    inc_share = {m: float(np.count_nonzero(inc_t <= m * 60)) / max(1, len(incidents)) for m in minutes}
    uncovered = [(s, float(node_t[s.node]) / 60.0) for s in risk.hotspots if not node_t[s.node] <= limit]
    return BoothCoverage(tuple(minutes), risk_share, inc_share, len(incidents), uncovered)
