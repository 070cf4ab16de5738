"""Start-up of a replica: exec of ``python -m qorgau serve`` -> first 200 from ``/healthz``.

Three ways, each in fresh processes, in one run:

- **baseline** (today's path, emulated on this checkout): no network cache (``--cache-dir none``) and
  the heavy modules the old ``serve`` imported eagerly (pandas, pyarrow, Folium, scipy.stats, the
  planner, the plan map) imported first by the same interpreter; numba's cache is its default one
  (``__pycache__``, warm), as before;
- **cold cache**: an empty ``--cache-dir`` each run: the extract is parsed and cached, numba compiles
  into the new cache (``--quick`` keeps numba's default cache throughout: only the network cache is cold);
- **warm cache**: a replica's restart: one ``--cache-dir`` kept across runs (primed by one start not
  counted), so the network comes from its ``.npz`` and numba loads its compiled functions, and a
  database already at the schema's head (a fresh copy of one migrated file each run), so no
  migration runs and Alembic is not loaded.

Baseline and cold starts get a new, empty SQLite file (migrated from nothing). Every start gets a new
topic root on the given broker, a free port, no units or devices; the clock runs from ``Popen`` to the
first 200 of ``/healthz`` (database and MQTT lanes up). Median and p99 (with a handful of runs the p99
is the slowest run) per way, and for each start the CPU seconds the process had used by then (less
sensitive to the machine's load than the wall clock) and, from its "up" log line, the seconds of each
step of the start. The figures say whether the installed packages and this checkout were byte-compiled
(``.pyc`` beside the sources): where they are not and PYTHONDONTWRITEBYTECODE is set, every start
compiles every module it imports again.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("QORGAU_SHARED_DATA", ROOT.parent / "shared" / "data"))
TARGET_S = 2.0
JWT = "bench-startup-" + "k3Xq9vN2hPz4Lw8Rb6Ym1Tc0"

EAGER = "import pandas, pyarrow, folium, scipy.stats, patrol_planner.planner, maps.plan_map\n"
_SERVE = "import sys\n{eager}from qorgau.cli import main\nsys.exit(main(sys.argv[1:]))\n"
_UP = re.compile(r"up: (?:([0-9.]+) s after the command started; )?start ([0-9.]+) s \((.*)\)")
_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a running process (Linux ``/proc``), None where unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / _TICKS


def _steps(log: Path) -> dict[str, float]:
    """The steps of the start from serve's "up" log line: ``since_exec`` and each step, in seconds."""
    for line in log.read_text(errors="replace").splitlines():
        m = _UP.search(line)
        if m:
            steps = {"since_exec": float(m.group(1))} if m.group(1) else {}
            for part in m.group(3).split(", "):
                name, _, secs = part.rpartition(" ")
                steps[name] = float(secs)
            return steps
    return {}


def bytecode() -> dict[str, bool]:
    """Whether the installed packages and this checkout have their ``.pyc`` (what every start reads)."""

    def compiled(module: str) -> bool:
        spec = importlib.util.find_spec(module)
        origin = spec.origin if spec is not None else None
        return bool(origin) and Path(importlib.util.cache_from_source(str(origin))).is_file()

    return {
        "site_packages": all(
            compiled(m) for m in ("sqlalchemy.engine.base", "fastapi.routing", "numba.core.dispatcher")
        ),
        "checkout": all(compiled(m) for m in ("qorgau.runtime", "dispatch.store", "geo.routing", "web.app")),
        "dont_write_bytecode": bool(os.environ.get("PYTHONDONTWRITEBYTECODE")),
    }


