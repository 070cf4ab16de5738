"""A wheel carries every file the packages read at run time, not only their Python modules.

setuptools' ``build_py`` lays out exactly what a wheel would hold (packages and package data from
pyproject.toml); the egg-info goes to a temporary folder too, so the checkout is left as it was.
Every file git tracks inside a package folder must be there: the demo's Almaty extract
(``qorgau/data``), the live map's and the handheld's scripts and styles (``maps/static``), the
handheld's service worker and icon (``maps/pwa``), the message catalogues and the migrations.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("qorgau", "mqtt_bridge", "dispatch", "geo", "patrol_planner", "maps", "web")


def test_the_wheel_holds_every_tracked_file_of_the_packages(tmp_path: Path) -> None:
    tracked = subprocess.run(
        ["git", "ls-files", "--", *PACKAGES], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    assert "maps/static/handheld.js" in tracked and "qorgau/data/almaty_2012-03.osm.pbf" in tracked
    lib, egg = tmp_path / "lib", tmp_path / "egg"
    egg.mkdir()
    setup = [sys.executable, "-c", "from setuptools import setup; setup()", "-q"]
    built = subprocess.run(
        [*setup, "egg_info", "--egg-base", str(egg), "build_py", "--build-lib", str(lib)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    shipped = {str(p.relative_to(lib)) for p in lib.rglob("*") if p.is_file()}
    missing = sorted(set(tracked) - shipped)
    assert not missing, f"tracked files a wheel would not carry (pyproject.toml package-data): {missing}"
    for name in ("maps/static/handheld.css", "maps/pwa/sw.js", "maps/pwa/icon.svg", "qorgau/data/PROVENANCE.md"):
        assert (lib / name).read_bytes() == (ROOT / name).read_bytes(), name
