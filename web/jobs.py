"""Background jobs of the HTTP API kept as folders of files: patrol plans and booth sitings.

A job is a folder ``<data dir>/<id>/`` holding its inputs, its output files and ``status.json``
(``queued`` -> ``running`` -> ``done`` or ``failed``, with the reason), so jobs survive a restart
of the service. :class:`JobStore` keeps the folders; :func:`start_job` runs the work in a thread
and records how it ended. :mod:`web.plan_jobs` and :mod:`web.site_jobs` build on them.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import HTTPException, status

__all__ = ["JobStore", "new_job_id", "run_job", "start_job"]

log = logging.getLogger(__name__)

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

    def status(self, job_id: str) -> dict[str, Any]:
        path = self.folder(job_id) / "status.json"
        if not path.is_file():
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no {self.what} {job_id!r}")
        record: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
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
    try:
        store.write_status(job_id, status="running", started_at=datetime.now(UTC).isoformat())
        fields = work()
        store.write_status(job_id, status="done", finished_at=datetime.now(UTC).isoformat(), **fields)
    except Exception as e:
        log.exception("%s %s failed", store.what, job_id)
        store.write_status(
            job_id, status="failed", finished_at=datetime.now(UTC).isoformat(), error=f"{type(e).__name__}: {e}"
        )


def start_job(store: JobStore, job_id: str, work: Callable[[], dict[str, Any]]) -> None:
    """Run ``work`` as job ``job_id`` (:func:`run_job`) in a daemon thread."""
    threading.Thread(target=run_job, args=(store, job_id, work), name=f"{store.what}-{job_id[:8]}", daemon=True).start()
