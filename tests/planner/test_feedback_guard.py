"""The guard against feedback loops: plans train on what the public reported, not on what patrols found."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from support import TORONTO_BOOTHS, TORONTO_CRIME, TORONTO_TZ, TORONTO_XML

from patrol_planner import read_incidents
from patrol_planner.feedback import simulate_feedback_loop
from patrol_planner.incidents import Incidents, officer_discovered, training_incidents
from patrol_planner.io import write_booths
from qorgau.cli import main

RATES = (0.5, 0.3, 0.2)


def test_with_the_guard_the_allocation_converges_to_the_true_rates() -> None:
    run = simulate_feedback_loop(RATES, days=730, officer_weight=0.0, seed=1)
    assert run.officer.sum() > 5 * run.public.sum()  # patrols found far more than the public reported
    np.testing.assert_allclose(run.final, run.true_share, atol=0.05)


def test_without_it_the_busiest_area_runs_away() -> None:
    run = simulate_feedback_loop(RATES, days=730, officer_weight=1.0, seed=1)
    assert run.final[0] > run.true_share[0] + 0.25  # half the crime, most of the patrols
    assert run.final[2] < run.true_share[2] / 3  # and the least busy area is left almost alone
    # It is the loop, not the luck of one seed.
    for seed in (2, 3):
        assert simulate_feedback_loop(RATES, days=730, officer_weight=1.0, seed=seed).final[0] > 0.75


def _incidents(officer: list[bool], category: str = "Assault") -> Incidents:
    n = len(officer)
    return Incidents.from_arrays(
        np.full(n, 43.66), np.full(n, -79.39), np.full(n, np.datetime64("2022-01-01T23:00")), category, officer=officer
    )


def test_training_keeps_public_reports_and_weights_officer_finds() -> None:
    inc = _incidents([False] * 100 + [True] * 1000)
    for weight, used in ((0.0, 0), (1.0, 1000), (0.25, 250)):
        train, note = training_incidents(inc, officer_weight=weight)
        assert note.public == 100 and note.officer == 1000
        assert note.officer_used == pytest.approx(used, abs=1)
        assert len(train) == 100 + note.officer_used
    with pytest.raises(ValueError, match="officer_weight"):
        training_incidents(inc, officer_weight=1.5)


def test_police_uk_proactive_categories_count_as_officer_discovered() -> None:
    inc = Incidents.from_arrays(
        [1.0, 1.0, 1.0], [2.0, 2.0, 2.0], ["2024-01-01"] * 3, ["Drugs", "Burglary", "Possession of weapons"]
    )
    assert officer_discovered(inc).tolist() == [True, False, True]
    assert training_incidents(inc)[1].flagged_by == "category"


def _write(path: Path, rows: list[tuple[float, float, str, str]]) -> Path:
    path.write_text(
        "lat,lon,occurred_at,category,initiated_by\n"
        + "".join(f"{la:.6f},{lo:.6f},{t},Assault,{who}\n" for la, lo, t, who in rows)
    )
    return path


def test_the_file_says_who_initiated_each_incident(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "i.csv", [(43.66, -79.39, "2022-01-01T23:00:00", w) for w in ("public", "officer", "SOS", "")]
    )
    inc, _ = read_incidents(path, timezone=TORONTO_TZ)
    assert inc.officer is not None and inc.officer.tolist() == [False, True, False, False]
    bad = _write(tmp_path / "bad.csv", [(43.66, -79.39, "2022-01-01T23:00:00", "the moon")])
    with pytest.raises(ValueError, match="the moon"):
        read_incidents(bad, timezone=TORONTO_TZ)


def _near(a: tuple[float, float], b: tuple[float, float], m: float) -> bool:
    dy = (a[0] - b[0]) * 111_320.0
    dx = (a[1] - b[1]) * 111_320.0 * math.cos(math.radians(a[0]))
    return math.hypot(dx, dy) <= m


def test_a_plan_does_not_follow_what_patrols_found_and_says_so(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    public_at, found_at = (43.6615, -79.3950), (43.6652, -79.3880)
    rows = []
    for k in range(300):  # reported by the public, around one corner of the extract
        la, lo = public_at[0] + rng.normal(0, 0.0003), public_at[1] + rng.normal(0, 0.0004)
        rows.append((la, lo, f"2021-12-{1 + k % 28:02d}T23:30:00", "public"))
    for k in range(3000):  # found by patrols, ten times as many, around another
        la, lo = found_at[0] + rng.normal(0, 0.0002), found_at[1] + rng.normal(0, 0.0002)
        rows.append((la, lo, f"2021-12-{1 + k % 28:02d}T01:30:00", "officer"))
    incidents = _write(tmp_path / "incidents.csv", rows)
    booths = write_booths(tmp_path / "booths.geojson", TORONTO_BOOTHS)

    def plan(out: Path, *extra: str) -> list[tuple[float, float]]:
        argv = ["plan", "--incidents", str(incidents), "--network", str(TORONTO_XML), "--booths", str(booths),
                "--patrols", "1", "--shift", "22:00-06:00", "--date", "2022-01-07", "--timezone", TORONTO_TZ,
                "--out", str(out), "--iterations", "200", "--seed", "1", "--no-progress", "--lang", "en", *extra]  # fmt: skip
        assert main(argv) == 0
        feats = json.loads((out / "routes.geojson").read_text())["features"]
        return [tuple(f["geometry"]["coordinates"][::-1]) for f in feats if f["properties"]["kind"] == "stop"]

    guarded = plan(tmp_path / "guarded")
    assert guarded and not any(_near(s, found_at, 150) for s in guarded)
    assert any(_near(s, public_at, 200) for s in guarded)
    sheet = (tmp_path / "guarded" / "plan.md").read_text()
    assert (
        "Trained on: 300 incidents reported by the public; 3000 discovered by officers (as the file says), 0 of them used (weight 0)"
        in sheet
    )
    summary = json.loads((tmp_path / "guarded" / "summary.json").read_text())
    assert summary["training"] == {
        "public": 300,
        "officer_discovered": 3000,
        "officer_used": 0,
        "officer_weight": 0.0,
        "flagged_by": "column",
    }

    unguarded = plan(tmp_path / "unguarded", "--officer-weight", "1")
    assert any(_near(s, found_at, 150) for s in unguarded)  # without the guard, patrols go where patrols went


def test_toronto_has_no_officer_discovered_incidents_to_leave_out() -> None:
    inc, _ = read_incidents(TORONTO_CRIME, timezone=TORONTO_TZ)
    _, note = training_incidents(inc)
    assert note.officer == 0 and note.public == len(inc) and note.flagged_by == "category"
