"""The dose delivered, on synthetic tracks made from a real plan's own ``routes.geojson`` (Toronto)."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from support import TORONTO_BOOTHS, TORONTO_CRIME, TORONTO_TZ, TORONTO_XML

from patrol_planner.dosage import PlannedStop, PlanStops, measure_dosage, read_plan, read_positions
from patrol_planner.i18n import LANGUAGES, messages
from patrol_planner.io import write_booths
from qorgau.cli import main

STEP = timedelta(seconds=30)
Fix = tuple[str, datetime, float, float]


@pytest.fixture(scope="module")
def plan_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("dosage")
    booths = write_booths(tmp / "booths.geojson", TORONTO_BOOTHS)
    out = tmp / "plan"
    argv = ["plan", "--incidents", str(TORONTO_CRIME), "--network", str(TORONTO_XML), "--booths", str(booths),
            "--patrols", "3", "--shift", "22:00-06:00", "--date", "2022-01-07", "--timezone", TORONTO_TZ,
            "--out", str(out), "--iterations", "300", "--seed", "3", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    return out


@pytest.fixture(scope="module")
def plan(plan_dir: Path) -> PlanStops:
    return read_plan(plan_dir)


def offset(lat: float, lon: float, east_m: float) -> tuple[float, float]:
    return lat, lon + east_m / (111_320.0 * math.cos(math.radians(lat)))


def track(plan: PlanStops, patrol: str, at_stop: Callable[[int, PlannedStop, float], tuple[float, float]]) -> list[Fix]:
    """Fixes every 30 s: straight between stops, and at each stop where ``at_stop(i, stop, f)`` says."""
    stops = sorted((s for s in plan.stops if s.patrol == patrol), key=lambda s: s.arrive)
    fixes: list[Fix] = []
    prev: tuple[datetime, float, float] | None = None
    for i, s in enumerate(stops):
        if prev is not None:  # walk from the last stop to this one
            t0, la0, lo0 = prev
            span = (s.arrive - t0).total_seconds()
            t = t0 + STEP
            while t < s.arrive:
                f = (t - t0).total_seconds() / span
                fixes.append((patrol, t, la0 + (s.lat - la0) * f, lo0 + (s.lon - lo0) * f))
                t += STEP
        t = s.arrive
        while t <= s.depart:
            f = (t - s.arrive).total_seconds() / max(s.planned_s, 1.0)
            fixes.append((patrol, t, *at_stop(i, s, f)))
            t += STEP
        prev = (s.depart, *at_stop(i, s, 1.0))
    return fixes


def on_time(_i: int, s: PlannedStop, _f: float) -> tuple[float, float]:
    return s.lat, s.lon


def write_csv(path: Path, fixes: list[Fix], unit: str | None = None) -> Path:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["unit_id", "ts", "lat", "lon"])
        for u, t, la, lo in fixes:
            w.writerow([unit or u, t.isoformat(), f"{la:.7f}", f"{lo:.7f}"])
    return path


def all_patrols(plan: PlanStops, at_stop: Callable[[int, PlannedStop, float], tuple[float, float]]) -> list[Fix]:
    return [fix for p in plan.patrols for fix in track(plan, p, at_stop)]


def test_the_plan_is_read_with_its_shift(plan: PlanStops) -> None:
    assert plan.patrols == ["P01", "P02", "P03"]
    assert plan.stops and all(s.planned_s >= 600 for s in plan.stops)
    assert plan.shift_start.utcoffset() == timedelta(0)
    assert plan.shift_start <= min(s.arrive for s in plan.stops)
    assert plan.shift_end >= max(s.depart for s in plan.stops)


def test_walking_the_plan_on_time_delivers_the_plan(plan: PlanStops) -> None:
    d = measure_dosage(plan, read_positions_from(all_patrols(plan, on_time))).as_dict()
    assert d["planned_min"] == pytest.approx(sum(s.planned_s for s in plan.stops) / 60, abs=0.1)
    assert d["delivered_share"] >= 0.95
    assert d["delivered_min"] <= d["planned_min"] + 1e-6
    # Every stop is a 10-minute-plus visit (more: hot spots closer than 50 m share a stay).
    assert d["koper_visits"] >= len(plan.stops)
    assert d["hot_spots_with_nothing"] == []
    for p in plan.patrols:
        assert d["patrols"][p]["delivered_share"] >= 0.95
    assert 0 < d["in_hot_spots_share"] < 1


def test_skipping_every_second_stop_delivers_about_half(plan: PlanStops) -> None:
    def skip(i: int, s: PlannedStop, _f: float) -> tuple[float, float]:
        return (s.lat, s.lon) if i % 2 == 0 else offset(s.lat, s.lon, 400.0)

    d = measure_dosage(plan, read_positions_from(all_patrols(plan, skip))).as_dict()
    kept = sum(s.planned_s for p in plan.patrols for i, s in enumerate(_stops(plan, p)) if i % 2 == 0)
    expected = kept / sum(s.planned_s for s in plan.stops)
    assert 0.35 <= expected <= 0.65
    # About half: a little more, as walking between stops passes through other planned hot spots and
    # a hot spot planned twice for a patrol is capped at both stops' minutes together.
    assert expected - 0.05 <= d["delivered_share"] <= expected + 0.15
    on_time_share = measure_dosage(plan, read_positions_from(all_patrols(plan, on_time))).total
    assert d["delivered_share"] <= on_time_share.delivered_min / on_time_share.planned_min - 0.25


def test_walking_through_without_stopping_gives_visits_but_no_koper_visit(plan: PlanStops) -> None:
    def through(_i: int, s: PlannedStop, f: float) -> tuple[float, float]:
        return offset(s.lat, s.lon, -500.0 + 1000.0 * f)  # ~1.1 m/s across the hot spot

    d = measure_dosage(plan, read_positions_from(all_patrols(plan, through))).as_dict()
    assert d["visits"] >= len(plan.stops)
    assert d["koper_visits"] == 0
    assert d["delivered_share"] < 0.35  # the passes, and the legs between stops crossing other hot spots


def test_another_units_positions_count_for_nothing_unless_mapped(plan: PlanStops, tmp_path: Path) -> None:
    fixes = track(plan, "P01", on_time)
    path = write_csv(tmp_path / "x.csv", fixes, unit="car-7")
    d = measure_dosage(plan, read_positions(path))
    assert d.total.delivered_min == 0 and d.ignored_fixes == len(fixes) and d.unmatched_units == ["car-7"]
    mapped = measure_dosage(plan, read_positions(path), unit_to_patrol={"car-7": "P01"})
    assert mapped.patrols["P01"].delivered_min / mapped.patrols["P01"].planned_min >= 0.95
    assert mapped.patrols["P02"].delivered_min == 0
    others_only = {s.hot_spot for s in plan.stops} - {s.hot_spot for s in plan.stops if s.patrol == "P01"}
    assert others_only and set(mapped.nothing) == others_only  # nobody walked P02's and P03's own spots


def test_the_cli_prints_the_json_and_writes_the_report(
    plan_dir: Path, plan: PlanStops, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    positions = write_csv(tmp_path / "positions.csv", all_patrols(plan, on_time))
    gpx = tmp_path / "p02.gpx"
    gpx.write_text(
        '<?xml version="1.0"?><gpx version="1.1" xmlns="http://www.topografix.com/GPX/1/1"><trk><name>P02</name><trkseg>'
        + "".join(
            f'<trkpt lat="{la}" lon="{lo}"><time>{t.isoformat()}</time></trkpt>'
            for _, t, la, lo in track(plan, "P02", on_time)
        )
        + "</trkseg></trk></gpx>"
    )
    assert main(["plan", "dosage", "--plan", str(plan_dir), "--positions", str(positions), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert set(d) >= {
        "delivered_share",
        "planned_min",
        "delivered_min",
        "koper_visits",
        "visits",
        "patrols",
        "hot_spots",
    }
    assert set(d["patrols"]) == {"P01", "P02", "P03"}
    for spot in d["hot_spots"].values():
        assert set(spot) >= {"planned_min", "delivered_min", "visits", "koper_visits"}
    assert d["delivered_share"] >= 0.95
    out = tmp_path / "report"
    argv = ["plan", "dosage", "--plan", str(plan_dir), "--positions", str(gpx), "--lang", "kk", "--out", str(out)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert text.startswith("# " + messages("kk")("dosage_title"))
    assert (out / "dosage.md").read_text(encoding="utf-8") == text
    rows = list(csv.reader((out / "dosage.csv").open(encoding="utf-8")))
    p02 = next(r for r in rows if r[1] == "P02")
    assert float(p02[3]) / float(p02[2]) >= 0.95  # delivered / planned, from the GPX track alone
    assert next(r for r in rows if r[1] == "P01")[3] == "0.0"


def test_bad_position_rows_are_skipped_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(
        "unit_id,ts,lat,lon\nP01,2022-01-08T03:00:00+00:00,43.66,-79.39\nP01,yesterday,43.66,-79.39\n"
        ",2022-01-08T03:00:30+00:00,43.66,-79.39\nP01,2022-01-08T03:01:00,43.66,-79.39\nP01,2022-01-08T03:01:30Z,95,0\n"
    )
    pos = read_positions(path)
    assert len(pos) == 1 and pos.skipped == 4  # bad time, no unit, no offset, impossible latitude


def test_every_dosage_text_is_in_every_language() -> None:
    keys = {k for k in messages("en").catalogue if k.startswith("dosage_")}
    assert len(keys) >= 10
    for lang in LANGUAGES:
        assert keys <= set(messages(lang).catalogue), lang


def _stops(plan: PlanStops, patrol: str) -> list[PlannedStop]:
    return sorted((s for s in plan.stops if s.patrol == patrol), key=lambda s: s.arrive)


def read_positions_from(fixes: list[Fix]):
    import numpy as np

    from patrol_planner.dosage import Positions

    return Positions(
        np.array([f[0] for f in fixes], dtype=object),
        np.array([f[1].timestamp() for f in fixes]),
        np.array([f[2] for f in fixes]),
        np.array([f[3] for f in fixes]),
    )
