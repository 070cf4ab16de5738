"""The short forms of ``make chaos``: presses survive SIGKILLs, a broker restart and a database outage.

The harness (``bench/chaos.py``) starts its own Mosquitto (persistence on) and runs the service
as ``python -m qorgau serve`` subprocesses against SQLite, or three named replicas against a
throwaway PostgreSQL cluster of its own (``--replicas``); nothing here touches the suite's broker
or database server.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest

import bench.__main__ as bench_main
from bench.chaos import (
    _CHECKS_THAT_MUST_BE_ZERO,
    ChaosConfig,
    ReplicaChaosResult,
    Tally,
    dispatch_checks,
    render,
    render_replicas,
    run,
)

SENT = 600


@pytest.mark.slow
def test_every_press_is_stored_once_through_kills_a_broker_restart_and_a_database_outage(tmp_path: Path) -> None:
    config = ChaosConfig(
        sent=SENT,
        rate=30.0,
        db="sqlite",
        buttons=10,
        kill_every_s=2.0,
        min_kills=2,
        broker_restart_at=0.2,
        db_outage_at=0.45,
        db_outage_s=11.0,  # beyond the service's 10 s SQLite busy timeout: writes fail, not just wait
        drain_timeout_s=180.0,
        city_nodes=600,
        workdir=tmp_path,
    )
    result = run(config)
    timeline = "\n".join(result.timeline)

    # the faults happened
    assert result.kills >= 2, timeline
    assert result.broker_restarts == 1 and result.db_outages == 1, timeline
    assert result.store_errors_logged >= 1, f"the outage never reached the service:\n{timeline}"
    # and nothing was lost or doubled
    assert result.sent == SENT
    assert result.lost == 0, f"lost {result.lost_sample}\n{timeline}"
    assert (result.stored, result.unique_stored, result.duplicates, result.unexpected) == (SENT, SENT, 0, 0)
    assert result.acknowledged == SENT, timeline
    assert (result.rejected_acks, result.ack_alert_id_mismatches) == (0, 0)
    assert result.ok


def test_tally_names_lost_doubled_and_foreign_presses() -> None:
    sent = {"e1", "e2", "e3", "e4"}
    rows = [("e1", 1), ("e2", 2), ("e2", 5), ("e4", 4), ("zz", 9)]
    acks = {"e1": 1, "e2": 2, "e4": 7}
    tally = Tally.of(sent, rows, acks)
    assert tally.lost == ["e3"]
    assert (tally.stored, tally.unique_stored, tally.duplicates, tally.duplicated) == (5, 4, 1, ["e2"])
    assert tally.unexpected == 1
    assert tally.acknowledged == 3
    assert tally.ack_alert_id_mismatches == 1  # e4 acknowledged as alert 7, stored as alert 4


def test_benchmarks_md_renders_a_stored_chaos_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    figures = {
        "db": "sqlite",
        "sent": 20000,
        "stored": 20000,
        "unique_stored": 20000,
        "acknowledged": 20000,
        "duplicates": 0,
        "lost": 0,
        "unexpected": 0,
        "rejected_acks": 0,
        "ack_alert_id_mismatches": 0,
        "publishes": 20000,
        "republishes": 0,
        "ack_messages": 20113,
        "kills": 9,
        "service_starts": 10,
        "service_exits": 0,
        "broker_restarts": 1,
        "db_outages": 1,
        "store_errors_logged": 2,
        "redeliveries_logged": 113,
        "send_s": 133.4,
        "total_s": 190.0,
        "drain_s": 20.0,
        "rate_hz": 150.0,
        "buttons": 20,
    }
    record = {
        "measured_at": "2026-11-22T16:00:00+00:00",
        "command": "python -m bench.chaos",
        "machine": {"cpu": "test cpu", "cores": 2, "load_average_at_start": [1.0, 1.0, 1.0]},
        "figures": figures,
    }
    (tmp_path / "chaos.json").write_text(json.dumps(record))
    monkeypatch.setattr(bench_main, "RESULTS", tmp_path)
    text = bench_main.render(tmp_path)
    assert "## Faults: nothing lost, nothing doubled" in text
    assert "| sqlite | 20,000 | 20,000 | 20,000 | 0 | 0 |" in text
    assert "**met**" in text
    assert "**not met**" in "\n".join(render({**figures, "lost": 1, "stored": 19999, "unique_stored": 19999}))


@pytest.mark.slow
def test_three_replicas_lose_nothing_and_order_once_through_kills_a_broker_and_a_postgres_restart() -> None:
    # No workdir: the harness's own temporary folder, which the postgres user of its throwaway
    # cluster can reach (pytest's basetemp is private to us).
    config = ChaosConfig(
        sent=SENT,
        rate=40.0,
        db="postgres",
        replicas=3,
        buttons=10,
        kill_every_s=4.0,  # slots at 4, 8, 12 s of a 15 s run: at least 2 kills
        min_kills=2,
        broker_restart_at=0.2,  # midway between kill slots: 2 s
        db_outage_at=0.45,  # 6 s
        db_outage_s=0.0,  # a restart: stop, then start at once
        ack_deadline_s=2.0,  # nobody acknowledges: every order escalates within the run
        drain_timeout_s=180.0,
        city_nodes=600,
    )
    result = run(config)
    assert isinstance(result, ReplicaChaosResult)
    timeline = "\n".join(result.timeline)

    # the faults happened, to replicas that are named and restarted
    assert result.replicas == 3
    assert result.kills >= 2 and sum(result.kills_by_replica.values()) == result.kills, timeline
    assert len([k for k in result.kills_by_replica.values() if k]) >= 2, "round robin: two replicas killed"
    assert result.broker_restarts == 1 and result.db_outages == 1, timeline
    assert result.store_errors_logged >= 1, f"the PostgreSQL restart never reached a replica:\n{timeline}"
    # every press stored once and acknowledged, every ack naming the stored alert
    assert result.sent == SENT
    assert result.lost == 0, f"lost {result.lost_sample}\n{timeline}"
    assert (result.stored, result.unique_stored, result.duplicates, result.unexpected) == (SENT, SENT, 0, 0)
    assert result.acknowledged == SENT, timeline
    assert (result.rejected_acks, result.ack_alert_id_mismatches) == (0, 0)
    assert result.ack_messages >= SENT
    # press -> ack measured for every press and around every fault (the targets are reported, not asserted)
    lat = result.ack_latency_ms
    assert lat["n"] == SENT and 0 < lat["p50"] <= lat["p99"] <= lat["max"]
    kinds = [w["what"].split()[0] for w in result.fault_windows]
    assert kinds.count("kill") == result.kills and "broker" in kinds and "database" in kinds
    assert all(w["presses"] > 0 and w["unacked"] == 0 for w in result.fault_windows), result.fault_windows
    # orders and escalations happened, each once; the audit chain verifies
    c = result.checks
    assert c["orders"] > 0 and c["escalations"] > 0, c
    assert {k: v for k, v in c.items() if k in _CHECKS_THAT_MUST_BE_ZERO and v} == {}, c
    assert result.audit_ok, result.audit_output
    assert result.cpu["cpu_s"]["replicas"] > 0
    assert result.ok
    assert "| postgres | 3 | 600 | 600 | 600 | 0 | 0 |" in "\n".join(render_replicas(asdict(result)))


def test_dispatch_checks_count_repeated_orders_and_escalations(tmp_path: Path) -> None:
    from sqlalchemy import create_engine, text

    from dispatch import Store

    url = f"sqlite:///{tmp_path / 'checks.sqlite3'}"
    Store(url).upgrade_schema().close()
    engine = create_engine(url)
    now = "2026-12-02 10:00:00"
    with engine.begin() as conn:
        for i, esc in ((1, 2), (2, 0)):
            conn.execute(
                text(
                    "INSERT INTO alerts (id, source, sender, event_id, event_ts, received_at, lat, lon, status, "
                    "priority, escalations, assigned_unit_id) VALUES (:i, 'sos', 's', :e, :t, :t, 0, 0, 'assigned', "
                    "1, :esc, 'u1')"
                ),
                {"i": i, "e": f"e{i}", "t": now, "esc": esc},
            )
        orders = [(1, 1, "u1", now), (2, 1, "u1", None), (3, 2, "u2", None), (4, 2, "u3", None)]
        for oid, aid, unit, missed in orders:
            conn.execute(
                text(
                    "INSERT INTO assignments (id, alert_id, unit_id, assigned_at, assigned_by, override, auto, "
                    "ack_due_at, missed_at) VALUES (:o, :a, :u, :t, 'system', false, true, :t, :m)"
                ),
                {"o": oid, "a": aid, "u": unit, "t": now, "m": missed},
            )
        audits = [
            ("ingest", 1, None),
            ("ingest", 1, None),
            ("auto_assign", 1, {"order_id": 1}),
            ("auto_assign", 1, {"order_id": 2}),
            ("auto_assign", 2, {"order_id": 3}),
            ("escalation", 1, {"order_id": 1}),
            ("escalation", 1, {"order_id": 1}),
        ]
        for n, (action, aid, after) in enumerate(audits):
            conn.execute(
                text(
                    "INSERT INTO audit_log (ts, actor, action, alert_id, after, prev_hash, hash) "
                    "VALUES (:t, 'system', :a, :al, :after, '', :h)"
                ),
                {"t": now, "a": action, "al": aid, "after": None if after is None else json.dumps(after), "h": str(n)},
            )
    engine.dispose()
    c = dispatch_checks(url)
    assert (c["orders"], c["auto_orders"], c["escalations"]) == (4, 3, 2)
    assert c["orders_same_unit_twice"] == 1  # orders 1 and 2: u1 to alert 1 twice
    assert c["orders_unanswered_twice"] == 1  # orders 3 and 4 both open on alert 2
    assert c["order_audit_mismatch"] == 1  # order 4 has no audit entry
    assert c["order_audits_duplicated"] == 0
    assert c["escalations_duplicated"] == 1  # order 1 escalated twice
    assert c["escalation_counter_mismatch"] == 0  # alerts say 2 + 0, the entries 2
    assert c["missed_mismatch"] == 1  # one order missed, two escalation entries
    assert c["ingest_audits_duplicated"] == 1
    assert c["units_double_booked"] == 1  # u1 held by alerts 1 and 2


def test_benchmarks_md_renders_a_stored_replicas_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = {
        "db": "postgres",
        "sent": 20000,
        "stored": 20000,
        "unique_stored": 20000,
        "acknowledged": 20000,
        "duplicates": 0,
        "lost": 0,
        "unexpected": 0,
        "rejected_acks": 0,
        "ack_alert_id_mismatches": 0,
        "publishes": 20000,
        "republishes": 0,
        "ack_messages": 51000,
        "kills": 12,
        "service_starts": 15,
        "service_exits": 0,
        "broker_restarts": 1,
        "db_outages": 1,
        "store_errors_logged": 3,
        "redeliveries_logged": 40000,
        "start_failures_logged": 0,
        "bridge_keepalive_drops": 0,
        "send_s": 133.4,
        "total_s": 190.0,
        "drain_s": 20.0,
        "rate_hz": 150.0,
        "buttons": 20,
    }
    figures = {
        **base,
        "replicas": 3,
        "kills_by_replica": {"r1": 4, "r2": 4, "r3": 4},
        "kills_delayed": 1,
        "leader_takeovers": 5,
        "kill_every_s": 10.0,
        "ack_deadline_s": 3.0,
        "ack_latency_ms": {"n": 20000, "p50": 40.0, "p99": 900.0, "max": 4200.0},
        "fault_windows": [
            {"what": "kill r1", "at_s": 10.0, "down_s": 0.0, "presses": 600, "unacked": 0, "max_ack_ms": 1200.0},
            {
                "what": "database restart",
                "at_s": 85.0,
                "down_s": 1.5,
                "presses": 800,
                "unacked": 0,
                "max_ack_ms": 4200.0,
            },
        ],
        "checks": {
            **dict.fromkeys(_CHECKS_THAT_MUST_BE_ZERO, 0),
            "orders": 600,
            "auto_orders": 600,
            "escalations": 590,
        },
        "audit_ok": True,
        "audit_output": "audit trail OK: 100 entries, head abc",
        "cpu": {"wall_s": 180.0, "cores": 2, "cpu_s": {"replicas": 250.0}, "machine_busy": 1.0},
    }
    record = {
        "measured_at": "2026-12-02T16:00:00+00:00",
        "command": "python -m bench.chaos --replicas 3 --db postgres",
        "machine": {"cpu": "test cpu", "cores": 2, "load_average_at_start": [1.0, 1.0, 1.0]},
        "figures": figures,
    }
    (tmp_path / "chaos_replicas.json").write_text(json.dumps(record))
    monkeypatch.setattr(bench_main, "RESULTS", tmp_path)
    text = bench_main.render(tmp_path)
    assert "## Faults with 3 replicas" in text
    assert "| postgres | 3 | 20,000 | 20,000 | 20,000 | 0 | 0 |" in text
    assert "| all 20,000 presses | 0.04 | 0.90 | 4.20 |" in text
    assert "around the database restart (down 1.5 s) | | | 4.20 |" in text
    assert text.count("**met**") == 4
    late = render_replicas({**figures, "ack_latency_ms": {"n": 20000, "p50": 40.0, "p99": 1500.0, "max": 9000.0}})
    assert "p99 under 1 s: **not met** (1.50 s)" in "\n".join(late)
    twice = render_replicas({**figures, "checks": {**figures["checks"], "escalations_duplicated": 1}})
    assert "audit chain intact: **not met**" in "\n".join(twice)
    up = {"n": 19700, "p50": 35.0, "p99": 700.0, "max": 3100.0}
    outage = "\n".join(
        render_replicas(
            {**figures, "ack_latency_ms": {"n": 20000, "p50": 40.0, "p99": 1500.0, "max": 9000.0, "broker_up": up}}
        )
    )
    assert "| the 19,700 not made while the broker was down | 0.04 | 0.70 | 3.10 |" in outage
    assert "p99 under 1 s: **not met** (1.50 s)" in outage
    assert "while the broker was down: p99 **met** (0.70 s), max **met** (3.10 s)." in outage
