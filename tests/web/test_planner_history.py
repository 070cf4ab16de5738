"""Plans from Qorgau's own history: the SOS presses and 102 reports of a period, through POST /api/plans."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
from support import FAR_DEVICE, Registry, Running, report_payload, sos_payload, wait_plan_done

from dispatch import Role
from dispatch.domain import AlertStatus


def test_a_commander_plans_from_the_alert_history(
    start_service: Callable[..., Running], registry: Registry, tmp_path: Path
) -> None:
    running = start_service(plans_dir=tmp_path / "plans")
    service = running.service.service
    net = running.service.network
    rng = np.random.default_rng(5)
    # 24 reports at nodes far apart (no duplicate links), then what must not count.
    picked: list[int] = []
    for node in rng.permutation(net.n_nodes):
        lat, lon = float(net.node_lat[node]), float(net.node_lon[node])
        if all(abs(lat - net.node_lat[p]) * 111_000 > 150 or abs(lon - net.node_lon[p]) * 81_000 > 150 for p in picked):
            picked.append(int(node))
        if len(picked) == 24:
            break
    ids = []
    for node in picked:
        ack = service.ingest_app102(
            json.dumps(report_payload(float(net.node_lat[node]), float(net.node_lon[node]))).encode()
        )
        assert ack.accepted, ack
        ids.append(int(ack.alert_id))
    false_alarm = ids.pop()
    service.transition(false_alarm, AlertStatus.FALSE_ALARM, actor="test-dispatcher", reason="prank")
    device = next(d for d in registry.devices if d != FAR_DEVICE)
    test_press = service.ingest_sos(device, json.dumps(sos_payload(kind="test")).encode())
    assert test_press.accepted
    duplicate = service.ingest_app102(
        json.dumps(report_payload(float(net.node_lat[picked[0]]), float(net.node_lon[picked[0]]))).encode()
    )
    assert service.get_alert(int(duplicate.alert_id)).duplicate_of == ids[0]

    commander = running.client(Role.COMMANDER)
    local = datetime.now(ZoneInfo("Asia/Almaty"))
    body = {
        "history": {"since": (datetime.now(UTC) - timedelta(hours=1)).isoformat()},
        "patrols": 1,
        "shift": f"{local.hour:02d}:00-{(local.hour + 2) % 24:02d}:00",  # the hours the reports came in
        "date": (local.date() + timedelta(days=1)).isoformat(),
        "iterations": 50,
        "time_limit_s": 5,
        "lang": "en",
    }
    r = commander.post("/api/plans", json=body)
    assert r.status_code == 202, r.text
    done = wait_plan_done(commander, r.json()["id"])
    assert done["status"] == "done", done
    assert done["summary"]["incidents"]["kept"] == len(ids)
    assert done["summary"]["training"]["public"] == len(ids) and done["summary"]["training"]["officer_discovered"] == 0
    rows = list(csv.DictReader(io.StringIO((tmp_path / "plans" / r.json()["id"] / "incidents.csv").read_text())))
    assert sorted(int(row["alert_id"]) for row in rows) == sorted(ids)  # no false alarm, test or duplicate
    assert {row["initiated_by"] for row in rows} == {"public"}

    assert running.client(Role.DISPATCHER).post("/api/plans", json=body).status_code == 403
    empty = {**body, "history": {"since": "2020-01-01T00:00:00+05:00", "until": "2020-02-01T00:00:00+05:00"}}
    r = commander.post("/api/plans", json=empty)
    assert r.status_code == 422 and "nothing to plan from" in r.json()["detail"]
    both = {**body, "incidents_csv": "lat,lon,occurred_at\n"}
    assert commander.post("/api/plans", json=both).status_code == 422
    naive = {**body, "history": {"since": "2026-01-01T00:00:00"}}
    assert commander.post("/api/plans", json=naive).status_code == 422
