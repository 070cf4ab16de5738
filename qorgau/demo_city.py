"""The demo's real city: the Almaty OSM extract of March 2012 shipped in the package, and its POIs.

SOS buttons go to real schools and hospitals and booths to real police points, found by the
extract's own tags (``amenity=school|hospital|police``, nodes and closed ways); where the demo area
holds too few, street points fill in, and every placement is labelled with what it is.

The extract is © OpenStreetMap contributors, ODbL 1.0 (``qorgau/data/PROVENANCE.md``).
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import osmium

from dispatch import Device, DeviceSite, Unit, UnitKind, write_units
from geo import OutsideServiceArea, Router
from qorgau.simulate import random_street_point

__all__ = [
    "ALMATY_ATTRIBUTION",
    "ALMATY_CENTRE_BBOX",
    "Poi",
    "almaty_extract",
    "almaty_registry",
    "area_circle",
    "find_pois",
    "write_registry",
]

ALMATY_ATTRIBUTION = "© OpenStreetMap contributors (ODbL 1.0)"
ALMATY_CENTRE_BBOX = (43.215, 76.87, 43.285, 76.98)
"""(min_lat, min_lon, max_lat, max_lon): central Almaty, where the demo places its units and buttons."""

AMENITIES = ("school", "hospital", "police")


@dataclass(frozen=True, slots=True)
class Poi:
    """A point of interest from the extract's tags."""

    amenity: str
    osm_type: str
    """``node`` or ``way`` (a closed way: the mean of its nodes)."""
    osm_id: int
    lat: float
    lon: float
    name: str | None

    @property
    def label(self) -> str:
        what = {"school": "School", "hospital": "Hospital", "police": "Police point"}[self.amenity]
        return f"{what}: {self.name}" if self.name else f"{what} (OSM {self.osm_type} {self.osm_id})"


def almaty_extract() -> Path:
    """The packaged Almaty extract (``qorgau/data/almaty_2012-03.osm.pbf``).

    Raises
    ------
    FileNotFoundError
        If the package was installed without its data.
    """
    path = Path(str(resources.files("qorgau") / "data" / "almaty_2012-03.osm.pbf"))
    if not path.is_file():
        msg = f"the Almaty extract is missing from the package at {path}: reinstall qorgau with its package data"
        raise FileNotFoundError(msg)
    return path


class _PoiHandler(osmium.SimpleHandler):  # type: ignore[misc]
    def __init__(self, amenities: tuple[str, ...]) -> None:
        super().__init__()
        self.amenities = amenities
        self.pois: list[Poi] = []

    def _name(self, tags: osmium.osm.TagList) -> str | None:
        return tags.get("name") or tags.get("name:ru") or tags.get("name:kk") or None

    def node(self, n: osmium.osm.Node) -> None:
        amenity = n.tags.get("amenity")
        if amenity in self.amenities and n.location.valid():
            self.pois.append(Poi(amenity, "node", n.id, n.location.lat, n.location.lon, self._name(n.tags)))

    def way(self, w: osmium.osm.Way) -> None:
        amenity = w.tags.get("amenity")
        if amenity not in self.amenities or len(w.nodes) < 2:
            return
        points = [(nd.location.lat, nd.location.lon) for nd in w.nodes if nd.location.valid()]
        if not points:  # clipped: every node is outside the extract
            return
        if w.nodes[0].ref == w.nodes[-1].ref and len(points) > 1:
            points = points[:-1]  # a closed way repeats its first node
        lat = sum(p[0] for p in points) / len(points)
        lon = sum(p[1] for p in points) / len(points)
        self.pois.append(Poi(amenity, "way", w.id, lat, lon, self._name(w.tags)))


def find_pois(path: str | Path, amenities: tuple[str, ...] = AMENITIES) -> list[Poi]:
    """Every node and way of ``path`` tagged ``amenity=`` one of ``amenities``, sorted by type and id."""
    handler = _PoiHandler(amenities)
    handler.apply_file(str(path), locations=True)
    return sorted(handler.pois, key=lambda p: (p.amenity, p.osm_type, p.osm_id))


def _inside(poi: Poi, bbox: tuple[float, float, float, float]) -> bool:
    min_lat, min_lon, max_lat, max_lon = bbox
    return min_lat <= poi.lat <= max_lat and min_lon <= poi.lon <= max_lon


def _reachable(router: Router, poi: Poi, *, mode: str = "walk", max_street_m: float = 250.0) -> bool:
    try:
        return router.snap(poi.lat, poi.lon, mode).distance_m <= max_street_m  # type: ignore[arg-type]
    except OutsideServiceArea:
        return False


