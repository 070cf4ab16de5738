"""``qorgau plan`` (routes for a shift) and ``qorgau plan evaluate`` (backtest the hotspot estimators).

Registered into the main parser by :func:`add_plan_commands`; kept apart from :mod:`qorgau.cli`.
Registering imports nothing of the planner (it loads scipy, pandas and numba): the choices below
mirror it (a test checks), and the commands import the planner when they run.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

__all__ = ["add_plan_commands", "cmd_evaluate", "cmd_plan"]

_ESTIMATORS: tuple[str, ...] = ("kde", "naive", "network", "prospective", "spacetime")
"""``sorted(patrol_planner.hotspots.ESTIMATORS)``."""
_DEFAULT_ESTIMATOR = "spacetime"
"""``patrol_planner.hotspots.DEFAULT_ESTIMATOR``."""
_LANGUAGES: tuple[str, ...] = ("kk", "ru", "en")
"""``patrol_planner.i18n.LANGUAGES``."""
_DEFAULT_LANG = "ru"
"""``patrol_planner.i18n.DEFAULT_LANG``."""


def _add_incident_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--incidents", type=Path, metavar="FILE", help="incidents: .csv(.gz), .geojson or .parquet")
    p.add_argument(
        "--timezone",
        default="Asia/Almaty",
        help="local time zone of the shift and of naive incident times [Asia/Almaty]",
    )
    p.add_argument("--lat-col", metavar="NAME", help="latitude column, if not recognised")
    p.add_argument("--lon-col", metavar="NAME", help="longitude column, if not recognised")
    p.add_argument("--time-col", metavar="NAME", help="time column, if not recognised")
    p.add_argument("--category-col", metavar="NAME", help="category column, if not recognised")
    p.add_argument("--cell-m", type=float, default=100.0, help="grid cell size in metres [100]")
    p.add_argument(
        "--max-distance-m", type=float, default=100.0, help="incidents farther from a street are outside the area [100]"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_plan_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``plan`` and ``plan evaluate`` to the ``qorgau`` command's subparsers."""
    plan = sub.add_parser("plan", help="foot-patrol routes for a shift from incident history (see 'plan evaluate')")
    _add_incident_flags(plan)
    plan.add_argument("--network", type=Path, metavar="FILE", help="street network .osm/.osm.gz/.osm.pbf/.graphml[.gz]")
    plan.add_argument("--booths", type=Path, metavar="FILE", help="booths GeoJSON (Points; a units file's kind=booth)")
    plan.add_argument("--patrols", type=int, default=2, help="foot patrols [2]")
    plan.add_argument("--shift", default="22:00-06:00", help="local shift, HH:MM-HH:MM [22:00-06:00]")
    plan.add_argument("--date", type=date.fromisoformat, help="day the shift starts, YYYY-MM-DD [today, local]")
    plan.add_argument("--out", type=Path, metavar="DIR", help="where the plan's files go")
    plan.add_argument(
        "--lang",
        choices=_LANGUAGES,
        default=_DEFAULT_LANG,
        help=f"language of the plan sheet and map [{_DEFAULT_LANG}]",
    )
    plan.add_argument(
        "--seed", type=int, help="vary the routes (same seed, same plan) within 5 %% of the best plan's risk"
    )
    plan.add_argument(
        "--estimator", choices=_ESTIMATORS, default=_DEFAULT_ESTIMATOR, help=f"hotspot estimator [{_DEFAULT_ESTIMATOR}]"
    )
    plan.add_argument(
        "--officer-weight",
        type=float,
        default=0.0,
        help="weight of officer-discovered incidents in training, 0-1 (the feedback-loop guard) [0: left out]",
    )
    plan.add_argument("--hot-spots", type=int, help="candidate hot spots [about twice what the patrols can visit]")
    plan.add_argument("--walk-speed", type=float, default=1.4, help="walking speed, m/s [1.4]")
    plan.add_argument("--dwell-min", type=float, default=15.0, help="dwell at each hot spot, 10-16 minutes [15]")
    plan.add_argument(
        "--revisit-min", type=float, default=120.0, help="revisit block of the hottest spots, minutes [120]"
    )
    plan.add_argument(
        "--iterations", type=int, default=500, help="PyVRP iterations after the areas' start (deterministic) [500]"
    )
    plan.add_argument("--time-limit", type=float, default=30.0, help="cap on each solver run, seconds [30]")
    plan.set_defaults(func=cmd_plan)
    inner = plan.add_subparsers(dest="plan_command", metavar="{evaluate,dosage}")
    ev = inner.add_parser("evaluate", help="backtest the hotspot estimators on rolling windows")
    _add_incident_flags(ev)
    ev.add_argument(
        "--network", type=Path, metavar="FILE", help="street network: adds street-length PAI and the network estimator"
    )
    ev.add_argument(
        "--windows", type=int, default=12, help="rolling windows (train on the past, predict the next) [12]"
    )
    ev.add_argument("--period", default="month", help="window length: 'month' or days like '7d' [month]")
    ev.add_argument("--hours", metavar="HH:MM-HH:MM", help="only incidents in these local hours (a shift's pattern)")
    ev.add_argument(
        "--estimators",
        default=",".join(["naive", "kde", "prospective", "spacetime", "network"]),
        help="comma-separated names",
    )
    ev.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ev.set_defaults(func=cmd_evaluate)
    do = inner.add_parser("dosage", help="the dose the patrols delivered at the plan's hot spots, from their positions")
    do.add_argument("--plan", type=Path, required=True, metavar="DIR", help="the --out folder of 'qorgau plan'")
    do.add_argument(
        "--positions",
        type=Path,
        nargs="+",
        required=True,
        metavar="FILE",
        help="CSV 'unit_id, ts, lat, lon' (ts ISO 8601 with offset) or GPX tracks (a track's unit is its <name>)",
    )
    do.add_argument("--map", type=Path, metavar="FILE", help="CSV 'unit_id, patrol': units that walked the patrols")
    do.add_argument("--radius-m", type=float, default=50.0, help="present within this distance of a hot spot [50]")
    do.add_argument("--out", type=Path, metavar="DIR", help="also write dosage.md and dosage.csv there")
    do.add_argument(
        "--lang", choices=("kk", "ru", "en"), default=_DEFAULT_LANG, help=f"report language [{_DEFAULT_LANG}]"
    )
    do.add_argument("--json", action="store_true", help="print JSON instead of the report")
    do.set_defaults(func=cmd_dosage)


