"""``qorgau serve`` loads only what serving uses: no planner, pandas, pyarrow, Folium or scipy.stats.

A behavioural check, not a timed one: a fresh interpreter starts the whole service (street network
from a real extract, store, broker, HTTP), answers ``/healthz``, and reports what it had imported.
The planner and the plan map load when first used (a plan); the live map's renderer is imported by a
background thread once the service is up (switched off here, as it runs after the start).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

from support import JWT_SECRET, TORONTO_XML

ROOT = Path(__file__).resolve().parents[2]

NOT_ON_THE_SERVE_PATH = ("pandas", "pyarrow", "folium", "branca", "scipy.stats", "scipy.signal", "patrol_planner")
PLANNER_LIGHT = ("patrol_planner", "patrol_planner.i18n", "patrol_planner.siting_types")
"""The planner's package and two of its pure-Python modules that the sitings API's request and texts need
(dataclasses and JSON catalogues: no numpy, pandas or scipy); nothing else of the planner."""

_PROBE = """
import json, sys
import httpx
import qorgau.runtime
from qorgau import QorgauService, Settings

qorgau.runtime.preload_renderers = lambda: None  # the map renderer's background import, after the start

settings = Settings(network=sys.argv[1], db_url=sys.argv[2], mqtt_url=sys.argv[3], topic_root=sys.argv[4],
                    client_id=sys.argv[5], cache_dir=sys.argv[6], port=0, replica="import-probe")
with QorgauService(settings).start() as service:
    health = httpx.get(f"{service.base_url}/healthz", timeout=10)
    print(json.dumps({"status": health.status_code, "replica": health.json()["replica"], "modules": sorted(sys.modules)}))
"""


def test_serve_imports_neither_the_planner_nor_pandas_pyarrow_folium_or_scipy_stats(
    tmp_path: Path, mqtt_url: str, topic_root: str
) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "QORGAU_JWT_SECRET": JWT_SECRET,
    }
    argv = [str(TORONTO_XML), f"sqlite:///{tmp_path / 'q.sqlite3'}", mqtt_url, topic_root]
    argv += [f"import-probe-{uuid.uuid4().hex[:8]}", str(tmp_path / "cache")]
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, *argv], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    probe = json.loads(done.stdout.splitlines()[-1])
    assert (probe["status"], probe["replica"]) == (200, "import-probe")
    loaded = set(probe["modules"])
    assert "fastapi" in loaded and "geo" in loaded  # it really served
    heavy = sorted(
        m
        for m in loaded
        if any(m == h or m.startswith(h + ".") for h in NOT_ON_THE_SERVE_PATH) and m not in PLANNER_LIGHT
    )
    assert not heavy, heavy
