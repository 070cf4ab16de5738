"""Travel-time routing: snap points onto streets and rank units by ETA.

Two travel modes share one :class:`StreetNetwork`: ``walk`` (booths and foot patrols, 1.4 m/s on
every walkable segment, one-ways ignored) and ``drive`` (car patrols, ``maxspeed`` or the road
type's default, one-ways respected). Each mode keeps only its largest connected component
(strongly connected for cars), so every unit can reach every snapped alert.

ETA of a unit for an alert = off-network leg of the unit (straight line from its position to its
snapped point, at walking speed) + network travel time from that snapped point to the alert's
snapped point + the alert's off-network leg (at walking speed).

:meth:`Router.recommend` runs one Dijkstra *backwards from the alert* over both modes' reversed
graphs laid side by side (walkers and cars each hang off the street nodes next to them), and stops
as soon as the ``k`` best ETAs can no longer improve. Its cost grows with the area holding the ``k``
nearest units, not with the number of units or the size of the city; moving a unit is an O(1)
index update.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from geo._search import reverse_search, warm_up
from geo.graph import Mode, ModeGraph
from geo.network import StreetNetwork

__all__ = ["UNIT_MODES", "Mode", "OutsideServiceArea", "Recommendation", "Router", "Snap"]

#: Which network each kind of unit moves on.
UNIT_MODES: dict[str, Mode] = {"booth": "walk", "foot": "walk", "car": "drive"}


class OutsideServiceArea(ValueError):
    """A point lies farther from every street than the router's ``max_snap_m``."""

    def __init__(self, lat: float, lon: float, distance_m: float, max_snap_m: float) -> None:
        self.lat, self.lon = lat, lon
        self.distance_m = distance_m
        self.max_snap_m = max_snap_m
        super().__init__(
            f"point ({lat:.6f}, {lon:.6f}) is {distance_m:.0f} m from the nearest street, "
            f"beyond the service-area limit of {max_snap_m:.0f} m"
        )


@dataclass(frozen=True, slots=True)
class Snap:
    """Where a point meets the street network of one mode.

    ``segment`` indexes the network's segments; the snapped point lies at ``fraction`` of the way
    from the segment's ``u`` node to its ``v`` node, ``distance_m`` from the original point.
    """

    mode: Mode
    segment: int
    fraction: float
    distance_m: float
    lat: float
    lon: float


@dataclass(frozen=True, slots=True)
class Recommendation:
    """A unit ranked for an alert: its estimated time of arrival and the length of its path."""

    unit_id: str
    unit_kind: str
    eta_s: float
    distance_m: float


@dataclass(slots=True)
class _Unit:
    unit_id: str
    kind: str
    mode: Mode
    snap: Snap
    # (node, time_s, length_m) from the unit's own position to each end node it can leave by.
    exits: tuple[tuple[int, float, float], ...]
    lat: float
    lon: float


