"""Seed booths, patrols and SOS buttons for a city, for the demo."""

from __future__ import annotations

import random
from pathlib import Path

from dispatch import Device, DeviceSite, Unit, UnitKind, write_devices, write_units
from geo import Router
from qorgau.simulate import random_street_point

__all__ = ["seed_registry", "write_seed_registry"]

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
