"""Load a street network from a file: the one entry point to :mod:`geo._readers`, with a compiled cache.

Parsing an OSM extract takes seconds; a replica that restarts should not pay them again. With a
``cache_dir``, the parsed network's arrays are kept as ``<cache_dir>/networks/<sha256>-v3.npz``,
keyed by the SHA-256 of the source file's bytes (so a changed file, even with the same name and
mtime, is parsed again) and by the cache format. It also keeps what a router derives from the
arrays alone, each mode's connected components (:meth:`StreetNetwork.components`), so that a
start from the cache neither computes them nor imports scipy. The file is written to a temporary name in the
same folder, fsynced and renamed into place, so replicas starting together never read half a
file; one that cannot be read (truncated, corrupt, another format) is parsed again and replaced,
never fatal. The ``.npz`` holds plain arrays only (no pickles) and loads without pyosmium or osmnx.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np
from pyproj import CRS

from geo import _readers
from geo.network import StreetNetwork

__all__ = ["CACHE_FORMAT", "load_network", "network_cache_path"]

log = logging.getLogger(__name__)

CACHE_FORMAT = 3
"""Version of the cached arrays' layout: bump it when :class:`StreetNetwork` changes shape.

3: each mode's connected components (``components_walk``, ``components_drive``)."""

_ARRAYS = (
    "node_lat",
    "node_lon",
    "node_x",
    "node_y",
    "seg_u",
    "seg_v",
    "seg_length_m",
    "seg_highway",
    "seg_walk",
    "seg_drive",
    "seg_oneway",
    "seg_speed_kmh",
    "seg_tunnel",
    "seg_bridge",
)
_MODES = ("walk", "drive")


def load_network(path: str | Path, *, label: str | None = None, cache_dir: str | Path | None = None) -> StreetNetwork:
    """Load a street network from a local file.

    Parameters
    ----------
    path
        OSM XML (``.osm``, ``.osm.gz``, ``.osm.bz2``), OSM PBF (``.osm.pbf``/``.pbf``) or an osmnx
        GraphML file (``.graphml``, ``.graphml.gz``). Clipped extracts, whose ways reference nodes
        missing from the file, load: such ways are split at the missing nodes.
    label
        A human label; defaults to the file name.
    cache_dir
        Where the parsed network is cached (see the module's docstring); None: always parse.

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
    label = label or p.name
    if cache_dir is None:
        return _parse(p, label)
    cached = network_cache_path(p, cache_dir)
    if cached.is_file():
        try:
            net = _read_cache(cached, label)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
            log.warning("street network cache %s is unreadable (%s): parsing %s again", cached, e, p)
        else:
            log.info("street network %s loaded from its cache %s", p, cached)
            return net
    net = _parse(p, label)
    for mode in _MODES:  # what the router needs, kept with the arrays (a cold start computes them anyway)
        net.mode_components[mode] = net.components(mode)
    try:
        _write_cache(net, cached)
    except OSError as e:  # a read-only or full disk slows the next start; it does not stop this one
        log.warning("could not write the street network cache %s: %s", cached, e)
    else:
        log.info("street network %s parsed and cached as %s", p, cached)
    return net


def network_cache_path(path: str | Path, cache_dir: str | Path) -> Path:
    """Where the parsed ``path`` is cached: named by the SHA-256 of its bytes and the cache format."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return Path(cache_dir) / "networks" / f"{digest.hexdigest()}-v{CACHE_FORMAT}.npz"


def _parse(p: Path, label: str) -> StreetNetwork:
    name = p.name.lower()
    if name.endswith((".graphml", ".graphml.gz")):
        return _readers.read_graphml(p, label=label)
    if name.endswith((".osm", ".osm.gz", ".osm.bz2", ".osm.pbf", ".pbf", ".xml", ".xml.gz")):
        return _readers.read_osm(p, label=label)
    msg = (
        f"unrecognised street network format for {p.name!r}: "
        "expected .osm, .osm.gz, .osm.bz2, .osm.pbf or .graphml(.gz)"
    )
    raise ValueError(msg)


def _write_cache(net: StreetNetwork, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    arrays = {name: getattr(net, name) for name in _ARRAYS}
    arrays["crs_wkt"] = np.array(net.crs.to_wkt())
    if net.node_osm_id is not None:
        arrays["node_osm_id"] = net.node_osm_id
    if net.seg_name is not None:
        arrays["seg_name"] = np.asarray(net.seg_name, dtype=str)  # fixed-width text: no pickle
    for mode in _MODES:
        arrays[f"components_{mode}"] = net.components(mode)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=target.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)  # atomic: a reader sees the old file, or none, or the whole new one
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_cache(cached: Path, label: str) -> StreetNetwork:
    with np.load(cached, allow_pickle=False) as z:
        arrays = {name: z[name] for name in _ARRAYS}
        crs = CRS.from_wkt(str(z["crs_wkt"]))
        osm_id = z["node_osm_id"] if "node_osm_id" in z.files else None
        names = z["seg_name"] if "seg_name" in z.files else None
        components = {mode: z[f"components_{mode}"] for mode in _MODES}
    n, m = arrays["node_lat"].size, arrays["seg_u"].size
    if any(arrays[a].shape != (n,) for a in ("node_lon", "node_x", "node_y")) or any(
        arrays[a].shape != (m,) for a in _ARRAYS if a.startswith("seg_")
    ):
        msg = "array lengths disagree"
        raise ValueError(msg)
    if m and max(int(arrays["seg_u"].max()), int(arrays["seg_v"].max())) >= n:
        msg = "segment endpoints beyond the nodes"
        raise ValueError(msg)
    if names is not None and names.shape != (m,):
        msg = "street names disagree with the segments"
        raise ValueError(msg)
    if any(c.shape != (n,) or c.dtype != np.int32 for c in components.values()):
        msg = "connected components disagree with the nodes"
        raise ValueError(msg)
    return StreetNetwork(label=label, crs=crs, node_osm_id=osm_id, seg_name=names, mode_components=components, **arrays)
