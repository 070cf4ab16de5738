"""The global change stream of the replicas: every committed change, local or remote, in ``seq`` order.

Each transaction that changes an alert, a unit or a device writes one row per changed object to
the ``changes`` table (:meth:`dispatch.store.Tx.note_change`), under the advisory lock that also
serialises the audit chain, so ``seq`` order is commit order across replicas. A
:class:`ChangeStream` per replica hands the changes on:

- its own, right after each commit (the store's ``on_commit`` hook, inside the store's commit
  lock, so in ``seq`` order within the process), merged with any remote ones committed before
  them that it has not seen yet;
- the other replicas' (PostgreSQL only): woken by ``LISTEN qorgau_changes`` (each commit sends
  ``NOTIFY``) and polled every ``poll_interval_s`` in case a notification is lost; each is first
  *applied* to this replica's memory (units and positions on the router, the open-alert grid, the
  anti-replay windows), then delivered to the listeners.

On SQLite there is one process, so only local changes flow (no thread is started).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from dispatch.ports import Change
from dispatch.store import CHANGES_CHANNEL, Store, StoreError

__all__ = ["ChangeStream"]

log = logging.getLogger(__name__)


class ChangeStream:
    """Tails the ``changes`` table for one replica and hands every change on in ``seq`` order.

    Parameters
    ----------
    store
        The shared store; its ``replica`` is this stream's origin.
    apply
        Applies a remote change to this replica's memory (called before ``deliver``).
    deliver
        Hands a change on to the listeners: ``deliver(change, remote)``.
    poll_interval_s
        The polling fallback's period (PostgreSQL).

    Examples
    --------
    >>> stream = ChangeStream(store, apply=service_apply, deliver=outbox_deliver).open()  # doctest: +SKIP
    >>> stream.start()   # PostgreSQL: LISTEN + polling thread  # doctest: +SKIP
    """

    def __init__(
        self,
        store: Store,
        *,
        apply: Callable[[Change], None],
        deliver: Callable[[Change, bool], None],
        poll_interval_s: float = 0.25,
    ) -> None:
        if not poll_interval_s > 0:
            msg = f"poll_interval_s must be positive, got {poll_interval_s!r}"
            raise ValueError(msg)
        self.store = store
        self.origin = store.replica
        self.apply = apply
        self.deliver = deliver
        self.poll_interval_s = poll_interval_s
        self.shared = store.engine.dialect.name == "postgresql"
        self.last_seq = 0
        self.remote_applied = 0
        self._pending: list[Change] = []
        """Local changes waiting for the remote ones before them (which could not be read yet)."""
        self._lock = threading.RLock()
        self._heard = threading.Condition()
        self.remote_alerts_heard = 0
        """How many times remote alert changes were handed on (a generation: see :meth:`wait_remote`)."""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def open(self) -> ChangeStream:
        """Start after the newest change already stored, and hear this replica's commits from now on."""
        with self._lock:
            self.last_seq = self.store.last_change_seq()
        self.store.on_commit = self._local
        return self

    # local commits ------------------------------------------------------------------------

    def _local(self, changes: list[Change]) -> None:
        """This replica's committed changes (inside the store's commit lock), merged with unseen remote ones.

        When the remote ones before them cannot be read now, ours wait (:attr:`pending`) and the
        poller hands both on in ``seq`` order: a listener never hears a change after a later one.
        """
        with self._lock:
            if self._pending:
                self._pending.extend(changes)
                return
            remote: list[Change] = []
            last = self.last_seq
            if self.shared and changes[0].seq > self.last_seq + 1:
                try:
                    remote, last = self.store.read_changes(
                        self.last_seq, limit=100_000, skip_origin=self.origin, until=changes[-1].seq
                    )
                except StoreError as e:
                    log.warning("could not read remote changes before a local commit (they wait for the poller): %s", e)
                    self._pending.extend(changes)
                    return
                if last < changes[-1].seq:  # more remote ones than one read takes: the poller merges
                    self._pending.extend(changes)
                    return
            local = {c.seq for c in changes}
            for change in sorted([*remote, *changes], key=lambda c: c.seq):
                if change.seq in local:
                    self._hand_on(change, remote=False)
                elif change.seq > self.last_seq:
                    self._hand_on(change, remote=True)
            self.last_seq = max(self.last_seq, last, changes[-1].seq)

    # remote commits -----------------------------------------------------------------------

    def poll(self) -> int:
        """Apply and deliver the changes other replicas committed since the last one seen; how many."""
        if not self.shared:
            return 0
        count = 0
        with self.store.commit_lock, self._lock:  # no local commit's hook can run meanwhile
            while True:
                changes, last = self.store.read_changes(self.last_seq, limit=500, skip_origin=self.origin)
                ours = [c for c in self._pending if c.seq <= last]
                self._pending = [c for c in self._pending if c.seq > last]
                for change in sorted([*changes, *ours], key=lambda c: c.seq):
                    self._hand_on(change, remote=change.origin != self.origin)
                count += len(changes)
                if last == self.last_seq:
                    for change in self._pending:  # committed, so already read: only if the table lost them
                        self._hand_on(change, remote=False)
                    self._pending.clear()
                    return count
                self.last_seq = last

    def _hand_on(self, change: Change, *, remote: bool) -> None:
        try:
            if remote:
                self.apply(change)
                self.remote_applied += 1
            self.deliver(change, remote)
        except Exception:
            log.exception("could not hand on change %d from %r", change.seq, change.origin)
        if remote and change.alerts:
            with self._heard:
                self.remote_alerts_heard += 1
                self._heard.notify_all()

    def wait_remote(self, heard: int, timeout_s: float) -> int:
        """Wait up to ``timeout_s`` until a remote alert change is handed on after :attr:`remote_alerts_heard`
        was ``heard``; the generation then (unchanged on a timeout)."""
        with self._heard:
            self._heard.wait_for(lambda: self.remote_alerts_heard != heard, timeout=max(0.0, timeout_s))
            return self.remote_alerts_heard

    # the thread ---------------------------------------------------------------------------

    def start(self) -> None:
        """PostgreSQL: listen for ``NOTIFY`` and poll from a daemon thread until :meth:`close`."""
        if not self.shared or self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="qorgau-changes", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the thread."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    @property
    def running(self) -> bool:
        return self._thread is not None

    def _run(self) -> None:
        import psycopg  # PostgreSQL only, and only in the stream's thread

        conninfo = self.store.url.set(drivername="postgresql").render_as_string(hide_password=False)
        conn: psycopg.Connection[tuple[object, ...]] | None = None
        while not self._stop.is_set():
            if conn is None:
                try:
                    conn = psycopg.connect(conninfo, autocommit=True, connect_timeout=2)
                    conn.execute(f"LISTEN {CHANGES_CHANNEL}")
                except psycopg.Error as e:
                    log.warning("change stream cannot LISTEN (%s): polling only", e)
                    conn = None
            try:
                if conn is not None:
                    for _ in conn.notifies(timeout=self.poll_interval_s, stop_after=1):
                        pass
                else:
                    self._stop.wait(self.poll_interval_s)
            except psycopg.Error as e:
                log.warning("change stream lost its LISTEN connection (%s): reconnecting", e)
                if conn is not None:
                    conn.close()
                conn = None
            if self._stop.is_set():
                break
            try:
                self.poll()
            except StoreError as e:
                log.error("change stream poll failed, retrying: %s", e)
            except Exception:
                log.exception("change stream poll failed")
        if conn is not None:
            conn.close()
