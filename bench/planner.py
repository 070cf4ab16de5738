"""Patrol planner benchmarks: the Toronto backtest, plan timings on a 100,000-node city, route quality.

``run(quick)`` measures and returns plain figures; ``render(figures)`` turns them into Markdown
lines for BENCHMARKS.md (``quick``: 2 windows, a 3,000-node city, 50 solver iterations: a check
that the bench runs, not a measurement). Three parts:

1. **Hotspot evaluation** (``qorgau plan evaluate``) on all 210,992 real Toronto MCI incidents
   (100 m grid, 24 monthly windows of 2020-2021), on the same data's night hours, and on the
   1,825 incidents of the U of T street extract (50 m grid, street-length PAI), each with its
   wall-clock time including reading the file.
2. **Plan speed**: 20 foot patrols, a 22:00-06:00 shift, on a generated 100,000-node city with
   200,000 synthetic self-exciting incidents (patrol_planner.synthetic) and 20 booths at random
   incidents: time to build the router, plan, and write every file.
3. **Route quality**: risk covered per patrol-hour of the PyVRP plan against the greedy baseline
   (walk to the nearest hot spot not yet visited in the current block) and against PyVRP run ten
   times longer (10x the iterations and the time cap), on the same city and on Toronto; and the
   same for the method before issue 14's speed-up (PyVRP from its own random start, 3,000
   iterations, walks between hot spots up to half the shift), so the new default is also read
   against the old ten-times-longer run.
4. **Before and after**: the plan of part 2 on the baseline commit's code and on this checkout,
   each with its own default settings, in fresh interpreters, in turn, in one sitting.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("QORGAU_SHARED_DATA", ROOT.parent / "shared" / "data"))

log = logging.getLogger("bench.planner")

__all__ = ["render", "run"]


def _shared(rel: str) -> Path:
    p = SHARED / rel
    if not p.is_file():
        msg = f"shared data missing: {p} (benchmarks read ../shared/data; it is never copied here)"
        raise FileNotFoundError(msg)
    return p


def _evaluation(quick: bool) -> dict:
    from geo import Router, load_network
    from patrol_planner import WalkGraph, evaluate, read_incidents, read_osm_bounds, within_area

    crime, osm = _shared("crime/toronto_mci_2014_2021.csv.gz"), _shared("osm/toronto_uoft_2020-11.osm.gz")
    windows = 2 if quick else 24
    t0 = time.perf_counter()
    inc, report = read_incidents(crime, timezone="America/Toronto")
    read_s = time.perf_counter() - t0
    full = evaluate(inc, n_windows=windows, cell_m=100.0)
    full_s = time.perf_counter() - t0
    log.info("planner: Toronto backtest %.1f s (read %.1f s)", full_s, read_s)
    night = evaluate(inc, n_windows=windows, cell_m=100.0, hours=(22, 6))
    # Out of sample: the default was chosen on 2020-2021; check it on 2016-2017.
    early = evaluate(inc, n_windows=windows, cell_m=100.0, before=np.datetime64("2018-01-01"))
    t1 = time.perf_counter()
    graph = WalkGraph(Router(load_network(osm)))
    sub, _ = within_area(inc, graph, bounds=read_osm_bounds(osm), report=report)
    extract = evaluate(sub, n_windows=windows, cell_m=50.0, graph=graph)
    extract_s = time.perf_counter() - t1
    return {
        "full": full.as_dict(),
        "full_table": full.table(),
        "full_seconds_with_read": round(full_s, 2),
        "read_seconds": round(read_s, 2),
        "night": night.as_dict(),
        "night_table": night.table(),
        "early": early.as_dict(),
        "early_table": early.table(),
        "extract": extract.as_dict(),
        "extract_table": extract.table(),
        "extract_seconds": round(extract_s, 2),
        "extract_incidents": len(sub),
    }


BEFORE_ITERATIONS = 3000
"""The default iterations of the method before (PyVRP from a random start, d6217a2 to 7f62720)."""


def _quality(graph, booths, risk, shift, patrols: int, iterations: int, time_limit: float, quick: bool) -> dict:
    from patrol_planner.routes import SolverSettings, greedy_routes, plan_routes

    out = {}
    # The method before: PyVRP's random start, walks between hot spots up to half the shift.
    old = {"start": "random", "leg_limit_s": None}
    for name, extra in (("greedy", {}), ("before_greedy", old)):
        g = greedy_routes(
            graph,
            booths,
            risk.hotspots,
            shift,
            patrols=patrols,
            total_risk=risk.total_risk,
            settings=SolverSettings(**extra),  # type: ignore[arg-type]
        )
        out[name] = {
            "risk_per_patrol_hour": g.risk_per_patrol_hour,
            "risk_covered": g.risk_covered,
            "seconds": g.solve_s,
        }
    before_its = iterations if quick else BEFORE_ITERATIONS
    runs = (
        ("pyvrp", iterations, time_limit, {}),
        ("pyvrp_10x", 10 * iterations, 10 * time_limit, {}),
        ("before", before_its, time_limit, old),
        ("before_10x", 10 * before_its, 10 * time_limit, old),
    )
    for name, its, cap, extra in runs:
        s = SolverSettings(iterations=its, time_limit_s=cap, **extra)  # type: ignore[arg-type]
        p = plan_routes(graph, booths, risk.hotspots, shift, patrols=patrols, total_risk=risk.total_risk, settings=s)
        out[name] = {
            "risk_per_patrol_hour": p.risk_per_patrol_hour,
            "risk_covered": p.risk_covered,
            "seconds": round(p.solve_s, 2),
            "iterations": p.iterations,
            "capped": p.iterations < its,
        }
        log.info("planner: %s %.1f s, %s iterations", name, p.solve_s, p.iterations)
    out["total_risk"] = risk.total_risk
    out["patrols"] = patrols
    out["hot_spots"] = len(risk.hotspots)
    return out


def _city(quick: bool) -> dict:
    from geo import Router, generate_city
    from patrol_planner import Booth, WalkGraph
    from patrol_planner.planner import default_spot_count, make_plan
    from patrol_planner.routes import SolverSettings
    from patrol_planner.shift import Shift, risk_map
    from patrol_planner.synthetic import self_exciting_incidents
    from web.plan_outputs import write_plan_outputs

    n_nodes, n_inc, patrols = (3000, 5000, 2) if quick else (100_000, 200_000, 20)
    t = time.perf_counter()
    net = generate_city(n_nodes, seed=1)
    inc = self_exciting_incidents(net, n_inc, seed=1, n_hotspots=60)
    gen_s = time.perf_counter() - t
    rng = np.random.default_rng(3)
    booths = [
        Booth(f"b{i:02d}", float(inc.lat[j]), float(inc.lon[j]))
        for i, j in enumerate(rng.choice(len(inc), 20, replace=False))
    ]
    shift = Shift.parse("22:00-06:00", on=date(2026, 1, 1), timezone="Asia/Almaty")
    settings = SolverSettings(iterations=50, time_limit_s=2.0) if quick else SolverSettings()
    steps: dict[str, float] = {}
    t0 = time.perf_counter()
    graph = WalkGraph(Router(net))
    steps["router"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    bundle = make_plan(inc, graph, booths, shift, patrols=patrols, settings=settings)
    steps["plan"] = time.perf_counter() - t1
    t2 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        files = write_plan_outputs(bundle, tmp)
        html_mb = files["plan.html"].stat().st_size / 1e6
    steps["files"] = time.perf_counter() - t2
    total = time.perf_counter() - t0
    log.info("planner: 100k city plan %.1f s", total)
    risk = risk_map(inc, graph, shift, n_spots=default_spot_count(patrols, shift, settings))
    quality = _quality(graph, booths, risk, shift, patrols, settings.iterations, settings.time_limit_s, quick)
    return {
        "label": net.label,
        "nodes": net.n_nodes,
        "incidents": len(inc),
        "patrols": patrols,
        "generate_seconds": round(gen_s, 2),
        "steps_seconds": {k: round(v, 2) for k, v in steps.items()},
        "total_seconds": round(total, 2),
        "iterations": bundle.plan.iterations,
        "hot_spots": len(bundle.risk.hotspots),
        "stops": sum(len(r.stops) for r in bundle.plan.routes),
        "risk_covered_share": round(bundle.plan.risk_covered / bundle.plan.total_risk, 4),
        "plan_html_mb": round(html_mb, 2),
        "quality": quality,
    }


# -- before and after, in one sitting ----------------------------------------------------------

BASELINE_REV = os.environ.get("QORGAU_BENCH_PLANNER_BASELINE", "d6217a2")
"""The commit whose planner is the baseline: main before issue 14's speed-up (the old way)."""

