"""Hotspot estimators and the rolling-window backtest, on the real Toronto incidents."""

from __future__ import annotations

import numpy as np
import pytest
from support import toronto_all, toronto_extract, toronto_graph

from patrol_planner import COVERAGES, DEFAULT_ESTIMATOR, Grid, evaluate, make_estimator
from patrol_planner.hotspots import EventsXY, Segments

DAY = 86_400.0


def _events(n: int = 400, seed: int = 1) -> EventsXY:
    rng = np.random.default_rng(seed)
    return EventsXY(rng.uniform(1000, 2000, n), rng.uniform(1000, 2000, n), rng.uniform(0, 200 * DAY, n))


def test_naive_counts_are_the_last_period() -> None:
    ev = _events()
    grid = Grid.covering(ev.x, ev.y, cell_m=100.0, margin_m=500)
    at = 150 * DAY
    surf = make_estimator("naive").predict(ev, at, grid)
    last = (ev.t_s < at) & (ev.t_s >= at - 30 * DAY)
    np.testing.assert_array_equal(surf.cells, grid.histogram(ev.x[last], ev.y[last]))


@pytest.mark.parametrize("name", ["kde", "spacetime"])
def test_kernel_estimators_spread_without_losing_mass(name: str) -> None:
    ev = _events()
    grid = Grid.covering(ev.x, ev.y, cell_m=50.0, margin_m=600)  # margin beyond every bandwidth
    at = 200 * DAY
    surf = make_estimator(name).predict(ev, at, grid)
    if name == "kde":
        assert surf.cells.sum() == pytest.approx(np.count_nonzero(ev.t_s < at))
    else:
        ages = (at - ev.t_s) / DAY
        assert surf.cells.sum() == pytest.approx(np.sum(0.5 ** (ages / 180.0)))
    assert np.count_nonzero(surf.cells) > np.count_nonzero(grid.histogram(ev.x, ev.y))


def test_prospective_weights_recent_events_more() -> None:
    ev = EventsXY(np.array([0.0, 1000.0]), np.array([0.0, 0.0]), np.array([55 * DAY, 5 * DAY]))
    grid = Grid.covering(ev.x, ev.y, cell_m=50.0, margin_m=500)
    surf = make_estimator("prospective").predict(ev, 56 * DAY, grid)
    recent, old = surf.cells[grid.cell_of(ev.x, ev.y)]
    # 1 week ago (0 whole weeks -> weight 1) against 7 whole weeks ago (weight 1/8).
    assert recent == pytest.approx(8 * old)


def test_network_estimator_needs_a_network() -> None:
    ev = _events()
    grid = Grid.covering(ev.x, ev.y, cell_m=100.0)
    with pytest.raises(ValueError, match="needs a street network"):
        make_estimator("network").predict(ev, 100 * DAY, grid)


def test_network_estimator_ranks_the_streets_where_crime_was() -> None:
    graph = toronto_graph()
    inc, _ = toronto_extract()
    from patrol_planner.evaluation import events_xy

    ev = events_xy(inc, graph.network.crs, graph)
    grid = Grid.covering(graph.mid_x, graph.mid_y, cell_m=100.0)
    at = float(ev.t_s.max()) + 1
    surf = make_estimator("network").predict(ev, at, grid, Segments.from_graph(graph))
    assert surf.segment_density is not None and surf.segment_density.shape == graph.u.shape
    recent = ev.t_s >= at - 365 * DAY
    seg_with_crime = np.unique(ev.segment[recent])
    assert np.all(surf.segment_density[seg_with_crime] > 0)
    # Risk spreads along streets only: exactly the segments with an end within 150 m of walking
    # from an incident's node are scored.
    node = np.where(ev.fraction[recent] <= 0.5, graph.u[ev.segment[recent]], graph.v[ev.segment[recent]])
    _, reached, _ = graph.bounded_times(np.unique(node), limit_s=150.0 / graph.walk_speed_mps * (1 - 1e-9))
    near = np.zeros(graph.n_nodes, dtype=bool)
    near[reached] = True
    np.testing.assert_array_equal(surf.segment_density > 0, near[graph.u] | near[graph.v])


def test_backtest_on_the_street_extract_has_the_json_shape() -> None:
    inc, _ = toronto_extract()
    ev = evaluate(inc, graph=toronto_graph(), n_windows=12, cell_m=100.0)
    d = ev.as_dict()
    assert d["windows"] == 12 and d["default"] == DEFAULT_ESTIMATOR
    assert set(d["estimators"]) == {"naive", "kde", "prospective", "spacetime", "network"}
    keys = {str(c) for c in COVERAGES}
    for name, e in d["estimators"].items():
        assert set(e["hit_rate"]) == keys and set(e["pai"]) == keys, name
        assert set(e["pai_length"]) == keys
        for c in keys:
            assert 0 <= e["hit_rate"][c] <= d["oracle"]["hit_rate"][c] + 1e-9
            # PAI is the hit rate over the flagged area share (k cells of the study area).
            k = max(1, round(int(c) / 100 * ev.area_cells))
            assert e["pai"][c] == pytest.approx(e["hit_rate"][c] / (k / ev.area_cells), rel=1e-3)
    assert set(d["oracle"]["pai"]) == keys and set(d["oracle"]["pai_length"]) == keys
    assert d["street_length_km"] == pytest.approx(toronto_graph().total_length_m / 1000, rel=1e-3)
    assert len(ev.table()) == 2 + 5 + 1


def test_default_estimator_wins_on_all_of_toronto_and_beats_naive_counts() -> None:
    inc, _ = toronto_all()
    d = evaluate(inc, n_windows=12, cell_m=100.0).as_dict()
    assert d["windows"] == 12 and d["events_per_window"] > 1500
    assert d["winner"] == d["default"] == DEFAULT_ESTIMATOR
    best, naive = d["estimators"][DEFAULT_ESTIMATOR], d["estimators"]["naive"]
    for c in ("1", "5", "10"):
        assert best["hit_rate"][c] > naive["hit_rate"][c], c
        assert best["pai"][c] < d["oracle"]["pai"][c]


def test_a_night_backtest_uses_only_night_events() -> None:
    inc, _ = toronto_all()
    ev = evaluate(inc, n_windows=12, hours=(22, 6), estimators=("naive", "spacetime"))
    night = (inc.hour >= 22) | (inc.hour < 6)
    start, end = ev.windows[0][0], ev.windows[-1][1]
    in_time = (inc.occurred_at >= start) & (inc.occurred_at < end)
    assert sum(ev.n_events) == int(np.count_nonzero(night & in_time))
    assert ev.as_dict()["hours"] == "22:00-06:00"
