"""The short form of ``make chaos``: presses survive SIGKILLs, a broker restart and a database outage.

The harness (``bench/chaos.py``) starts its own Mosquitto (persistence on) and runs the service
as ``python -m qorgau serve`` subprocesses against SQLite; nothing here touches the suite's broker.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import bench.__main__ as bench_main
from bench.chaos import ChaosConfig, Tally, render, run

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
    text = bench_main.render()
    assert "## Faults: nothing lost, nothing doubled" in text
    assert "| sqlite | 20,000 | 20,000 | 20,000 | 0 | 0 |" in text
    assert "**met**" in text
    assert "**not met**" in "\n".join(render({**figures, "lost": 1, "stored": 19999, "unique_stored": 19999}))
