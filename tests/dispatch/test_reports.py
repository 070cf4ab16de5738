"""Response-time reports, the public quarterly report and `qorgau audit verify`, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import text
from support import FAR_DEVICE, Clock, Registry, ingest_press, ingest_report

from dispatch import AlertStatus, DispatchPolicy, DispatchService, Store
from dispatch.reports import Districts, quarter_bounds, summarize
from geo import Router, StreetNetwork
from qorgau.cli import main


def _districts(city: StreetNetwork, folder: Path) -> Path:
    """Two districts: west and east of the city's centre."""
    min_lat, min_lon, max_lat, max_lon = city.bounds
    _, mid = city.center

    def box(name: str, west: float, east: float) -> dict:
        ring = [
            [west, min_lat - 0.1],
            [east, min_lat - 0.1],
            [east, max_lat + 0.1],
            [west, max_lat + 0.1],
            [west, min_lat - 0.1],
        ]
        return {"type": "Feature", "properties": {"name": name}, "geometry": {"type": "Polygon", "coordinates": [ring]}}

    path = folder / "districts.geojson"
    doc = {
        "type": "FeatureCollection",
        "features": [box("Almaly", min_lon - 0.1, mid), box("Medeu", mid, max_lon + 0.1)],
    }
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


@pytest.fixture
def quarter_db(db_url: str, city: StreetNetwork, registry: Registry) -> tuple[str, list[int]]:
    """Alerts of 2026Q4 with known response times: 3 closed SOS presses and a closed 102 report."""
    store = Store(db_url).upgrade_schema()
    clock = Clock()
    clock.now = datetime(2026, 10, 5, 5, 0, tzinfo=UTC)
    service = DispatchService(
        store,
        Router(city),
        devices=registry.devices,
        units=registry.units,
        clock=clock,
        policy=DispatchPolicy(duplicate_radius_m=0),
    ).open()
    devices = [d for d in sorted(registry.devices) if d != FAR_DEVICE]
    ids = []
    for i, (assign_s, arrive_s) in enumerate([(10, 100), (20, 200), (30, 300)]):
        alert_id = ingest_press(service, devices[i], clock, f"q{i}")
        unit = service.get_alert(alert_id).recommendations[0].unit_id
        clock.tick(assign_s)
        service.assign(alert_id, unit, actor="disp-1")
        clock.tick(5)
        service.acknowledge(alert_id, unit, actor="unit")
        clock.tick(arrive_s - assign_s - 5)
        service.set_unit_status(unit, "on_scene", actor="unit")
        clock.tick(60)
        service.transition(alert_id, AlertStatus.CLOSED, actor="disp-1")
        ids.append(alert_id)
        clock.tick(3600)
    lat, lon = city.center
    report = ingest_report(service, lat, lon, clock, "r1", text="Aigerim Nurlanovna saw a theft")
    service.transition(report, AlertStatus.FALSE_ALARM, actor="disp-1", reason="prank")
    clock.now = datetime(2027, 1, 2, 0, 0, tzinfo=UTC)  # the next quarter: not in the report
    ingest_press(service, devices[0], clock, "next-quarter")
    store.close()
    return db_url, ids


def test_quarter_bounds_are_in_local_time() -> None:
    start, end = quarter_bounds("2026Q4")
    assert (start, end) == (
        datetime(2026, 9, 30, 19, 0, tzinfo=UTC),
        datetime(2026, 12, 31, 19, 0, tzinfo=UTC),
    )
    with pytest.raises(ValueError, match="quarter must look like 2026Q4, got '2026-13'"):
        quarter_bounds("2026-13")


def test_summaries_by_group(quarter_db: tuple[str, list[int]], city: StreetNetwork, tmp_path: Path) -> None:
    url, _ = quarter_db
    store = Store(url)
    start, end = quarter_bounds("2026Q4")
    alerts = store.alerts_received_between(start, end)
    store.close()
    assert len(alerts) == 4
    sos = next(g for g in summarize(alerts, "source") if g.key == "sos")
    assert sos.count == 3
    assert sos.stats["to_assign"] == {"n": 3, "median_s": 20.0, "p90_s": 28.0}
    assert sos.stats["to_arrive"] == {"n": 3, "median_s": 200.0, "p90_s": 280.0}
    assert sos.stats["to_close"]["median_s"] == 260.0
    app = next(g for g in summarize(alerts, "source") if g.key == "app102")
    assert (app.count, app.stats["to_arrive"]["n"], app.stats["to_close"]["n"]) == (1, 0, 1)
    districts = Districts.from_geojson(_districts(city, tmp_path))
    by_district = summarize(alerts, "district", districts=districts)
    assert sum(g.count for g in by_district) == 4
    assert {g.key for g in by_district} <= {"Almaly", "Medeu"}


