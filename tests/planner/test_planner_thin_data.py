"""The backtest on thin data, as police.uk archives are often downloaded: single months, a year apart.

The files are real: Toronto's incidents of the chosen months, written in police.uk's street-level
layout (``Month`` = ``YYYY-MM``, so every incident is known only to its month).
"""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import numpy as np
import pytest
from support import TORONTO_CRIME

from patrol_planner import read_incidents
from patrol_planner.evaluation import Evaluation, NoUsableWindows, evaluate, rolling_windows
from qorgau.cli import main

TZ = "America/Toronto"
HEADER = [
    "Crime ID", "Month", "Reported by", "Falls within", "Longitude", "Latitude", "Location",
    "LSOA code", "LSOA name", "Crime type", "Last outcome category", "Context",
]  # fmt: skip


def police_uk_file(path: Path, months: set[str]) -> Path:
    """Toronto's real incidents of ``months``, in police.uk's street-level layout."""
    with gzip.open(TORONTO_CRIME, "rt", newline="") as src, path.open("w", newline="") as out:
        w = csv.writer(out)
        w.writerow(HEADER)
        for row in csv.DictReader(src):
            month = row["occurred_at_local"][:7]
            if month in months:
                w.writerow(["", month, "F", "F", row["Long"], row["Lat"], "On or near", "", "", row["MCI"], "", ""])
    return path


@pytest.fixture(scope="module")
def three_months(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return police_uk_file(tmp_path_factory.mktemp("uk") / "three.csv", {"2019-03", "2020-03", "2021-03"})


@pytest.fixture(scope="module")
def one_month(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return police_uk_file(tmp_path_factory.mktemp("uk") / "one.csv", {"2021-03"})


def test_month_only_data_covers_its_last_month(one_month: Path) -> None:
    inc, _ = read_incidents(one_month, timezone=TZ)
    assert not inc.hour_known.any()
    windows = rolling_windows(inc, n_windows=2)
    # The incidents are dated 2021-03-01 00:00 but stand for all of March: March is a whole window.
    assert [str(a)[:7] for a, _ in windows] == ["2021-02", "2021-03"]


def test_three_single_months_skip_the_empty_windows_and_count_them(three_months: Path) -> None:
    inc, _ = read_incidents(three_months, timezone=TZ)
    ev = evaluate(inc, n_windows=12, estimators=("naive", "spacetime"))
    d = ev.as_dict()
    assert d["windows"] == 1  # March 2021, trained on the two earlier Marches
    assert d["windows_skipped"] == {"empty": 11, "no_history": 0}
    assert set(d["periods"]) == {"2019-03", "2020-03", "2021-03"}
    assert d["events_per_window"] == d["periods"]["2021-03"]
    assert all(v is not None and 0 < v <= 1 for v in d["estimators"]["spacetime"]["hit_rate"].values())
    assert d["winner"] == "spacetime"
    assert "nan" not in "\n".join(ev.table())


def test_longer_windows_reach_across_the_gaps(three_months: Path) -> None:
    inc, _ = read_incidents(three_months, timezone=TZ)
    d = evaluate(inc, n_windows=3, period="365d", estimators=("naive", "spacetime")).as_dict()
    assert d["windows"] == 2
    assert d["windows_skipped"]["no_history"] == 1  # the first year has nothing before it
    assert d["winner"] in {"naive", "spacetime"}


def test_one_month_stops_with_a_clear_message(one_month: Path) -> None:
    inc, _ = read_incidents(one_month, timezone=TZ)
    with pytest.raises(NoUsableWindows) as err:
        evaluate(inc, n_windows=12, estimators=("naive",))
    text = str(err.value)
    assert "no usable backtest window" in text
    assert "2021-03" in text and "no past to train on" in text
    assert "11 with no incidents and 1 with none before them" in text


def test_the_cli_stops_on_one_month_and_evaluates_three_with_longer_windows(
    one_month: Path, three_months: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["plan", "evaluate", "--timezone", TZ, "--no-progress", "--estimators", "naive,kde,spacetime"]
    assert main([*argv, "--incidents", str(one_month)]) == 1
    err = capsys.readouterr().err
    assert "no usable backtest window" in err and "2021-03 (1,950)" in err
    assert main([*argv, "--incidents", str(three_months), "--period", "365d", "--windows", "3"]) == 0
    out = capsys.readouterr().out
    assert "nan" not in out
    assert "2 windows (365d)" in out and "with none before them" in out
    assert "best here (mean hit rate): spacetime" in out


def test_an_estimator_that_saw_nothing_predicts_nothing(three_months: Path) -> None:
    inc, _ = read_incidents(three_months, timezone=TZ)
    ev = evaluate(inc, n_windows=12, estimators=("naive", "spacetime"))
    d = ev.as_dict()
    # naive trains on the month before March 2021, which is empty: a flat surface, not a guess.
    assert ev.no_prediction == {"naive": 1, "spacetime": 0}
    assert d["estimators"]["naive"]["windows"] == 0
    assert set(d["estimators"]["naive"]["hit_rate"].values()) == {None}
    assert d["estimators"]["spacetime"]["windows"] == 1
    assert "| naive | - | - | - |" in "\n".join(ev.table())
    assert d["winner"] == "spacetime"


def test_no_winner_is_named_from_nan() -> None:
    nan = np.full((2, 3), np.nan)
    ev = Evaluation(
        estimators=["naive", "kde"],
        windows=[],
        n_events=[0, 0],
        hit_rate={"naive": nan, "kde": nan},
        pai={"naive": nan, "kde": nan},
    )
    assert ev.winner is None
    assert ev.as_dict()["winner"] is None