_SPEED_SCRIPT = r"""
import json, sys, tempfile, time
from datetime import date
import numpy as np
n_nodes, n_inc, patrols, iterations = (int(a) for a in sys.argv[1:5])
from geo import Router, generate_city
from patrol_planner import Booth, WalkGraph
from patrol_planner.planner import make_plan
from patrol_planner.routes import SolverSettings
from patrol_planner.shift import Shift
from patrol_planner.synthetic import self_exciting_incidents
from web.plan_outputs import write_plan_outputs
net = generate_city(n_nodes, seed=1)
inc = self_exciting_incidents(net, n_inc, seed=1, n_hotspots=60)
rng = np.random.default_rng(3)
booths = [Booth(f"b{i:02d}", float(inc.lat[j]), float(inc.lon[j])) for i, j in enumerate(rng.choice(len(inc), 20, replace=False))]
shift = Shift.parse("22:00-06:00", on=date(2026, 1, 1), timezone="Asia/Almaty")
# 0 iterations: the tree's own default settings (each commit plans as it would by default)
settings = SolverSettings() if iterations == 0 else SolverSettings(iterations=iterations, time_limit_s=2.0)
t0 = time.perf_counter()
graph = WalkGraph(Router(net))
t1 = time.perf_counter()
bundle = make_plan(inc, graph, booths, shift, patrols=patrols, settings=settings)
t2 = time.perf_counter()
with tempfile.TemporaryDirectory() as tmp:
    write_plan_outputs(bundle, tmp)
t3 = time.perf_counter()
print(json.dumps({"router": t1 - t0, "plan": t2 - t1, "files": t3 - t2, "total": t3 - t0,
                  "solve": bundle.plan.solve_s, "iterations": bundle.plan.iterations,
                  "risk_per_patrol_hour": bundle.plan.risk_per_patrol_hour}))
"""


