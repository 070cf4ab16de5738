"""Signed SOS presses: canonical payload, HMAC-SHA256, a per-device anti-replay window.

A button behind an untrusted network (a shared Wi-Fi, a carrier NAT, a broker account that may
leak) signs every press with its own 256-bit key. The service accepts a press only if its
signature is right, its ``ts`` is recent and its counter has not been seen. Pure logic: no I/O,
no clock of its own; the service hands in the time and the counters it has stored.

Wire format
-----------
A signed press is the usual SOS payload plus two fields::

    {"event_id": "e-42", "ts": "2026-03-09T10:15:02Z", "kind": "press", "ctr": 1017, "sig": "9f2c...e1"}

- ``ctr``: an integer, 0 <= ctr < 2**63, strictly increasing per device (a persisted counter,
  or milliseconds since the epoch as the simulator uses).
- ``sig``: lowercase hex of HMAC-SHA256(key, canonical payload).
- canonical payload: the JSON object without its ``sig`` field, keys sorted, no whitespace
  (separators ``,`` and ``:``), non-ASCII characters as themselves, UTF-8 (:func:`canonical_payload`).
  Every other field the device sends is covered, whatever it is. Use strings and integers
  only: floats have no single JSON spelling across languages. A payload with a repeated key is
  refused (``malformed_json``), so the signed and the parsed object cannot differ.

Checks, in this order (:class:`PressVerifier`)
----------------------------------------------
1. :meth:`PressVerifier.verify`: a device with a key must send ``sig`` (no downgrade to
   unsigned), the signature must match, ``ctr`` must be an integer, and ``ts`` may not be older
   than ``max_age``.
2. The service looks the event up in the store: a redelivery of a stored event (same
   ``event_id``, same ``ctr``) is answered ``accepted`` again, never "replayed".
3. :meth:`PressVerifier.counting`: the counter must be new: above every counter seen, or within
   the last ``window`` counters and not seen yet (slightly reordered presses pass, as in the
   IPsec anti-replay window of RFC 4303 section 3.4.3). It counts as seen once the alert that
   carries it is committed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from dispatch.intake import Rejected
from dispatch.ports import RejectReason

__all__ = [
    "COUNTER_FIELD",
    "DEFAULT_WINDOW",
    "SIGNATURE_FIELD",
    "DeviceKey",
    "PressVerifier",
    "ReplayWindow",
    "VerifiedPress",
    "canonical_payload",
    "sign_press",
]

SIGNATURE_FIELD = "sig"
COUNTER_FIELD = "ctr"
DEFAULT_WINDOW = 64
"""Counters remembered behind the highest one (IPsec's default window size)."""
MAX_COUNTER = 2**63 - 1
"""Counters are stored in a signed 64-bit column."""
KEY_BYTES = 32


@dataclass(frozen=True, slots=True)
class DeviceKey:
    """A device's HMAC key; its repr never shows the key.

    Examples
    --------
    >>> DeviceKey(bytes(32))
    DeviceKey(<32 bytes, hidden>)
    """

    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.secret, bytes) or len(self.secret) < 16:
            msg = "a device key must be at least 16 bytes"
            raise ValueError(msg)

    def __repr__(self) -> str:
        return f"DeviceKey(<{len(self.secret)} bytes, hidden>)"

    __str__ = __repr__

    @classmethod
    def from_hex(cls, text: str) -> DeviceKey:
        """The key from its hex form (as in the installers' credentials file)."""
        try:
            return cls(bytes.fromhex(text))
        except (ValueError, TypeError) as e:
            msg = "a device key must be a hex string of at least 32 characters"
            raise ValueError(msg) from e


