"""qorgau: the command line and the wiring of the dispatch service.

The room that puts the other rooms together into one running process: it reads settings
(``QORGAU_*`` environment variables, overridden by flags), loads the street network and the
registries, and runs the MQTT bridge and the HTTP API (``qorgau serve``), a simulator
(``qorgau simulate``) or both on a generated city (``qorgau demo``).

Public names::

    settings = Settings(db_url="sqlite:///var/q.sqlite3", units="units.geojson", devices="devices.geojson")
    with QorgauService(settings, network=generate_city(2000, seed=7)).start() as service:
        service.base_url
    Simulator(url="mqtt://127.0.0.1:1883", topic_root="qorgau/v1", devices=devices).run(10)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from qorgau.runtime import QorgauService
    from qorgau.settings import Settings
    from qorgau.simulate import Simulator

__all__ = ["QorgauService", "Settings", "Simulator"]

# Public name -> the module that defines it. Imported on first use (PEP 562), so that
# `import qorgau.cli` (and `qorgau --help`) does not load the whole stack.
_HOME = {"QorgauService": "qorgau.runtime", "Settings": "qorgau.settings", "Simulator": "qorgau.simulate"}


def __getattr__(name: str) -> Any:
    try:
        home = _HOME[name]
    except KeyError:
        msg = f"module {__name__!r} has no attribute {name!r}"
        raise AttributeError(msg) from None
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
