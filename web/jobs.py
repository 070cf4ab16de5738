"""Background jobs of the HTTP API kept as folders of files: patrol plans and booth sitings.

A job is a folder ``<data dir>/<id>/`` holding its inputs, its output files and ``status.json``
(``queued`` -> ``running`` -> ``done`` or ``failed``, with the reason), so jobs survive a restart
of the service. :class:`JobStore` keeps the folders; :func:`start_job` runs the work in a thread
and records how it ended. :mod:`web.plan_jobs` and :mod:`web.site_jobs` build on them.

A job runs in the process (the replica) that accepted it, and that process may die: while it
works it writes ``alive_at`` every :data:`HEARTBEAT_S` seconds, with ``runner`` (host and pid).
A queued or running job with no sign of life for :data:`STALE_AFTER_S` is reported ``failed``
("interrupted") by whichever replica reads it next (the folder is shared, ``QORGAU_PLANS_DIR``),
instead of "running" forever.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi import HTTPException, status

__all__ = ["HEARTBEAT_S", "STALE_AFTER_S", "JobStore", "new_job_id", "run_job", "start_job"]

log = logging.getLogger(__name__)

HEARTBEAT_S = 10.0
"""How often a running job says it is alive (``alive_at`` in its ``status.json``)."""
STALE_AFTER_S = 60.0
"""A queued or running job silent this long was interrupted (its process stopped): it is failed."""
_UNFINISHED = ("queued", "running")

_ID = re.compile(r"^[0-9a-f]{32}$")


def new_job_id() -> str:
    return uuid.uuid4().hex


class JobStore:
    """Jobs as folders of files; ``status.json`` says where each one is.

    ``what`` names a job in error messages (``"plan"``, ``"siting"``).
    """

    def __init__(self, root: str | Path, *, what: str = "job") -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.what = what
        self._lock = threading.Lock()

    def folder(self, job_id: str) -> Path:
        if not _ID.match(job_id):
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no {self.what} {job_id!r}")
        return self.root / job_id

    def status(self, job_id: str, *, now: datetime | None = None) -> dict[str, Any]:
        """The job's ``status.json``; an unfinished job whose process stopped is marked failed first."""
        path = self.folder(job_id) / "status.json"
        if not path.is_file():
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no {self.what} {job_id!r}")
        record: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        if record.get("status") in _UNFINISHED:
            seen = record.get("alive_at") or record.get("started_at") or record.get("requested_at")
            now = now or datetime.now(UTC)
            if seen and now - datetime.fromisoformat(str(seen)) > timedelta(seconds=STALE_AFTER_S):
                runner = record.get("runner") or "the service"
                log.warning("%s %s: no sign of life from %s since %s; marked failed", self.what, job_id, runner, seen)
                record = self.write_status(
                    job_id,
                    status="failed",
                    finished_at=now.isoformat(),
                    error=f"interrupted: the process running it ({runner}) stopped before it finished "
                    f"(last sign of life {seen}); start it again",
                )
        return record

    def write_status(self, job_id: str, **fields: Any) -> dict[str, Any]:
        folder = self.folder(job_id)
        with self._lock:
            path = folder / "status.json"
            current = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
            current.update(fields)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(current, ensure_ascii=False, indent=1, default=str), encoding="utf-8")
            tmp.replace(path)
        return current

    def ids(self) -> list[str]:
        return sorted(
            (p.name for p in self.root.iterdir() if _ID.match(p.name) and (p / "status.json").is_file()), reverse=True
        )


def run_job(store: JobStore, job_id: str, work: Callable[[], dict[str, Any]]) -> None:
    """Run ``work`` as job ``job_id``: ``running``, then ``done`` with the fields it returns, or
    ``failed`` with the reason (a failed job is reported, it never kills the service)."""
    finished = threading.Event()

    def heartbeat() -> None:
        while not finished.wait(HEARTBEAT_S):
            try:
                store.write_status(job_id, alive_at=datetime.now(UTC).isoformat())
            except OSError:
                log.warning("%s %s: could not write its heartbeat", store.what, job_id, exc_info=True)

    try:
        started = datetime.now(UTC).isoformat()
        store.write_status(
            job_id,
            status="running",
            started_at=started,
            alive_at=started,
            runner=f"{socket.gethostname()}:{os.getpid()}",
        )
        threading.Thread(target=heartbeat, name=f"{store.what}-{job_id[:8]}-alive", daemon=True).start()
        fields = work()
        store.write_status(job_id, status="done", finished_at=datetime.now(UTC).isoformat(), **fields)
    except Exception as e:
        log.exception("%s %s failed", store.what, job_id)
        store.write_status(
            job_id, status="failed", finished_at=datetime.now(UTC).isoformat(), error=f"{type(e).__name__}: {e}"
        )
    finally:
        finished.set()


def start_job(store: JobStore, job_id: str, work: Callable[[], dict[str, Any]]) -> None:
    """Run ``work`` as job ``job_id`` (:func:`run_job`) in a daemon thread."""
    threading.Thread(target=run_job, args=(store, job_id, work), name=f"{store.what}-{job_id[:8]}", daemon=True).start()
