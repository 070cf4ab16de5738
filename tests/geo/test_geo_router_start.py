"""What a router does before the first alert: its compiled searches loaded, no scipy pulled in.

Checked in fresh interpreters (what a replica's start is): building a :class:`geo.Router` leaves
nothing of an alert's path (snapping, ranking, a route) to compile later, and numba's first load does
not import scipy.linalg, which geo's searches never use, while scipy still imports afterwards.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from support import TORONTO_XML

ROOT = Path(__file__).resolve().parents[2]

_PROBE = """
import json, sys
from geo import Router, load_network
from geo import _search

network = load_network(sys.argv[1], cache_dir=sys.argv[2])
router = Router(network)
loaded = {"scipy.linalg": "scipy.linalg" in sys.modules, "scipy.sparse": "scipy.sparse" in sys.modules}
compiled = {f.__name__: len(f.signatures) for f in (_search.reverse_search, _search.nearest_segment)}
lat, lon = network.center
router.place_unit("car-1", "car", lat, lon)
router.place_unit("booth-1", "booth", lat + 0.002, lon)
ranked = [r.unit_id for r in router.recommend(lat + 0.001, lon + 0.001, k=2)]
path = router.route("car-1", lat + 0.001, lon + 0.001)
after = {f.__name__: len(f.signatures) for f in (_search.reverse_search, _search.nearest_segment)}
import scipy.linalg  # what was kept out of the start still imports

print(json.dumps({"loaded": loaded, "compiled": compiled, "after": after, "ranked": sorted(ranked),
                  "path": len(path), "scipy_linalg": hasattr(scipy.linalg, "solve")}))
"""


def _probe(*argv: str) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, *argv], env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stderr[-4000:]
    result: dict = json.loads(done.stdout.splitlines()[-1])
    return result


def test_a_router_on_a_cached_network_has_its_searches_compiled_and_needs_no_scipy(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = _probe(str(TORONTO_XML), str(cache))  # parses, computes the components (scipy.sparse) and caches
    assert first["loaded"]["scipy.sparse"]
    second = _probe(str(TORONTO_XML), str(cache))  # a restart: the components come from the cache
    assert not second["loaded"]["scipy.sparse"] and not second["loaded"]["scipy.linalg"]
    assert second["scipy_linalg"]  # what was kept out of the start still imports afterwards
    assert second["compiled"]["reverse_search"] >= 1 and second["compiled"]["nearest_segment"] >= 1
    assert second["after"] == second["compiled"]  # the alert's snap, ranking and route compiled nothing
    assert second["ranked"] == first["ranked"] == ["booth-1", "car-1"]
    assert second["path"] == first["path"] >= 2
