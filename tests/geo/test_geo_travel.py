"""geo's public graph searches and snapper against independent references.

The references share no code with geo's searches: networkx Dijkstra on graphs rebuilt from the
network's segments by :func:`support.mode_edges`, and a scan over every segment for snapping.
"""

from __future__ import annotations

import itertools
import math
from functools import lru_cache

import networkx as nx
import numpy as np
import pytest
from support import TORONTO_XML, mode_edges

from geo import (
    ModeGraph,
    Router,
    SegmentSnaps,
    StreetNetwork,
    generate_city,
    load_network,
    reachable,
    shortest_paths,
    travel_times,
)


@lru_cache(maxsize=1)
def _toronto() -> Router:
    return Router(load_network(TORONTO_XML))


@lru_cache(maxsize=1)
def _city() -> Router:
    return Router(generate_city(n_nodes=2_500, seed=4))


@lru_cache(maxsize=4)
def _oracle(which: str, mode: str) -> nx.DiGraph:
    """A directed networkx graph of the mode, fastest of parallel segments, built from the segments."""
    router = _toronto() if which == "toronto" else _city()
    g = nx.DiGraph()
    for u, v, t, _ln, fwd, back in mode_edges(router.network, mode, router.walk_speed_mps):
        for a, b, ok in ((u, v, fwd), (v, u, back)):
            if ok and (not g.has_edge(a, b) or t < g[a][b]["t"]):
                g.add_edge(a, b, t=t)
    return g


def _times(g: nx.DiGraph, source: int, cutoff: float | None = None) -> dict[int, float]:
    if source not in g:
        return {source: 0.0}
    return nx.single_source_dijkstra_path_length(g, source, cutoff=cutoff, weight="t")


CASES = [("toronto", "walk"), ("toronto", "drive"), ("city", "drive")]


@pytest.mark.parametrize(("which", "mode"), CASES)
def test_travel_times_match_networkx_many_to_many(which: str, mode: str) -> None:
    router = _toronto() if which == "toronto" else _city()
    graph = router.graph(mode)
    oracle = _oracle(which, mode)
    rng = np.random.default_rng(7)
    nodes = np.array(sorted(oracle.nodes))
    sources = rng.choice(nodes, 12, replace=False)
    targets = np.concatenate([rng.choice(nodes, 40, replace=False), sources[:3], [int(sources[0])]])
    got = travel_times(graph, sources, targets)
    assert got.shape == (sources.size, targets.size) and got.dtype == np.float64
    for i, s in enumerate(sources.tolist()):
        want = _times(oracle, s)
        for j, t in enumerate(targets.tolist()):
            assert got[i, j] == pytest.approx(want.get(t, math.inf), rel=1e-9, abs=1e-9)
        if i < 3:
            assert got[i, targets.tolist().index(s)] == 0.0
    full = travel_times(graph, sources[:2])
    assert full.shape == (2, router.network.n_nodes)
    for i, s in enumerate(sources[:2].tolist()):
        want = _times(oracle, s)
        reached = np.flatnonzero(np.isfinite(full[i]))
        assert set(reached.tolist()) == set(want)
        assert full[i, reached] == pytest.approx([want[n] for n in reached.tolist()], rel=1e-9, abs=1e-9)


def test_travel_times_split_over_threads_are_the_one_thread_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    """Enough sources run on every core (issue 14): the rows are those of one search per source."""
    import geo.travel

    graph = _city().graph("walk")
    oracle = _oracle("city", "walk")
    nodes = np.array(sorted(oracle.nodes))
    sources = np.random.default_rng(3).choice(nodes, 70, replace=False)
    split = travel_times(graph, sources, sources, cutoff_s=600.0)
    monkeypatch.setattr(geo.travel, "MIN_SOURCES_PER_THREAD", 10**9)
    one = travel_times(graph, sources, sources, cutoff_s=600.0)
    assert np.array_equal(split, one) and np.isfinite(split).sum() > 70
    for i in (0, 35, 69):
        want = _times(oracle, int(sources[i]))
        assert split[i] == pytest.approx([w if (w := want.get(int(t), math.inf)) <= 600 else math.inf for t in sources])


@pytest.mark.parametrize(("which", "mode"), CASES)
def test_travel_times_cutoff_keeps_what_is_within_and_only_that(which: str, mode: str) -> None:
    router = _toronto() if which == "toronto" else _city()
    graph = router.graph(mode)
    oracle = _oracle(which, mode)
    rng = np.random.default_rng(11)
    nodes = np.array(sorted(oracle.nodes))
    sources = rng.choice(nodes, 6, replace=False)
    uncut = travel_times(graph, sources, nodes)
    cutoff = float(np.median(uncut[np.isfinite(uncut)]))
    got = travel_times(graph, sources, nodes, cutoff_s=cutoff)
    np.testing.assert_array_equal(got, np.where(uncut <= cutoff, uncut, np.inf))
    assert np.isinf(got).any() and np.isfinite(got).any()
    for i, s in enumerate(sources.tolist()):
        within = _times(oracle, s, cutoff=cutoff)
        assert set(nodes[np.isfinite(got[i])].tolist()) == set(within)