class _Layers:
    """Both modes' reverse graphs side by side, searched as one.

    Walking nodes keep their numbers ``0..n-1``; driving nodes are ``n..2n-1``; no street joins
    the two layers. Seeding a search with the alert's entries on both layers (each with that
    mode's off-street leg) and hanging walkers and cars on their own layer lets one Dijkstra rank
    both at once: it expands whichever layer is nearer, and stops when the ``k`` best ETAs of all
    units are final. A fleet with few cars no longer searches half the city for its third car
    when walkers are closer.
    """

    def __init__(self, walk: ModeGraph, drive: ModeGraph, n: int) -> None:
        self.n = n
        self.offset: dict[Mode, int] = {"walk": 0, "drive": n}
        self.indptr = np.concatenate([walk.indptr[:-1], drive.indptr + walk.indptr[-1]]).astype(np.int64)
        self.indices = np.concatenate([walk.indices, drive.indices + n]).astype(np.int64)
        self.wt = np.concatenate([walk.wt, drive.wt])
        self.wl = np.concatenate([walk.wl, drive.wl])
        # Work arrays of the compiled search, reused across searches (see geo._search).
        self.gen = 0
        self.state = np.zeros((2 * n, 2))  # (time to the alert, generation) per node
        self.trail = np.zeros((2 * n, 2))  # (length to the alert, next node towards it) per node
        cap = self.indices.size + 16
        self.heap_k = np.empty(cap)
        self.heap_n = np.empty(cap, dtype=np.int64)

    def search(
        self,
        seeds: list[tuple[int, float, float]],
        index: _UnitIndex,
        direct: list[tuple[int, float, float]],
        k: int,
    ) -> tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.float64], int]:
        """The compiled reverse search from ``seeds`` (callers hold the router's lock)."""
        self.gen += 1
        seed = np.array(seeds, dtype=np.float64).reshape(-1, 3)
        near = np.array(direct, dtype=np.float64).reshape(-1, 3)
        found: tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.float64], int] = reverse_search(
            self.indptr,
            self.indices,
            self.wt,
            self.wl,
            self.state,
            self.trail,
            self.gen,
            seed[:, 0].astype(np.int64),
            seed[:, 1].copy(),
            seed[:, 2].copy(),
            index.head,
            index.nxt,
            index.entry_slot,
            index.entry_t,
            index.entry_l,
            near[:, 0].astype(np.int64),
            near[:, 1].copy(),
            near[:, 2].copy(),
            index.best_t,
            index.best_l,
            index.best_gen,
            self.heap_k,
            self.heap_n,
            k,
            math.inf,
            index.skip,
        )
        return found

    def reached(self, node: int) -> bool:
        """Whether the last search reached ``node``."""
        return bool(self.state[node, 1] == self.gen)


class _UnitIndex:
    """Units of one mode hung off street nodes, in arrays the compiled search reads.

    A unit has a *slot*; its (up to two) exits are entries ``2 * slot`` and ``2 * slot + 1``,
    chained per node in a doubly linked list (``head``/``nxt``/``prv``) so that a move is O(1).
    """

    # Per entry (two per slot) and per slot; set and grown by _alloc.
    nxt: NDArray[np.int64]
    prv: NDArray[np.int64]
    entry_node: NDArray[np.int64]
    entry_t: NDArray[np.float64]
    entry_l: NDArray[np.float64]
    best_t: NDArray[np.float64]
    best_l: NDArray[np.float64]
    best_gen: NDArray[np.int64]
    skip: NDArray[np.bool_]

    def __init__(self, n_nodes: int, capacity: int = 64) -> None:
        self.head = np.full(n_nodes, -1, dtype=np.int64)
        self.slot_of: dict[str, int] = {}
        self.unit_at: list[str | None] = []
        self.free: list[int] = []
        self._alloc(capacity)

    def _alloc(self, capacity: int) -> None:
        """Grow the per-slot arrays to ``capacity`` slots (two entries per slot)."""
        old = len(self.unit_at)
        grow = capacity - old

        def grown(name: str, fill: float, dtype: type, per_slot: int) -> NDArray[Any]:
            tail: NDArray[Any] = np.full(grow * per_slot, fill, dtype=dtype)
            return tail if old == 0 else np.concatenate([getattr(self, name), tail])

        for name, fill, dtype, per_slot in (
            ("nxt", -1, np.int64, 2),
            ("prv", -1, np.int64, 2),
            ("entry_node", -1, np.int64, 2),
            ("entry_t", math.inf, np.float64, 2),
            ("entry_l", math.inf, np.float64, 2),
            ("best_t", math.inf, np.float64, 1),
            ("best_l", math.inf, np.float64, 1),
            ("best_gen", 0, np.int64, 1),
            ("skip", False, np.bool_, 1),
        ):
            setattr(self, name, grown(name, fill, dtype, per_slot))
        self.entry_slot = np.repeat(np.arange(capacity, dtype=np.int64), 2)
        self.unit_at.extend([None] * grow)
        self.free.extend(range(capacity - 1, old - 1, -1))

    def __len__(self) -> int:
        return len(self.slot_of)

    def add(self, unit_id: str, exits: tuple[tuple[int, float, float], ...]) -> None:
        if not self.free:
            self._alloc(2 * len(self.unit_at))
        slot = self.free.pop()
        self.slot_of[unit_id] = slot
        self.unit_at[slot] = unit_id
        for e, (node, t, ln) in enumerate(exits[:2]):
            entry = 2 * slot + e
            self.entry_node[entry] = node
            self.entry_t[entry] = t
            self.entry_l[entry] = ln
            first = self.head[node]
            self.nxt[entry] = first
            self.prv[entry] = -1
            if first >= 0:
                self.prv[first] = entry
            self.head[node] = entry

    def remove(self, unit_id: str) -> None:
        slot = self.slot_of.pop(unit_id, None)
        if slot is None:
            return
        for entry in (2 * slot, 2 * slot + 1):
            node = self.entry_node[entry]
            if node < 0:
                continue
            before, after = self.prv[entry], self.nxt[entry]
            if before >= 0:
                self.nxt[before] = after
            else:
                self.head[node] = after
            if after >= 0:
                self.prv[after] = before
            self.entry_node[entry] = -1
            self.nxt[entry] = self.prv[entry] = -1
        self.unit_at[slot] = None
        self.free.append(slot)


