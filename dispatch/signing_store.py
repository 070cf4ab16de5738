"""The counters of stored signed presses, to rebuild the anti-replay windows when the service opens.

Each accepted signed press stores its counter with its alert (``alerts.device_counter``, in the
same transaction), so the window survives a restart and a restart opens no replay hole.
"""

from __future__ import annotations

from sqlalchemy import func, select

from dispatch.domain import AlertSource
from dispatch.models import AlertRow
from dispatch.store import Store

__all__ = ["stored_counters"]


def stored_counters(store: Store, *, window: int) -> dict[str, list[int]]:
    """Per SOS device, the stored counters no further than ``window`` behind its highest one.

    Raises
    ------
    StoreError
        If the database cannot be reached.
    """
    signed = (AlertRow.source == AlertSource.SOS.value, AlertRow.device_counter.is_not(None))
    top = (
        select(AlertRow.sender, func.max(AlertRow.device_counter).label("top"))
        .where(*signed)
        .group_by(AlertRow.sender)
        .subquery()
    )
    stmt = (
        select(AlertRow.sender, AlertRow.device_counter)
        .join(top, AlertRow.sender == top.c.sender)
        .where(*signed, AlertRow.device_counter > top.c.top - window)
    )
    counters: dict[str, list[int]] = {}
    with store.session("read the counters of signed presses") as session:
        for sender, counter in session.execute(stmt):
            if counter is None:  # the query selects stored counters only
                msg = f"a signed press of {sender!r} was stored without its counter"
                raise TypeError(msg)
            counters.setdefault(sender, []).append(int(counter))
    return counters
