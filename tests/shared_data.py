"""Paths of the shared, read-only data sets (../shared/data). Missing data fails loudly."""

from __future__ import annotations

import os
from pathlib import Path

SHARED_DATA = Path(os.environ.get("QORGAU_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))


def shared(relative: str) -> Path:
    """The path of a shared data file; raises if it is missing (tests never skip for data)."""
    path = SHARED_DATA / relative
    if not path.is_file():
        msg = (
            f"shared data file missing: {path}. Tests read real data from ../shared/data beside the "
            "checkout (or QORGAU_SHARED_DATA); it is never copied into the repository."
        )
        raise FileNotFoundError(msg)
    return path


ALMATY_PBF = shared("osm/almaty_2012-03.osm.pbf")
ALMATY_CLEAN_XML = shared("osm/almaty_2012-03_clean.osm.gz")
ALMATY_DRIVE_GRAPHML = shared("osm/almaty_2012-03_drive.graphml.gz")
TORONTO_XML = shared("osm/toronto_uoft_2020-11.osm.gz")
TORONTO_WALK_GRAPHML = shared("osm/toronto_uoft_2020-11_walk.graphml.gz")
TORONTO_CRIME = shared("crime/toronto_mci_2014_2021.csv.gz")