def migrated_database(work: Path) -> Path:
    """An SQLite file at the schema's head (``qorgau db upgrade``), to copy for each warm start."""
    db = work / "template.sqlite3"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    argv = [sys.executable, "-m", "qorgau", "db", "upgrade", "--db", f"sqlite:///{db}"]
    subprocess.run(argv, cwd=work, env=env, check=True, capture_output=True, timeout=300)
    return db


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
    database: Path | None = None,
    db_url: str | None = None,
    replica: str | None = None,
) -> dict:
    """One ``serve`` from exec to a healthy ``/healthz`` (then it is stopped): ``s``, ``cpu_s``, ``steps``.

    ``numba_cache`` overrides where numba caches (else ``<cache_dir>/numba``, as ``serve`` sets it;
    ``""``: numba's default, ``__pycache__`` beside the sources). ``database``: an SQLite file to start
    on (copied), else a new empty one. ``db_url``: start on that database instead (PostgreSQL), as
    replica ``replica`` of the group.
    """
    run = work / uuid.uuid4().hex[:8]
    run.mkdir()
    if database is not None:
        shutil.copyfile(database, run / "q.sqlite3")
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
    argv += ["--db", db_url or f"sqlite:///{run / 'q.sqlite3'}", "--mqtt", mqtt_url, "--port", str(port)]
    argv += ["--topic-root", f"bench-startup/{run.name}/v1", "--client-id", f"bench-startup-{run.name}"]
    if replica is not None:
        argv += ["--replica", replica]
    argv += ["--cache-dir", "none" if cache_dir is None else str(cache_dir), "--log-level", "INFO"]
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
                    took = time.perf_counter() - t0
                    cpu = _cpu_s(proc.pid)
                    break
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
    return {"s": took, "cpu_s": cpu, "steps": _steps(log)}


