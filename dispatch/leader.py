"""Work done once across replicas: the leader, by a PostgreSQL session advisory lock.

Escalation deadlines and device supervision must run on one replica only. Each replica's
:class:`Leadership` tries ``pg_try_advisory_lock`` on a dedicated connection (not the pool's); the
one that gets it is the leader for as long as that connection lives. A replica that finds the lock
held (a follower: :attr:`Leadership.another_leads`) then waits for it in ``pg_advisory_lock`` on
that connection, so PostgreSQL grants it the lock the moment the leader's session ends. When the
leader dies (even by SIGKILL) the kernel closes its socket, PostgreSQL ends the session and frees
the lock, and one waiting follower is the leader within milliseconds, not at its next try (it was
a try every ``retry_s``, one second, and a press in flight to a dead leader waited that long: the
chaos run's largest ack delays around a kill). TCP keepalives end a wait on a connection that
died silently. The leader checks its connection every ``retry_s`` and steps down when it is gone;
a replica that cannot reach the database tries again every ``retry_s``.

On SQLite there is one process, always the leader.
"""

from __future__ import annotations

import logging
import threading
import time
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
        How often the leader checks its connection, and a replica without a database connection
        tries again (a follower with one waits for the lock instead of trying).

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
            deadline = time.monotonic() + 5
            while thread.is_alive() and time.monotonic() < deadline:
                self._cancel_wait()  # again until it ends: the thread may enter the wait after a cancel
                thread.join(timeout=0.2)
        self._drop()

    def _cancel_wait(self) -> None:
        """End a follower's wait in ``pg_advisory_lock`` (from another thread)."""
        conn = self._conn
        if conn is None or not self._other_leads:
            return
        try:
            conn.cancel_safe(timeout=2)
        except Exception as e:  # the connection is already gone: nothing to cancel
            log.debug("cancelling the wait for the leader lock: %s", e)

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
                    keepalives=1,  # a follower waits on this connection: a dead link must end the wait
                    keepalives_idle=5,
                    keepalives_interval=2,
                    keepalives_count=3,
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

    def _await_lock(self) -> None:
        """A follower: wait in ``pg_advisory_lock`` until the leader's session ends, then lead.

        :meth:`close` cancels the wait; a broken connection ends it, and the next try reconnects.
        """
        import psycopg  # PostgreSQL only

        conn = self._conn
        if conn is None:
            return
        try:
            conn.execute("SELECT pg_advisory_lock(%s)", (LEADER_LOCK_KEY,))
        except psycopg.errors.QueryCanceled:
            return  # close() asked (the connection is dropped there)
        except psycopg.Error as e:
            if not self._stop.is_set():
                log.warning("waiting for the leader lock on %r failed (%s): trying again", self.store, e)
                self._drop()
            return
        if self._stop.is_set():
            return  # close() came as the lock was granted: it drops the connection and the lock
        self._other_leads = False
        self._set(True)

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._other_leads and not self._leader:
                self._await_lock()
                continue
            if self._stop.wait(self.retry_s):
                break
            self._try()
