"""The officer's handheld on the server side: who gets the page, its texts, its manifest and service worker."""

from __future__ import annotations

import json
import re
from contextlib import closing
from pathlib import Path

import httpx
import pytest
from support import PASSWORD, Registry, Running, add_user, sign_in

from dispatch.lifecycle import TRANSITIONS
from maps import render_handheld
from maps.handheld import HANDHELD_ACTIONS, OUTCOMES
from web.pages import LANGS, unit_catalogue

sqlite_only = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # the pages, not the stores, are tested

_ROOT = Path(__file__).resolve().parents[2]
_SCRIPT = (_ROOT / "maps" / "static" / "handheld.js").read_text(encoding="utf-8")
_RENDER = (_ROOT / "maps" / "handheld.py").read_text(encoding="utf-8")


def _unit_id(registry: Registry, kind: str) -> str:
    return next(u.id for u in registry.units if u.kind.value == kind)


def _login(base_url: str, username: str, next_url: str) -> httpx.Response:
    with httpx.Client(base_url=base_url, timeout=5) as client:
        return client.post("/login", data={"username": username, "password": PASSWORD, "next": next_url})


def test_every_text_of_the_handheld_is_in_all_three_languages() -> None:
    catalogues = {lang: unit_catalogue(lang) for lang in LANGS}
    keys = set(catalogues["ru"])
    for lang, texts in catalogues.items():
        assert set(texts) == keys, f"{lang}: missing {keys - set(texts)}, extra {set(texts) - keys}"
        assert all(isinstance(v, str) and v.strip() for v in texts.values()), f"{lang} has an empty text"
        for key, text in texts.items():  # the same placeholders in every language
            assert set(re.findall(r"\{(\w+)\}", text)) == set(re.findall(r"\{(\w+)\}", catalogues["en"][key])), key
    used = set(re.findall(r"\bt\('([a-z0-9_]+)'\)", _SCRIPT)) | set(re.findall(r't\["([a-z0-9_]+)"\]', _RENDER))
    built = {f"action_{a}" for a in HANDHELD_ACTIONS} | {f"outcome_{o}" for o in OUTCOMES}
    built |= {f"withdrawn_{r}" for r in ("reassigned", "cancelled", "closed")}
    built |= {f"status_{s}" for s in ("assigned", "acknowledged", "en_route", "on_scene")}
    built |= {f"unit_status_{s}" for s in ("available", "assigned", "en_route", "on_scene", "off_duty", "offline")}
    built |= {f"source_{s}" for s in ("sos", "app102")} | {f"site_{s}" for s in ("street", "school", "hospital")}
    built |= {f"conn_{s}" for s in ("connecting", "live", "reconnecting", "offline", "signed_out")}
    assert used, "no label keys found in the script"
    assert used | built <= keys, f"texts used but missing from the catalogue: {(used | built) - keys}"
    with pytest.raises(ValueError, match="language must be one of kk, ru, en, got 'de'"):
        unit_catalogue("de")


def test_the_page_carries_the_buttons_and_loads_nothing_from_outside() -> None:
    config = {"unit": {"id": "f-1", "name": "Foot 1", "kind": "foot"}, "tz_label": "UTC+5, Asia/Almaty"}
    page = render_handheld(
        labels=unit_catalogue("kk"), config=config, unit_name="<Foot 1>", unit_kind="foot", lang="kk"
    )
    actions = re.findall(r'data-action="([a-z_]+)"', page)
    assert actions == list(HANDHELD_ACTIONS)
    assert "&lt;Foot 1&gt;" in page and "<Foot 1>" not in page.split("QORGAU_UNIT")[0]
    assert 'lang="kk"' in page and "Қабылдадым" in page
    assert re.findall(r'name="outcome" value="([a-z_]+)"', page) == list(OUTCOMES)
    assert '<link rel="manifest" href="/unit/manifest.webmanifest?lang=kk">' in page
    assert not re.search(r"""<(?:script|link|img)\b[^>]*(?:src|href)\s*=\s*["']?(?:https?:)?//""", page)
    cfg = json.loads(re.search(r"window\.QORGAU_UNIT = (.*?);</script>", page).group(1))
    assert cfg["lang"] == "kk" and cfg["labels"]["action_ack"] == "Қабылдадым" and cfg["unit"]["id"] == "f-1"


