"""The one periodic watcher of the dispatch room: a callable run every interval on a daemon thread.

Escalation (acknowledgement deadlines, :class:`~dispatch.escalation.Escalator`) and device
supervision (silent buttons, flap windows, :class:`~dispatch.supervision.DeviceSupervisor`) both
check the time from a :class:`Watcher`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

__all__ = ["Watcher"]

log = logging.getLogger(__name__)


class Watcher:
    """Runs ``task`` every ``interval_s`` seconds on a daemon thread until :meth:`close`.

    The first run is one interval after :meth:`start`. An exception never stops the watcher: one
    of the ``retry_on`` types (an expected outage, e.g. :class:`~dispatch.store.StoreError`) is
    logged as an error without its traceback, any other exception with it; the next run comes an
    interval later.

    Parameters
    ----------
    task
        What to run; its return value is ignored.
    interval_s
        Seconds between runs (positive).
    name
        The thread's name.
    what
        What the task does, for the log (``"deadline check"``).
    retry_on
        Exception types logged without a traceback.
    when
        Asked before each run; the run is skipped when it answers False (e.g. "this replica is
        the leader", :class:`~dispatch.leader.Leadership`).

    Examples
    --------
    >>> watcher = Watcher(lambda: None, interval_s=0.05, name="qorgau-demo", what="demo check")
    >>> watcher.start()
    >>> watcher.running
    True
    >>> watcher.close()
    >>> watcher.running
    False
    """

    def __init__(
        self,
        task: Callable[[], object],
        *,
        interval_s: float,
        name: str,
        what: str,
        retry_on: tuple[type[BaseException], ...] = (),
        when: Callable[[], bool] | None = None,
    ) -> None:
        if not interval_s > 0:
            msg = f"interval_s must be positive, got {interval_s!r}"
            raise ValueError(msg)
        self.task = task
        self.interval_s = interval_s
        self.name = name
        self.what = what
        self.retry_on = retry_on
        self.when = when
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def running(self) -> bool:
        """Whether the thread has been started and not closed."""
        return self._thread is not None

    def start(self) -> None:
        """Start the thread; a watcher already running stays as it is."""
        with self._lock:
            if self._thread is not None:
                return
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()

    def close(self, *, timeout_s: float = 5.0) -> None:
        """Stop the thread (a run in progress finishes first, waited for up to ``timeout_s``)."""
        self._stop.set()
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=timeout_s)

    def run_once(self) -> bool:
        """Run the task now on the calling thread, as the watcher does; False if it raised."""
        try:
            self.task()
        except self.retry_on as e:
            log.error("%s failed, retrying: %s", self.what, e)
            return False
        except Exception:
            log.exception("%s failed", self.what)
            return False
        return True

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            if self.when is None or self.when():
                self.run_once()
