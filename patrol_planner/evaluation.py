"""Backtesting hotspot estimators on rolling windows: hit rate and PAI at fixed coverage.

For each window (a calendar month, or a fixed number of days) every estimator is trained on the
events before the window and predicts it. The top ``c`` % of the study area's grid cells (or of
its street length, when a network is given) are "flagged"; the *hit rate* is the share of the
window's events that fall in flagged cells (segments), and the *predictive accuracy index*
(PAI, Chainey, Tompson and Uhlig 2008) is the hit rate divided by the flagged share of area
(street length). The *oracle* flags the cells that really had most events in the window: the
ceiling no estimator can beat.

A window is *used* only when it has events to predict and events before it to train on; the
others are skipped and counted (``windows_skipped``), never averaged in as ``nan``. A run with no
usable window raises :class:`NoUsableWindows`, whose message names the periods the data covers,
and no estimator is ever named the winner from ``nan``. Data known only to the month (police.uk
street-level files: every incident on the 1st) covers its whole last month.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from patrol_planner.hotspots import (
    DEFAULT_ESTIMATOR,
    EventsXY,
    Grid,
    Segments,
    make_estimator,
)
from patrol_planner.incidents import Incidents, Projection, hours_mask

if TYPE_CHECKING:
    from pyproj import CRS

    from patrol_planner._graph import WalkGraph

__all__ = ["COVERAGES", "Evaluation", "NoUsableWindows", "evaluate", "events_xy", "rolling_windows"]

#: Coverage levels, in per cent of area (or street length).
COVERAGES: tuple[int, ...] = (1, 5, 10)

_EPOCH = np.datetime64("1970-01-01T00:00:00", "s")


class NoUsableWindows(ValueError):
    """No backtest window had both events to predict and events before it to train on."""


def covered_periods(incidents: Incidents) -> list[tuple[str, int]]:
    """The calendar months the incidents fall in, with their counts, oldest first."""
    if not len(incidents):
        return []
    months, counts = np.unique(incidents.occurred_at.astype("datetime64[M]"), return_counts=True)
    return [(str(m), int(c)) for m, c in zip(months, counts, strict=True)]


def _periods_text(periods: list[tuple[str, int]], *, most: int = 8) -> str:
    shown = [f"{m} ({c:,})" for m, c in periods[:most]]
    if len(periods) > most:
        shown.append(f"... {len(periods) - most} more, to {periods[-1][0]}")
    return ", ".join(shown) if shown else "nothing"


def events_xy(incidents: Incidents, crs: CRS, graph: WalkGraph | None = None) -> EventsXY:
    """Incidents as metric points with times in seconds; snapped to the walk graph if given."""
    x, y = incidents.xy(crs)
    t = (incidents.occurred_at - _EPOCH).astype(np.float64)
    if graph is None:
        return EventsXY(x, y, t)
    snaps = graph.snap_xy(x, y)
    return EventsXY(x, y, t, snaps.segment, snaps.fraction)


def rolling_windows(
    incidents: Incidents, *, n_windows: int, period: str = "month", before: np.datetime64 | None = None
) -> list[tuple[np.datetime64, np.datetime64]]:
    """The last ``n_windows`` whole periods of the data (ending by ``before``), oldest first.

    ``period`` is ``"month"`` (calendar months) or ``"Nd"`` (``N`` days, e.g. ``"7d"``).
    """
    if n_windows < 1:
        msg = f"n_windows must be positive, got {n_windows}"
        raise ValueError(msg)
    _, last = incidents.span
    if not incidents.hour_known[incidents.occurred_at == last].any():
        # Known only to the month (dated the 1st): the data covers that whole month.
        last = (last.astype("datetime64[M]") + np.timedelta64(1, "M")).astype("datetime64[s]") - np.timedelta64(1, "s")
    if before is not None:
        # numpy's stubs have no overload for (datetime64, unit), which numpy takes.
        last = min(last, np.datetime64(before, "s") - np.timedelta64(1, "D"))  # type: ignore[call-overload]
    if period == "month":
        end = (last + np.timedelta64(1, "D")).astype("datetime64[M]")
        months = end - np.arange(n_windows, -1, -1)
        edges = months.astype("datetime64[s]")
    elif period.endswith("d") and period[:-1].isdigit():
        days = int(period[:-1])
        end_d = (last + np.timedelta64(1, "s")).astype("datetime64[D]")
        edges = (end_d - np.arange(n_windows, -1, -1) * days).astype("datetime64[s]")
    else:
        msg = f"period must be 'month' or a number of days like '7d', got {period!r}"
        raise ValueError(msg)
    return [(edges[i], edges[i + 1]) for i in range(n_windows)]


@dataclass
class Evaluation:
    """Backtest results: per estimator and window, hit rates and PAI at each coverage."""

    estimators: list[str]
    windows: list[tuple[np.datetime64, np.datetime64]]
    n_events: list[int]
    """Events to predict in each window (0 for a skipped window, whatever it held)."""
    hit_rate: dict[str, NDArray[np.float64]]  # name -> (windows, coverages)
    pai: dict[str, NDArray[np.float64]]
    hit_rate_length: dict[str, NDArray[np.float64]] = field(default_factory=dict)
    pai_length: dict[str, NDArray[np.float64]] = field(default_factory=dict)
    oracle_hit_rate: NDArray[np.float64] | None = None
    oracle_pai: NDArray[np.float64] | None = None
    oracle_pai_length: NDArray[np.float64] | None = None
    coverages: tuple[int, ...] = COVERAGES
    cell_m: float = 100.0
    area_cells: int = 0
    street_length_m: float = 0.0
    hours: tuple[int, int] | None = None
    default: str = DEFAULT_ESTIMATOR
    seconds: float = 0.0
    skipped_empty: int = 0
    """Windows with no events to predict."""
    skipped_no_history: int = 0
    """Windows with events but none before them to train on."""
    no_prediction: dict[str, int] = field(default_factory=dict)
    """Per estimator, used windows where it predicted nothing (a flat surface): not in its means."""
    periods: list[tuple[str, int]] = field(default_factory=list)
    """The months the data covers, with their counts."""

    def _used(self) -> NDArray[np.bool_]:
        return np.asarray(self.n_events) > 0

    def _mean(self, a: NDArray[np.float64]) -> dict[str, float | None]:
        """Means over the used windows where there was a figure; None (JSON null) where there was none."""
        used = a[self._used()]
        have = np.isfinite(used)
        n = have.sum(axis=0)
        m = np.where(have, used, 0.0).sum(axis=0) / np.maximum(n, 1)
        return {str(c): round(float(v), 4) if k else None for c, v, k in zip(self.coverages, m, n, strict=True)}

    @property
    def windows_used(self) -> int:
        return int(self._used().sum())

    @property
    def winner(self) -> str | None:
        """The estimator with the best mean hit rate over the coverage levels; None when none has one."""
        finite: dict[str, float] = {}
        for n in self.estimators:
            means = list(self._mean(self.hit_rate[n]).values())
            if means and all(v is not None for v in means):
                finite[n] = float(np.mean([v for v in means if v is not None]))
        return max(finite, key=lambda n: finite[n]) if finite else None

    def as_dict(self) -> dict[str, Any]:
        """The JSON of ``qorgau plan evaluate --json``: means over windows."""
        est: dict[str, dict[str, Any]] = {}
        for n in self.estimators:
            d: dict[str, Any] = {"hit_rate": self._mean(self.hit_rate[n]), "pai": self._mean(self.pai[n])}
            d["windows"] = (
                int(np.isfinite(self.hit_rate[n][self._used()]).all(axis=1).sum()) if self.windows_used else 0
            )
            if n in self.pai_length:
                d["hit_rate_length"] = self._mean(self.hit_rate_length[n])
                d["pai_length"] = self._mean(self.pai_length[n])
            est[n] = d
        oracle: dict[str, dict[str, float | None]] = {}
        if self.oracle_pai is not None and self.oracle_hit_rate is not None:
            oracle = {"hit_rate": self._mean(self.oracle_hit_rate), "pai": self._mean(self.oracle_pai)}
        if self.oracle_pai_length is not None:
            oracle["pai_length"] = self._mean(self.oracle_pai_length)
        used = int(self._used().sum())
        return {
            "default": self.default,
            "winner": self.winner,
            "windows": used,
            "windows_skipped": {"empty": self.skipped_empty, "no_history": self.skipped_no_history},
            "periods": {m: c for m, c in self.periods},
            "estimators": est,
            "oracle": oracle,
            "first_window": str(self.windows[0][0]) if self.windows else None,
            "last_window_end": str(self.windows[-1][1]) if self.windows else None,
            "events_per_window": round(float(np.mean(np.asarray(self.n_events)[self._used()])), 1) if used else 0.0,
            "cell_m": self.cell_m,
            "area_km2": round(self.area_cells * self.cell_m**2 / 1e6, 3),
            "street_length_km": round(self.street_length_m / 1000, 3) if self.street_length_m else None,
            "hours": None if self.hours is None else f"{self.hours[0]:02d}:00-{self.hours[1]:02d}:00",
            "seconds": round(self.seconds, 2),
        }

    def table(self) -> list[str]:
        """A Markdown table of the means (hit rate and PAI; PAI by street length when known)."""
        cov = self.coverages
        head = ["estimator"] + [f"hit {c}%" for c in cov] + [f"PAI {c}%" for c in cov]
        with_len = bool(self.pai_length)
        if with_len:
            head += [f"PAI(len) {c}%" for c in cov]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        d = self.as_dict()
        for n in self.estimators:
            e = d["estimators"][n]
            mark = " (default)" if n == self.default else ""
            row = (
                [f"{n}{mark}"]
                + [_fmt(e["hit_rate"][str(c)], 3) for c in cov]
                + [_fmt(e["pai"][str(c)], 2) for c in cov]
            )
            if with_len:
                row += [_fmt(e["pai_length"][str(c)], 2) if "pai_length" in e else "-" for c in cov]
            lines.append("| " + " | ".join(row) + " |")
        o = d["oracle"]
        if o:
            row = (
                ["oracle (ceiling)"]
                + [_fmt(o["hit_rate"][str(c)], 3) for c in cov]
                + [_fmt(o["pai"][str(c)], 2) for c in cov]
            )
            if with_len:
                row += [_fmt(o["pai_length"][str(c)], 2) if "pai_length" in o else "-" for c in cov]
            lines.append("| " + " | ".join(row) + " |")
        return lines


def _fmt(value: float | None, digits: int) -> str:
    """A table cell: the figure, or "-" where there was none."""
    return "-" if value is None else f"{value:.{digits}f}"


def _flag_cells(scores: NDArray[np.float64], k: int) -> NDArray[np.int64]:
    """Positions of the ``k`` highest scores (ties broken by position)."""
    order = np.lexsort((np.arange(scores.size), -scores))
    return order[:k]


def _length_hits(
    rank_key: NDArray[np.float64], length: NDArray[np.float64], counts: NDArray[np.float64], share: float
) -> tuple[float, float]:
    """Events on the top-ranked segments up to ``share`` of street length, and the length share taken."""
    order = np.lexsort((np.arange(rank_key.size), -rank_key))
    cum = np.cumsum(length[order])
    total = cum[-1]
    n = min(int(np.searchsorted(cum, share * total)) + 1, order.size)
    return float(counts[order[:n]].sum()), float(cum[n - 1] / total)


def evaluate(
    incidents: Incidents,
    *,
    estimators: Sequence[str] = ("naive", "kde", "prospective", "spacetime", "network"),
    n_windows: int = 12,
    period: str = "month",
    cell_m: float = 100.0,
    graph: WalkGraph | None = None,
    hours: tuple[int, int] | None = None,
    coverages: tuple[int, ...] = COVERAGES,
    area_radius_m: float = 200.0,
    before: np.datetime64 | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Evaluation:
    """Backtest estimators on the last ``n_windows`` periods of ``incidents``.

    Parameters
    ----------
    incidents
        The history (already limited to the study area when a network is given).
    estimators
        Names from :data:`patrol_planner.hotspots.ESTIMATORS`; ``network`` needs ``graph``
        and is left out without one.
    graph
        A :class:`patrol_planner._graph.WalkGraph`: adds street-length coverage and the network
        estimator, and the study area becomes the cells the streets pass through.
    hours
        Only events in these local hours (``(22, 6)`` for a night shift), in training and test.
    area_radius_m
        Without a network, the study area is the cells within this distance of any incident
        (the built-up city, not the lake or farmland around it).
    before
        Windows end by this local time (default: the last whole period of the data).
    progress
        Called with ``(windows done, windows)``.
    """
    import time

    started = time.perf_counter()
    names = [n for n in estimators if n != "network" or graph is not None]
    models = {n: make_estimator(n) for n in names}
    if hours is not None:
        incidents = incidents.subset(hours_mask(incidents.hour, hours) & incidents.hour_known)
    crs = graph.network.crs if graph is not None else Projection.for_points(incidents.lat, incidents.lon).crs
    ev = events_xy(incidents, crs, graph)
    windows = rolling_windows(incidents, n_windows=n_windows, period=period, before=before)
    segments = Segments.from_graph(graph) if graph is not None else None
    if graph is not None:  # and so segments is not None
        # Streets sampled every half cell: the cells they pass through are the study area.
        steps = np.linspace(0.0, 1.0, 5)
        g = graph
        sx = (g.x0[:, None] + (g.x1 - g.x0)[:, None] * steps).ravel()
        sy = (g.y0[:, None] + (g.y1 - g.y0)[:, None] * steps).ravel()
        grid = Grid.covering(np.concatenate([sx, ev.x]), np.concatenate([sy, ev.y]), cell_m=cell_m)
        grid = grid.with_mask(grid.mask_near(sx, sy, radius_m=0.0))
    else:
        grid = Grid.covering(ev.x, ev.y, cell_m=cell_m, margin_m=area_radius_m)
        grid = grid.with_mask(grid.mask_near(ev.x, ev.y, radius_m=area_radius_m))
    area_idx = np.flatnonzero(grid.mask)
    n_area = area_idx.size
    ks = [max(1, round(c / 100 * n_area)) for c in coverages]
    nw, nc = len(windows), len(coverages)
    hit = {n: np.full((nw, nc), np.nan) for n in names}
    pai = {n: np.full((nw, nc), np.nan) for n in names}
    hit_len = {n: np.full((nw, nc), np.nan) for n in names} if segments is not None else {}
    pai_len = {n: np.full((nw, nc), np.nan) for n in names} if segments is not None else {}
    o_hit = np.full((nw, nc), np.nan)
    o_pai = np.full((nw, nc), np.nan)
    o_pai_len = np.full((nw, nc), np.nan) if segments is not None else None
    n_events: list[int] = []
    skipped_empty = skipped_no_history = 0
    no_prediction = dict.fromkeys(names, 0)
    first_s = float(ev.t_s.min()) if ev.t_s.size else np.inf
    for w, (start, end) in enumerate(windows):
        s0 = float((start - _EPOCH).astype(np.float64))
        s1 = float((end - _EPOCH).astype(np.float64))
        test = (ev.t_s >= s0) & (ev.t_s < s1)
        cell = grid.cell_of(ev.x[test], ev.y[test])
        in_area = (cell >= 0) & grid.mask[np.maximum(cell, 0)]
        counts = np.bincount(cell[in_area], minlength=grid.n_cells).astype(np.float64)[area_idx]
        total = float(counts.sum())
        seg_counts = None
        if segments is not None:
            seg_counts = np.bincount(ev.segment[test], minlength=segments.n).astype(np.float64)  # type: ignore[index]
        if total == 0 or first_s >= s0:
            # Nothing to predict, or nothing before the window to train on: skipped, counted.
            skipped_empty += total == 0
            skipped_no_history += total > 0
            n_events.append(0)
            if progress:
                progress(w + 1, nw)
            continue
        n_events.append(int(total))
        oracle_sorted = np.cumsum(np.sort(counts)[::-1])
        for j, (c, k) in enumerate(zip(coverages, ks, strict=True)):
            o_hit[w, j] = oracle_sorted[k - 1] / total
            o_pai[w, j] = o_hit[w, j] / (k / n_area)
            if seg_counts is not None and o_pai_len is not None and segments is not None:
                h, share = _length_hits(
                    seg_counts / np.maximum(segments.length_m, 1e-9), segments.length_m, seg_counts, c / 100
                )
                o_pai_len[w, j] = (h / seg_counts.sum()) / share
        for n in names:
            surf = models[n].predict(ev, s0, grid, segments)
            if not surf.cells[area_idx].max(initial=0.0) > 0:
                # Nothing within the estimator's reach of the past (naive sees only the last
                # period): a flat surface is no prediction. Left out of its means, counted.
                no_prediction[n] += 1
                continue
            flagged_order = _flag_cells(surf.cells[area_idx], ks[-1])
            cum = np.cumsum(counts[flagged_order])
            for j, (c, k) in enumerate(zip(coverages, ks, strict=True)):
                hit[n][w, j] = cum[k - 1] / total
                pai[n][w, j] = hit[n][w, j] / (k / n_area)
                if seg_counts is not None and surf.segment_density is not None:
                    h, share = _length_hits(surf.segment_density, segments.length_m, seg_counts, c / 100)  # type: ignore[union-attr]
                    hit_len[n][w, j] = h / seg_counts.sum()
                    pai_len[n][w, j] = hit_len[n][w, j] / share
        if progress:
            progress(w + 1, nw)
    periods = covered_periods(incidents)
    if not any(n_events):
        span = f"{windows[0][0]!s:.10} to {windows[-1][1]!s:.10}" if windows else "no window"
        msg = (
            f"no usable backtest window: {nw} window(s) of {period} from {span}, {skipped_empty} with no incidents "
            f"and {skipped_no_history} with none before them to train on. The incidents cover "
            f"{_periods_text(periods)}. A backtest trains on the past and predicts each window: "
            + (
                "one period of data has no past to train on; give a file with earlier incidents too"
                if len(periods) < 2
                else "give windows long enough to reach from one period of data to the next (for example --period 365d)"
            )
        )
        raise NoUsableWindows(msg)
    return Evaluation(
        estimators=names,
        windows=windows,
        n_events=n_events,
        hit_rate=hit,
        pai=pai,
        hit_rate_length=hit_len,
        pai_length=pai_len,
        oracle_hit_rate=o_hit,
        oracle_pai=o_pai,
        oracle_pai_length=o_pai_len,
        coverages=tuple(coverages),
        cell_m=cell_m,
        area_cells=n_area,
        street_length_m=float(segments.length_m.sum()) if segments is not None else 0.0,
        hours=hours,
        seconds=time.perf_counter() - started,
        skipped_empty=skipped_empty,
        skipped_no_history=skipped_no_history,
        no_prediction=no_prediction,
        periods=periods,
    )
