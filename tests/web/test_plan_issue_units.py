"""Issuing a plan without naming units (issue 14): patrols go to the foot units in reading order."""

from __future__ import annotations

from web.plan_issue import default_units


def test_patrols_go_to_foot_units_in_reading_order_when_none_are_named() -> None:
    foot = [f"foot-{i}" for i in (10, 2, 1, 11, 3)]
    assert default_units(["P10", "P02", "P01"], foot) == {"P01": "foot-1", "P02": "foot-2", "P10": "foot-3"}
    assert default_units(["P01", "P02"], ["b-7", "a-12", "a-9"]) == {"P01": "a-9", "P02": "a-12"}
    assert default_units(["P01", "P02", "P03"], ["foot-1"]) == {"P01": "foot-1"}
