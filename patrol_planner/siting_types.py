"""What a booth-siting run is asked and what it answers (``qorgau sites``, ``POST /api/sites``).

The model (:mod:`patrol_planner.siting`) fills a :class:`SitingResult`; the edges (the CLI, the
API, the map and the files) only read it. Coordinates are WGS 84 degrees; weights are risk (or
the ``weight`` of explicit demand points); shares are fractions in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["AddedSite", "DistrictCoverage", "Move", "SiteFeature", "SitingRequest", "SitingResult"]


@dataclass(frozen=True)
class SitingRequest:
    """The question, as the command line asks it (every path is a local file)."""

    network: Path
    existing: Path
    """Point features with ``id``: the booths that stand, always kept."""
    add: int
    """How many new booths to place (N)."""
    walk_min: float = 10.0
    """A demand point is covered when a booth is at most this many walking minutes away."""
    incidents: Path | None = None
    demand: Path | None = None
    """Point features with a numeric ``weight`` (instead of ``incidents``)."""
    candidates: Path | None = None
    """Point features with ``id``; by default points about every 100 m along walkable streets."""
    districts: Path | None = None
    """Polygon features with ``name`` (or ``id``)."""
    district_floor: float | None = None
    """The least covered share every district must reach, when feasible."""
    hours: str | None = None
    """``"20:00-08:00"``: the incidents of the hours the booths are staffed."""
    backup_sites: Path | None = None
    """Point features (schools, hospitals, SOS buttons) each to be within reach of two booths."""
    move: int = 0
    """How many existing booths may be moved (modular booths are movable)."""
    time_limit_s: float = 60.0
    timezone: str = "Asia/Almaty"


@dataclass(frozen=True)
class SiteFeature:
    """A booth, existing or added, or a demand point, where the map draws it."""

    id: str
    lat: float
    lon: float
    weight: float = 0.0


@dataclass(frozen=True)
class AddedSite:
    """A new booth, in build order: what it adds and how far the total has come with it."""

    id: str
    lat: float
    lon: float
    marginal_weight: float
    cumulative_share: float


@dataclass(frozen=True)
class DistrictCoverage:
    name: str
    total_weight: float
    covered_weight: float
    covered_share: float
    covered_share_existing: float


@dataclass(frozen=True)
class Move:
    """An existing booth moved to a candidate site, and the covered weight that gains."""

    from_id: str
    to_id: str
    lat: float
    lon: float
    gain_weight: float


@dataclass(frozen=True)
class SitingResult:
    existing: list[SiteFeature]
    added: list[AddedSite]
    covered_weight: float
    total_weight: float
    covered_share: float
    covered_share_existing: float
    optimality_gap: float
    """Relative MILP gap at the end of the solve (0.0 when proven optimal)."""
    solver_status: str
    """``"optimal"``, ``"time_limit"`` (best found), or ``"greedy"`` when no MILP answer came."""
    greedy_covered_share: float
    walk_min: float
    solve_s: float
    districts: list[DistrictCoverage] = field(default_factory=list)
    district_ratio: float | None = None
    """Best- over worst-covered district share (None without districts or when the worst is 0)."""
    backup_sites: int = 0
    backup_covered_twice: int = 0
    moves: list[Move] = field(default_factory=list)
    uncovered: list[SiteFeature] = field(default_factory=list)
    """The heaviest uncovered demand points (the map's uncovered hot spots), heaviest first."""
    demand_points: int = 0
    candidate_sites: int = 0
    sources: dict[str, Any] = field(default_factory=dict)
    """What went in: file names, incident counts, hours; for the sheet's provenance line."""

    def summary(self) -> dict[str, Any]:
        """The ``--json`` summary and ``summary.json`` (the keys the issue names come first)."""
        return {
            "existing": [s.id for s in self.existing],
            "added": [
                {
                    "id": a.id,
                    "lat": a.lat,
                    "lon": a.lon,
                    "marginal_weight": a.marginal_weight,
                    "cumulative_share": a.cumulative_share,
                }
                for a in self.added
            ],
            "covered_weight": self.covered_weight,
            "total_weight": self.total_weight,
            "covered_share": self.covered_share,
            "covered_share_existing": self.covered_share_existing,
            "optimality_gap": self.optimality_gap,
            "greedy_covered_share": self.greedy_covered_share,
            "districts": {
                d.name: {
                    "total_weight": d.total_weight,
                    "covered_weight": d.covered_weight,
                    "covered_share": d.covered_share,
                    "covered_share_existing": d.covered_share_existing,
                }
                for d in self.districts
            },
            "district_ratio": self.district_ratio,
            "solver_status": self.solver_status,
            "walk_min": self.walk_min,
            "solve_s": self.solve_s,
            "backup": {"sites": self.backup_sites, "covered_twice": self.backup_covered_twice},
            "moves": [
                {"from": m.from_id, "to": m.to_id, "lat": m.lat, "lon": m.lon, "gain_weight": m.gain_weight}
                for m in self.moves
            ],
            "demand_points": self.demand_points,
            "candidate_sites": self.candidate_sites,
            "sources": self.sources,
        }
