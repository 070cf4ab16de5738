"""The siting map draws what it is handed, offline: booths with their build order, areas, gaps, districts."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from playwright.sync_api import Page

from maps import SITES_MAP_LABEL_KEYS, render_sites_map

LABELS = {k: f"<{k}>" if k == "attribution" else f"L:{k}" for k in SITES_MAP_LABEL_KEYS} | {
    "layer_area": "Within {m:g} min"
}


_HARMLESS = (
    "http://www.w3.org/2000/svg",
    "https://leafletjs.com",
    "https://bugs.chromium.org/",
    "https://bugzilla.mozilla.org/",
)


def _pt(lon: float, lat: float, **props: Any) -> dict[str, Any]:
    return {"type": "Feature", "geometry": {"type": "Point", "coordinates": [lon, lat]}, "properties": props}


def _square(lon: float, lat: float, r: float, **props: Any) -> dict[str, Any]:
    ring = [[lon - r, lat - r], [lon + r, lat - r], [lon + r, lat + r], [lon - r, lat + r], [lon - r, lat - r]]
    return {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]}, "properties": props}


def _fc(*features: dict[str, Any]) -> dict[str, Any]:
    return {"type": "FeatureCollection", "features": list(features)}


EXISTING = _fc(_pt(76.945, 43.238, id="b-1", name="участок полиции №51"), _pt(76.91, 43.25, id="b-2`${alert(1)}"))
ADDED = _fc(
    *(
        _pt(
            76.92 + 0.01 * k,
            43.23 + 0.004 * k,
            id=f"c-{k}",
            k=k,
            marginal_weight=10.0 / k,
            cumulative_share=0.5 + k / 20,
        )
        for k in range(1, 6)
    )
)
AREAS = _fc(_square(76.94, 43.24, 0.01, minutes=5.0), _square(76.94, 43.24, 0.02, minutes=10.0))
UNCOVERED = _fc(_pt(76.99, 43.21, weight=3.5, rank=1), _pt(76.88, 43.27, weight=1.25, rank=2))
DISTRICTS = _fc(
    _square(76.93, 43.24, 0.03, name="Алмалинский", covered_share=0.81, covered_share_existing=0.4),
    _square(76.99, 43.24, 0.03, name="Медеуский", covered_share=0.55, covered_share_existing=0.2),
)


def _page() -> str:
    return render_sites_map(
        existing=EXISTING,
        added=ADDED,
        labels=LABELS,
        areas=AREAS,
        uncovered=UNCOVERED,
        districts=DISTRICTS,
        title="Where the new booths should go",
        summary_lines=["covered 81.0%"],
    )


def test_the_page_loads_nothing_from_the_internet_and_names_every_layer() -> None:
    page = _page()
    assert not re.search(r"""<(?:script|link|img)\b[^>]*(?:src|href)\s*=\s*["']?(?:https?:)?//""", page, re.I)
    urls = set(re.findall(r"https?://[^\s\"'<>)]+", page))
    # What is left are Leaflet's own comments and the SVG namespace: nothing a browser would fetch.
    assert all(u.startswith(_HARMLESS) for u in urls), urls
    assert "L.map(" in page or "L.map (" in page  # Leaflet inlined and used
    for key in ("layer_existing", "layer_added", "layer_uncovered", "layer_districts"):
        assert f"L:{key}" in page, key
    assert "Within 5 min" in page and "Within 10 min" in page  # both walking areas, in the layer control
    assert json.dumps("Алмалинский")[1:-1] in page and "81.0%" in page  # districts with their coverage
    assert "&lt;attribution&gt;" in page  # labels are escaped
    assert "${alert(1)}" not in page and "b-2&#96;&#36;{alert(1)}" in page  # an id cannot break out of a tooltip
    for k in range(1, 6):
        assert rf"q-new\"\u003e{k}\u003c" in page  # each new booth shows its build order (folium's escapes)
    assert page.count(r"q-booth\"\u003e") == 2


def test_in_chromium_the_map_renders_its_markers(page: Page, tmp_path: Path) -> None:
    path = tmp_path / "sites.html"
    path.write_text(_page(), encoding="utf-8")
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(path.as_uri())
    page.wait_for_selector(".q-new", timeout=15_000)
    numbers = page.locator(".leaflet-marker-pane .q-new").all_inner_texts()
    assert sorted(int(n) for n in numbers) == [1, 2, 3, 4, 5]
    assert page.locator(".leaflet-marker-pane .q-booth").count() == 2
    # Areas, districts and uncovered points are vector paths on the canvas renderer (prefer_canvas):
    assert page.locator(".leaflet-overlay-pane canvas").count() >= 1
    overlays = page.locator(".leaflet-control-layers-overlays label").all_inner_texts()
    assert any("L:layer_added" in t for t in overlays) and any("Within 10 min" in t for t in overlays)
    assert all(u.startswith(("file:", "data:", "about:")) for u in requests), requests
