"""Load a street network from a file: the one entry point to :mod:`geo._readers`."""

from __future__ import annotations

from pathlib import Path

from geo import _readers
from geo.network import StreetNetwork

__all__ = ["load_network"]


def load_network(path: str | Path, *, label: str | None = None) -> StreetNetwork:
    """Load a street network from a local file.

    Parameters
    ----------
    path
        OSM XML (``.osm``, ``.osm.gz``, ``.osm.bz2``), OSM PBF (``.osm.pbf``/``.pbf``) or an osmnx
        GraphML file (``.graphml``, ``.graphml.gz``). Clipped extracts, whose ways reference nodes
        missing from the file, load: such ways are split at the missing nodes.
    label
        A human label; defaults to the file name.

    Raises
    ------
    FileNotFoundError
        When the file does not exist.
    ValueError
        When the format is not recognised or the file holds no streets.
    """
    p = Path(path)
    if not p.is_file():
        msg = f"street network file not found: {str(p)!r}"
        raise FileNotFoundError(msg)
    name = p.name.lower()
    if name.endswith((".graphml", ".graphml.gz")):
        return _readers.read_graphml(p, label=label or p.name)
    if name.endswith((".osm", ".osm.gz", ".osm.bz2", ".osm.pbf", ".pbf", ".xml", ".xml.gz")):
        return _readers.read_osm(p, label=label or p.name)
    msg = (
        f"unrecognised street network format for {p.name!r}: "
        "expected .osm, .osm.gz, .osm.bz2, .osm.pbf or .graphml(.gz)"
    )
    raise ValueError(msg)
