"""Seed booths, patrols and SOS buttons for a city, and an incident history to plan from, for the demo."""

from __future__ import annotations

import csv
import random
from datetime import date, datetime, timedelta
from pathlib import Path

from dispatch import Device, DeviceSite, Unit, UnitKind, write_devices, write_units
from geo import Router, StreetNetwork
from qorgau.simulate import random_street_point

__all__ = ["DEMO_INCIDENTS", "seed_registry", "write_demo_incidents", "write_seed_registry"]

DEMO_INCIDENTS = "incidents-synthetic.csv"
"""The demo's incident history file (synthetic, never real), in its data directory."""

_SITES = [DeviceSite.STREET] * 6 + [DeviceSite.SCHOOL] * 2 + [DeviceSite.HOSPITAL, DeviceSite.OTHER]


def seed_registry(
    router: Router,
    *,
    booths: int = 8,
    foot: int = 12,
    cars: int = 6,
    devices: int = 24,
    seed: int = 1,
) -> tuple[list[Unit], list[Device]]:
    """Place booths, foot patrols, patrol cars and SOS buttons at random street points of the city.

    Deterministic for a given ``seed`` and network.
    """
    rng = random.Random(seed)
    units = []
    for kind, n, label in (
        (UnitKind.BOOTH, booths, "Booth"),
        (UnitKind.FOOT, foot, "Foot patrol"),
        (UnitKind.CAR, cars, "Patrol car"),
    ):
        for i in range(1, n + 1):
            lat, lon = random_street_point(router, rng, mode="drive" if kind is UnitKind.CAR else "walk")
            units.append(Unit(id=f"{kind.value}-{i}", kind=kind, name=f"{label} {i}", lat=lat, lon=lon))
    buttons = []
    for i in range(1, devices + 1):
        lat, lon = random_street_point(router, rng)
        buttons.append(Device(id=f"sos-{i}", site=rng.choice(_SITES), lat=lat, lon=lon))
    return units, buttons


def write_seed_registry(router: Router, data_dir: str | Path, *, seed: int = 1) -> tuple[Path, Path]:
    """Write ``units.geojson`` and ``devices.geojson`` for the router's city into ``data_dir``."""
    data_dir = Path(data_dir)
    units, devices = seed_registry(router, seed=seed)
    return write_units(data_dir / "units.geojson", units), write_devices(data_dir / "devices.geojson", devices)


def write_demo_incidents(
    network: StreetNetwork,
    path: str | Path,
    *,
    today: date,
    days: int = 90,
    n: int = 4000,
    seed: int = 1,
    area: tuple[float, float, float, float] | None = None,
) -> Path:
    """A CSV (``lat, lon, occurred_at, category``; local times) of about ``n`` synthetic incidents over
    the ``days`` before ``today``, for a commander to plan from on ``/plans`` in the demo.

    The demo's own alert history is minutes old, and a plan learns from the incidents of its shift's
    hours before the shift: this file lets a plan for a shift that has begun today be made at once.
    The incidents come from the documented self-exciting process of
    :func:`patrol_planner.synthetic.self_exciting_incidents` (``area``: its hot spot centres there):
    labelled synthetic, not real.
    """
    from patrol_planner.synthetic import self_exciting_incidents

    start = datetime.combine(today - timedelta(days=days), datetime.min.time())
    incidents = self_exciting_incidents(network, n, seed=seed, start=start, days=days, n_hotspots=25, area=area)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["lat", "lon", "occurred_at", "category"])
        for lat, lon, when, category in zip(
            incidents.lat, incidents.lon, incidents.occurred_at, incidents.category, strict=True
        ):
            w.writerow([f"{lat:.6f}", f"{lon:.6f}", str(when.astype("datetime64[s]")), category])
    tmp.replace(out)
    return out