def _read(args: argparse.Namespace):
    from patrol_planner.io import read_incidents

    if args.incidents is None:
        msg = "--incidents FILE is required"
        raise ValueError(msg)
    return read_incidents(
        args.incidents,
        lat_col=args.lat_col,
        lon_col=args.lon_col,
        time_col=args.time_col,
        category_col=args.category_col,
        timezone=args.timezone,
    )


def _graph(network_path: Path, walk_speed: float = 1.4):
    from geo import Router, load_network
    from patrol_planner import WalkGraph

    return WalkGraph(Router(load_network(network_path), walk_speed_mps=walk_speed))


def cmd_plan(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from patrol_planner.io import read_booths, read_osm_bounds
    from patrol_planner.planner import make_plan
    from patrol_planner.routes import SolverSettings
    from patrol_planner.shift import Shift
    from web.plan_outputs import plan_summary, write_plan_outputs

    missing = [f for f in ("incidents", "network", "booths", "out") if getattr(args, f) is None]
    if missing:
        msg = "qorgau plan needs " + ", ".join(f"--{f}" for f in missing)
        raise ValueError(msg)
    if not 10 <= args.dwell_min <= 16:
        msg = f"--dwell-min must be 10-16 minutes (the Koper curve), got {args.dwell_min:g}"
        raise ValueError(msg)
    on = args.date or datetime.now(ZoneInfo(args.timezone)).date()
    shift = Shift.parse(args.shift, on=on, timezone=args.timezone)
    steps = ["incidents", "network", "area", "risk", "routes", "coverage", "files"]
    bar = tqdm(
        total=len(steps), desc="qorgau plan", unit="step", disable=True if args.no_progress else None, file=sys.stderr
    )

    def step(text: str) -> None:
        bar.set_postfix_str(text[:60])
        if bar.n < bar.total - 1:
            bar.update(1)

    try:
        step("reading incidents")
        incidents, report = _read(args)
        step("loading the street network")
        graph = _graph(args.network, args.walk_speed)
        booths = read_booths(args.booths)
        settings = SolverSettings(
            iterations=args.iterations,
            time_limit_s=args.time_limit,
            dwell_s=args.dwell_min * 60,
            revisit_s=args.revisit_min * 60,
        )
        bundle = make_plan(
            incidents,
            graph,
            booths,
            shift,
            patrols=args.patrols,
            report=report,
            estimator=args.estimator,
            cell_m=args.cell_m,
            n_spots=args.hot_spots,
            seed=args.seed,
            officer_weight=args.officer_weight,
            settings=settings,
            bounds=read_osm_bounds(args.network),
            max_distance_m=args.max_distance_m,
            progress=step,
        )
        step("writing the plan's files")
        files = write_plan_outputs(bundle, args.out, lang=args.lang)
        bar.update(bar.total - bar.n)
    finally:
        bar.close()
    s = plan_summary(bundle)
    print(bundle.report.summary())
    print(
        f"{s['patrols']} patrols, {shift.label} ({shift.timezone}): risk covered {s['risk_covered']:.4f} of "
        f"{s['expected_incidents']:.4f} expected incidents ({s['risk_covered_share']:.1%}); "
        f"booths reach {s['coverage']['risk_share']['10']:.1%} of the risk within 10 min"
    )
    print(f"wrote {len(files)} files to {args.out}: " + ", ".join(sorted(files)))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from patrol_planner import evaluate, parse_hours, read_osm_bounds, within_area

    incidents, report = _read(args)
    graph = None
    if args.network is not None:
        graph = _graph(args.network)
        incidents, report = within_area(
            incidents, graph, bounds=read_osm_bounds(args.network), max_distance_m=args.max_distance_m, report=report
        )
    names = [n.strip() for n in args.estimators.split(",") if n.strip()]
    bar = tqdm(
        total=args.windows, desc="backtest", unit="window", disable=True if args.no_progress else None, file=sys.stderr
    )
    try:
        result = evaluate(
            incidents,
            estimators=names,
            n_windows=args.windows,
            period=args.period,
            cell_m=args.cell_m,
            graph=graph,
            hours=parse_hours(args.hours) if args.hours else None,
            progress=lambda done, _total: bar.update(done - bar.n),
        )
    finally:
        bar.close()
    if args.json:
        print(json.dumps(result.as_dict(), indent=1))
        return 0
    d = result.as_dict()
    print(report.summary())
    skipped = d["windows_skipped"]
    print(
        f"{d['windows']} windows ({args.period}) from {d['first_window'][:10]} to {d['last_window_end'][:10]}"
        + (
            f" ({skipped['empty']} skipped with no incidents, {skipped['no_history']} with none before them)"
            if skipped["empty"] or skipped["no_history"]
            else ""
        )
        + ", "
        f"{d['events_per_window']} incidents per window, {d['area_km2']} km² in {result.cell_m:g} m cells"
        + (f", {d['street_length_km']} km of street" if d["street_length_km"] else "")
        + (f", hours {d['hours']}" if d["hours"] else "")
    )
    print("\n".join(result.table()))
    best = d["winner"] if d["winner"] is not None else "none (no estimator had a hit rate)"
    print(f"default: {d['default']}; best here (mean hit rate): {best}")
    return 0


def cmd_dosage(args: argparse.Namespace) -> int:
    import csv

    from patrol_planner.dosage import (
        dosage_csv_rows,
        dosage_markdown,
        measure_dosage,
        read_patrol_map,
        read_plan,
        read_positions,
    )
    from patrol_planner.i18n import messages

    plan = read_plan(args.plan)
    positions = read_positions(args.positions)
    if not len(positions):
        msg = f"no readable position fixes in {', '.join(map(str, args.positions))} ({positions.skipped} rows skipped)"
        raise ValueError(msg)
    mapping = read_patrol_map(args.map) if args.map is not None else None
    result = measure_dosage(plan, positions, unit_to_patrol=mapping, radius_m=args.radius_m)
    m = messages(args.lang)
    report = dosage_markdown(result, m, title=plan.shift_label)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "dosage.md").write_text(report, encoding="utf-8")
        with (args.out / "dosage.csv").open("w", encoding="utf-8", newline="") as f:
            csv.writer(f).writerows(dosage_csv_rows(result, m))
    if args.json:
        print(json.dumps(result.as_dict(), indent=1, ensure_ascii=False))
    else:
        print(report, end="")
        if positions.skipped:
            print(f"({positions.skipped} unreadable position rows skipped)", file=sys.stderr)
    return 0
