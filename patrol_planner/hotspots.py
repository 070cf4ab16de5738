"""Hotspot estimators: where crime is expected next, on a grid and on street segments.

All estimators share one interface (:class:`HotspotEstimator`): given the events known before a
moment ``at`` (metric x/y and local times), return a :class:`Surface` of scores on a :class:`Grid`
and, when street segments are given, a score per segment. Scores are relative intensities;
:func:`patrol_planner.evaluation.evaluate` compares estimators on them, and the planner rescales
them to expected incidents per shift.

Estimators
----------
``naive``
    Counts of the last period (e.g. the last month) per grid cell: "it will happen where it
    happened last month". The baseline every other estimator must beat.
``kde``
    Retrospective kernel density: a quartic (biweight) kernel of fixed bandwidth (200 m) over a
    year of events, all equally weighted.
``prospective``
    Prospective hotspotting (Bowers, Johnson and Pease 2004, "Prospective hot-spotting: the
    future of crime mapping?", Br. J. Criminol. 44(5)): each event adds weight
    ``1 / (1 + cells away) * 1 / (1 + weeks ago)`` within a spatial bandwidth (400 m) and a
    time bandwidth (8 weeks): burglary risk is communicated to nearby places for a few weeks.
``spacetime``
    A space-time kernel density: a quartic kernel of 150 m times an exponential decay in time
    (half-life 180 days) over two years, so recent events weigh more and older ones still count
    (the exponential time weighting of Johnson, Bowers, Birks and Pease 2009, "Predictive mapping
    of crime by ProMap", on the quartic kernel of ``kde``). The Toronto backtest's winner.
``network``
    Risk per street segment (Rosser, Davies, Bowers, Johnson and Cheng 2017, "Predictive crime
    mapping: arbitrary grids or street networks?", J. Quant. Criminol. 33): events are snapped to
    the street network and spread along it by network distance with a linear kernel (150 m) and
    the prospective time weights of a year; segments, not cells, are ranked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    from patrol_planner._graph import WalkGraph

__all__ = [
    "DEFAULT_ESTIMATOR",
    "ESTIMATORS",
    "EventsXY",
    "Grid",
    "HotspotEstimator",
    "KernelDensity",
    "NaiveCounts",
    "NetworkRisk",
    "ProspectiveHotspots",
    "Segments",
    "SpaceTimeKDE",
    "Surface",
    "make_estimator",
]

_DAY_S = 86_400.0
_WEEK_S = 7 * _DAY_S


@dataclass(frozen=True)
class Grid:
    """Square cells over a metric plane: cell ``(row, col)`` spans ``x0 + col*cell_m`` ... .

    ``mask`` marks the cells of the study area (the denominator of area shares).
    """

    x0: float
    y0: float
    cell_m: float
    nx: int
    ny: int
    mask: NDArray[np.bool_]

    @classmethod
    def covering(cls, x: NDArray[np.float64], y: NDArray[np.float64], *, cell_m: float, margin_m: float = 0.0) -> Grid:
        """A grid covering points (with a margin); every cell is in the study area."""
        if x.size == 0:
            msg = "cannot build a grid over no points"
            raise ValueError(msg)
        x0 = math.floor((float(x.min()) - margin_m) / cell_m) * cell_m
        y0 = math.floor((float(y.min()) - margin_m) / cell_m) * cell_m
        nx = math.floor((float(x.max()) + margin_m - x0) / cell_m) + 1
        ny = math.floor((float(y.max()) + margin_m - y0) / cell_m) + 1
        return cls(x0, y0, float(cell_m), nx, ny, np.ones(nx * ny, dtype=bool))

    @property
    def n_cells(self) -> int:
        return self.nx * self.ny

    @property
    def area_cells(self) -> int:
        """Cells in the study area."""
        return int(self.mask.sum())

    def cell_of(self, x: NDArray[np.float64], y: NDArray[np.float64]) -> NDArray[np.int64]:
        """Flat cell index of each point, -1 outside the grid."""
        col = np.floor((np.asarray(x) - self.x0) / self.cell_m).astype(np.int64)
        row = np.floor((np.asarray(y) - self.y0) / self.cell_m).astype(np.int64)
        ok = (col >= 0) & (col < self.nx) & (row >= 0) & (row < self.ny)
        return np.where(ok, row * self.nx + col, -1)

    def centres(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """x and y of every cell's centre, flat."""
        cols = np.tile(np.arange(self.nx), self.ny)
        rows = np.repeat(np.arange(self.ny), self.nx)
        x = np.asarray(self.x0 + (cols + 0.5) * self.cell_m, dtype=np.float64)
        y = np.asarray(self.y0 + (rows + 0.5) * self.cell_m, dtype=np.float64)
        return x, y

    def with_mask(self, mask: NDArray[np.bool_]) -> Grid:
        return Grid(self.x0, self.y0, self.cell_m, self.nx, self.ny, np.asarray(mask, dtype=bool))

    def mask_near(self, x: NDArray[np.float64], y: NDArray[np.float64], *, radius_m: float) -> NDArray[np.bool_]:
        """Cells within about ``radius_m`` of any point (a dilation of the cells holding them)."""
        hit = np.zeros(self.n_cells, dtype=bool)
        c = self.cell_of(x, y)
        hit[c[c >= 0]] = True
        r = math.ceil(radius_m / self.cell_m)
        if r <= 0:
            return hit
        img = hit.reshape(self.ny, self.nx).astype(np.float64)
        k = np.ones((2 * r + 1, 2 * r + 1))
        from scipy.signal import fftconvolve  # scipy.signal takes seconds to import: only when estimating

        return (fftconvolve(img, k, mode="same") > 0.5).ravel()

    def histogram(
        self, x: NDArray[np.float64], y: NDArray[np.float64], weights: NDArray[np.float64] | None = None
    ) -> NDArray[np.float64]:
        """Sum of weights per cell (flat)."""
        c = self.cell_of(x, y)
        ok = c >= 0
        w = None if weights is None else np.asarray(weights, dtype=np.float64)[ok]
        return np.bincount(c[ok], weights=w, minlength=self.n_cells).astype(np.float64)


