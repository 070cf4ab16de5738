"""The hostile-input run in small (bench/hostile.py; `python -m bench --only hostile` sends 100,000).

2,000 generated messages, good and bad, through the real broker and the service's own bridge
into SQLite: nothing escapes as an exception, every rejection names its reason, every good
message is stored exactly once, and each bad class is rejected with the reason it deserves.
"""

from __future__ import annotations

from bench.hostile import run


def test_two_thousand_hostile_messages_lose_no_good_one_and_raise_nothing(mqtt_url: str) -> None:
    f = run(mqtt_url, n=2000, seed=6, window=500, timeout_s=120)
    assert f["processed"] >= f["reaching_the_service"], f
    assert f["exceptions_escaping"] == 0, f["traceback_samples"]
    assert f["internal_errors"] == 0 and f["tracebacks_in_log"] == 0
    assert f["acks_without_reason"] == 0
    assert f["good_sent"] > 800
    assert f["good_stored"] == f["good_sent"] == f["good_stored_rows"]
    # at least once: a dropped connection makes the broker redeliver, and a redelivery is answered again
    for reason, expected in f["expected_rejections"].items():
        assert expected <= f["rejected"].get(reason, 0) <= expected + f["redeliveries"], (reason, f["rejected"], f["expected_rejections"])
    assert f["redeliveries"] >= 0
    assert f["acks_rejected_by_reason"].get("malformed_json", 0) > 0  # devices hear why
    assert f["ok"]