def _timed_plan(tree: Path, args: list[str]) -> dict:
    """One plan in a fresh interpreter on the code of ``tree`` (a first plan: imports included)."""
    import json
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run(
        [sys.executable, "-c", _SPEED_SCRIPT, *args], cwd=tree, env=env, capture_output=True, text=True, check=True
    )
    figures: dict = json.loads(out.stdout.strip().splitlines()[-1])
    return figures


def _before_after(quick: bool) -> dict:
    """The plan of part 2 timed on the baseline commit's code and on this checkout, alternately.

    Both run in fresh interpreters on the same machine in one sitting, each with its own default
    settings (the baseline: 3,000 PyVRP iterations from a random start; this checkout: its
    default): a warm-up of each (numba compiles into each tree's cache), then ``rounds`` runs of
    each, old and new in turn; the fastest run of each counts (the least disturbed by other load)."""
    import subprocess
    import tarfile

    args = ["3000", "5000", "2", "50"] if quick else ["100000", "200000", "20", "0"]
    rounds = 1 if quick else 2
    with tempfile.TemporaryDirectory(prefix="qorgau-baseline-") as tmp:
        archive = Path(tmp) / "base.tar"
        subprocess.run(["git", "-C", str(ROOT), "archive", "-o", str(archive), BASELINE_REV], check=True)
        base = Path(tmp) / "tree"
        with tarfile.open(archive) as tar:
            tar.extractall(base, filter="data")
        rev = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", BASELINE_REV], capture_output=True, text=True, check=True
        ).stdout.strip()
        if not quick:  # the quick form checks that both trees plan, it measures nothing: no warm-up
            warm = ["3000", "5000", "2", "50"]
            _timed_plan(base, warm)
            _timed_plan(ROOT, warm)
        old, new = [], []
        for _ in range(rounds):
            old.append(_timed_plan(base, args))
            new.append(_timed_plan(ROOT, args))
            log.info("planner: before %.1f s, after %.1f s", old[-1]["total"], new[-1]["total"])
    best = lambda runs: min(runs, key=lambda r: r["total"])  # noqa: E731
    b, a = best(old), best(new)
    return {
        "baseline_rev": rev,
        "rounds": rounds,
        "before": _rounded(b),
        "after": _rounded(a),
        "before_runs_s": [round(r["total"], 2) for r in old],
        "after_runs_s": [round(r["total"], 2) for r in new],
        "speedup": round(b["total"] / a["total"], 2) if a["total"] else None,
    }