@dataclass(frozen=True)
class Segments:
    """Street segments for network estimators and street-length coverage.

    ``mid_x``/``mid_y`` are midpoints, ``length_m`` lengths; ``u``/``v`` end nodes. A network
    estimator also needs the walking graph (``graph``, a :class:`patrol_planner._graph.WalkGraph`).
    """

    mid_x: NDArray[np.float64]
    mid_y: NDArray[np.float64]
    length_m: NDArray[np.float64]
    u: NDArray[np.int64]
    v: NDArray[np.int64]
    graph: WalkGraph | None = None

    @classmethod
    def from_graph(cls, graph: WalkGraph) -> Segments:
        g = graph
        return cls(g.mid_x, g.mid_y, g.length_m, g.u, g.v, graph)

    @property
    def n(self) -> int:
        return int(self.length_m.size)


@dataclass(frozen=True)
class EventsXY:
    """Events as metric points with local times in seconds (any epoch) and optional segments."""

    x: NDArray[np.float64]
    y: NDArray[np.float64]
    t_s: NDArray[np.float64]
    segment: NDArray[np.int64] | None = None
    fraction: NDArray[np.float64] | None = None

    def __len__(self) -> int:
        return int(self.x.size)

    def select(self, mask: NDArray[np.bool_]) -> EventsXY:
        return EventsXY(
            self.x[mask],
            self.y[mask],
            self.t_s[mask],
            None if self.segment is None else self.segment[mask],
            None if self.fraction is None else self.fraction[mask],
        )


@dataclass(frozen=True)
class Surface:
    """An estimator's prediction: a score per grid cell (flat) and, optionally, per segment.

    ``segment_density`` is a score per metre of street (segments are ranked by it).
    """

    grid: Grid
    cells: NDArray[np.float64]
    segment_density: NDArray[np.float64] | None = None


class HotspotEstimator(Protocol):
    """What every estimator does: predict a surface from the events before ``at``."""

    @property
    def name(self) -> str:
        """The estimator's name (read-only: the estimators are frozen dataclasses)."""
        ...

    def predict(self, events: EventsXY, at_s: float, grid: Grid, segments: Segments | None = None) -> Surface: ...


