"""Every bench part still runs: ``python -m bench --quick --only PART`` in a subprocess, per part.

The quick form uses tiny sizes (seconds, not a measurement) against the test broker and writes its
figures and its BENCHMARKS.md to a temporary folder, never over the record. Each test checks that
the part completed, produced its figures (present, positive, finite) and rendered its section, so
a benchmark that rots (a renamed API, a page that changed, a CSP that refuses the driver) fails
here instead of on the next ``make bench``.

The hostile part is the former tests/test_hostile_bench.py (2,000 generated messages, good and
bad, through the real broker and the service's own bridge into SQLite), folded in here with all
its assertions. ``bench/chaos.py`` is not a ``python -m bench`` part: tests/bench/test_chaos.py runs its
short form.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support import SHARED_DATA

ROOT = Path(__file__).resolve().parents[2]  # tests/<room>/this file -> the repository


def _at(figures: dict[str, Any], path: str) -> Any:
    value: Any = figures
    for key in path.split("."):
        assert isinstance(value, dict) and key in value, f"no {path!r} in the figures (missing {key!r})"
        value = value[key]
    return value


def _positive(figures: dict[str, Any], *paths: str) -> None:
    for path in paths:
        value = _at(figures, path)
        assert isinstance(value, int | float) and not isinstance(value, bool), (path, value)
        assert math.isfinite(value) and value > 0, (path, value)


def _non_negative(figures: dict[str, Any], *paths: str) -> None:
    """For durations rounded to 10 ms, which a tiny run may bring to 0."""
    for path in paths:
        value = _at(figures, path)
        assert isinstance(value, int | float) and not isinstance(value, bool), (path, value)
        assert math.isfinite(value) and value >= 0, (path, value)


def _routing(f: dict[str, Any]) -> None:
    (city,) = f.values()
    _positive(
        city, "nodes", "units", "alerts", "router_build_s", "pandana_setup_s", "pandana_static_fleet_per_alert_ms"
    )
    for approach in ("qorgau", "qorgau_cpu", "qorgau_move_unit", "networkx", "pandana_moving_fleet"):
        _positive(city, f"{approach}.median_ms", f"{approach}.p99_ms", f"{approach}.n")
    assert 0 <= city["networkx_agreement"] <= 1 and 0 <= city["pandana_agreement"] <= 1


def _mqtt(f: dict[str, Any]) -> None:
    _positive(f, "rate_hz", "duration_s")
    for path in ("bare", "qorgau"):
        _positive(f, f"{path}.sent", f"{path}.received", f"{path}.p50_ms", f"{path}.p99_ms", f"{path}.max_ms")
    assert f["qorgau"]["received"] == f["qorgau"]["sent"], f["qorgau"]
    assert f["qorgau"]["alerts_stored"] == f["qorgau"]["sent"]
    assert set(f["qorgau"]["ack_statuses"]) == {"accepted"}


def _burst(f: dict[str, Any]) -> None:
    _positive(
        f,
        "burst.sent",
        "burst.received",
        "burst.p50_ms",
        "burst.p99_ms",
        "burst.published_in_s",
        "burst.last_ack_after_s",
    )
    assert f["burst"]["received"] == f["burst"]["sent"], f["burst"]
    _positive(f, "flood.rate_hz", "flood.duration_s", "flood.reports_sent")
    for phase in ("quiet", "flooded"):
        _positive(f, f"flood.{phase}.sent", f"flood.{phase}.received", f"flood.{phase}.p50_ms", f"flood.{phase}.p99_ms")
        assert f["flood"][phase]["received"] == f["flood"][phase]["sent"], f["flood"][phase]


def _planner(f: dict[str, Any]) -> None:
    ev = f["evaluation"]
    for name in ("full", "night", "early", "extract"):
        _positive(ev, f"{name}.windows", f"{name}.events_per_window", f"{name}.area_km2")
        assert ev[f"{name}_table"], name
    _positive(ev, "full_seconds_with_read", "read_seconds", "extract_incidents")
    _non_negative(ev, "extract_seconds")
    _positive(
        f, "city.nodes", "city.incidents", "city.total_seconds", "city.hot_spots", "city.stops", "city.plan_html_mb"
    )
    _non_negative(f, "city.steps_seconds.router", "city.steps_seconds.plan", "city.steps_seconds.files")
    _positive(f, "city.risk_covered_share")
    for q in ("city.quality", "toronto_quality"):
        _positive(f, f"{q}.total_risk", f"{q}.hot_spots", f"{q}.greedy.risk_per_patrol_hour")
        _positive(f, f"{q}.pyvrp.risk_per_patrol_hour", f"{q}.pyvrp.iterations", f"{q}.pyvrp_10x.risk_per_patrol_hour")
        # The method before issue 14's speed-up, measured beside the new default.
        _positive(f, f"{q}.before_greedy.risk_per_patrol_hour", f"{q}.before.risk_per_patrol_hour")
        _positive(f, f"{q}.before_10x.risk_per_patrol_hour", f"{q}.before.iterations")
    ba = f["before_after"]  # issue 14: the baseline commit's plan beside this checkout's, each with its defaults
    _positive(ba, "before.total", "after.total", "speedup", "before.risk_per_patrol_hour", "after.risk_per_patrol_hour")
    assert f["quick"] is True


def _map(f: dict[str, Any]) -> None:
    assert f["browser"].startswith("Chromium")
    for scenario in ("latency", "scale"):
        s = f[scenario]
        assert s["missing"] == 0, s  # signed in under the page's own CSP, every pressed alert reached the DOM
        for path in ("publish_to_marker", "publish_to_ack"):
            _positive(s, f"{path}.n", f"{path}.p50_ms", f"{path}.p95_ms", f"{path}.max_ms")
        # ack -> marker compares two observers (the publisher hears the ack, the page draws the marker):
        # the page may well draw first, so it is finite, not necessarily positive.
        _positive(s, "ack_to_marker.n")
        for q in ("p50_ms", "p95_ms", "max_ms"):
            assert math.isfinite(s["ack_to_marker"][q]), (scenario, s["ack_to_marker"])
        assert s["publish_to_marker"]["n"] == s["sent"]
    _positive(f, "scale.open_alerts", "scale.units", "scale.sign_in_to_live_ms", "scale.snapshot_ms", "scale.frames.n")
    _positive(f, "scale.frames.p50_ms", "latency.update.n", "latency.events")


def _hostile(f: dict[str, Any]) -> None:
    # The assertions of the former tests/test_hostile_bench.py, on the same run (bench.hostile.QUICK).
    assert f["processed"] >= f["reaching_the_service"], f
    assert f["exceptions_escaping"] == 0, f["traceback_samples"]
    assert f["internal_errors"] == 0 and f["tracebacks_in_log"] == 0
    assert f["acks_without_reason"] == 0
    assert f["good_sent"] > 800
    assert f["good_stored"] == f["good_sent"] == f["good_stored_rows"]
    # at least once: a dropped connection makes the broker redeliver, and a redelivery is answered again
    for reason, expected in f["expected_rejections"].items():
        assert expected <= f["rejected"].get(reason, 0) <= expected + f["redeliveries"], (
            reason,
            f["rejected"],
            f["expected_rejections"],
        )
    assert f["redeliveries"] >= 0
    assert f["acks_rejected_by_reason"].get("malformed_json", 0) > 0  # devices hear why
    assert f["ok"]


def _sites(f: dict[str, Any]) -> None:
    assert f["quick"] is True
    for name in ("scale", "almaty", "toronto"):
        r = f[name]
        _positive(r, "demand_points", "sites", "existing", "add", "coverage_pairs", "share_milp")
        _non_negative(r, "milp_s", "greedy_s", "coverage_s", "share_existing", "gap")
        # Greedy never beats the model, and the model keeps the existing booths' coverage.
        assert r["share_greedy"] <= r["share_milp"] + 1e-12, r
        assert r["share_existing"] <= r["share_milp"] <= 1.0, r
        assert r["status"] in {"optimal", "time_limit", "greedy"}
    sp = f["scale"]["spopt_window"]
    _positive(sp, "demand_points", "sites", "spopt_s", "milp_objective")
    assert sp["same_objective"], sp  # spopt's MCLP agrees with ours on the same matrix


def _startup(f: dict[str, Any]) -> None:
    for way in ("baseline", "cold", "warm"):
        _positive(f, f"{way}.median_s", f"{way}.p99_s", f"{way}.min_s", f"{way}.n")
        assert f[way]["min_s"] <= f[way]["median_s"] <= f[way]["p99_s"]
    assert f["network"].endswith(".osm.gz")  # the quick form starts on the small Toronto extract


def _replicas(f: dict[str, Any]) -> None:
    assert f["quick"] is True
    steps = f["steps"]
    assert [s["replicas"] for s in steps] == sorted(f["workload"]["replicas"]) == [1, 2], steps
    for s in steps:
        n, names = s["replicas"], [f"r{i}" for i in range(1, s["replicas"] + 1)]
        for phase in ("steady", "burst"):
            p = s[phase]
            # one accepted ack per live replica for every press, all naming the same alert
            assert p["acks_per_press"] == {str(n): p["sent"]}, (n, phase, p["acks_per_press"])
            assert p["statuses"] == {"accepted": n * p["sent"]}, p["statuses"]
            assert p["alert_ids_disagreeing"] == 0
            first, every = p["first_ack"], p["all_acks"]
            assert first["n"] == every["n"] == p["sent"] > 0
            _positive(p, "first_ack.p50_ms", "first_ack.p99_ms", "window_s")
            assert first["p50_ms"] <= first["p99_ms"] <= first["max_ms"] < 60_000, first
            assert first["p99_ms"] <= every["p99_ms"] and first["max_ms"] <= every["max_ms"], (first, every)
            if n == 1:
                assert first == every
            # every replica ingested the presses; the figures fit in the machine (CPU <= cores x window)
            _positive(p, *(f"cpu_s.{r}" for r in names), "cpu_s.postgres")
            _non_negative(p, "cpu_s.broker", "cpu_s.bench_client")
            assert sum(p["cpu_s"].values()) <= f["cores"] * p["window_s"] + 0.01 * len(p["cpu_s"]) + 0.05, p
            assert 0 < p["machine_busy_share"] <= 1
            # read from the replicas' logs: presses answered with another replica's alert (of them ranked
            # in vain), and batches stored one by one (none: ON CONFLICT skips another's commit)
            for kind in ("answered_stored", "lost_races", "batch_fallbacks"):
                assert sorted(p[kind]) == names, p[kind]
            assert all(x == {"batches": 0, "alerts": 0} for x in p["batch_fallbacks"].values()), p
            lost = sum(x["alerts"] for x in p["lost_races"].values())
            assert lost <= sum(x["alerts"] for x in p["answered_stored"].values()), p
            if n == 1:  # nobody else commits
                assert all(x == {"batches": 0, "alerts": 0} for x in p["lost_races"].values()), p
        _positive(s, "burst.throughput_first_ack_hz", "burst.throughput_all_acks_hz")
        assert s["burst"]["throughput_all_acks_hz"] <= s["burst"]["throughput_first_ack_hz"]
        # no first ack comes before its press: the burst cannot finish faster than it was published
        assert s["burst"]["throughput_first_ack_hz"] * s["burst"]["published_in_s"] <= s["burst"]["sent"] + 1
        # the database let exactly one replica commit each press, and every ack named that alert
        db = s["stored"]
        assert db["each_once"] and db["alerts"] == db["events"] == db["presses"] > 0, db
        assert db["ack_names_another_alert"] == 0, db


PARTS: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "routing": (_routing, "## Recommendation: top 3 units by ETA"),
    "mqtt": (_mqtt, "## SOS press -> accepted ack through Mosquitto"),
    "burst": (_burst, "## "),
    "planner": (_planner, "## Patrol planner"),
    "map": (_map, "## Dispatcher's live map: MQTT publish -> marker in the browser"),
    "hostile": (_hostile, "## Hostile input: generated good and bad messages through the bridge"),
    "sites": (_sites, "## Booth siting: maximal covering location with the existing booths kept"),
    "startup": (_startup, "## Start-up of a replica: exec -> healthy /healthz"),
    "replicas": (_replicas, "## Replicas: SOS press -> first ack with 1"),
}
"""Part -> (checks of its figures, a heading its section in BENCHMARKS.md starts with)."""


@pytest.mark.parametrize("part", list(PARTS))
def test_quick_form_runs_and_produces_its_figures(part: str, mqtt_url: str, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "QORGAU_TEST_MQTT_URL": mqtt_url,
        "QORGAU_SHARED_DATA": str(SHARED_DATA),  # the planner part reads the Toronto data where the tests do
    }
    argv = [sys.executable, "-m", "bench", "--quick", "--only", part, "--mqtt", mqtt_url, "--out", str(tmp_path)]
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["BENCHMARKS.md", f"{part}.json"]
    record = json.loads((tmp_path / f"{part}.json").read_text())
    assert "--quick" in record["command"]
    check, heading = PARTS[part]
    check(record["figures"])
    markdown = (tmp_path / "BENCHMARKS.md").read_text()
    assert markdown.startswith("# Benchmarks")
    assert f"with `{record['command']}`" in markdown  # the part rendered its section
    assert heading in markdown