def canonical_payload(message: Mapping[str, Any]) -> bytes:
    """The bytes a press's signature covers: the object without ``sig``, sorted keys, no whitespace, UTF-8.

    Examples
    --------
    >>> canonical_payload({"ts": "2026-03-09T10:15:02Z", "kind": "press", "sig": "x", "ctr": 7, "event_id": "e"})
    b'{"ctr":7,"event_id":"e","kind":"press","ts":"2026-03-09T10:15:02Z"}'
    """
    body = {k: v for k, v in message.items() if k != SIGNATURE_FIELD}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def sign_press(message: Mapping[str, Any], key: DeviceKey) -> dict[str, Any]:
    """``message`` with its ``sig`` field set (what a button or the simulator sends)."""
    signature = hmac.new(key.secret, canonical_payload(message), hashlib.sha256).hexdigest()
    return {**{k: v for k, v in message.items() if k != SIGNATURE_FIELD}, SIGNATURE_FIELD: signature}


class ReplayWindow:
    """Which counters of one device were seen: the highest, and a bitmap of the ``size`` before it.

    Parameters
    ----------
    size
        How far behind the highest counter a late press may still arrive.

    Examples
    --------
    >>> w = ReplayWindow(64)
    >>> w.accept(10); w.accept(12)
    >>> w.check(11) is None, w.check(12), w.check(12 - 64)
    (True, <RejectReason.REPLAYED: 'replayed'>, <RejectReason.COUNTER_TOO_OLD: 'counter_too_old'>)
    """

    __slots__ = ("_seen", "size", "top")

    def __init__(self, size: int = DEFAULT_WINDOW) -> None:
        if size < 1:
            msg = f"the replay window must hold at least 1 counter, got {size!r}"
            raise ValueError(msg)
        self.size = size
        self.top: int | None = None
        self._seen = 0  # bit i: counter top - i was seen

    def __repr__(self) -> str:
        return f"ReplayWindow(size={self.size}, top={self.top})"

    def check(self, ctr: int) -> RejectReason | None:
        """None if ``ctr`` is new; else why not (``replayed`` or ``counter_too_old``)."""
        if self.top is None or ctr > self.top:
            return None
        behind = self.top - ctr
        if behind >= self.size:
            return RejectReason.COUNTER_TOO_OLD
        return RejectReason.REPLAYED if self._seen >> behind & 1 else None

    def accept(self, ctr: int) -> None:
        """Mark ``ctr`` as seen (slides the window when it is the new highest)."""
        if self.top is None:
            self.top, self._seen = ctr, 1
            return
        if ctr > self.top:
            shift = ctr - self.top
            self._seen = (self._seen << shift | 1) & ((1 << self.size) - 1) if shift < self.size else 1
            self.top = ctr
            return
        behind = self.top - ctr
        if behind < self.size:
            self._seen |= 1 << behind

    @classmethod
    def from_counters(cls, counters: Iterable[int], size: int = DEFAULT_WINDOW) -> ReplayWindow:
        """The window after ``counters`` were accepted, in any order."""
        window = cls(size)
        for ctr in sorted(counters):
            window.accept(ctr)
        return window


@dataclass(frozen=True, slots=True)
class VerifiedPress:
    """A press that passed :meth:`PressVerifier.verify`; ``counter`` is None for a device that does not sign."""

    device_id: str
    event_id: str
    counter: int | None = None


def _no_repeated_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        repeated = sorted({k for k in keys if keys.count(k) > 1})
        msg = f"a signed press may not repeat a key, got {repeated}"
        raise ValueError(msg)
    return dict(pairs)


def _hex_signature(value: Any) -> bytes | None:
    if not isinstance(value, str) or len(value) != 64:
        return None
    try:
        return bytes.fromhex(value)
    except ValueError:
        return None


