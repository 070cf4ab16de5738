"""`qorgau plan` and `qorgau plan evaluate` on the real Toronto data: the commander's files."""

from __future__ import annotations

import csv
import itertools
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from support import TORONTO_BOOTHS, TORONTO_CRIME, TORONTO_TZ, TORONTO_XML

from maps import leaflet_assets, render_plan_map
from patrol_planner.i18n import LANGUAGES, messages
from patrol_planner.io import write_booths
from qorgau.cli import main
from web.plan_outputs import MAP_LABEL_KEYS

GPX = "{http://www.topografix.com/GPX/1/1}"


@pytest.fixture(scope="module")
def planned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("plan")
    booths = write_booths(tmp / "booths.geojson", TORONTO_BOOTHS)
    out = tmp / "out"
    argv = [
        "plan",
        "--incidents",
        str(TORONTO_CRIME),
        "--network",
        str(TORONTO_XML),
        "--booths",
        str(booths),
        "--patrols",
        "3",
        "--shift",
        "22:00-06:00",
        "--date",
        "2022-01-07",
        "--timezone",
        TORONTO_TZ,
        "--out",
        str(out),
        "--iterations",
        "400",
        "--seed",
        "5",
        "--no-progress",
    ]
    assert main(argv) == 0
    return out


def test_plan_writes_every_file(planned: Path, capsys: pytest.CaptureFixture[str]) -> None:
    names = {p.name for p in planned.iterdir()}
    assert names == {
        "plan.html",
        "routes.geojson",
        "plan.md",
        "plan.csv",
        "summary.json",
        "patrol_P01.gpx",
        "patrol_P02.gpx",
        "patrol_P03.gpx",
    }
    summary = json.loads((planned / "summary.json").read_text())
    assert summary["timezone"] == TORONTO_TZ and summary["seed"] == 5 and summary["patrols"] == 3
    assert summary["incidents"]["kept"] == 1825 and summary["incidents"]["outside_area"] == 210_992 - 1825


def test_routes_geojson_closes_each_route_at_its_booth(planned: Path) -> None:
    doc = json.loads((planned / "routes.geojson").read_text())
    routes = [f for f in doc["features"] if f["properties"]["kind"] == "route"]
    stops = [f for f in doc["features"] if f["properties"]["kind"] == "stop"]
    booths = {b.id: [b.lon, b.lat] for b in TORONTO_BOOTHS}
    assert len(routes) == 3
    for f in routes:
        coords = f["geometry"]["coordinates"]
        booth = booths[f["properties"]["booth"]]
        assert coords[0] == pytest.approx(booth) and coords[-1] == pytest.approx(booth)
        mine = [s for s in stops if s["properties"]["patrol"] == f["properties"]["patrol"]]
        assert len(mine) == f["properties"]["stops"] > 0
        # Local times with Toronto's winter offset, in visiting order.
        arrivals = [s["properties"]["arrive"] for s in mine]
        assert all(a.endswith("-05:00") for a in arrivals) and arrivals == sorted(arrivals)
    assert sum(1 for f in doc["features"] if f["properties"]["kind"] == "hot_spot") > 0
    assert sum(1 for f in doc["features"] if f["properties"]["kind"] == "booth") == 2


def test_gpx_per_patrol_has_the_track_and_timed_stops(planned: Path) -> None:
    doc = json.loads((planned / "routes.geojson").read_text())
    for f in (f for f in doc["features"] if f["properties"]["kind"] == "route"):
        root = ET.parse(planned / f"patrol_{f['properties']['patrol']}.gpx").getroot()
        trkpts = root.findall(f"{GPX}trk/{GPX}trkseg/{GPX}trkpt")
        wpts = root.findall(f"{GPX}wpt")
        assert len(trkpts) == len(f["geometry"]["coordinates"])
        assert len(wpts) == f["properties"]["stops"] + 1  # the booth, then each stop
        times = [w.find(f"{GPX}time").text for w in wpts]
        # 22:00 in Toronto (UTC-5) is 03:00 UTC the next day.
        assert times[0] == "2022-01-08T03:00:00Z" and times == sorted(times)


def test_plan_csv_and_sheet(planned: Path) -> None:
    with (planned / "plan.csv").open(encoding="utf-8-sig") as fh:
        rows = list(csv.DictReader(fh))
    kinds = [r["kind"] for r in rows if r["patrol"] == "P01"]
    assert kinds[0] == "start" and kinds[-1] == "end" and set(kinds[1:-1]) == {"stop"}
    assert all(r["dwell_min"] == "15.0" for r in rows if r["kind"] == "stop")
    md = (planned / "plan.md").read_text()
    m = messages("ru")
    assert md.startswith(f"# {m('plan_title')}: 2022-01-07 22:00-06:00")
    assert "America/Toronto, UTC-05:00" in md
    for key in ("summary", "coverage_title", "risk_per_patrol_hour"):
        assert m(key) in md
    assert m("within_walk", m=5) in md and m("within_walk", m=10) in md