def _stats(starts: list[dict]) -> dict:
    times = [s["s"] for s in starts]
    cpu = [s["cpu_s"] for s in starts if s["cpu_s"] is not None]
    names = [n for n in starts[0]["steps"] if all(n in s["steps"] for s in starts)] if starts else []
    return {
        "n": len(times),
        "median_s": round(statistics.median(times), 3),
        "p99_s": round(float(np.percentile(times, 99)), 3),
        "min_s": round(min(times), 3),
        "runs_s": [round(t, 3) for t in times],
        "cpu_median_s": round(statistics.median(cpu), 3) if cpu else None,
        "cpu_runs_s": [round(c, 3) for c in cpu],
        "steps_median_s": {n: round(statistics.median(s["steps"][n] for s in starts), 3) for n in names},
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
        at_head = migrated_database(work)
        # --quick keeps numba's default cache (warm from the tests): a compile takes minutes on a busy machine
        numba: str | None = "" if quick else None
        start_once(network, mqtt_url, work, cache_dir=warm_cache, eager=False, numba_cache=numba)  # primes
        starts: dict[str, list[dict]] = {"baseline": [], "cold": [], "warm": [], "warm_pg": []}
        pg = None if quick else _postgres(work)
        try:
            for i in range(runs):  # interleaved, so that a change of machine load hits every way alike
                _start_each_way(network, mqtt_url, work, warm_cache, at_head, numba, starts, i, pg)
        finally:
            if pg is not None:
                pg.close()
    if not starts["warm_pg"]:
        del starts["warm_pg"]
    return {
        "network": network.name,
        "broker": mqtt_url,
        "target_s": TARGET_S,
        "bytecode": bytecode(),
        **{way: _stats(t) for way, t in starts.items()},
        "load_average_at_end": list(os.getloadavg()),
    }


def _postgres(work: Path) -> Any:
    """A throwaway PostgreSQL cluster (bench.chaos) with the schema at its head: what a replica restarts on."""
    from bench.chaos import PostgresCluster
    from dispatch import Store

    pg = PostgresCluster(work / "pg")
    store = Store(pg.url)
    try:
        store.upgrade_schema("head")
    finally:
        store.close()
    return pg


def _start_each_way(
    network: Path,
    mqtt_url: str,
    work: Path,
    warm_cache: Path,
    at_head: Path,
    numba: str | None,
    starts: dict[str, list[dict]],
    i: int,
    pg: Any,
) -> None:
    """One start of each way, in turn."""
    starts["baseline"].append(start_once(network, mqtt_url, work, cache_dir=None, eager=True))
    cold = work / f"cold-{i}"
    starts["cold"].append(start_once(network, mqtt_url, work, cache_dir=cold, eager=False, numba_cache=numba))
    warm = {"cache_dir": warm_cache, "eager": False, "numba_cache": numba}
    starts["warm"].append(start_once(network, mqtt_url, work, **warm, database=at_head))
    if pg is not None:  # a replica's restart: PostgreSQL already at the head, the other replicas' state kept
        starts["warm_pg"].append(start_once(network, mqtt_url, work, **warm, db_url=pg.url, replica="r1"))


_STEPS = {
    "since_exec": "exec -> HTTP listening, as serve logs it",
    "network": "street network from its cache (SHA-256 of the file, .npz)",
    "router": "router: both modes' graphs, numba's searches loaded",
    "dispatch": "registries, store (engine), dispatch, supervision, bridge objects",
    "app": "FastAPI app (its routes' models are built when web is imported, above)",
    "schema": "schema check (plain SQL at the head; Alembic only to migrate)",
    "open": "dispatch and supervision open (units, open alerts, devices from the store)",
    "mqtt": "MQTT: four lanes connected and subscribed",
    "watchers": "change stream, deadline watcher, leader election",
    "http": "uvicorn up and listening",
}


def render(figures: dict) -> list[str]:
    """Markdown lines for BENCHMARKS.md (the first line is the heading)."""
    b, c, w = figures["baseline"], figures["cold"], figures["warm"]
    met = w["median_s"] < figures["target_s"]

    def cpu(s: dict) -> str:
        return "" if s.get("cpu_median_s") is None else f"{s['cpu_median_s']:.2f}"

    def row(what: str, s: dict) -> str:
        return f"| {what} | {s['n']} | {s['median_s']:.2f} | {s['p99_s']:.2f} | {s['min_s']:.2f} | {cpu(s)} |"

    code = figures.get("bytecode") or {}
    compiled = {True: "byte-compiled", False: "**not** byte-compiled"}
    lines = [
        "## Start-up of a replica: exec -> healthy /healthz",
        "",
        f"`python -m qorgau serve` on `{figures['network']}`, SQLite, broker {figures['broker']}; each start a fresh "
        "process. Baseline: this checkout with the network cache off and the heavy modules the old `serve` loaded "
        "(pandas, pyarrow, Folium, scipy.stats, the planner, the plan map) imported first, on an empty database. "
        "Warm: a restart (network and numba caches kept, the database already at the schema's head). "
        "See `bench/startup.py` for the method.",
        "",
    ]
    if code:
        lines += [
            f"Installed packages {compiled[code['site_packages']]}, this checkout {compiled[code['checkout']]}"
            f" (PYTHONDONTWRITEBYTECODE {'set' if code['dont_write_bytecode'] else 'unset'}).",
            "",
        ]
    lines += [
        "| way | runs | median (s) | p99 (s) | fastest (s) | CPU to healthy, median (s) |",
        "|---|---|---|---|---|---|",
        row("baseline: no cache, eager imports (the old path)", b),
        row("cold cache: parse + cache the extract, numba compiles, empty database", c),
        row("warm: network from its .npz, numba from its cache, database at head", w),
        *(
            [row("warm, a replica on PostgreSQL (`--replica r1`, schema at head)", figures["warm_pg"])]
            if "warm_pg" in figures
            else []
        ),
        "",
        f"Warm start vs baseline: {b['median_s'] / w['median_s']:.1f}x faster (median); target under "
        f"{figures['target_s']:.0f} s: **{'met' if met else 'not met'} here** "
        f"(load average at the end {figures['load_average_at_end'][0]:.1f} on {os.cpu_count()} cores). The CPU "
        "seconds a start used until healthy depend far less on the machine's load than its wall time: the start "
        "is one busy thread that waits little (broker and database answer in hundredths), so on an idle machine "
        "its wall time would come close to them.",
        "",
    ]
    steps = w.get("steps_median_s") or {}
    if steps:
        lines += [
            "Where a warm start's time goes (medians of serve's own log line; the imports are what the "
            "exec -> listening time has beyond the steps):",
            "",
            "| step | median (s) |",
            "|---|---|",
        ]
        total = sum(v for k, v in steps.items() if k != "since_exec")
        if "since_exec" in steps:
            lines.append(f"| imports, settings (exec -> first step) | {max(0.0, steps['since_exec'] - total):.2f} |")
        lines += [f"| {_STEPS.get(k, k)} | {v:.2f} |" for k, v in steps.items() if k != "since_exec"]
        if "since_exec" in steps:
            lines.append(f"| **{_STEPS['since_exec']}** | **{steps['since_exec']:.2f}** |")
        lines.append("")
    return lines
