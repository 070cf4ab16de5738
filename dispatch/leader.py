"""Work done once across replicas: the leader, by a PostgreSQL session advisory lock.

Escalation deadlines and device supervision must run on one replica only. Each replica's
:class:`Leadership` tries ``pg_try_advisory_lock`` on a dedicated connection (not the pool's)
every ``retry_s``; the one that gets it is the leader for as long as that connection lives. When
the leader dies (even by SIGKILL) the kernel closes its socket, PostgreSQL ends the session and
frees the lock, and the next try of another replica takes it: a takeover within about
``retry_s`` plus the time the server needs to see the socket closed. The leader checks its
connection every ``retry_s`` and steps down when it is gone.

On SQLite there is one process, always the leader.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from dispatch.store import Store

__all__ = ["LEADER_LOCK_KEY", "Leadership"]

log = logging.getLogger(__name__)

LEADER_LOCK_KEY = 7_240_332
"""The session advisory lock whose holder is the leader (next to the audit chain's 7_240_331)."""


class Leadership:
    """Whether this replica is the leader; kept up to date by a daemon thread (PostgreSQL).

    Parameters
    ----------
    store
        The shared store (its URL and replica name).
    retry_s
        How often a follower tries the lock, and the leader checks its connection.

    Examples
    --------
    >>> leadership = Leadership(store).start()  # doctest: +SKIP
    >>> leadership.is_leader                    # doctest: +SKIP
    True
    """

    def __init__(self, store: Store, *, retry_s: float = 1.0) -> None:
        if not retry_s > 0:
            msg = f"retry_s must be positive, got {retry_s!r}"
            raise ValueError(msg)
        self.store = store
        self.retry_s = retry_s
        self.shared = store.engine.dialect.name == "postgresql"
        self._leader = not self.shared
        self._other_leads = False  # the last try found the lock held by another replica
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: Any = None
        self._changed = threading.Condition()

    @property
    def is_leader(self) -> bool:
        """Whether this replica runs the work done once (always True on SQLite)."""
        return self._leader

    @property
    def another_leads(self) -> bool:
        """Whether another replica held the lock at this replica's last try (PostgreSQL; False
        before :meth:`start`, after :meth:`close` and while the database cannot be reached)."""
        return self._other_leads and not self._leader

    def wait(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` to become the leader; whether it is."""
        with self._changed:
            self._changed.wait_for(lambda: self._leader, timeout=timeout_s)
        return self._leader

    def start(self) -> Leadership:
        """Try the lock now and then every ``retry_s`` from a daemon thread (PostgreSQL)."""
        if not self.shared or self._thread is not None:
            return self
        self._stop.clear()
        self._try()
        self._thread = threading.Thread(target=self._run, name="qorgau-leader", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop trying; a leader steps down (its connection, and so the lock, is closed)."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
        self._drop()

    def _set(self, leader: bool) -> None:
        if leader != self._leader:
            log.warning(
                "replica %r %s", self.store.replica, "is now the leader" if leader else "is no longer the leader"
            )
        with self._changed:
            self._leader = leader
            self._changed.notify_all()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception as e:  # closing a broken connection
                log.debug("closing the leader connection: %s", e)
        self._other_leads = False
        if self.shared:
            self._set(False)

    def _try(self) -> None:
        import psycopg  # PostgreSQL only

        try:
            if self._conn is None:
                conninfo = self.store.url.set(drivername="postgresql").render_as_string(hide_password=False)
                self._conn = psycopg.connect(
                    conninfo,
                    autocommit=True,
                    connect_timeout=2,
                    application_name=f"qorgau-leader:{self.store.replica}"[:63],
                )
            if self._leader:
                self._conn.execute("SELECT 1")  # still holding it while the session lives
                return
            row = self._conn.execute("SELECT pg_try_advisory_lock(%s)", (LEADER_LOCK_KEY,)).fetchone()
            leader = bool(row and row[0])
            self._other_leads = not leader
            self._set(leader)
        except psycopg.Error as e:
            log.warning("leader election on %r failed (%s): not the leader until it reconnects", self.store, e)
            self._drop()

    def _run(self) -> None:
        while not self._stop.wait(self.retry_s):
            self._try()
