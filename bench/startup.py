"""Start-up of a replica: exec of ``python -m qorgau serve`` -> first 200 from ``/healthz``.

Three ways, each in fresh processes, in one run:

- **baseline** (today's path, emulated on this checkout): no network cache (``--cache-dir none``) and
  the heavy modules the old ``serve`` imported eagerly (pandas, pyarrow, Folium, scipy.stats, the
  planner, the plan map) imported first by the same interpreter; numba's cache is its default one
  (``__pycache__``, warm), as before;
- **cold cache**: an empty ``--cache-dir`` each run: the extract is parsed and cached, numba compiles
  into the new cache (``--quick`` keeps numba's default cache throughout: only the network cache is cold);
- **warm cache**: one ``--cache-dir`` kept across runs (primed by one start not counted): the network
  comes from its ``.npz``, numba loads its compiled functions.

Every start gets a new SQLite file and a new topic root on the given broker, a free port, no units or
devices; the clock runs from ``Popen`` to the first 200 of ``/healthz`` (database and MQTT lanes
up). Median and p99 (with a handful of runs the p99 is the slowest run) per way.
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("QORGAU_SHARED_DATA", ROOT.parent / "shared" / "data"))
TARGET_S = 2.0
JWT = "bench-startup-" + "k3Xq9vN2hPz4Lw8Rb6Ym1Tc0"

EAGER = "import pandas, pyarrow, folium, scipy.stats, patrol_planner.planner, maps.plan_map\n"
_SERVE = "import sys\n{eager}from qorgau.cli import main\nsys.exit(main(sys.argv[1:]))\n"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_once(
    network: Path,
    mqtt_url: str,
    work: Path,
    *,
    cache_dir: Path | None,
    eager: bool,
    numba_cache: Path | str | None = None,
) -> float:
    """Seconds from exec to a healthy ``/healthz`` of one ``serve`` (then it is stopped).

    ``numba_cache`` overrides where numba caches (else ``<cache_dir>/numba``, as ``serve`` sets it;
    ``""``: numba's default, ``__pycache__`` beside the sources).
    """
    run = work / uuid.uuid4().hex[:8]
    run.mkdir()
    port = _free_port()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "QORGAU_JWT_SECRET": JWT,
    }
    env.pop("NUMBA_CACHE_DIR", None)
    if numba_cache is not None:
        env["NUMBA_CACHE_DIR"] = str(numba_cache)
    argv = [sys.executable, "-c", _SERVE.format(eager=EAGER if eager else ""), "serve", "--network", str(network)]
    argv += ["--db", f"sqlite:///{run / 'q.sqlite3'}", "--mqtt", mqtt_url, "--port", str(port)]
    argv += ["--topic-root", f"bench-startup/{run.name}/v1", "--client-id", f"bench-startup-{run.name}"]
    argv += ["--cache-dir", "none" if cache_dir is None else str(cache_dir), "--log-level", "WARNING"]
    log = run / "serve.log"
    with open(log, "wb") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=run, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        while True:
            if proc.poll() is not None:
                msg = f"serve exited {proc.returncode} before it was healthy: {log.read_text()[-2000:]}"
                raise RuntimeError(msg)
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    return time.perf_counter() - t0
            except httpx.TransportError:
                pass
            if time.perf_counter() - t0 > 300:
                msg = f"serve not healthy within 300 s: {log.read_text()[-2000:]}"
                raise RuntimeError(msg)
            time.sleep(0.02)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _stats(times: list[float]) -> dict:
    return {
        "n": len(times),
        "median_s": round(statistics.median(times), 3),
        "p99_s": round(float(np.percentile(times, 99)), 3),
        "min_s": round(min(times), 3),
        "runs_s": [round(t, 3) for t in times],
    }


def run(mqtt_url: str, quick: bool, runs: int | None = None) -> dict:
    """The figures: per way, median / p99 / min over ``runs`` starts (1 with ``quick``, else 5)."""
    network = SHARED / "osm" / ("toronto_uoft_2020-11.osm.gz" if quick else "almaty_2012-03.osm.pbf")
    if not network.is_file():
        msg = f"shared data missing: {network} (benchmarks read ../shared/data; it is never copied here)"
        raise FileNotFoundError(msg)
    runs = runs or (1 if quick else 5)
    with tempfile.TemporaryDirectory(prefix="qorgau-bench-startup-") as tmp:
        work = Path(tmp)
        warm_cache = work / "warm-cache"
        # --quick keeps numba's default cache (warm from the tests): a compile takes minutes on a busy machine
        numba: str | None = "" if quick else None
        start_once(network, mqtt_url, work, cache_dir=warm_cache, eager=False, numba_cache=numba)  # primes
        times: dict[str, list[float]] = {"baseline": [], "cold": [], "warm": []}
        for i in range(runs):  # interleaved, so that a change of machine load hits every way alike
            times["baseline"].append(start_once(network, mqtt_url, work, cache_dir=None, eager=True))
            cold = work / f"cold-{i}"
            times["cold"].append(start_once(network, mqtt_url, work, cache_dir=cold, eager=False, numba_cache=numba))
            times["warm"].append(
                start_once(network, mqtt_url, work, cache_dir=warm_cache, eager=False, numba_cache=numba)
            )
    return {
        "network": network.name,
        "broker": mqtt_url,
        "target_s": TARGET_S,
        **{way: _stats(t) for way, t in times.items()},
        "load_average_at_end": list(os.getloadavg()),
    }


def render(figures: dict) -> list[str]:
    """Markdown lines for BENCHMARKS.md (the first line is the heading)."""
    b, c, w = figures["baseline"], figures["cold"], figures["warm"]
    met = w["median_s"] < figures["target_s"]

    def row(what: str, s: dict) -> str:
        return f"| {what} | {s['n']} | {s['median_s']:.2f} | {s['p99_s']:.2f} | {s['min_s']:.2f} |"

    return [
        "## Start-up of a replica: exec -> healthy /healthz",
        "",
        f"`python -m qorgau serve` on `{figures['network']}`, SQLite, broker {figures['broker']}; each start a fresh "
        "process. Baseline: this checkout with the network cache off and the heavy modules the old `serve` loaded "
        "(pandas, pyarrow, Folium, scipy.stats, the planner, the plan map) imported first. "
        "See `bench/startup.py` for the method.",
        "",
        "| way | runs | median (s) | p99 (s) | fastest (s) |",
        "|---|---|---|---|---|",
        row("baseline: no cache, eager imports (today's path)", b),
        row("cold cache: parse + cache the extract, numba compiles", c),
        row("warm cache: network from its .npz, numba from its cache", w),
        "",
        f"Warm start vs baseline: {b['median_s'] / w['median_s']:.1f}x faster (median); target under "
        f"{figures['target_s']:.0f} s: **{'met' if met else 'not met'} here** "
        f"(load average at the end {figures['load_average_at_end'][0]:.1f} on {os.cpu_count()} cores).",
        "",
    ]