def _rounded(run: dict) -> dict:
    """Seconds to the millisecond; the risk per patrol-hour to six places (it is read to five)."""
    return {k: round(v, 6 if k == "risk_per_patrol_hour" else 3) if isinstance(v, float) else v for k, v in run.items()}


def _before_after_or_why_not(quick: bool) -> dict:
    """:func:`_before_after`, or why it could not run (a checkout without the baseline commit)."""
    import subprocess

    try:
        return _before_after(quick)
    except (subprocess.CalledProcessError, OSError) as e:
        detail = getattr(e, "stderr", None) or str(e)
        log.warning("planner: no before/after: %s", detail)
        return {"error": f"the baseline {BASELINE_REV} could not be timed: {str(detail).strip()[:300]}"}


def _toronto_quality(quick: bool) -> dict:
    from geo import Router, load_network
    from patrol_planner import Booth, WalkGraph, read_incidents, read_osm_bounds, within_area
    from patrol_planner.routes import SolverSettings
    from patrol_planner.shift import Shift, risk_map

    osm = _shared("osm/toronto_uoft_2020-11.osm.gz")
    inc, report = read_incidents(_shared("crime/toronto_mci_2014_2021.csv.gz"), timezone="America/Toronto")
    graph = WalkGraph(Router(load_network(osm)))
    inc, _ = within_area(inc, graph, bounds=read_osm_bounds(osm), report=report)
    booths = [
        Booth("tps-hq", 43.6616, -79.3866, "Toronto Police HQ"),
        Booth("uoft", 43.66487, -79.40098, "Campus Police"),
    ]
    shift = Shift.parse("22:00-06:00", on=date(2022, 1, 7), timezone="America/Toronto")
    risk = risk_map(inc, graph, shift, n_spots=40)
    s = SolverSettings(iterations=50, time_limit_s=2.0) if quick else SolverSettings()
    return _quality(graph, booths, risk, shift, 3, s.iterations, s.time_limit_s, quick)


def run(quick: bool) -> dict:
    """Measure everything; ``quick`` at tiny sizes (seconds, not for the record)."""
    return {
        "evaluation": _evaluation(quick),
        "city": _city(quick),
        "before_after": _before_after_or_why_not(quick),
        "toronto_quality": _toronto_quality(quick),
        "quick": quick,
    }


