"""maps renders what it is handed, as self-contained pages that load nothing from the internet."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import pytest

from maps import leaflet_assets, render_live_map, render_login_page, static_assets
from maps.assets import assert_offline


class Labels(dict[str, str]):
    """Every label is its own key, so a test can find where each text lands."""

    def __missing__(self, key: str) -> str:
        return f"«{key}»"


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[tuple[str, str]] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href") and value is not None:
                self.refs.append((tag, value))
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False if tag == "script" else self._in_script

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts.append(data)


def _parse(page: str) -> _Refs:
    p = _Refs()
    p.feed(page)
    return p


def _config(page: str) -> dict:
    m = re.search(r"window\.QORGAU_CONFIG = (.*?);</script>", page, re.S)
    assert m, "the page hands the script no config"
    return json.loads(m.group(1))


def test_live_map_loads_only_from_the_service_and_hands_the_script_its_config() -> None:
    page = render_live_map(
        labels=Labels(title="Қорғау"),
        config={"urls": {"events": "/map/events"}, "tz_label": "UTC+5, Asia/Almaty"},
        center=(43.238, 76.946),
        bounds=((43.2, 76.9), (43.3, 77.0)),
        asset_base="/static/",
        lang="kk",
    )
    refs = _parse(page).refs
    scripts_and_css = [v for tag, v in refs if tag in ("script", "link") and not v.startswith("data:")]
    assert sorted(scripts_and_css) == [
        "/static/leaflet.css",
        "/static/leaflet.js",
        "/static/live-map.css",
        "/static/live-map.js",
    ]
    assert not [v for _, v in refs if "//" in v], "nothing may come from another host"
    cfg = _config(page)
    assert cfg["lang"] == "kk" and cfg["tiles"] is False
    assert cfg["bounds"] == [[43.2, 76.9], [43.3, 77.0]]
    assert cfg["urls"] == {"events": "/map/events"}
    assert cfg["labels"]["title"] == "Қорғау"
    assert "<title>Қорғау</title>" in page
    assert "UTC+5, Asia/Almaty" in page  # times are shown in the city's local time, and the page says so


def test_live_map_escapes_labels_and_user_names() -> None:
    evil = "</script><script>alert(1)</script>"
    page = render_live_map(labels=Labels(title=evil, status_new=evil), config={}, center=(43.2, 76.9), user="<b>x</b>")
    assert "<script>alert(1)</script>" not in page
    assert "&lt;b&gt;x&lt;/b&gt;" in page
    assert _config(page)["labels"]["title"] == evil  # intact as data, harmless as markup


def test_live_map_with_tiles_names_them_in_the_config_only() -> None:
    page = render_live_map(
        labels=Labels(), config={}, center=(43.2, 76.9), tile_url="https://tiles.example/{z}/{x}/{y}.png"
    )
    assert _config(page)["tiles"] is True
    assert not [v for tag, v in _parse(page).refs if tag in ("script", "link", "img") and "tiles.example" in v]


def test_login_page_posts_the_form_and_keeps_the_language() -> None:
    page = render_login_page(labels=Labels(), next_url="/map?x=1", error="<wrong>", lang="en", username="aigerim")
    assert '<form method="post" action="/login">' in page
    assert 'name="next" value="/map?x=1"' in page
    assert 'name="lang" value="en"' in page
    assert 'value="aigerim"' in page
    assert "&lt;wrong&gt;" in page and "<wrong>" not in page
    assert _parse(page).scripts == []  # a plain form: no script at all
    assert "<b>en</b>" in page and "?lang=kk" in page and "?lang=ru" in page


@pytest.mark.parametrize(
    "html",
    [
        '<script src="https://cdn.example/leaflet.js"></script>',
        '<link rel="stylesheet" href="//cdn.example/x.css">',
        "<img src='http://example.org/a.png'>",
        '<iframe src="https://example.org"></iframe>',
    ],
)
def test_assert_offline_refuses_a_page_that_loads_from_another_host(html: str) -> None:
    with pytest.raises(RuntimeError, match="would load a resource from the internet"):
        assert_offline(f"<html>{html}</html>", what="test page")


def test_assert_offline_lets_links_and_local_files_pass() -> None:
    assert_offline(
        '<a href="https://www.openstreetmap.org/copyright">OSM</a><script src="/static/x.js"></script>', what="p"
    )


def test_static_assets_are_the_leaflet_and_live_map_files_with_stable_etags() -> None:
    assets = static_assets()
    assert {"leaflet.js", "leaflet.css", "live-map.js", "live-map.css"} <= set(assets)
    js, css = leaflet_assets()
    assert assets["leaflet.js"].body == js.encode()
    assert "L.version" in js or "version" in js
    assert "url(images/" not in css  # Leaflet's images are inlined as data: URLs
    for name, a in assets.items():
        assert a.media_type.startswith("text/"), name
        assert re.fullmatch(r'"[0-9a-f]{20}"', a.etag), name
    assert len({a.etag for a in assets.values()}) == len(assets)


def _plan_inputs() -> dict:
    # ~800 m east then ~670 m north, as the planner writes routes: many short street segments
    line = [[76.940 + 0.0005 * i, 43.240] for i in range(20)] + [[76.950, 43.240 + 0.0005 * i] for i in range(13)]
    routes = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "geometry": {"type": "LineString", "coordinates": line},
                "properties": {
                    "kind": "route",
                    "patrol": "P01",
                    "colour": "#e41a1c",
                    "length_m": 1470.0,
                    "walking_min": 17.5,
                    "risk_covered": 0.4,
                },
            },
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": line[19]},
                "properties": {
                    "kind": "stop",
                    "patrol": "P01",
                    "colour": "#e41a1c",
                    "seq": 1,
                    "arrive": "2026-12-02T20:10:00+05:00",
                    "depart": "2026-12-02T20:22:00+05:00",
                    "dwell_min": 12,
                    "hot_spot": 0,
                },
            },
        ],
    }
    hotspots = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": line[19]},
                "properties": {"rank": 1, "risk": 3.5, "uncovered": False},
            },
        ],
    }
    booths = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": line[0]},
                "properties": {"id": "B1", "name": "Booth <1>", "patrols": ["P01"]},
            },
        ],
    }
    return {"routes": routes, "hotspots": hotspots, "booths": booths}


def _metres(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    # An independent flat-earth measure: the test only needs "about this far".
    return (((lat2 - lat1) * 111_195.0) ** 2 + ((lon2 - lon1) * 111_195.0 * 0.7285) ** 2) ** 0.5


def test_plan_map_is_one_offline_file_with_leaflet_inlined_and_labels_escaped() -> None:
    from maps import render_plan_map

    page = render_plan_map(**_plan_inputs(), labels=Labels(layer_route="Маршрут {id}"), title="План")
    refs = _parse(page).refs
    assert not [v for tag, v in refs if tag in ("script", "link", "img") and not v.startswith("data:")]
    js, _ = leaflet_assets()
    assert js[:200] in page  # Leaflet itself is in the page, not linked
    assert "Маршрут P01" in page or json.dumps("Маршрут P01")[1:-1] in page  # the layer's name, maybe as a JS string
    assert "Booth <1>" not in page and "Booth &lt;1&gt;" in page


def test_plan_map_spaces_direction_arrows_by_the_distance_it_is_handed() -> None:
    from maps import render_plan_map

    def arrows(**kw: object) -> int:
        return (
            render_plan_map(**_plan_inputs(), labels=Labels(), **kw).count("q-arrow") - 1
        )  # less the stylesheet's rule  # type: ignore[arg-type]

    assert arrows() == 0  # maps measures nothing itself: no distance, no arrows
    sparse, dense = arrows(distance_m=_metres, arrow_every_m=400.0), arrows(distance_m=_metres, arrow_every_m=100.0)
    assert 1 <= sparse < dense
    assert dense <= 1470 // 100 + 2


def test_plan_map_draws_every_marker_in_chromium(page, tmp_path) -> None:
    from geo import great_circle_m
    from maps import render_plan_map

    inputs = _plan_inputs()
    booth = {"type": "Feature", "geometry": {"type": "Point", "coordinates": [76.9405, 43.2402]},
             "properties": {"id": "b1", "name": "Booth </script> & <b>1</b>", "patrols": ["P01"]}}  # fmt: skip
    inputs["booths"] = {"type": "FeatureCollection", "features": [booth]}
    path = tmp_path / "plan.html"
    path.write_text(render_plan_map(**inputs, labels=Labels(), title="T", distance_m=great_circle_m), encoding="utf-8")
    page.goto(path.as_uri())
    page.wait_for_selector(".q-stop")
    assert page.locator(".q-stop").count() == 1
    assert page.locator(".q-booth").count() == 1
    assert page.locator(".q-arrow").count() >= 2
    page.hover(".q-stop")
    assert "«stop» 1" in page.locator(".leaflet-tooltip").inner_text()
    page.hover(".q-booth")
    assert "Booth </script> & <b>1</b>" in page.locator(".leaflet-tooltip").last.inner_text()