class PressVerifier:
    """Checks signed presses: signature, age, and each device's anti-replay window.

    Parameters
    ----------
    keys
        Device id -> key. A device with a key must sign every press; others need not.
    window
        Size of each device's anti-replay window (counters behind the highest one).
    max_age
        A signed press whose ``ts`` is older than this on arrival is rejected. It must exceed
        the longest outage of the service you want alerts to survive (the broker queues them).

    Examples
    --------
    >>> key = DeviceKey(bytes(range(32)))
    >>> verifier = PressVerifier({"btn-1": key})
    >>> body = sign_press({"event_id": "e1", "ts": "2026-03-09T10:15:02Z", "kind": "press", "ctr": 1}, key)
    >>> from datetime import datetime, timezone
    >>> ts = datetime(2026, 3, 9, 10, 15, 2, tzinfo=timezone.utc)
    >>> press = verifier.verify("btn-1", json.dumps(body).encode(), event_id="e1", ts=ts, now=ts)
    >>> press.counter
    1
    """

    def __init__(
        self,
        keys: Mapping[str, DeviceKey] | None = None,
        *,
        window: int = DEFAULT_WINDOW,
        max_age: timedelta = timedelta(hours=1),
    ) -> None:
        if window < 1:
            msg = f"window must be at least 1, got {window!r}"
            raise ValueError(msg)
        if max_age <= timedelta(0):
            msg = f"max_age must be positive, got {max_age!r}"
            raise ValueError(msg)
        self._keys = dict(keys or {})
        for device_id, key in self._keys.items():
            if not isinstance(key, DeviceKey):
                msg = f"the key of device {device_id!r} must be a DeviceKey, got {type(key).__name__}"
                raise TypeError(msg)
        self.window = window
        self.max_age = max_age
        self._windows: dict[str, ReplayWindow] = {}
        self._pending: dict[str, set[int]] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"PressVerifier({len(self._keys)} signing devices, window={self.window}, max_age={self.max_age})"

    @property
    def signing_devices(self) -> frozenset[str]:
        """Ids of the devices that must sign."""
        return frozenset(self._keys)

    def signs(self, device_id: str) -> bool:
        """Whether ``device_id`` must sign its presses."""
        return device_id in self._keys

    # step 1: signature and age ------------------------------------------------------------

    def verify(self, device_id: str, payload: bytes, *, event_id: str, ts: datetime, now: datetime) -> VerifiedPress:
        """Check the signature and the age of a press that already parsed as an SOS message.

        Raises
        ------
        Rejected
            ``missing_signature``, ``bad_signature``, ``missing_field`` / ``wrong_type`` /
            ``bad_value`` (the counter), ``press_too_old``.
        """
        key = self._keys.get(device_id)
        if key is None:
            return VerifiedPress(device_id, event_id)
        try:  # parse_message has proven it is a JSON object
            message = json.loads(payload, object_pairs_hook=_no_repeated_keys)
        except ValueError as e:
            raise Rejected(RejectReason.MALFORMED_JSON, str(e), event_id=event_id) from e
        if SIGNATURE_FIELD not in message:
            msg = f"device {device_id!r} signs its presses; this one has no {SIGNATURE_FIELD!r} field"
            raise Rejected(RejectReason.MISSING_SIGNATURE, msg, event_id=event_id)
        given = _hex_signature(message[SIGNATURE_FIELD])
        expected = hmac.new(key.secret, canonical_payload(message), hashlib.sha256).digest()
        if given is None or not hmac.compare_digest(given, expected):
            msg = f"the signature does not match the payload under device {device_id!r}'s key (forged or altered)"
            raise Rejected(RejectReason.BAD_SIGNATURE, msg, event_id=event_id)
        counter = self._counter(message, device_id=device_id, event_id=event_id)
        age = now - ts
        if age > self.max_age:
            msg = (
                f"signed press from device {device_id!r} has ts {ts.isoformat()}, {age.total_seconds():.0f} s old "
                f"(a signed press may be at most {self.max_age.total_seconds():.0f} s old)"
            )
            raise Rejected(RejectReason.PRESS_TOO_OLD, msg, event_id=event_id)
        return VerifiedPress(device_id, event_id, counter)

    @staticmethod
    def _counter(message: Mapping[str, Any], *, device_id: str, event_id: str) -> int:
        if COUNTER_FIELD not in message:
            msg = f"a signed press needs the counter field {COUNTER_FIELD!r} (device {device_id!r})"
            raise Rejected(RejectReason.MISSING_FIELD, msg, event_id=event_id)
        counter = message[COUNTER_FIELD]
        if not isinstance(counter, int) or isinstance(counter, bool):
            msg = f"field {COUNTER_FIELD!r} must be an integer, got {counter!r}"
            raise Rejected(RejectReason.WRONG_TYPE, msg, event_id=event_id)
        if not 0 <= counter <= MAX_COUNTER:
            msg = f"field {COUNTER_FIELD!r} must lie in 0..2**63-1, got {counter!r}"
            raise Rejected(RejectReason.BAD_VALUE, msg, event_id=event_id)
        return counter

    # step 3: the counter ------------------------------------------------------------------

    def check(self, press: VerifiedPress) -> Rejected | None:
        """Why ``press``'s counter would be refused now (``replayed``, ``counter_too_old``), or None.

        Holds nothing: a batch asks before it ranks a press, and :meth:`counting` checks again.
        """
        if press.counter is None:
            return None
        with self._lock:
            window = self._windows.get(press.device_id)
            pending = self._pending.get(press.device_id, set())
            if press.counter in pending:
                reason: RejectReason | None = RejectReason.REPLAYED
            else:
                reason = None if window is None else window.check(press.counter)
            if reason is None:
                return None
            return self._refusal(press, reason, window)

    def _refusal(self, press: VerifiedPress, reason: RejectReason, window: ReplayWindow | None) -> Rejected:
        behind = "" if window is None or window.top is None else f" (highest seen {window.top}, window {self.window})"
        msg = f"counter {press.counter} of device {press.device_id!r} {_WHY[reason]}{behind}"
        return Rejected(reason, msg, event_id=press.event_id)

    @contextmanager
    def counting(self, press: VerifiedPress) -> Iterator[None]:
        """Hold ``press``'s counter while its alert is committed inside the ``with`` block.

        Entering rejects a counter already seen (or being committed right now by another thread):
        ``replayed``, or ``counter_too_old`` when it is behind the window. Leaving normally marks
        it seen; leaving by an exception (store down, outside the service area) frees it, so the
        redelivered message passes.

        Raises
        ------
        Rejected
            ``replayed`` or ``counter_too_old``.
        """
        if press.counter is None:
            yield
            return
        device_id, counter = press.device_id, press.counter
        with self._lock:
            window = self._windows.setdefault(device_id, ReplayWindow(self.window))
            pending = self._pending.setdefault(device_id, set())
            reason = RejectReason.REPLAYED if counter in pending else window.check(counter)
            if reason is not None:
                raise self._refusal(press, reason, window)
            pending.add(counter)
        try:
            yield
        except BaseException:
            with self._lock:
                pending.discard(counter)
            raise
        with self._lock:
            pending.discard(counter)
            window.accept(counter)

    def restore(self, counters: Mapping[str, Iterable[int]]) -> None:
        """Rebuild the windows from the counters of stored alerts (at start, so a restart opens no replay hole)."""
        with self._lock:
            for device_id, seen in counters.items():
                self._windows[device_id] = ReplayWindow.from_counters(seen, self.window)

    def observe(self, device_id: str, counter: int) -> None:
        """A counter another replica committed (the change stream): seen here too."""
        with self._lock:
            self._windows.setdefault(device_id, ReplayWindow(self.window)).accept(counter)

    def highest(self, device_id: str) -> int | None:
        """The highest counter seen from ``device_id`` (None: none yet)."""
        with self._lock:
            window = self._windows.get(device_id)
            return None if window is None else window.top


_WHY = {
    RejectReason.REPLAYED: "was already used: a replayed press",
    RejectReason.COUNTER_TOO_OLD: "is too far behind the newest press to be checked: rejected as a possible replay",
}