def _sample(grid: Grid, cells: NDArray[np.float64], segments: Segments | None) -> NDArray[np.float64] | None:
    """Segment scores read off a grid surface at each segment's midpoint."""
    if segments is None:
        return None
    c = grid.cell_of(segments.mid_x, segments.mid_y)
    return np.where(c >= 0, cells[np.maximum(c, 0)], 0.0)


def _window(events: EventsXY, at_s: float, lookback_s: float) -> NDArray[np.bool_]:
    return (events.t_s < at_s) & (events.t_s >= at_s - lookback_s)


@dataclass(frozen=True)
class NaiveCounts:
    """Counts of the last ``lookback_days`` per grid cell."""

    lookback_days: float = 30.0
    name: str = "naive"

    def predict(self, events: EventsXY, at_s: float, grid: Grid, segments: Segments | None = None) -> Surface:
        sel = _window(events, at_s, self.lookback_days * _DAY_S)
        cells = grid.histogram(events.x[sel], events.y[sel])
        return Surface(grid, cells, _sample(grid, cells, segments))


def _quartic_kernel(cell_m: float, bandwidth_m: float) -> NDArray[np.float64]:
    r = math.floor(bandwidth_m / cell_m)
    off = np.arange(-r, r + 1) * cell_m
    d2 = off[None, :] ** 2 + off[:, None] ** 2
    k = np.where(d2 < bandwidth_m**2, (1 - d2 / bandwidth_m**2) ** 2, 0.0)
    kernel: NDArray[np.float64] = k / k.sum()
    return kernel


def _convolve(grid: Grid, hist: NDArray[np.float64], kernel: NDArray[np.float64]) -> NDArray[np.float64]:
    if kernel.shape == (1, 1):
        scaled: NDArray[np.float64] = hist * kernel[0, 0]
        return scaled
    out = _fftconvolve_same(hist.reshape(grid.ny, grid.nx), kernel).ravel()
    return np.maximum(out, 0.0)  # FFT round-off