def _fmt_quality(name: str, q: dict) -> list[str]:
    def rate(r: dict) -> float:
        return float(r["risk_per_patrol_hour"])

    def of(a: dict, b: dict) -> float:
        return rate(a) / max(rate(b), 1e-12)

    def row(label: str, r: dict, compared: str) -> str:
        capped = " (stopped by the time cap)" if r.get("capped") else ""
        secs = f"{r['seconds']:.1f}"
        share = r["risk_covered"] / q["total_risk"]
        return f"| {name} | {label}{capped} | {rate(r):.5f} | {share:.1%} | {secs} | {compared} |"

    g, p, p10 = q["greedy"], q["pyvrp"], q["pyvrp_10x"]
    lines = [
        row("greedy: nearest unvisited hot spot", g, "-"),
        row(
            f"**PyVRP from the areas' start**, {p['iterations']:,} iterations (default)",
            p,
            f"{of(p, g):.2f}x greedy",
        ),
        row(f"the same ten times longer, {p10['iterations']:,} iterations", p10, f"default is {of(p, p10):.1%} of it"),
    ]
    if "before" in q:
        bg, b, b10 = q["before_greedy"], q["before"], q["before_10x"]
        lines += [
            row("before: greedy, walks between hot spots up to half the shift", bg, "-"),
            row(
                f"before: PyVRP from a random start, {b['iterations']:,} iterations (the old default)",
                b,
                f"{of(b, bg):.2f}x its greedy",
            ),
            row(
                f"before: the same ten times longer, {b10['iterations']:,} iterations",
                b10,
                f"old default is {of(b, b10):.1%} of it, **new default {of(p, b10):.1%}**",
            ),
        ]
    return lines


def _fmt_before_after(ba: dict | None) -> list[str]:
    if not ba:
        return []
    if "error" in ba:
        return ["### Before and after (issue 14)", "", f"Not measured: {ba['error']}.", ""]
    b, a = ba["before"], ba["after"]
    rows = [
        ("router and walking graph", "router"),
        ("plan (of which routes: matrix and PyVRP)", "plan"),
        ("files", "files"),
    ]
    lines = [
        f"### Before and after (issue 14), one sitting: baseline `{ba['baseline_rev']}` beside this checkout",
        "",
        f"The same plan (city, incidents, booths, shift) in a fresh interpreter each (a first plan: imports included), "
        f"each commit with its own default solver settings (before: {ba['before'].get('iterations', 0):,} PyVRP iterations "
        f"from a random start; after: {ba['after'].get('iterations', 0):,} from the areas' start), old and new in turn, "
        f"{ba['rounds']} runs each after a warm-up; the fastest run of each. All runs: before "
        f"{', '.join(f'{x:.1f}' for x in ba['before_runs_s'])} s, after {', '.join(f'{x:.1f}' for x in ba['after_runs_s'])} s.",
        "",
        "| step | before, s | after, s |",
        "|---|---|---|",
    ]
    for label, key in rows:
        extra_b = f" ({b['solve']:.1f})" if key == "plan" else ""
        extra_a = f" ({a['solve']:.1f})" if key == "plan" else ""
        lines.append(f"| {label} | {b[key]:.1f}{extra_b} | {a[key]:.1f}{extra_a} |")
    lines += [
        f"| **total** | **{b['total']:.1f}** | **{a['total']:.1f}** |",
        f"| risk per patrol-hour | {b['risk_per_patrol_hour']:.5f} | {a['risk_per_patrol_hour']:.5f} |",
        "",
        f"Speed-up {ba['speedup']:.2f}x (target: 2x, **{'met' if ba['speedup'] >= 2 else 'not met'}**).",
        "",
    ]
    return lines


