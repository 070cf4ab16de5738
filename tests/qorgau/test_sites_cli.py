"""``qorgau sites`` on the real Almaty extract: the files, the summary's figures agree, bad input is refused.

The existing booths are the extract's 40 police points; the demand is 300 weighted points drawn
(seeded) over central Almaty, the candidates 60 more: small, so the run stays short.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support import ALMATY_PBF, shared

from qorgau.cli import main

ROOT = Path(__file__).resolve().parents[2]
POLICE = "osm/almaty_2012-03_police_fire_hospital.geojson"
BOX = (43.22, 43.28, 76.88, 76.98)  # lat_lo, lat_hi, lon_lo, lon_hi: central Almaty


def _fc(features: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "FeatureCollection", "features": features}


def _pt(lon: float, lat: float, **props: Any) -> dict[str, Any]:
    return {"type": "Feature", "geometry": {"type": "Point", "coordinates": [lon, lat]}, "properties": props}


def _box(lon0: float, lat0: float, lon1: float, lat1: float, name: str) -> dict[str, Any]:
    ring = [[lon0, lat0], [lon1, lat0], [lon1, lat1], [lon0, lat1], [lon0, lat0]]
    return {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]}, "properties": {"name": name}}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("sites-in")
    rng = np.random.default_rng(13)
    lat_lo, lat_hi, lon_lo, lon_hi = BOX

    def draw(n: int) -> list[tuple[float, float]]:
        return list(zip(rng.uniform(lon_lo, lon_hi, n).tolist(), rng.uniform(lat_lo, lat_hi, n).tolist(), strict=True))

    files = {
        "demand": _fc([_pt(x, y, weight=float(rng.integers(1, 10))) for x, y in draw(300)]),
        "candidates": _fc([_pt(x, y, id=f"cand-{i:02d}") for i, (x, y) in enumerate(draw(60))]),
        "districts": _fc(
            [_box(76.88, 43.22, 76.93, 43.28, "Алмалинский"), _box(76.93, 43.22, 76.98, 43.28, "Медеуский")]
        ),
    }
    out = {}
    for name, doc in files.items():
        out[name] = d / f"{name}.geojson"
        out[name].write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    out["existing"] = shared(POLICE)
    out["network"] = ALMATY_PBF
    out["out"] = d / "out"
    return out


@pytest.fixture(scope="module")
def run(inputs: dict[str, Path]) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    argv = [
        "sites",
        "--network",
        str(inputs["network"]),
        "--existing",
        str(inputs["existing"]),
        "--add",
        "5",
        "--walk-min",
        "10",
        "--demand",
        str(inputs["demand"]),
        "--candidates",
        str(inputs["candidates"]),
        "--districts",
        str(inputs["districts"]),
        "--out",
        str(inputs["out"]),
        "--json",
        "--lang",
        "en",
        "--time-limit",
        "20",
    ]
    done = subprocess.run(
        [sys.executable, "-m", "qorgau", *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    return {"stdout": json.loads(done.stdout), "out": inputs["out"], "inputs": inputs}


def test_the_files_are_written_and_the_json_is_the_summary(run: dict[str, Any]) -> None:
    out: Path = run["out"]
    for name in ("sites.html", "sites.geojson", "sites.md", "sites.csv", "summary.json"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert run["stdout"] == json.loads((out / "summary.json").read_text(encoding="utf-8"))
    page = (out / "sites.html").read_text(encoding="utf-8")
    assert not re.search(r"""<(?:script|link|img)\b[^>]*(?:src|href)\s*=\s*["']?(?:https?:)?//""", page, re.I)
    md = (out / "sites.md").read_text(encoding="utf-8")
    assert md.startswith("# Where the new booths should go") and "UTC+5, Asia/Almaty" in md
    assert "Алмалинский" in md and "| 5 | cand-" in md


