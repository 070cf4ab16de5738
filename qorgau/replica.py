"""Replicas of ``qorgau serve``: each one's name, and the one-replica rule of SQLite.

Several replicas may share a PostgreSQL database; a SQLite file belongs to one replica at a time.
:class:`SqliteReplicaLock` enforces that with an exclusive OS lock (``flock``) on ``<db file>.lock``:
the kernel drops it when the holder exits, however it exits (SIGKILL included), so a crashed
replica never leaves a stale lock behind. The lock file also says who holds it, for the error
a second replica prints.

Standard library only: the CLI imports this before anything heavy.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import socket
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Any

__all__ = ["REPLICA_NAME", "ReplicaConflict", "SqliteReplicaLock", "default_replica_name", "sqlite_file_of"]

REPLICA_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
"""What a replica name may be: it appears in metric labels, log lines and the database."""


class ReplicaConflict(RuntimeError):
    """Another replica already serves this SQLite database."""


def default_replica_name() -> str:
    """``<hostname>-<pid>``, made to fit :data:`REPLICA_NAME`."""
    host = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname()).strip("-._") or "host"
    return f"{host[:48]}-{os.getpid()}"


def sqlite_file_of(db_url: str) -> Path | None:
    """The database file of a SQLite URL, or None (another engine, or an in-memory database)."""
    from sqlalchemy.engine import make_url

    url = make_url(db_url)
    if url.get_backend_name() != "sqlite":
        return None
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file::memory:") or url.query.get("mode") == "memory":
        return None
    return Path(database)


class SqliteReplicaLock:
    """An exclusive lock on ``<db file>.lock``, held while a replica serves that SQLite file.

    Parameters
    ----------
    db_file
        The SQLite database file.
    replica
        The name of the replica taking the lock (written into the lock file).

    Examples
    --------
    >>> with SqliteReplicaLock(Path("var/qorgau.sqlite3"), "a").acquire():  # doctest: +SKIP
    ...     serve()
    """

    def __init__(self, db_file: Path, replica: str) -> None:
        self.db_file = db_file
        self.path = db_file.with_name(db_file.name + ".lock")
        self.replica = replica
        self._handle: IO[str] | None = None

    @property
    def held(self) -> bool:
        return self._handle is not None

    def acquire(self) -> SqliteReplicaLock:
        """Take the lock or raise.

        Raises
        ------
        ReplicaConflict
            Another process holds it; the message names its replica and pid.
        """
        if self._handle is not None:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held open while serving
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = _holder(handle.read())
            handle.close()
            msg = (
                f"the SQLite database {self.db_file} is already served by replica {holder} "
                f"(lock {self.path}): SQLite allows one replica per database file; "
                "stop that one, or run several replicas on PostgreSQL (--db postgresql+psycopg://...)"
            )
            raise ReplicaConflict(msg) from None
        except BaseException:
            handle.close()
            raise
        handle.seek(0)
        handle.truncate()
        info = {
            "replica": self.replica,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        handle.write(json.dumps(info) + "\n")
        handle.flush()
        self._handle = handle
        return self

    def release(self) -> None:
        """Let the lock go (closing the file releases it). Idempotent."""
        handle, self._handle = self._handle, None
        if handle is not None:
            handle.close()

    def __enter__(self) -> SqliteReplicaLock:
        return self.acquire()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def _holder(text: str) -> str:
    try:
        info: Any = json.loads(text)
        return f"{info['replica']!r} (pid {info['pid']} on {info['host']}, since {info['since']})"
    except (ValueError, KeyError, TypeError):
        return "of unknown name (the lock file is being written)"