def test_the_map_works_offline(planned: Path) -> None:
    page = (planned / "plan.html").read_text()
    assert not re.search(r"<script[^>]*\bsrc\s*=\s*[\"']?(?:https?:)?//", page, re.I)
    assert not re.search(r"<link[^>]*\bhref\s*=\s*[\"']?(?:https?:)?//", page, re.I)
    assert not re.search(r"url\(\s*['\"]?(?:https?:)?//", page, re.I)  # no CSS imports or images from the web
    assert not re.search(r"=\s*\$\(", page)  # no jQuery calls: jQuery is not in the page
    js, css = leaflet_assets()
    assert "Leaflet 1.9.4" in js and js[:2000] in page and "data:image/png;base64," in css
    m = messages("ru")
    for text in [m(k) for k in ("layer_streets", "layer_risk", "layer_hotspots", "layer_booths")] + [
        m("layer_route", id="P01")
    ]:
        assert text in page or json.dumps(text)[1:-1] in page, text  # in HTML, or in the layer control's JSON


def test_plan_in_kazakh(tmp_path: Path) -> None:
    booths = write_booths(tmp_path / "booths.geojson", TORONTO_BOOTHS[:1])
    argv = [
        "plan",
        "--incidents",
        str(TORONTO_CRIME),
        "--network",
        str(TORONTO_XML),
        "--booths",
        str(booths),
        "--patrols",
        "1",
        "--shift",
        "18:00-22:00",
        "--date",
        "2022-01-07",
        "--timezone",
        TORONTO_TZ,
        "--out",
        str(tmp_path / "kk"),
        "--iterations",
        "200",
        "--lang",
        "kk",
        "--no-progress",
    ]
    assert main(argv) == 0
    kk = messages("kk")
    assert (tmp_path / "kk" / "plan.md").read_text().startswith(f"# {kk('plan_title')}")
    assert kk("legend_risk") in (tmp_path / "kk" / "plan.html").read_text()


def test_plan_without_booths_says_what_is_missing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--incidents", str(TORONTO_CRIME), "--network", str(TORONTO_XML), "--out", str(tmp_path)]) == 1
    assert "needs --booths" in capsys.readouterr().err


def test_evaluate_prints_the_json_shape(capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "plan",
        "evaluate",
        "--incidents",
        str(TORONTO_CRIME),
        "--network",
        str(TORONTO_XML),
        "--timezone",
        TORONTO_TZ,
        "--windows",
        "12",
        "--json",
        "--no-progress",
    ]
    assert main(argv) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["windows"] == 12 and d["default"] in d["estimators"]
    for e in d["estimators"].values():
        assert set(e["hit_rate"]) == set(e["pai"]) == {"1", "5", "10"}
    assert set(d["oracle"]["pai"]) == {"1", "5", "10"}


def test_evaluate_table(capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "plan",
        "evaluate",
        "--incidents",
        str(TORONTO_CRIME),
        "--timezone",
        TORONTO_TZ,
        "--windows",
        "12",
        "--estimators",
        "naive,spacetime",
        "--hours",
        "22:00-06:00",
        "--no-progress",
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "| naive |" in out and "| spacetime (default) |" in out and "oracle (ceiling)" in out
    assert "hours 22:00-06:00" in out


def test_catalogues_have_the_same_messages() -> None:
    keys = [set(messages(lang).catalogue) for lang in LANGUAGES]
    assert keys[0] == keys[1] == keys[2]
    with pytest.raises(ValueError, match="unknown language"):
        messages("de")


def test_map_refuses_to_load_from_the_web() -> None:
    labels = messages("en").labels(*MAP_LABEL_KEYS)
    empty = {"type": "FeatureCollection", "features": []}
    booth = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [76.9, 43.2]},
                "properties": {"id": "b1", "name": "<b1>"},
            }
        ],
    }
    page = render_plan_map(routes=empty, hotspots=empty, booths=booth, labels=labels)
    assert "&lt;b1&gt;" in page  # names are escaped
    import folium

    original = folium.Map.default_js
    try:
        folium.Map.default_js = [*original]
        # A renderer that let a CDN link through would fail loudly, not ship a map that needs the internet.
        page = render_plan_map(routes=empty, hotspots=empty, booths=booth, labels=labels)
        assert "cdn.jsdelivr" not in page
    finally:
        folium.Map.default_js = original


def test_map_spaces_route_arrows_by_the_distance_the_caller_passes() -> None:
    from geo import great_circle_m

    labels = messages("en").labels(*MAP_LABEL_KEYS)
    empty = {"type": "FeatureCollection", "features": []}
    # A 1 km route due north in 20 steps of about 50 m: an arrow every 120 m is one every third step.
    coords = [[76.9, 43.2 + i * 0.00045] for i in range(21)]
    props = {
        "kind": "route",
        "patrol": "P01",
        "colour": "#e41a1c",
        "length_m": 1000.0,
        "walking_min": 12.0,
        "risk_covered": 0.1,
    }
    routes = {
        "type": "FeatureCollection",
        "features": [
            {"type": "Feature", "geometry": {"type": "LineString", "coordinates": coords}, "properties": props}
        ],
    }
    steps = [great_circle_m(a[1], a[0], b[1], b[0]) for a, b in itertools.pairwise(coords)]
    assert 49 < min(steps) <= max(steps) < 51
    page = render_plan_map(routes=routes, hotspots=empty, booths=empty, labels=labels, distance_m=great_circle_m)
    assert page.count('q-arrow\\" style=') == 20 // 3
    assert "rotate(-90deg)" in page  # due north: the arrow glyph (pointing east) turned a quarter left
    bare = render_plan_map(routes=routes, hotspots=empty, booths=empty, labels=labels)
    assert bare.count('q-arrow\\" style=') == 0
