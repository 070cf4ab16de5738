"""The broker behaviours the replicas' ingest design rests on (bench/mqtt_findings.py), on a Mosquitto of its own."""

from __future__ import annotations

from bench.mqtt_findings import run


def test_fanout_survives_a_sigkilled_member_and_shared_close_does_not() -> None:
    record = run(n=12, wait_s=3.0, only=["share_close", "fanout_sigkill"])
    assert record["broker"].startswith("mosquitto version 2.")
    fanout = record["fanout_sigkill"]
    # every member has its own session: the survivors hold every message, and the killed member's
    # unacknowledged ones come back to it when it reconnects with its client id
    assert fanout["sent"] == 12
    assert fanout["held_unacked_by_killed_member"] == 12
    assert fanout["of_those_with_other_members"] == 12
    assert fanout["of_those_redelivered_on_restart_same_id"] == 12
    assert fanout["lost"] == 0
    shared = record["share_close"]
    # the member that closed held its share; what it held either reached the others or is counted lost
    assert shared["held_by_closed_member"] > 0
    assert shared["of_those_redelivered_to_others"] + shared["lost"] == shared["held_by_closed_member"]
