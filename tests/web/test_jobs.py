"""Background jobs (plans, sitings) kept as files: a job whose process died is reported failed, not running forever."""

from __future__ import annotations

import os
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from web import jobs
from web.jobs import JobStore, new_job_id, run_job


def _queued(store: JobStore, **fields: object) -> str:
    job_id = new_job_id()
    store.folder(job_id).mkdir()
    store.write_status(job_id, id=job_id, status="queued", requested_at=datetime.now(UTC).isoformat(), **fields)
    return job_id


def test_a_running_job_says_it_is_alive_and_ends_done(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jobs, "HEARTBEAT_S", 0.02)
    store = JobStore(tmp_path, what="plan")
    job_id = _queued(store)
    beats: list[str] = []
    never = threading.Event()

    def work() -> dict[str, object]:
        for _ in range(200):  # until two heartbeats were written
            beats.append(str(store.status(job_id).get("alive_at")))
            if len(set(beats)) >= 3 or never.wait(0.01):
                break
        return {"summary": {"stops": 3}}

    run_job(store, job_id, work)
    record = store.status(job_id)
    assert record["status"] == "done" and record["summary"] == {"stops": 3}
    assert len(set(beats)) >= 3  # the start and two heartbeats
    assert str(record["runner"]).endswith(f":{os.getpid()}")
    # long after it finished, a done job stays done
    later = datetime.now(UTC) + timedelta(hours=2)
    assert store.status(job_id, now=later)["status"] == "done"


def test_a_job_whose_process_stopped_is_failed_by_the_next_reader(tmp_path: Path) -> None:
    store = JobStore(tmp_path, what="plan")
    now = datetime.now(UTC)
    stale = now - timedelta(seconds=jobs.STALE_AFTER_S + 5)
    dead = _queued(store)
    store.write_status(dead, status="running", alive_at=stale.isoformat(), runner="replica-host:4242")
    alive = _queued(store)
    store.write_status(alive, status="running", alive_at=(now - timedelta(seconds=5)).isoformat())

    record = JobStore(tmp_path, what="plan").status(dead, now=now)  # another replica on the shared folder
    assert record["status"] == "failed"
    assert "interrupted" in record["error"] and "replica-host:4242" in record["error"]
    assert store.status(dead)["status"] == "failed"  # it was written down, not only answered
    assert store.status(alive, now=now)["status"] == "running"
    # a queued job that never started (its process died at once) goes the same way
    never = _queued(store)
    assert store.status(never, now=now + timedelta(seconds=jobs.STALE_AFTER_S + 1))["status"] == "failed"
