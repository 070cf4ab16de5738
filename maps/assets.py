"""The files a map page needs, read from installed packages and this package: nothing from a CDN.

Leaflet 1.9.4 comes from the ``django-js-lib-leaflet`` package (installed with Qorgau from PyPI);
the live map's own script and stylesheet sit in ``maps/static``. The offline plan map inlines
them; the dispatcher's live map has the service serve them (:func:`static_assets`).
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib.util import find_spec
from pathlib import Path

__all__ = ["StaticAsset", "assert_offline", "leaflet_assets", "static_assets"]

_STATIC = Path(__file__).with_name("static")
_EXTERNAL = re.compile(r"""<(?:script|link|img|iframe)\b[^>]*(?:src|href)\s*=\s*["']?(?:https?:)?//""", re.IGNORECASE)


@lru_cache(maxsize=1)
def leaflet_assets() -> tuple[str, str]:
    """Leaflet's ``leaflet.js`` and ``leaflet.css`` (images inlined) from the installed package."""
    spec = find_spec("js_lib_leaflet")
    if spec is None or not spec.submodule_search_locations:
        msg = "the Leaflet files are missing: install django-js-lib-leaflet (make install)"
        raise RuntimeError(msg)
    static = Path(next(iter(spec.submodule_search_locations))) / "static" / "js_lib_leaflet"
    js = (static / "leaflet.js").read_text(encoding="utf-8")
    css = (static / "leaflet.css").read_text(encoding="utf-8")

    def inline(m: re.Match[str]) -> str:
        path = static / m.group(1)
        if not path.is_file():
            return m.group(0)
        data = base64.b64encode(path.read_bytes()).decode()
        return f"url(data:image/png;base64,{data})"

    css = re.sub(r"url\(\s*['\"]?(images/[^'\")]+)['\"]?\s*\)", inline, css)
    return js.replace("</script", "<\\/script"), css


@dataclass(frozen=True, slots=True)
class StaticAsset:
    """One file a page loads: its bytes, media type and an ETag for caching."""

    body: bytes
    media_type: str
    etag: str


def _asset(text: str, media_type: str) -> StaticAsset:
    body = text.encode("utf-8")
    return StaticAsset(body, media_type, '"' + hashlib.sha256(body).hexdigest()[:20] + '"')


@lru_cache(maxsize=1)
def static_assets() -> dict[str, StaticAsset]:
    """The live map's files by name: ``leaflet.js``, ``leaflet.css``, ``live-map.js``, ``live-map.css``."""
    js, css = leaflet_assets()
    assets = {
        "leaflet.js": _asset(js, "text/javascript; charset=utf-8"),
        "leaflet.css": _asset(css, "text/css; charset=utf-8"),
    }
    for path in sorted(_STATIC.iterdir()):
        kind = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}.get(path.suffix)
        if kind is not None:
            assets[path.name] = _asset(path.read_text(encoding="utf-8"), kind)
    return assets


def assert_offline(page: str, *, what: str) -> None:
    """Refuse a page that would load a script, stylesheet, image or frame from another host.

    Raises
    ------
    RuntimeError
        Naming the first such reference.
    """
    bad = _EXTERNAL.search(page)
    if bad:
        msg = f"the {what} would load a resource from the internet: {bad.group(0)!r}"
        raise RuntimeError(msg)
