"""The audit trail's hash chain, as plain functions over entries (no I/O).

Each entry holds the hash of the entry before it and its own hash over its content::

    hash = sha256(canonical JSON of [id, ts, actor, action, alert_id, unit_id, before, after, prev_hash])

so editing any field of any entry, deleting or re-ordering entries breaks the chain from that
entry on. Deleting the newest entries leaves a shorter valid chain: compare the head
(:attr:`ChainReport.head_hash`, count) with one published earlier to catch that too.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

__all__ = ["GENESIS_HASH", "AuditEntry", "ChainReport", "canonical_json", "entry_hash", "verify_chain"]

GENESIS_HASH = "0" * 64
"""The ``prev_hash`` of the first entry."""


def canonical_json(value: Any) -> str | None:
    """The one text form of a before/after snapshot (sorted keys, no spaces), None for None."""
    if value is None:
        return None
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One audit entry: who did what, when, to which alert or unit, with the state before and after."""

    id: int
    ts: datetime
    actor: str
    action: str
    alert_id: int | None
    unit_id: str | None
    before: str | None
    after: str | None
    prev_hash: str
    hash: str

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "ts": self.ts.isoformat(),
            "actor": self.actor,
            "action": self.action,
            "alert_id": self.alert_id,
            "unit_id": self.unit_id,
            "before": None if self.before is None else json.loads(self.before),
            "after": None if self.after is None else json.loads(self.after),
            "hash": self.hash,
        }


def entry_hash(
    *,
    id: int,
    ts: datetime,
    actor: str,
    action: str,
    alert_id: int | None,
    unit_id: str | None,
    before: str | None,
    after: str | None,
    prev_hash: str,
) -> str:
    """The SHA-256 (hex) of an entry's content and its predecessor's hash."""
    body = [id, ts.isoformat(timespec="microseconds"), actor, action, alert_id, unit_id, before, after, prev_hash]
    data = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True, slots=True)
class ChainReport:
    """What :func:`verify_chain` found."""

    ok: bool
    entries: int
    head_hash: str
    broken_at: int | None = None
    problem: str | None = None


def verify_chain(entries: Iterable[AuditEntry]) -> ChainReport:
    """Recompute every hash in id order; report the first entry that does not fit."""
    prev = GENESIS_HASH
    count = 0
    for e in entries:
        if e.prev_hash != prev:
            return ChainReport(
                False,
                count,
                prev,
                e.id,
                f"entry {e.id} does not follow the entry before it: an entry was deleted or altered",
            )
        expected = entry_hash(
            id=e.id,
            ts=e.ts,
            actor=e.actor,
            action=e.action,
            alert_id=e.alert_id,
            unit_id=e.unit_id,
            before=e.before,
            after=e.after,
            prev_hash=e.prev_hash,
        )
        if expected != e.hash:
            return ChainReport(
                False, count, prev, e.id, f"entry {e.id} ({e.action}) was edited: its hash does not match its content"
            )
        prev = e.hash
        count += 1
    return ChainReport(True, count, prev)