class Router:
    """Rank units by travel time on streets, with units that move.

    Parameters
    ----------
    network
        The city's streets.
    max_snap_m
        A point farther than this from every street is outside the service area.
    walk_speed_mps
        Walking speed, for foot patrols, booth officers and every off-network leg.

    Examples
    --------
    >>> from geo import generate_city
    >>> router = Router(generate_city(n_nodes=400, seed=1))
    >>> lat, lon = router.network.center
    >>> _ = router.place_unit("booth-1", "booth", lat, lon)
    >>> [r.unit_id for r in router.recommend(lat, lon, k=1)]
    ['booth-1']
    """

    def __init__(self, network: StreetNetwork, *, max_snap_m: float = 500.0, walk_speed_mps: float = 1.4) -> None:
        if max_snap_m <= 0 or walk_speed_mps <= 0:
            msg = f"max_snap_m and walk_speed_mps must be positive, got {max_snap_m} and {walk_speed_mps}"
            raise ValueError(msg)
        self.network = network
        self.max_snap_m = float(max_snap_m)
        self.walk_speed_mps = float(walk_speed_mps)
        self._graphs: dict[Mode, ModeGraph] = {
            "walk": ModeGraph(network, "walk", walk_speed_mps),
            "drive": ModeGraph(network, "drive", walk_speed_mps),
        }
        if self._graphs["walk"].size == 0:
            msg = f"{network.label!r} has no walkable streets: nothing to route on"
            raise ValueError(msg)
        self._layers = _Layers(self._graphs["walk"], self._graphs["drive"], network.n_nodes)
        self._units: dict[str, _Unit] = {}
        self._index = _UnitIndex(2 * network.n_nodes)
        self._count: dict[Mode, int] = {"walk": 0, "drive": 0}
        # Per mode, per local segment: units standing on it (for alerts on the same segment).
        self._on_segment: dict[Mode, dict[int, set[str]]] = {"walk": {}, "drive": {}}
        self._lock = threading.RLock()
        self._named: (
            tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]
            | None
        ) = None
        warm_up()

    # -- graphs and snapping -------------------------------------------------------------------
    def graph(self, mode: Mode) -> ModeGraph:
        """The street graph the router searches for ``mode``, to read (not to change).

        Raises
        ------
        ValueError
            When ``mode`` is neither ``"walk"`` nor ``"drive"``.
        """
        g = self._graphs.get(mode)
        if g is None:
            msg = f"unknown mode {mode!r}; expected 'walk' or 'drive'"
            raise ValueError(msg)
        return g

    def graph_size(self, mode: Mode) -> tuple[int, int]:
        """``(nodes, segments)`` in the mode's connected street graph."""
        g = self._graphs[mode]
        return (g.n_nodes if g.size else 0), g.size

    def snap(self, lat: float, lon: float, mode: Mode = "walk", *, check_area: bool = True) -> Snap:
        """Snap a WGS 84 point onto the nearest street of ``mode`` (a grid index, not a scan).

        Raises
        ------
        OutsideServiceArea
            When ``check_area`` and the point is farther than ``max_snap_m`` from that street.
        ValueError
            When the coordinates are not a WGS 84 position.
        """
        return self._snap_xy(lat, lon, *self._project(lat, lon), mode, check_area=check_area)

    def _project(self, lat: float, lon: float) -> tuple[float, float]:
        if not (
            isinstance(lat, (int, float))
            and isinstance(lon, (int, float))
            and math.isfinite(lat)
            and math.isfinite(lon)
            and -90 <= lat <= 90
            and -180 <= lon <= 180
        ):
            msg = f"not a WGS 84 coordinate: lat={lat!r}, lon={lon!r}"
            raise ValueError(msg)
        return self.network.project_point(float(lat), float(lon))

    def _snap_xy(self, lat: float, lon: float, x: float, y: float, mode: Mode, *, check_area: bool) -> Snap:
        g = self._graphs[mode]
        if g.size == 0:
            msg = f"{self.network.label!r} has no {mode} streets"
            raise ValueError(msg)
        i, t, dist, sx, sy = g.snap_xy(x, y)
        if check_area and dist > self.max_snap_m:
            raise OutsideServiceArea(lat, lon, dist, self.max_snap_m)
        slat, slon = self.network.unproject_point(sx, sy)
        return Snap(mode, int(g.segments[i]), t, dist, slat, slon)

    def street_name(self, lat: float, lon: float, *, max_m: float | None = None) -> str | None:
        """The name of the nearest named street (OSM ``name``) within ``max_m`` (default ``max_snap_m``).

        Unnamed segments (service roads, footpaths) are passed over, so a point on a nameless
        driveway is told the street it leads off. None when no named street is that close, or the
        network keeps no names (a generated city, an old GraphML file).

        Raises
        ------
        ValueError
            When the coordinates are not a WGS 84 position.
        """
        x, y = self._project(lat, lon)
        named = self._named_segments()
        if named is None:
            return None
        index, ax, ay, bx, by = named
        dx, dy = bx - ax, by - ay
        length2 = dx * dx + dy * dy
        with np.errstate(invalid="ignore", divide="ignore"):
            t = np.where(length2 > 0, ((x - ax) * dx + (y - ay) * dy) / length2, 0.0)
        t = np.clip(t, 0.0, 1.0)
        dist2 = (ax + t * dx - x) ** 2 + (ay + t * dy - y) ** 2
        best = int(np.argmin(dist2))
        limit = self.max_snap_m if max_m is None else float(max_m)
        if float(dist2[best]) > limit * limit:
            return None
        assert self.network.seg_name is not None  # _named_segments found names
        return str(self.network.seg_name[index[best]])

    def _named_segments(
        self,
    ) -> (
        tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]
        | None
    ):
        """Named segments' indices and end points in the metric plane (built on first use)."""
        names = self.network.seg_name
        if names is None:
            return None
        if self._named is None:
            index = np.flatnonzero(names != "").astype(np.int64)
            net = self.network
            u, v = net.seg_u[index], net.seg_v[index]
            self._named = (index, net.node_x[u], net.node_y[u], net.node_x[v], net.node_y[v])
        return self._named if self._named[0].size else None

    def in_service_area(self, lat: float, lon: float) -> bool:
        """Whether a point is within ``max_snap_m`` of a walkable street."""
        try:
            self.snap(lat, lon, "walk")
        except OutsideServiceArea:
            return False
        return True

    def _local(self, snap: Snap) -> tuple[ModeGraph, int]:
        g = self._graphs[snap.mode]
        return g, int(np.searchsorted(g.segments, snap.segment))

    # -- units -------------------------------------------------------------------------------
    def place_unit(self, unit_id: str, kind: str, lat: float, lon: float) -> Snap:
        """Add a unit or move it to a new position; it becomes recommendable.

        Raises
        ------
        ValueError
            For an unknown ``kind`` or a position that is not WGS 84.
        OutsideServiceArea
            When the position is farther than ``max_snap_m`` from the unit's streets; the unit
            then keeps its previous position, if it had one.
        """
        mode = UNIT_MODES.get(kind)
        if mode is None:
            msg = f"unknown unit kind {kind!r}; expected one of {sorted(UNIT_MODES)}"
            raise ValueError(msg)
        snap = self.snap(lat, lon, mode)
        g, i = self._local(snap)
        leg_t = snap.distance_m / self.walk_speed_mps
        off = self._layers.offset[mode]
        exits = tuple((off + n, leg_t + t, snap.distance_m + ln) for n, t, ln in g.exits(i, snap.fraction))
        with self._lock:
            self._forget(unit_id)
            self._units[unit_id] = _Unit(unit_id, kind, mode, snap, exits, float(lat), float(lon))
            self._index.add(unit_id, exits)
            self._count[mode] += 1
            self._on_segment[mode].setdefault(i, set()).add(unit_id)
        return snap

    def remove_unit(self, unit_id: str) -> None:
        """Stop recommending a unit (assigned, off duty, offline). Unknown ids are ignored."""
        with self._lock:
            self._forget(unit_id)

    def _forget(self, unit_id: str) -> None:
        unit = self._units.pop(unit_id, None)
        if unit is None:
            return
        self._index.remove(unit_id)
        self._count[unit.mode] -= 1
        _, i = self._local(unit.snap)
        on_seg = self._on_segment[unit.mode].get(i)
        if on_seg is not None:
            on_seg.discard(unit_id)
            if not on_seg:
                del self._on_segment[unit.mode][i]

    @property
    def unit_ids(self) -> list[str]:
        """Ids of the units that can be recommended."""
        with self._lock:
            return sorted(self._units)

    # -- recommendation -----------------------------------------------------------------------
    def recommend(
        self, lat: float, lon: float, *, k: int | None = 3, exclude: Collection[str] = ()
    ) -> list[Recommendation]:
        """The ``k`` units with the shortest ETA to a point (all reachable units if ``k`` is None).

        Ties are broken by unit id. Units in ``exclude`` (e.g. booths outside their staffing hours)
        are passed over inside the search, which goes on to the next ones: asking for ``k`` plus
        the excluded and filtering afterwards would search much further.

        Raises
        ------
        OutsideServiceArea
            When the point is farther than ``max_snap_m`` from every walkable street.
        """
        if k is not None and k < 1:
            msg = f"k must be a positive number of units or None, got {k!r}"
            raise ValueError(msg)
        x, y = self._project(lat, lon)
        walk_snap = self._snap_xy(lat, lon, x, y, "walk", check_area=True)
        with self._lock:
            if not self._units:
                return []
            snaps = [walk_snap] if self._count["walk"] else []
            if self._count["drive"]:
                snaps.append(self._snap_xy(lat, lon, x, y, "drive", check_area=False))
            skipped = [self._index.slot_of[u] for u in exclude if u in self._units]
            left = len(self._units) - len(skipped)
            if left <= 0:
                return []
            want = left if k is None else min(k, left)
            self._index.skip[skipped] = True
            try:
                slots, times, lengths, n = self._layers.search(
                    self._seeds(snaps), self._index, self._direct(snaps), want
                )
            finally:
                self._index.skip[skipped] = False
            found = [
                Recommendation(uid, self._units[uid].kind, t, ln)
                for uid, t, ln in zip(
                    (self._index.unit_at[s] for s in slots[:n].tolist()),
                    times[:n].tolist(),
                    lengths[:n].tolist(),
                    strict=True,
                )
            ]
        found.sort(key=lambda r: (r.eta_s, r.unit_id))
        return found

    def _seeds(self, snaps: list[Snap]) -> list[tuple[int, float, float]]:
        """Search seeds: the nodes from which each mode reaches the point, with the off-street leg."""
        seeds = []
        for snap in snaps:
            g, i = self._local(snap)
            off = self._layers.offset[snap.mode]
            leg_t = snap.distance_m / self.walk_speed_mps
            for node, t, ln in g.entries(i, snap.fraction):
                seeds.append((off + node, t + leg_t, ln + snap.distance_m))
        return seeds

    def _direct(self, snaps: list[Snap], only: str | None = None) -> list[tuple[int, float, float]]:
        """(slot, time, length) of units on the point's own segment that reach it along that segment."""
        direct = []
        for snap in snaps:
            g, i = self._local(snap)
            for unit_id in self._on_segment[snap.mode].get(i, ()):
                if only is not None and unit_id != only:
                    continue
                unit = self._units[unit_id]
                along = g.along(i, unit.snap.fraction, snap.fraction)
                if along is not None:
                    legs = unit.snap.distance_m + snap.distance_m
                    slot = self._index.slot_of[unit_id]
                    direct.append((slot, along[0] + legs / self.walk_speed_mps, along[1] + legs))
        return direct

    def route(self, unit_id: str, lat: float, lon: float) -> list[tuple[float, float]]:
        """The fastest path of a placed unit to a point, as ``(lat, lon)`` vertices.

        From the unit's reported position, onto its street, along the streets of its mode to the
        point's snapped position, and off the street to the point. Its travel time is the unit's
        ETA from :meth:`recommend`.

        Raises
        ------
        KeyError
            When the unit is not placed (or was removed).
        OutsideServiceArea
            When the point is farther than ``max_snap_m`` from every walkable street.
        ValueError
            When the unit cannot reach the point on its streets.
        """
        self.snap(lat, lon, "walk")  # the service-area check, as for recommend
        with self._lock:
            unit = self._units.get(unit_id)
            if unit is None:
                msg = f"unit {unit_id!r} is not on the map (never placed, or removed)"
                raise KeyError(msg)
            snap = self.snap(lat, lon, unit.mode, check_area=False)
            solo = _UnitIndex(2 * self.network.n_nodes, capacity=1)
            solo.add(unit_id, unit.exits)
            direct = [(0, t, ln) for _, t, ln in self._direct([snap], only=unit_id)]
            _, times, _, n = self._layers.search(self._seeds([snap]), solo, direct, 1)
            if n == 0:
                msg = f"unit {unit_id!r} cannot reach ({lat:.6f}, {lon:.6f}) on the {unit.mode} streets"
                raise ValueError(msg)
            path = [(unit.snap.lat, unit.snap.lon)]
            if not direct or direct[0][1] > times[0] + 1e-9:  # the path leaves the unit's segment
                layers = self._layers
                node = min(
                    (e for e in unit.exits if layers.reached(e[0])),
                    key=lambda e: layers.state[e[0], 0] + e[1],
                )[0]
                while node >= 0:  # the trail leads from node to node towards the point
                    at = node % layers.n
                    path.append((float(self.network.node_lat[at]), float(self.network.node_lon[at])))
                    node = int(layers.trail[node, 1])
        path.append((snap.lat, snap.lon))
        return [(unit.lat, unit.lon), *path, (float(lat), float(lon))]