@sqlite_only
def test_strangers_go_to_the_sign_in_and_dispatchers_to_the_map(running: Running, registry: Registry) -> None:
    base = running.service.base_url
    stranger = httpx.get(f"{base}/unit?lang=en", follow_redirects=False)
    assert stranger.status_code == 303 and stranger.headers["location"] == "/login?lang=en&next=/unit"
    add_user(running.service, "aigerim", "dispatcher")
    with closing(sign_in(base, "aigerim")) as dispatcher:
        to_map = dispatcher.get("/unit?lang=kk")
        assert to_map.status_code == 303 and to_map.headers["location"] == "/map?lang=kk"
    landed = _login(base, "aigerim", "/unit")
    assert landed.status_code == 303 and landed.headers["location"].startswith("/map?")  # not to the handheld


@sqlite_only
def test_a_unit_login_lands_on_its_handheld(running: Running, registry: Registry) -> None:
    base = running.service.base_url
    unit_id = _unit_id(registry, "foot")
    unit = next(u for u in registry.units if u.id == unit_id)
    add_user(running.service, "officer", "unit", unit_id=unit_id)
    landed = _login(base, "officer", "/map")
    assert landed.status_code == 303 and landed.headers["location"] == "/unit?lang=ru"
    assert "qorgau_session=" in landed.headers["set-cookie"]
    with closing(sign_in(base, "officer")) as officer:
        assert officer.get("/map").headers["location"] == "/unit?lang=ru"  # the map sends a unit to its handheld
        page = officer.get("/unit?lang=en")
        assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
        csp = page.headers["content-security-policy"]
        assert "script-src 'self' 'sha256-" in csp and "connect-src 'self'" in csp
        cfg = json.loads(re.search(r"window\.QORGAU_UNIT = (.*?);</script>", page.text).group(1))
        assert cfg["unit"] == {"id": unit_id, "name": unit.name, "kind": "foot"}
        assert cfg["urls"]["order"] == f"/api/units/{unit_id}/order"
        assert cfg["urls"]["status"] == f"/api/units/{unit_id}/order/status"
        assert cfg["utc_offset_s"] == 5 * 3600  # Almaty: the page shows local times
        assert cfg["transitions"] == {a.value: sorted(b.value for b in to) for a, to in TRANSITIONS.items()}
        assert f'<b id="u-unit-name">{unit.name}</b>' in page.text
        streets = officer.get("/map/streets.geojson")  # the same offline street layer as the map
        assert streets.status_code == 200 and streets.json()["features"]
        assert officer.get("/map/snapshot").status_code == 403  # but not the control room's picture


@sqlite_only
def test_a_unit_login_without_a_unit_gets_a_clear_refusal(running: Running) -> None:
    ghost = running.client("unit", unit_id="no-such-unit")  # a bearer token: pages take it as the cookie
    page = ghost.get("/unit?lang=en")
    assert page.status_code == 404 and "not bound to a unit" in page.text


@sqlite_only
def test_manifest_service_worker_and_icon(running: Running) -> None:
    base = running.service.base_url
    manifest = httpx.get(f"{base}/unit/manifest.webmanifest?lang=kk")
    assert manifest.status_code == 200 and manifest.headers["content-type"].startswith("application/manifest+json")
    body = manifest.json()
    assert (body["start_url"], body["scope"], body["display"]) == ("/unit?lang=kk", "/unit", "standalone")
    assert body["name"] == unit_catalogue("kk")["title"] and body["icons"][0]["src"] == "/unit/icon.svg"
    sw = httpx.get(f"{base}/unit/sw.js")
    assert sw.status_code == 200 and sw.headers["content-type"].startswith("text/javascript")
    assert sw.headers["service-worker-allowed"] == "/unit"
    assert "connect-src 'self'" in sw.headers["content-security-policy"]  # it must fetch to fill its cache
    precache = json.loads(re.search(r"const PRECACHE = (\[.*?\]);", sw.text).group(1))
    assert {"/unit", "/static/handheld.js", "/static/handheld.css", "/static/leaflet.js"} <= set(precache)
    assert "/map/streets.geojson" in precache
    assert re.search(r'const VERSION = "[0-9a-f]{16}";', sw.text)
    assert json.loads(re.search(r"const LIVE = (\[.*?\]);", sw.text).group(1)) == ["/unit/events"]
    assert "__QORGAU_" not in sw.text
    assert httpx.get(f"{base}/api/units").headers["content-security-policy"].startswith("default-src 'none'")
    icon = httpx.get(f"{base}/unit/icon.svg")
    assert icon.status_code == 200 and icon.headers["content-type"] == "image/svg+xml" and "<svg" in icon.text