@pytest.mark.parametrize(
    ("lang", "fmt", "heading"),
    [
        ("ru", "html", "Время реагирования полиции, 2026Q4"),
        ("kk", "md", "# Полицияның әрекет ету уақыты, 2026Q4"),
        ("en", "html", "Police response times, 2026Q4"),
    ],
)
def test_public_quarterly_report_has_a_chart_and_no_personal_data(
    quarter_db: tuple[str, list[int]],
    city: StreetNetwork,
    registry: Registry,
    tmp_path: Path,
    capsys,  # type: ignore[no-untyped-def]
    lang: str,
    fmt: str,
    heading: str,
) -> None:
    url, _ = quarter_db
    out = tmp_path / f"report.{fmt}"
    argv = [
        "report",
        "--quarter",
        "2026q4",
        "--db",
        url,
        "--lang",
        lang,
        "--format",
        fmt,
        "--out",
        str(out),
        "--districts",
        str(_districts(city, tmp_path)),
    ]
    assert main(argv) == 0
    assert f"wrote {out}: 4 alerts received 2026-09-30T19:00:00+00:00" in capsys.readouterr().out
    body = out.read_text(encoding="utf-8")
    assert heading in body
    assert "<svg" in body and "<rect" in body
    assert "Almaly" in body and "Medeu" in body
    for personal in ["Aigerim", "theft", "disp-1", *registry.devices, *(u.id for u in registry.units)]:
        assert personal not in body, f"{personal!r} leaked into the public report"
    assert {"ru": "3.3 мин", "kk": "3.3 мин", "en": "3.3 min"}[lang] in body  # the SOS median time to arrive, 200 s


def test_audit_verify_command_detects_an_edited_row(quarter_db: tuple[str, list[int]], capsys) -> None:  # type: ignore[no-untyped-def]
    url, ids = quarter_db
    assert main(["audit", "verify", "--db", url]) == 0
    ok = capsys.readouterr().out
    assert ok.startswith("audit trail OK: ")
    head = ok.split("head ")[1].strip()
    store = Store(url)
    entry = next(e for e in store.audit_entries(alert_id=ids[1]) if e.action == "assign")
    with store.engine.begin() as conn:  # someone rewrites who assigned an alert
        conn.execute(text("UPDATE audit_log SET actor = 'nobody' WHERE id = :id"), {"id": entry.id})
    assert main(["audit", "verify", "--db", url]) == 1
    assert f"audit trail BROKEN at entry {entry.id}: entry {entry.id} (assign) was edited" in capsys.readouterr().out
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET actor = :a WHERE id = :id"), {"a": entry.actor, "id": entry.id})
        conn.execute(text("DELETE FROM audit_log WHERE id = (SELECT MAX(id) FROM audit_log)"))  # the newest entry
    store.close()
    assert main(["audit", "verify", "--db", url]) == 0  # a shorter chain is still a chain ...
    capsys.readouterr()
    assert main(["audit", "verify", "--db", url, "--head", head]) == 1  # ... but not the published one
    assert "no longer in the chain" in capsys.readouterr().out


def test_district_report_over_http(
    start_service, probe, registry: Registry, city: StreetNetwork, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    running = start_service(districts=_districts(city, tmp_path))
    device = next(d for d in sorted(registry.devices) if d != FAR_DEVICE)
    probe.sos(device, {"event_id": "d1", "ts": datetime.now(UTC).isoformat(), "kind": "press"})
    probe.next_ack(probe.topics.sos_ack(device))
    viewer = running.client("viewer")
    body = viewer.get("/api/reports/response-times", params={"group_by": "district"}).json()
    assert sum(g["count"] for g in body["groups"]) == 1
    assert body["groups"][0]["key"] in ("Almaly", "Medeu")
    assert body["groups"][0]["to_recommend"]["n"] == 1
    now = datetime.now(UTC)
    bad = viewer.get(
        "/api/reports/response-times", params={"from": now.isoformat(), "to": (now - timedelta(days=1)).isoformat()}
    )
    assert bad.status_code == 422


def test_catalogues_have_the_same_messages() -> None:
    from dispatch.reports import LOCALES, catalogue

    keys = {lang: set(catalogue(lang)) for lang in LOCALES}
    assert keys["kk"] == keys["ru"] == keys["en"]
    with pytest.raises(ValueError, match="language must be one of kk, ru, en, got 'de'"):
        catalogue("de")


def test_report_windows_outside_what_a_database_stores_are_refused() -> None:
    from datetime import timedelta as _td

    from dispatch.reports import report_window

    now = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
    assert report_window(None, None, now) == (now - _td(days=30), now)
    far_east = timezone(_td(hours=14))
    with pytest.raises(ValueError, match="between 1970 and 9000"):
        report_window(datetime(1, 1, 1, tzinfo=far_east), None, now)  # no UTC equivalent: overflow
    with pytest.raises(ValueError, match="between 1970 and 9000"):
        report_window(None, datetime(9999, 12, 31, tzinfo=UTC), now)
    with pytest.raises(ValueError, match="must be before"):
        report_window(now, now - _td(days=1), now)


def test_a_false_alarm_closed_by_the_unit_counts_as_one() -> None:
    """The handheld's Close with the outcome ``false_alarm`` is a false alarm in the reports, as the dispatcher's is."""
    from dispatch.domain import Alert, AlertSource, CloseOutcome, DeviceSite
    from dispatch.reports import false_alarm_rates

    now = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)

    def press(n: int, status: AlertStatus, outcome: CloseOutcome | None = None) -> Alert:
        return Alert(
            AlertSource.SOS, "sos-1", f"e-{n}", now, now, 43.2, 76.9, status=status, site=DeviceSite.SCHOOL,
            outcome=outcome,
        )  # fmt: skip

    alerts = [
        press(1, AlertStatus.CLOSED, CloseOutcome.FALSE_ALARM),  # the unit on scene: nothing had happened
        press(2, AlertStatus.FALSE_ALARM),  # the dispatcher
        press(3, AlertStatus.CLOSED, CloseOutcome.RESOLVED),
        press(4, AlertStatus.CLOSED),  # closed by a dispatcher, no outcome
    ]
    assert [a.false_alarm for a in alerts] == [True, True, False, False]
    [school] = false_alarm_rates(alerts)
    assert (school.key, school.presses, school.false_alarms) == ("school", 4, 2)