def render(figures: dict) -> list[str]:
    """Markdown lines for BENCHMARKS.md."""
    ev, city, tq = figures["evaluation"], figures["city"], figures["toronto_quality"]
    full, ext = ev["full"], ev["extract"]
    lines = [
        "## Patrol planner",
        "",
        "### Hotspot evaluation on the real Toronto incidents (`qorgau plan evaluate`)",
        "",
        f"All {full['events_per_window'] * full['windows']:,.0f} incidents of {full['windows']} monthly windows "
        f"({full['first_window'][:7]} to {full['last_window_end'][:7]}, train on everything before each window), "
        f"{full['cell_m']:g} m cells over {full['area_km2']} km² (cells within 200 m of any incident); means over windows. "
        f"Hit rate = share of the window's incidents in the flagged cells; PAI = hit rate / flagged area share.",
        "",
        *ev["full_table"],
        "",
        f"Default estimator: **{full['default']}**; winner here (mean hit rate over 1/5/10 %): **{full['winner']}**; "
        f"time: {ev['full_seconds_with_read']:.1f} s including {ev['read_seconds']:.1f} s to read the 210,992-row file "
        f"(target: at most 60 s, **{'met' if ev['full_seconds_with_read'] <= 60 else 'not met'}**).",
        "",
        "Night hours only (22:00-06:00, training and test), the pattern a night shift's plan uses:",
        "",
        *ev["night_table"],
        "",
        f"The street extract (U of T, {ev['extract_incidents']:,} incidents on 69 intersections, "
        f"{ext['street_length_km']} km of walkable street, {ext['cell_m']:g} m cells; PAI(len) = hit rate / flagged street-length share):",
        "",
        *ev["extract_table"],
        "",
        f"Extract backtest: {ev['extract_seconds']:.1f} s including the network.",
        "",
        f"Out of sample: the default was chosen on the 2020-2021 windows above. On {ev['early']['windows']} earlier windows "
        f"({ev['early']['first_window'][:7]} to {ev['early']['last_window_end'][:7]}) the winner is "
        f"**{ev['early']['winner']}**:",
        "",
        *ev["early_table"],
        "",
        "### A plan for 20 foot patrols on a 100,000-node generated city",
        "",
        f"{city['label']}; {city['incidents']:,} synthetic self-exciting incidents (not real); 20 booths; shift 22:00-06:00.",
        "",
        "| step | seconds |",
        "|---|---|",
        f"| router and walking graph | {city['steps_seconds']['router']:.1f} |",
        f"| plan: area, risk, {city['hot_spots']} hot spots, areas' start, PyVRP ({city['iterations']:,} iterations), coverage | {city['steps_seconds']['plan']:.1f} |",
        f"| files: map ({city['plan_html_mb']:.1f} MB), GeoJSON, 20 GPX, md, csv | {city['steps_seconds']['files']:.1f} |",
        f"| **total** | **{city['total_seconds']:.1f}** |",
        "",
        f"Target: at most 60 s: **{'met' if city['total_seconds'] <= 60 else 'not met'}** "
        f"({city['stops']} stops, {city['risk_covered_share']:.1%} of the shift's risk covered; generating the city and "
        f"incidents took another {city['generate_seconds']:.1f} s).",
        "",
        *_fmt_before_after(figures.get("before_after")),
        "### Route quality: risk covered per patrol-hour",
        "",
        "Risk = expected incidents per shift at the visited (hot spot, 2-hour block) pairs; same hot spots, booths and rules for all. "
        "The default gives each patrol an area of hot spots first and hands the routes walked there to PyVRP as its start "
        "(`patrol_planner/_areas.py`); walks between two hot spots are at most an hour. The rows marked before are the method "
        "before issue 14's speed-up (PyVRP from its own random start, walks between hot spots up to half the shift), "
        "measured in the same run. A run stopped by the wall-clock cap (a loaded machine) says so: that is the load, "
        "not the method.",
        "",
        "| data | planner | risk per patrol-hour | share of shift risk | seconds | compared |",
        "|---|---|---|---|---|---|",
        *_fmt_quality(f"generated city, {city['quality']['patrols']} patrols", city["quality"]),
        *_fmt_quality(f"Toronto extract, {tq['patrols']} patrols", tq),
        "",
    ]
    if figures.get("quick"):
        lines.insert(2, "_Quick run (tiny sizes): not for the record._")
        lines.insert(3, "")
    return lines


if __name__ == "__main__":  # pragma: no cover - manual run
    import json
    import sys

    logging.basicConfig(level=logging.INFO)
    figs = run("--quick" in sys.argv)
    print(json.dumps(figs, indent=1, default=str))
    print("\n".join(render(figs)))
