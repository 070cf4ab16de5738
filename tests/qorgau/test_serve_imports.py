"""``qorgau serve`` loads only what serving uses: no planner, pandas, pyarrow, Folium or scipy.stats.

A behavioural check, not a timed one: a fresh interpreter starts the whole service (street network
from a real extract, store, broker, HTTP), answers ``/healthz``, and reports what it had imported.
The planner and the plan map load when first used (a plan); the live map's renderer, PyJWT and argon2
are imported by a background thread once the service is up (:func:`qorgau.runtime.preload`, switched
off here, as it runs after the start).

A restart (the network's cache written, the database at the schema's head: what every replica but
the first start of all meets) loads less again: no Alembic (the schema is checked with plain SQL),
no scipy.sparse (the network's components come from its cache), no scipy.linalg (numba's first load
is kept from it), no osmium (no parse), no shapely or cryptography (no districts, no device keys).
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
NOT_ON_A_RESTART = (
    *NOT_ON_THE_SERVE_PATH,
    "alembic",
    "scipy.sparse",
    "scipy.linalg",
    "osmium",
    "shapely",
    "cryptography",
    "jwt",
    "argon2",
    "maps.live_map",
)
PLANNER_LIGHT = ("patrol_planner", "patrol_planner.i18n", "patrol_planner.siting_types")
"""The planner's package and two of its pure-Python modules that the sitings API's request and texts need
(dataclasses and JSON catalogues: no numpy, pandas or scipy); nothing else of the planner."""

_PROBE = """
import json, sys
import httpx
import qorgau.runtime
from qorgau import QorgauService, Settings

qorgau.runtime.preload = lambda app: None  # the background imports after the start

settings = Settings(network=sys.argv[1], db_url=sys.argv[2], mqtt_url=sys.argv[3], topic_root=sys.argv[4],
                    client_id=sys.argv[5], cache_dir=sys.argv[6], port=0, replica="import-probe")
with QorgauService(settings).start() as service:
    health = httpx.get(f"{service.base_url}/healthz", timeout=10)
    print(json.dumps({"status": health.status_code, "replica": health.json()["replica"], "modules": sorted(sys.modules)}))
"""

_PRIME = """
import sys
from dispatch import Store
from geo import load_network

load_network(sys.argv[1], cache_dir=sys.argv[2])
Store(sys.argv[3]).upgrade_schema().close()
"""


def _serve_once(tmp_path: Path, mqtt_url: str, topic_root: str, *, prime: bool) -> set[str]:
    """The modules a fresh ``serve`` had loaded when it answered its first ``/healthz``."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "QORGAU_JWT_SECRET": JWT_SECRET,
    }
    db, cache = f"sqlite:///{tmp_path / 'q.sqlite3'}", str(tmp_path / "cache")
    if prime:  # a restart: the first start's network cache and migrated database
        primed = subprocess.run(
            [sys.executable, "-c", _PRIME, str(TORONTO_XML), cache, db],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert primed.returncode == 0, primed.stderr
    argv = [str(TORONTO_XML), db, mqtt_url, topic_root, f"import-probe-{uuid.uuid4().hex[:8]}", cache]
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, *argv], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    probe = json.loads(done.stdout.splitlines()[-1])
    assert (probe["status"], probe["replica"]) == (200, "import-probe")
    loaded = set(probe["modules"])
    assert "fastapi" in loaded and "geo" in loaded and "numba" in loaded  # it really served, and routes
    return loaded


def _heavy(loaded: set[str], kept_out: tuple[str, ...]) -> list[str]:
    return sorted(
        m for m in loaded if any(m == h or m.startswith(h + ".") for h in kept_out) and m not in PLANNER_LIGHT
    )


def test_serve_imports_neither_the_planner_nor_pandas_pyarrow_folium_or_scipy_stats(
    tmp_path: Path, mqtt_url: str, topic_root: str
) -> None:
    loaded = _serve_once(tmp_path, mqtt_url, topic_root, prime=False)  # the first start: parse, migrate
    assert not _heavy(loaded, NOT_ON_THE_SERVE_PATH)
    assert {"osmium", "alembic"} <= {m.split(".")[0] for m in loaded}  # it did parse and migrate


def test_a_restart_loads_no_alembic_scipy_sparse_or_linalg_osmium_shapely_or_tokens(
    tmp_path: Path, mqtt_url: str, topic_root: str
) -> None:
    loaded = _serve_once(tmp_path, mqtt_url, topic_root, prime=True)
    assert not _heavy(loaded, NOT_ON_A_RESTART)