def test_travel_times_from_outside_the_component_and_bad_ids() -> None:
    router = _toronto()
    graph = router.graph("drive")
    outside = int(np.setdiff1d(np.arange(router.network.n_nodes), np.concatenate([graph.u, graph.v]))[0])
    inside = int(graph.u[0])
    got = travel_times(graph, [outside, inside], [outside, inside])
    assert got[0, 0] == 0.0 and got[0, 1] == math.inf and got[1, 0] == math.inf and got[1, 1] == 0.0
    with pytest.raises(ValueError, match="node ids"):
        travel_times(graph, [router.network.n_nodes])
    with pytest.raises(ValueError, match="node ids"):
        travel_times(graph, [0], [-1])
    assert travel_times(graph, np.zeros(0, dtype=np.int64), [inside]).shape == (0, 1)


def test_reachable_groups_of_seeds_are_one_multi_source_search() -> None:
    router = _toronto()
    graph = router.graph("walk")
    oracle = _oracle("toronto", "walk")
    rng = np.random.default_rng(3)
    nodes = np.array(sorted(oracle.nodes))
    seeds = rng.choice(nodes, 5, replace=False)
    seed_s = rng.uniform(0, 60, 5)
    group = np.array([1, 0, 1, 0, 1])
    cutoff = 400.0
    grp, node, t = reachable(graph, seeds, cutoff_s=cutoff, seed_s=seed_s, group=group)
    assert set(np.unique(grp).tolist()) == {0, 1}
    assert np.all(np.diff(grp) >= 0) and np.all(t <= cutoff)
    for g in (0, 1):
        best: dict[int, float] = {}
        for s, s0 in zip(seeds[group == g].tolist(), seed_s[group == g].tolist(), strict=True):
            for n, d in _times(oracle, s).items():
                if s0 + d <= cutoff:
                    best[n] = min(best.get(n, math.inf), s0 + d)
        mine = dict(zip(node[grp == g].tolist(), t[grp == g].tolist(), strict=True))
        assert set(mine) == set(best)
        assert [mine[n] for n in best] == pytest.approx(list(best.values()), rel=1e-9, abs=1e-9)
    only = nodes[:50]
    grp2, node2, t2 = reachable(graph, seeds, cutoff_s=cutoff, seed_s=seed_s, group=group, targets=only)
    keep = np.isin(node, only)
    np.testing.assert_array_equal(grp2, grp[keep])
    np.testing.assert_array_equal(node2, node[keep])
    np.testing.assert_array_equal(t2, t[keep])


@pytest.mark.parametrize(("which", "mode"), CASES)
def test_shortest_paths_are_paths_of_the_fastest_time(which: str, mode: str) -> None:
    router = _toronto() if which == "toronto" else _city()
    graph = router.graph(mode)
    oracle = _oracle(which, mode)
    rng = np.random.default_rng(5)
    nodes = np.array(sorted(oracle.nodes))
    pairs = [(int(a), int(b)) for a, b in rng.choice(nodes, (25, 2))]
    pairs += [(pairs[0][0], int(n)) for n in rng.choice(nodes, 5)] + [(pairs[1][0], pairs[1][0])]
    paths = shortest_paths(graph, pairs)
    assert len(paths) == len(pairs)
    for (a, b), path in zip(pairs, paths, strict=True):
        assert path[0] == a and path[-1] == b
        walked = sum(oracle[p][q]["t"] for p, q in itertools.pairwise(path))
        assert walked == pytest.approx(nx.dijkstra_path_length(oracle, a, b, weight="t"), rel=1e-9, abs=1e-9)
    assert paths[-1] == [pairs[-1][0]]
    assert shortest_paths(graph, []) == []


def test_shortest_paths_refuse_an_unreachable_target() -> None:
    router = _toronto()
    graph = router.graph("drive")
    outside = int(np.setdiff1d(np.arange(router.network.n_nodes), np.concatenate([graph.u, graph.v]))[0])
    with pytest.raises(ValueError, match="no drive path"):
        shortest_paths(graph, [(int(graph.u[0]), int(graph.v[0])), (int(graph.u[0]), outside)])