def test_the_summary_holds_together(run: dict[str, Any]) -> None:
    s = run["stdout"]
    for key in (
        "existing",
        "added",
        "covered_weight",
        "total_weight",
        "covered_share",
        "covered_share_existing",
        "optimality_gap",
        "greedy_covered_share",
        "districts",
    ):
        assert key in s, key
    police = [
        f
        for f in json.loads(run["inputs"]["existing"].read_text())["features"]
        if f["properties"]["amenity"] == "police"
    ]
    assert len(s["existing"]) == len(police) == 40  # every existing booth is kept
    candidates = {f["properties"]["id"] for f in json.loads(run["inputs"]["candidates"].read_text())["features"]}
    assert len(s["added"]) == 5 and {a["id"] for a in s["added"]} <= candidates
    shares = [a["cumulative_share"] for a in s["added"]]
    assert shares == sorted(shares) and shares[-1] == pytest.approx(s["covered_share"])
    assert s["total_weight"] > 0 and s["covered_share"] == pytest.approx(s["covered_weight"] / s["total_weight"])
    assert s["covered_share_existing"] < s["covered_share"] <= 1.0
    added_weight = sum(a["marginal_weight"] for a in s["added"])
    assert added_weight == pytest.approx(s["covered_weight"] - s["covered_share_existing"] * s["total_weight"])
    assert s["greedy_covered_share"] <= s["covered_share"] + 1e-9  # greedy never beats the MILP
    assert set(s["districts"]) == {"Алмалинский", "Медеуский"}
    assert sum(d["total_weight"] for d in s["districts"].values()) == pytest.approx(s["total_weight"])
    assert 0 <= s["optimality_gap"] < 1


def test_the_csv_and_geojson_carry_the_build_order(run: dict[str, Any]) -> None:
    out: Path = run["out"]
    s = run["stdout"]
    rows = [line.split(",") for line in (out / "sites.csv").read_text(encoding="utf-8-sig").splitlines()]
    added = [r for r in rows if r[0] == "added"]
    assert [r[2] for r in added] == [a["id"] for a in s["added"]] and [r[1] for r in added] == ["1", "2", "3", "4", "5"]
    assert len([r for r in rows if r[0] == "existing"]) == 40
    geo = json.loads((out / "sites.geojson").read_text(encoding="utf-8"))
    areas = sorted(f["properties"]["minutes"] for f in geo["features"] if f["properties"]["kind"] == "walking_area")
    assert areas == [5.0, 10.0]
    ks = [f["properties"]["k"] for f in geo["features"] if f["properties"]["kind"] == "added"]
    assert ks == [1, 2, 3, 4, 5]


def _fails(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own usage errors
        code = int(e.code or 0)
    assert code == 2
    return capsys.readouterr().err


def test_bad_input_exits_2_with_the_reason(
    inputs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["sites", "--network", str(inputs["network"]), "--existing", str(inputs["existing"])]
    base += ["--demand", str(inputs["demand"]), "--out", str(tmp_path / "o")]
    assert "must be a whole number >= 0" in _fails([*base, "--add", "-1"], capsys)
    missing = str(tmp_path / "nope.geojson")
    err = _fails(["sites", "--network", str(inputs["network"]), "--existing", missing, "--add", "1", *base[5:]], capsys)
    assert "--existing: no such file" in err
    bad = tmp_path / "bad.geojson"
    bad.write_text("{not json", encoding="utf-8")
    assert "is not GeoJSON" in _fails([*base, "--add", "1", "--candidates", str(bad)], capsys)
    assert "has only 60 sites" in _fails([*base, "--add", "61", "--candidates", str(inputs["candidates"])], capsys)
    assert "needs --incidents" in _fails([*base, "--add", "1", "--hours", "20:00-08:00"], capsys)
    assert "not allowed with argument" in _fails([*base, "--add", "1", "--incidents", str(bad)], capsys)
    assert "at most 120 minutes" in _fails([*base, "--add", "1", "--walk-min", "0"], capsys)
    assert "only 40 existing booths" in _fails([*base, "--add", "1", "--move", "41"], capsys)
    assert not (tmp_path / "o").exists()  # nothing written for a refused question