def area_circle(bbox: tuple[float, float, float, float]) -> tuple[tuple[float, float], float]:
    """The circle inscribed in ``bbox``: ``((lat, lon), radius_m)`` (where the demo's street points fall)."""
    min_lat, min_lon, max_lat, max_lon = bbox
    centre = ((min_lat + max_lat) / 2, (min_lon + max_lon) / 2)
    km_per_deg_lon = math.cos(math.radians(centre[0]))
    return centre, 0.5 * min(max_lat - min_lat, (max_lon - min_lon) * km_per_deg_lon) * 111_320.0


@dataclass(frozen=True, slots=True)
class Placed:
    """A unit or button and what its place is (``school``, ``hospital``, ``police`` or ``street``)."""

    label: str
    place: str


def almaty_registry(
    router: Router,
    pois: list[Poi],
    *,
    bbox: tuple[float, float, float, float] = ALMATY_CENTRE_BBOX,
    booths: int = 8,
    foot: int = 12,
    cars: int = 6,
    devices: int = 24,
    street_devices: int = 6,
    seed: int = 1,
) -> tuple[list[Unit], list[Device], dict[str, Placed]]:
    """Booths at police points, buttons at schools and hospitals (``street_devices`` on streets), in ``bbox``.

    Too few POIs of a kind in ``bbox`` (or none within 250 m of a street): street points fill in,
    labelled so. Patrols start at random street points of ``bbox``. Deterministic for a seed.

    Returns
    -------
    units, devices, placed
        ``placed`` maps every unit and device id to its label and kind of place.
    """
    rng = random.Random(seed)
    here = [p for p in pois if _inside(p, bbox) and _reachable(router, p)]
    centre, radius_m = area_circle(bbox)

    def street(mode: str = "walk") -> tuple[float, float]:
        return random_street_point(router, rng, mode=mode, near=centre, radius_m=radius_m)  # type: ignore[arg-type]

    placed: dict[str, Placed] = {}
    units: list[Unit] = []
    police = [p for p in here if p.amenity == "police"]
    rng.shuffle(police)
    for i in range(1, booths + 1):
        uid = f"booth-{i}"
        if police:
            poi = police.pop()
            units.append(Unit(id=uid, kind=UnitKind.BOOTH, name=poi.label, lat=poi.lat, lon=poi.lon))
            placed[uid] = Placed(poi.label, "police")
        else:
            lat, lon = street()
            units.append(Unit(id=uid, kind=UnitKind.BOOTH, name=f"Booth {i} (street point)", lat=lat, lon=lon))
            placed[uid] = Placed(f"Booth {i} (street point)", "street")
    for kind, n, name in ((UnitKind.FOOT, foot, "Foot patrol"), (UnitKind.CAR, cars, "Patrol car")):
        for i in range(1, n + 1):
            lat, lon = street("drive" if kind is UnitKind.CAR else "walk")
            uid = f"{kind.value}-{i}"
            units.append(Unit(id=uid, kind=kind, name=f"{name} {i}", lat=lat, lon=lon))
            placed[uid] = Placed(f"{name} {i}", "street")
    sites = [p for p in here if p.amenity in ("school", "hospital")]
    rng.shuffle(sites)
    buttons: list[Device] = []
    for i in range(1, devices + 1):
        did = f"sos-{i}"
        if i <= devices - street_devices and sites:
            poi = sites.pop()
            site = DeviceSite.SCHOOL if poi.amenity == "school" else DeviceSite.HOSPITAL
            buttons.append(Device(id=did, site=site, lat=poi.lat, lon=poi.lon))
            placed[did] = Placed(poi.label, poi.amenity)
        else:
            lat, lon = street()
            buttons.append(Device(id=did, site=DeviceSite.STREET, lat=lat, lon=lon))
            placed[did] = Placed(f"Street button {i}", "street")
    return units, buttons, placed


def write_registry(
    data_dir: str | Path, units: list[Unit], devices: list[Device], placed: dict[str, Placed]
) -> tuple[Path, Path]:
    """``units.geojson`` and ``devices.geojson`` (with each button's ``name`` and ``place``) in ``data_dir``."""
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    units_path = write_units(data_dir / "units.geojson", units)
    features = [
        {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [round(d.lon, 7), round(d.lat, 7)]},
            "properties": {"id": d.id, "site": d.site.value, "name": placed[d.id].label, "place": placed[d.id].place},
        }
        for d in devices
    ]
    devices_path = data_dir / "devices.geojson"
    doc = {"type": "FeatureCollection", "features": features}
    devices_path.write_text(json.dumps(doc, ensure_ascii=False, indent=1), encoding="utf-8")
    return units_path, devices_path