def _fftconvolve_same(a: NDArray[np.float64], k: NDArray[np.float64]) -> NDArray[np.float64]:
    """``scipy.signal.fftconvolve(a, k, mode="same")`` with scipy.fft alone: importing
    scipy.signal (and the scipy.stats it pulls in) cost a first plan more than the convolution."""
    from scipy import fft

    full = tuple(int(m + n - 1) for m, n in zip(a.shape, k.shape, strict=True))
    shape = tuple(fft.next_fast_len(n, real=True) for n in full)
    spec = fft.rfftn(a, shape) * fft.rfftn(k, shape)
    conv = fft.irfftn(spec, shape)[tuple(slice(0, n) for n in full)]
    start = tuple((f - m) // 2 for f, m in zip(full, a.shape, strict=True))
    out: NDArray[np.float64] = conv[tuple(slice(s, s + m) for s, m in zip(start, a.shape, strict=True))]
    return np.ascontiguousarray(out)


@dataclass(frozen=True)
class KernelDensity:
    """Retrospective quartic kernel density over the last ``lookback_days`` (all weights equal)."""

    bandwidth_m: float = 200.0
    lookback_days: float = 365.0
    name: str = "kde"

    def predict(self, events: EventsXY, at_s: float, grid: Grid, segments: Segments | None = None) -> Surface:
        sel = _window(events, at_s, self.lookback_days * _DAY_S)
        hist = grid.histogram(events.x[sel], events.y[sel])
        cells = _convolve(grid, hist, _quartic_kernel(grid.cell_m, self.bandwidth_m))
        return Surface(grid, cells, _sample(grid, cells, segments))


@dataclass(frozen=True)
class ProspectiveHotspots:
    """Bowers-Johnson prospective hotspotting: ``1/(1+cells away) * 1/(1+weeks ago)`` weights."""

    bandwidth_m: float = 400.0
    time_bandwidth_days: float = 56.0
    name: str = "prospective"

    def predict(self, events: EventsXY, at_s: float, grid: Grid, segments: Segments | None = None) -> Surface:
        sel = _window(events, at_s, self.time_bandwidth_days * _DAY_S)
        weeks = np.floor((at_s - events.t_s[sel]) / _WEEK_S)
        hist = grid.histogram(events.x[sel], events.y[sel], 1.0 / (1.0 + weeks))
        r = math.floor(self.bandwidth_m / grid.cell_m)
        off = np.arange(-r, r + 1)
        d = np.hypot(off[None, :], off[:, None])
        kernel = np.where(d * grid.cell_m <= self.bandwidth_m, 1.0 / (1.0 + d), 0.0)
        cells = _convolve(grid, hist, kernel)
        return Surface(grid, cells, _sample(grid, cells, segments))


@dataclass(frozen=True)
class SpaceTimeKDE:
    """Quartic kernel in space times ``0.5 ** (age / half-life)`` in time, over ``lookback_days``."""

    bandwidth_m: float = 150.0
    half_life_days: float = 180.0
    lookback_days: float = 730.0
    name: str = "spacetime"

    def predict(self, events: EventsXY, at_s: float, grid: Grid, segments: Segments | None = None) -> Surface:
        sel = _window(events, at_s, self.lookback_days * _DAY_S)
        age_days = (at_s - events.t_s[sel]) / _DAY_S
        hist = grid.histogram(events.x[sel], events.y[sel], 0.5 ** (age_days / self.half_life_days))
        cells = _convolve(grid, hist, _quartic_kernel(grid.cell_m, self.bandwidth_m))
        return Surface(grid, cells, _sample(grid, cells, segments))


@dataclass(frozen=True)
class NetworkRisk:
    """Risk per street segment: events spread along the network (Rosser et al. 2017).

    Each event counts on the nearer end node of its segment with the prospective time weight
    ``1/(1+weeks ago)`` (within ``time_bandwidth_days``); node weights are spread to every node
    within ``bandwidth_m`` of walking with the linear kernel ``1 - d/bandwidth``; a segment's
    score is the mean of its two ends (a density per metre of street). Needs ``segments.graph``.
    """

    bandwidth_m: float = 150.0
    time_bandwidth_days: float = 365.0
    name: str = "network"

    def predict(self, events: EventsXY, at_s: float, grid: Grid, segments: Segments | None = None) -> Surface:
        if segments is None or segments.graph is None or events.segment is None or events.fraction is None:
            msg = "the network estimator needs a street network (segments and events snapped to them)"
            raise ValueError(msg)
        g = segments.graph
        sel = _window(events, at_s, self.time_bandwidth_days * _DAY_S)
        weeks = np.floor((at_s - events.t_s[sel]) / _WEEK_S)
        seg = events.segment[sel]
        node = np.where(events.fraction[sel] <= 0.5, segments.u[seg], segments.v[seg])
        w = np.bincount(node, weights=1.0 / (1.0 + weeks), minlength=g.n_nodes)
        src = np.flatnonzero(w)
        score = np.zeros(g.n_nodes)
        if src.size:
            limit_s = self.bandwidth_m / g.walk_speed_mps
            grp, reached, t = g.bounded_times(src, limit_s=limit_s)
            k = np.clip(1.0 - t / limit_s, 0.0, None)
            np.add.at(score, reached, w[src[grp]] * k)
        density = (score[segments.u] + score[segments.v]) / 2
        mass = density * segments.length_m
        cells = grid.histogram(segments.mid_x, segments.mid_y, mass)
        return Surface(grid, cells, density)


#: Every estimator by name, with its published or default parameters.
ESTIMATORS: dict[str, HotspotEstimator] = {
    "naive": NaiveCounts(),
    "kde": KernelDensity(),
    "prospective": ProspectiveHotspots(),
    "spacetime": SpaceTimeKDE(),
    "network": NetworkRisk(),
}

#: The estimator the planner uses unless told otherwise: the winner of the Toronto backtest
#: (BENCHMARKS.md, "Hotspot evaluation").
DEFAULT_ESTIMATOR = "spacetime"


def make_estimator(name: str, *, lookback_days: float | None = None) -> HotspotEstimator:
    """An estimator by name; ``lookback_days`` sets the naive estimator's period."""
    if name not in ESTIMATORS:
        msg = f"unknown hotspot estimator {name!r}; expected one of {sorted(ESTIMATORS)}"
        raise ValueError(msg)
    est = ESTIMATORS[name]
    if lookback_days is not None and isinstance(est, NaiveCounts):
        return NaiveCounts(lookback_days=lookback_days)
    return est
