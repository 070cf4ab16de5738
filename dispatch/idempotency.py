"""Requests a client may repeat: each ``Idempotency-Key`` is applied once and its answer kept.

A phone on a bad network sends a status, loses the answer and sends it again with the same
client-generated key. :class:`IdempotencyLedger` claims the key in the database *before* the
request is applied (so two replicas, or two retries racing, cannot both apply it), keeps the
answer once it is known and hands it back for every repeat. Keys are per user; a key reused for a
different request is refused. Keys older than :attr:`IdempotencyLedger.keep` are pruned, at most
once per :attr:`IdempotencyLedger.prune_every`, so the table does not grow without bound.

Nothing here speaks HTTP: the answer is an opaque status code and text body (the web room's JSON).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from dispatch.errors import Conflict
from dispatch.models import IdempotentRequestRow
from dispatch.store import Store

__all__ = ["IdempotencyLedger", "KeyReused", "StoredAnswer", "fingerprint"]

log = logging.getLogger(__name__)

_PENDING = 0


def fingerprint(*parts: str | bytes) -> str:
    """SHA-256 over the parts of a request that must match for a repeat (method, path, body)."""
    digest = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class StoredAnswer:
    """The answer a request got the first time."""

    status_code: int
    body: str


class KeyReused(ValueError):
    """The key was used before by this user for a different request."""


class IdempotencyLedger:
    """Claims, answers and prunes idempotency keys in the store's ``idempotent_requests`` table.

    Parameters
    ----------
    store
        The database (shared by every replica).
    clock
        The current UTC time.
    keep
        How long a key is remembered.
    prune_every
        How often (at most) old keys are deleted, on the way of a claim.
    """

    def __init__(
        self,
        store: Store,
        *,
        clock: Callable[[], datetime],
        keep: timedelta = timedelta(days=1),
        prune_every: timedelta = timedelta(minutes=1),
    ) -> None:
        self.store = store
        self.clock = clock
        self.keep = keep
        self.prune_every = prune_every
        self._lock = threading.Lock()
        self._pruned_at: datetime | None = None

    def claim(self, username: str, key: str, request_fingerprint: str) -> StoredAnswer | None:
        """Claim ``key`` for a request about to be applied; the stored answer if it was applied before.

        Returns
        -------
        None when the caller must apply the request now (and then :meth:`answer` or :meth:`release`).

        Raises
        ------
        KeyReused
            The key belongs to a different request of this user.
        Conflict
            A request with this key is being applied right now (retry later).
        """
        now = self.clock()
        self._maybe_prune(now)
        try:
            with self.store.transaction(f"claim request key {key!r}") as tx:
                tx.session.add(
                    IdempotentRequestRow(
                        username=username,
                        key=key,
                        fingerprint=request_fingerprint,
                        status_code=_PENDING,
                        body=None,
                        created_at=now,
                    )
                )
                tx.session.flush()
            return None
        except IntegrityError:
            pass
        with self.store.session(f"read request key {key!r}") as session:
            row = session.get(IdempotentRequestRow, (username, key))
            if row is None:  # pruned in between: a stale key, claim it afresh
                return self.claim(username, key, request_fingerprint)
            if row.fingerprint != request_fingerprint:
                msg = f"the Idempotency-Key {key!r} was already used for a different request"
                raise KeyReused(msg)
            if row.status_code == _PENDING:
                msg = f"a request with the Idempotency-Key {key!r} is still being applied: retry"
                raise Conflict(msg, current="pending")
            return StoredAnswer(row.status_code, row.body or "")

    def answer(self, username: str, key: str, answer: StoredAnswer) -> None:
        """Keep the answer of a claimed request for its repeats."""
        with self.store.transaction(f"answer request key {key!r}") as tx:
            row = tx.session.get(IdempotentRequestRow, (username, key))
            if row is None:
                log.warning("request key %r of %r vanished before its answer was kept", key, username)
                return
            row.status_code, row.body = answer.status_code, answer.body

    def release(self, username: str, key: str) -> None:
        """Forget a claim whose request failed without an answer (a repeat applies it afresh)."""
        with self.store.transaction(f"release request key {key!r}") as tx:
            tx.session.execute(
                delete(IdempotentRequestRow).where(
                    IdempotentRequestRow.username == username,
                    IdempotentRequestRow.key == key,
                    IdempotentRequestRow.status_code == _PENDING,
                )
            )

    def prune(self, now: datetime | None = None) -> int:
        """Delete keys older than :attr:`keep`; how many went."""
        cutoff = (now or self.clock()) - self.keep
        with self.store.transaction("prune request keys") as tx:
            result = tx.session.execute(delete(IdempotentRequestRow).where(IdempotentRequestRow.created_at < cutoff))
        removed = int(getattr(result, "rowcount", 0) or 0)
        if removed:
            log.info("pruned %d request keys older than %s", removed, cutoff.isoformat())
        return removed

    def count(self) -> int:
        """Keys remembered now."""
        with self.store.session("count request keys") as session:
            return len(session.scalars(select(IdempotentRequestRow.key)).all())

    def _maybe_prune(self, now: datetime) -> None:
        with self._lock:
            if self._pruned_at is not None and now - self._pruned_at < self.prune_every:
                return
            self._pruned_at = now
        self.prune(now)
