"""Signed presses without I/O: canonical payload, HMAC verification, the anti-replay window, keys at rest."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import threading
from datetime import UTC, datetime, timedelta

import pytest

from dispatch import DeviceKey, PressVerifier, RejectReason, sign_press
from dispatch.device_keys import decrypt_device_keys, encrypt_device_keys
from dispatch.intake import Rejected
from dispatch.signing import ReplayWindow, VerifiedPress, canonical_payload

KEY = DeviceKey(bytes(range(32)))
TS = datetime(2026, 3, 9, 10, 15, 2, tzinfo=UTC)


def _press(ctr: int | None = 1, **extra: object) -> dict:
    body: dict = {"event_id": f"e-{ctr}", "ts": "2026-03-09T10:15:02Z", "kind": "press", **extra}
    return body if ctr is None else {**body, "ctr": ctr}


def _verify(verifier: PressVerifier, body: dict, *, device: str = "btn-1", now: datetime = TS) -> VerifiedPress:
    return verifier.verify(device, json.dumps(body).encode(), event_id=body["event_id"], ts=TS, now=now)


def _reason(call) -> RejectReason:  # type: ignore[no-untyped-def]
    with pytest.raises(Rejected) as info:
        call()
    return info.value.reason


# -- canonical payload and signature ---------------------------------------------------------


def test_canonical_payload_is_sorted_compact_utf8_and_ignores_the_signature() -> None:
    a = {"ts": "t", "event_id": "е-1", "kind": "press", "ctr": 5, "sig": "anything"}
    b = json.loads(json.dumps({"ctr": 5, "kind": "press", "event_id": "е-1", "ts": "t"}, indent=4))
    assert canonical_payload(a) == canonical_payload(b) == '{"ctr":5,"event_id":"е-1","kind":"press","ts":"t"}'.encode()
    # the spec, computed independently: a device in another language gets the same signature
    expected = hmac.new(KEY.secret, canonical_payload(a), hashlib.sha256).hexdigest()
    assert sign_press(a, KEY)["sig"] == expected
    assert len(expected) == 64 and expected == expected.lower()


def test_a_good_signature_verifies_whatever_the_key_order_and_whitespace() -> None:
    verifier = PressVerifier({"btn-1": KEY})
    body = sign_press(_press(7, note="Алматы"), KEY)
    spaced = json.dumps(dict(reversed(list(body.items()))), indent=2, ensure_ascii=True).encode()
    press = verifier.verify("btn-1", spaced, event_id="e-7", ts=TS, now=TS)
    assert press == VerifiedPress("btn-1", "e-7", 7)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda b: {**b, "kind": "test"}, RejectReason.BAD_SIGNATURE),  # a signed field altered
        (lambda b: {**b, "extra": 1}, RejectReason.BAD_SIGNATURE),  # a field added
        (lambda b: {**b, "ctr": b["ctr"] + 1}, RejectReason.BAD_SIGNATURE),  # the counter bumped
        (lambda b: {**b, "sig": b["sig"].upper()[:-1] + "0"}, RejectReason.BAD_SIGNATURE),
        (lambda b: {**b, "sig": "not hex"}, RejectReason.BAD_SIGNATURE),
        (lambda b: {**b, "sig": 12}, RejectReason.BAD_SIGNATURE),
        (lambda b: {k: v for k, v in b.items() if k != "sig"}, RejectReason.MISSING_SIGNATURE),
    ],
)
def test_altered_or_unsigned_presses_are_rejected(change, reason: RejectReason) -> None:  # type: ignore[no-untyped-def]
    verifier = PressVerifier({"btn-1": KEY})
    assert _reason(lambda: _verify(verifier, change(sign_press(_press(7), KEY)))) is reason


def test_a_repeated_key_is_refused_so_signed_and_parsed_objects_agree() -> None:
    verifier = PressVerifier({"btn-1": KEY})
    body = sign_press(_press(7, kind="test"), KEY)
    raw = json.dumps(body)[:-1] + ', "kind": "press"}'
    with pytest.raises(Rejected) as info:
        verifier.verify("btn-1", raw.encode(), event_id="e-7", ts=TS, now=TS)
    assert info.value.reason is RejectReason.MALFORMED_JSON and "repeat a key" in info.value.detail


def test_another_devices_key_is_a_forgery() -> None:
    other = DeviceKey(os.urandom(32))
    verifier = PressVerifier({"btn-1": KEY, "btn-2": other})
    assert _reason(lambda: _verify(verifier, sign_press(_press(1), other))) is RejectReason.BAD_SIGNATURE
    assert _verify(verifier, sign_press(_press(1), other), device="btn-2").counter == 1


def test_counter_field_must_be_a_non_negative_64_bit_integer() -> None:
    verifier = PressVerifier({"btn-1": KEY})
    # a list, not a dict: True and 1.0 are the same dict key, and both cases must run
    cases = [
        (None, RejectReason.MISSING_FIELD),
        ("5", RejectReason.WRONG_TYPE),
        (True, RejectReason.WRONG_TYPE),
        (1.0, RejectReason.WRONG_TYPE),
        (-1, RejectReason.BAD_VALUE),
        (2**63, RejectReason.BAD_VALUE),
    ]
    for ctr, reason in cases:
        body = sign_press(_press(None) if ctr is None else {**_press(None), "ctr": ctr}, KEY)
        assert _reason(lambda body=body: _verify(verifier, body)) is reason, ctr
    assert _verify(verifier, sign_press(_press(2**63 - 1), KEY)).counter == 2**63 - 1


def test_old_signed_presses_are_rejected_and_unsigned_devices_pass_through() -> None:
    verifier = PressVerifier({"btn-1": KEY}, max_age=timedelta(minutes=10))
    body = sign_press(_press(3), KEY)
    assert _verify(verifier, body, now=TS + timedelta(minutes=10)).counter == 3
    assert (
        _reason(lambda: _verify(verifier, body, now=TS + timedelta(minutes=10, seconds=1)))
        is RejectReason.PRESS_TOO_OLD
    )
    # a device without a key need not sign (and a stray sig from it is not checked)
    assert _verify(verifier, _press(None), device="btn-9") == VerifiedPress("btn-9", "e-None", None)


def test_reprs_never_show_keys() -> None:
    verifier = PressVerifier({"btn-1": KEY})
    for text in (repr(KEY), str(KEY), repr(verifier)):
        assert KEY.secret.hex() not in text and str(KEY.secret) not in text
    assert repr(KEY) == "DeviceKey(<32 bytes, hidden>)"
    with pytest.raises(ValueError, match="at least 16 bytes"):
        DeviceKey(b"short")


# -- the anti-replay window ------------------------------------------------------------------


def test_window_accepts_new_and_slightly_reordered_counters_once() -> None:
    w = ReplayWindow(8)
    assert w.check(0) is None
    for ctr in (5, 3, 9, 4, 2):
        assert w.check(ctr) is None, ctr
        w.accept(ctr)
    assert w.top == 9
    for ctr in (5, 3, 9, 4):
        assert w.check(ctr) is RejectReason.REPLAYED
    assert w.check(1) is RejectReason.COUNTER_TOO_OLD  # 9 - 1 = 8 = window size
    assert w.check(2) is RejectReason.REPLAYED  # 7 behind: still remembered
    assert [w.check(c) for c in (6, 7, 8)] == [None, None, None]
    w.accept(100)  # a jump wider than the window forgets everything behind
    assert (w.check(99), w.check(92), w.check(9), w.check(100)) == (
        None,
        RejectReason.COUNTER_TOO_OLD,
        RejectReason.COUNTER_TOO_OLD,
        RejectReason.REPLAYED,
    )


def test_window_matches_a_brute_force_model() -> None:
    import random

    rng = random.Random(4)
    size = 16
    w, seen = ReplayWindow(size), set()
    for _ in range(3000):
        ctr = max(0, (max(seen) if seen else 0) + rng.randint(-24, 6))
        top = max(seen) if seen else None
        if top is not None and top - ctr >= size:
            expected = RejectReason.COUNTER_TOO_OLD
        elif ctr in seen:
            expected = RejectReason.REPLAYED
        else:
            expected = None
        assert w.check(ctr) is expected, (ctr, top)
        if expected is None:
            w.accept(ctr)
            seen.add(ctr)
    assert ReplayWindow.from_counters(seen, size).check(max(seen)) is RejectReason.REPLAYED


def test_counting_marks_a_counter_only_when_the_commit_succeeds() -> None:
    verifier = PressVerifier({"btn-1": KEY}, window=64)
    press = VerifiedPress("btn-1", "e", 10)
    with pytest.raises(RuntimeError), verifier.counting(press):
        raise RuntimeError("store down")
    assert verifier.highest("btn-1") is None  # the retry of the same message will pass
    with verifier.counting(press):
        pass
    assert verifier.highest("btn-1") == 10
    assert _reason(lambda: verifier.counting(press).__enter__()) is RejectReason.REPLAYED
    with verifier.counting(VerifiedPress("btn-1", "unsigned", None)):  # devices that do not sign
        pass


def test_the_same_counter_committing_in_two_threads_passes_once() -> None:
    verifier = PressVerifier({"btn-1": KEY})
    inside, release = threading.Event(), threading.Event()
    outcome: list[object] = []

    def first() -> None:
        with verifier.counting(VerifiedPress("btn-1", "a", 42)):
            inside.set()
            release.wait(5)
        outcome.append("first committed")

    thread = threading.Thread(target=first)
    thread.start()
    assert inside.wait(5)
    assert _reason(lambda: verifier.counting(VerifiedPress("btn-1", "b", 42)).__enter__()) is RejectReason.REPLAYED
    release.set()
    thread.join(5)
    assert outcome == ["first committed"] and verifier.highest("btn-1") == 42


def test_restore_rebuilds_the_windows() -> None:
    verifier = PressVerifier({"btn-1": KEY}, window=64)
    verifier.restore({"btn-1": [500, 498, 520]})
    assert verifier.highest("btn-1") == 520
    for ctr, reason in [(500, RejectReason.REPLAYED), (456, RejectReason.COUNTER_TOO_OLD)]:
        assert _reason(lambda ctr=ctr: verifier.counting(VerifiedPress("btn-1", "x", ctr)).__enter__()) is reason
    with verifier.counting(VerifiedPress("btn-1", "x", 499)):
        pass


# -- keys at rest ----------------------------------------------------------------------------

SECRET = "a-master-secret-of-at-least-32-chars"


def test_device_keys_encrypt_and_decrypt_only_with_the_secret_and_their_own_device() -> None:
    keys = {"btn-1": KEY, "btn-2": DeviceKey(os.urandom(32))}
    doc = encrypt_device_keys(keys, SECRET)
    assert KEY.secret.hex() not in json.dumps(doc)
    assert {k: v.secret for k, v in decrypt_device_keys(doc, SECRET).items()} == {k: v.secret for k, v in keys.items()}
    with pytest.raises(ValueError, match="wrong QORGAU_DEVICE_KEY_SECRET"):
        decrypt_device_keys(doc, SECRET + "x")
    swapped = {**doc, "devices": {"btn-1": doc["devices"]["btn-2"], "btn-2": doc["devices"]["btn-1"]}}
    with pytest.raises(ValueError, match="does not decrypt"):
        decrypt_device_keys(swapped, SECRET)  # the device id is bound to its entry
    with pytest.raises(ValueError, match="at least 32 characters"):
        encrypt_device_keys(keys, "short")
    with pytest.raises(ValueError, match="not a Qorgau device key file"):
        decrypt_device_keys({"devices": {}}, SECRET)