def test_one_way_streets_make_drive_times_asymmetric_and_forward() -> None:
    # 0 -> 1 one-way, 1 - 2 two-way, 2 -> 0 one-way: from 0 to 2 via 1, from 1 to 0 via 2.
    net = StreetNetwork.from_arrays(
        [43.2500, 43.2500, 43.2509],
        [76.9000, 76.9012, 76.9006],
        [0, 1, 2],
        [1, 2, 0],
        "residential",
        oneway=[True, False, True],
    )
    graph = Router(net).graph("drive")
    t = graph.time
    got = travel_times(graph, [0, 1], [0, 1, 2])
    assert got[0].tolist() == pytest.approx([0.0, t[0], t[0] + t[1]])
    assert got[1].tolist() == pytest.approx([t[1] + t[2], 0.0, t[1]])
    assert shortest_paths(graph, [(0, 2), (1, 0)]) == [[0, 1, 2], [1, 2, 0]]
    indptr, indices, _, _ = graph.forward_csr()
    fwd = {(a, int(indices[p])) for a in range(3) for p in range(indptr[a], indptr[a + 1])}
    rev = {(int(graph.indices[p]), b) for b in range(3) for p in range(graph.indptr[b], graph.indptr[b + 1])}
    assert fwd == rev == {(0, 1), (1, 2), (2, 1), (2, 0)}


def test_snap_many_is_snap_xy_for_every_point_and_the_nearest_segment() -> None:
    router = _toronto()
    graph = router.graph("walk")
    rng = np.random.default_rng(9)
    x0, x1 = float(min(graph.x0.min(), graph.x1.min())), float(max(graph.x0.max(), graph.x1.max()))
    y0, y1 = float(min(graph.y0.min(), graph.y1.min())), float(max(graph.y0.max(), graph.y1.max()))
    x = rng.uniform(x0 - 300, x1 + 300, 400)
    y = rng.uniform(y0 - 300, y1 + 300, 400)
    x[:4] = [graph.x0[10], 1e8, np.inf, (graph.x0[3] + graph.x1[3]) / 2]  # on a node, very far, infinite, mid-segment
    y[:4] = [graph.y0[10], y0, y0, (graph.y0[3] + graph.y1[3]) / 2]
    snaps = graph.snap_many(x, y)
    assert isinstance(snaps, SegmentSnaps) and snaps.segment.dtype == np.int64
    for k in range(x.size):
        i, t, d, _, _ = graph.snap_xy(float(x[k]), float(y[k]))
        assert (int(snaps.segment[k]), float(snaps.fraction[k]), float(snaps.distance_m[k])) == (i, t, d)
    # Against a scan over every segment: the same distance. (A point over 20 km outside the grid
    # is searched from the grid's nearest point: only the point at 1e8 m, index 1, is.)
    dx, dy = graph.x1 - graph.x0, graph.y1 - graph.y0
    l2 = dx * dx + dy * dy
    for k in np.flatnonzero(np.isfinite(x) & (np.arange(x.size) != 1)):
        f = np.clip(
            np.where(l2 > 0, ((x[k] - graph.x0) * dx + (y[k] - graph.y0) * dy) / np.where(l2 > 0, l2, 1), 0), 0, 1
        )
        dist = np.hypot(graph.x0 + f * dx - x[k], graph.y0 + f * dy - y[k])
        assert snaps.distance_m[k] == pytest.approx(dist.min(), rel=1e-9, abs=1e-6)
        assert dist[snaps.segment[k]] == pytest.approx(dist.min(), rel=1e-9, abs=1e-6)
    assert snaps.distance_m[2] == math.inf
    assert snaps.distance_m[1] > 1e7
    assert snaps.distance_m[3] == pytest.approx(0.0, abs=1e-6) and snaps.segment[3] == 3
    nan = graph.snap_many([np.nan], [y0])
    assert nan.distance_m[0] == math.inf and 0 <= nan.segment[0] < graph.size
    empty = graph.snap_many(np.zeros(0), np.zeros(0))
    assert empty.segment.size == empty.fraction.size == empty.distance_m.size == 0
    with pytest.raises(ValueError, match="same number"):
        graph.snap_many([1.0, 2.0], [1.0])


def test_router_graph_is_the_public_mode_graph() -> None:
    router = _city()
    for mode in ("walk", "drive"):
        g = router.graph(mode)
        assert isinstance(g, ModeGraph) and g.mode == mode
        assert router.graph_size(mode) == (g.n_nodes, g.size)
        assert g.indptr.size == router.network.n_nodes + 1 and g.node_x is router.network.node_x
    with pytest.raises(ValueError, match="unknown mode"):
        router.graph("bike")  # type: ignore[arg-type]
    lat, lon = router.network.center
    snap = router.snap(lat, lon, "drive")
    g = router.graph("drive")
    i = g.local_segment(snap.segment)
    assert int(g.segments[i]) == snap.segment
    missing = int(np.setdiff1d(np.arange(router.network.n_segments), g.segments)[0])
    with pytest.raises(ValueError, match="not in the drive graph"):
        g.local_segment(missing)
