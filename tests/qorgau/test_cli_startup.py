"""The ``qorgau`` command starts without loading the stack: ``--help`` imports no heavy library.

A behavioural check, not a timed one: each ``--help`` runs in a fresh interpreter, which reports
the top-level packages it loaded. The constants the parser mirrors (so that it need not import the
rooms that define them) are checked against their sources.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]  # tests/<room>/this file -> the repository

HEAVY = frozenset(
    {
        "fastapi",
        "starlette",
        "numba",
        "scipy",
        "pandas",
        "pyarrow",
        "folium",
        "geopandas",
        "sqlalchemy",
        "paho",
    }
)
"""Libraries that take seconds to import: none of them may be needed to print help."""

OURS = frozenset({"dispatch", "geo", "maps", "mqtt_bridge", "patrol_planner", "web"})
"""The other rooms: the parser is built from the standard library alone."""

COMMANDS = [
    [],
    ["serve"],
    ["simulate"],
    ["demo"],
    ["db"],
    ["db", "upgrade"],
    ["audit", "verify"],
    ["report"],
    ["users", "add"],
    ["devices", "provision"],
    ["plan"],
    ["plan", "evaluate"],
    ["sites"],
]

_PROBE = """
import json, sys
from qorgau.cli import main
try:
    code = main(sys.argv[1:] + ["--help"])
except SystemExit as e:
    code = e.code
print(json.dumps({"code": code, "modules": sorted({m.split(".")[0] for m in sys.modules})}))
"""


def _help(argv: list[str]) -> tuple[str, dict]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    *text, last = done.stdout.splitlines()
    return "\n".join(text), json.loads(last)


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda a: " ".join(a) or "qorgau")
def test_help_loads_nothing_heavy(argv: list[str]) -> None:
    text, probe = _help(argv)
    assert probe["code"] == 0
    assert text.startswith("usage: qorgau"), text
    loaded = set(probe["modules"])
    assert not loaded & HEAVY, sorted(loaded & HEAVY)
    assert not loaded & OURS, sorted(loaded & OURS)
    assert "pydantic" not in loaded  # Settings are read when a command runs, not to print help


def test_python_m_qorgau_help_exits_cleanly() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(
        [sys.executable, "-m", "qorgau", "--help"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    for command in ("serve", "simulate", "demo", "db", "audit", "report", "users", "devices", "plan"):
        assert command in done.stdout


def test_public_names_are_still_importable_from_the_package() -> None:
    import qorgau
    from qorgau import QorgauService, Settings, Simulator
    from qorgau.runtime import QorgauService as service_home
    from qorgau.settings import Settings as settings_home
    from qorgau.simulate import Simulator as simulator_home

    assert (QorgauService, Settings, Simulator) == (service_home, settings_home, simulator_home)
    assert set(qorgau.__all__) <= set(dir(qorgau))
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        qorgau.Nope  # noqa: B018


def test_mirrored_choices_match_their_sources() -> None:
    from dispatch import Role
    from mqtt_bridge import DEFAULT_TOPIC_ROOT
    from patrol_planner.hotspots import DEFAULT_ESTIMATOR, ESTIMATORS
    from patrol_planner.i18n import DEFAULT_LANG, LANGUAGES
    from qorgau import cli, plan_cli
    from qorgau.settings import Settings
    from web import schemas as web_schemas

    assert list(cli._ROLES) == [r.value for r in Role]
    assert list(plan_cli._ESTIMATORS) == sorted(ESTIMATORS)
    assert plan_cli._DEFAULT_ESTIMATOR == DEFAULT_ESTIMATOR
    assert web_schemas.DEFAULT_ESTIMATOR == DEFAULT_ESTIMATOR
    assert tuple(plan_cli._LANGUAGES) == tuple(LANGUAGES)
    assert plan_cli._DEFAULT_LANG == DEFAULT_LANG
    assert Settings.model_fields["topic_root"].default == DEFAULT_TOPIC_ROOT
    from qorgau import sites_cli
    from web import site_outputs

    assert tuple(sites_cli._LANGUAGES) == tuple(site_outputs.LANGS)
