"""The in-memory duplicate candidates equal what the database query returned: every open alert of
the same source within the radius and the window, whatever the grid cell boundaries."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np

from dispatch.domain import Alert, AlertSource, AlertStatus
from dispatch.lifecycle import distance_m
from dispatch.recent import RecentAlerts

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def _alert(
    i: int,
    lat: float,
    lon: float,
    *,
    at: datetime = T0,
    source: AlertSource = AlertSource.APP102,
    status: AlertStatus = AlertStatus.RECOMMENDED,
) -> Alert:
    return Alert(
        id=i, source=source, sender="x", event_id=f"e{i}", event_ts=at, received_at=at, lat=lat, lon=lon, status=status
    )


def test_every_open_alert_within_the_radius_is_a_candidate_across_cell_boundaries() -> None:
    rng = np.random.default_rng(4)
    recent = RecentAlerts(timedelta(minutes=10), 100.0, per_cell=10_000)
    alerts = []
    for i in range(1, 2001):  # a 2 x 2 km square at Almaty's latitude: many cells, many boundaries
        lat = 43.25 + rng.uniform(0, 2000) / 111_320
        lon = 76.9 + rng.uniform(0, 2000) / (111_320 * math.cos(math.radians(43.25)))
        alerts.append(_alert(i, lat, lon))
        recent.add(alerts[-1])
    for _ in range(300):
        lat = 43.25 + rng.uniform(0, 2000) / 111_320
        lon = 76.9 + rng.uniform(0, 2000) / (111_320 * math.cos(math.radians(43.25)))
        got = {a.id for a in recent.candidates(AlertSource.APP102, lat, lon, T0)}
        within = {a.id for a in alerts if distance_m(lat, lon, a.lat, a.lon) <= 100.0}
        assert within <= got


def test_closed_expired_and_other_source_alerts_are_not_candidates() -> None:
    recent = RecentAlerts(timedelta(minutes=10), 100.0)
    lat, lon = 43.25, 76.9
    recent.add(_alert(1, lat, lon))
    recent.add(_alert(2, lat, lon, source=AlertSource.SOS))
    recent.add(_alert(3, lat, lon, at=T0 - timedelta(minutes=11)))
    recent.add(_alert(4, lat, lon, status=AlertStatus.CLOSED))  # never offered
    recent.add(_alert(5, lat, lon))
    assert [a.id for a in recent.candidates(AlertSource.APP102, lat, lon, T0)] == [1, 5]
    recent.changed(_alert(1, lat, lon, status=AlertStatus.FALSE_ALARM))  # closed by a dispatcher
    linked = _alert(5, lat, lon)
    linked.duplicate_of = 99
    recent.changed(linked)
    assert [(a.id, a.duplicate_of) for a in recent.candidates(AlertSource.APP102, lat, lon, T0)] == [(5, 99)]
    assert [a.id for a in recent.candidates(AlertSource.APP102, lat, lon, T0 + timedelta(minutes=11))] == []
    assert len(recent) == 1  # the SOS alert is still held; the expired ones were forgotten


def test_a_button_pressed_again_and_again_offers_only_its_earliest_presses() -> None:
    recent = RecentAlerts(timedelta(minutes=10), 100.0, per_cell=25)
    for i in range(1, 501):
        recent.add(_alert(i, 43.25, 76.9, at=T0 + timedelta(seconds=i)))
    got = recent.candidates(AlertSource.APP102, 43.25, 76.9, T0 + timedelta(seconds=600))
    assert [a.id for a in got] == list(range(1, 26))
