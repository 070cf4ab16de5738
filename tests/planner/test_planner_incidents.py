"""Incidents in: layouts recognised without flags, column flags, unusable rows counted, area filter."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from support import TORONTO_TZ, TORONTO_XML, toronto_all, toronto_extract

from patrol_planner import read_incidents, read_osm_bounds


def _toronto_sample(n: int = 50) -> pd.DataFrame:
    inc, _ = toronto_extract()
    return pd.DataFrame(
        {
            "lat": inc.lat[:n],
            "lon": inc.lon[:n],
            "occurred_at": inc.occurred_at[:n].astype(str),
            "category": inc.category[:n],
        }
    )


def test_the_real_toronto_file_is_read_without_flags() -> None:
    inc, report = toronto_all()
    assert report.layout == "Toronto Police MCI"
    assert report.rows == 210_992 and report.kept == 210_992 and report.dropped == 0
    assert set(np.unique(inc.category)) == {"Assault", "Break and Enter", "Auto Theft", "Robbery", "Theft Over"}
    # occurred_at_local is hourly local time: 2014-03-02T08:00 in the source's first row.
    assert str(inc.occurred_at[0]) == "2014-03-02T08:00:00" and inc.hour[0] == 8
    assert inc.timezone == TORONTO_TZ


def test_area_filter_counts_what_it_leaves_out() -> None:
    inc, report = toronto_extract()
    # PROVENANCE.md: 1,825 incidents within 100 m of the extract's <bounds>, all within 100 m of a walk edge.
    assert len(inc) == 1825
    assert report.outside_area == 210_992 - 1825
    assert report.kept + report.dropped == report.rows
    assert "outside the network's area" in report.summary()
    assert read_osm_bounds(TORONTO_XML) == (43.65992, -79.40178, 43.66665, -79.38563)


def test_police_uk_street_level_csv_with_bad_rows(tmp_path: Path) -> None:
    header = (
        "Crime ID,Month,Reported by,Falls within,Longitude,Latitude,Location,LSOA code,LSOA name,"
        "Crime type,Last outcome category,Context"
    )
    rows = [
        "a1,2024-03,Met,Met,-0.1276,51.5072,On or near X,E01,L,Burglary,Under investigation,",
        "a2,2024-03,Met,Met,-0.1300,51.5100,On or near Y,E01,L,Robbery,,",
        ",2024-04,Met,Met,,,No location,,,Anti-social behaviour,,",  # no coordinates
        "a4,,Met,Met,-0.1300,51.5100,On or near Y,E01,L,Robbery,,",  # no month
        "a5,2024-04,Met,Met,-0.1290,51.5090,On or near Z,E01,L,Vehicle crime,,",
    ]
    path = tmp_path / "2024-03-metropolitan-street.csv"
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    inc, report = read_incidents(path, timezone="Europe/London")
    assert report.layout == "police.uk street-level"
    assert (report.rows, report.kept, report.missing_coordinates, report.missing_time) == (5, 3, 1, 1)
    assert report.month_only == 3 and not inc.hour_known.any()
    assert list(inc.category) == ["Burglary", "Robbery", "Vehicle crime"]
    assert str(inc.occurred_at[2]) == "2024-04-01T00:00:00"


def test_plain_table_with_offsets_is_converted_to_local_time(tmp_path: Path) -> None:
    path = tmp_path / "plain.csv"
    path.write_text(
        "lat,lon,occurred_at,category\n"
        "43.238,76.945,2025-06-01T17:30:00Z,theft\n"  # 22:30 in Almaty (UTC+5)
        "43.239,76.946,2025-06-01T23:10:00+05:00,assault\n"
        "43.240,76.947,2025-06-02 01:00,theft\n"  # naive: already local
        "43.240,76.947,not a time,theft\n"
    )
    inc, report = read_incidents(path)
    assert report.layout == "plain" and report.kept == 3 and report.missing_time == 1
    assert [str(t) for t in inc.occurred_at] == ["2025-06-01T22:30:00", "2025-06-01T23:10:00", "2025-06-02T01:00:00"]
    assert list(inc.hour) == [22, 23, 1]


def test_geojson_and_parquet_hold_the_same_incidents(tmp_path: Path) -> None:
    df = _toronto_sample()
    csv_inc, _ = read_incidents(_write(df, tmp_path / "a.csv"), timezone=TORONTO_TZ)
    features = [
        {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [r.lon, r.lat]},
            "properties": {"occurred_at": r.occurred_at, "category": r.category},
        }
        for r in df.itertuples()
    ]
    features.append({"type": "Feature", "geometry": None, "properties": {"occurred_at": "2020-01-01T00:00"}})
    gj = tmp_path / "a.geojson"
    gj.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    gj_inc, gj_report = read_incidents(gj, timezone=TORONTO_TZ)
    assert gj_report.layout == "GeoJSON" and gj_report.missing_coordinates == 1
    pq = tmp_path / "a.parquet"
    df.assign(occurred_at=pd.to_datetime(df.occurred_at)).to_parquet(pq)
    pq_inc, _ = read_incidents(pq, timezone=TORONTO_TZ)
    for other in (gj_inc, pq_inc):
        np.testing.assert_allclose(other.lat, csv_inc.lat)
        np.testing.assert_array_equal(other.occurred_at, csv_inc.occurred_at)
        assert list(other.category) == list(csv_inc.category)


def test_other_layouts_need_column_flags(tmp_path: Path) -> None:
    df = _toronto_sample(5).rename(
        columns={"lat": "shirota", "lon": "dolgota", "occurred_at": "vremya", "category": "vid"}
    )
    path = _write(df, tmp_path / "ru.csv")
    with pytest.raises(ValueError, match="cannot find latitude/longitude columns"):
        read_incidents(path)
    _, report = read_incidents(path, lat_col="shirota", lon_col="dolgota", time_col="vremya", category_col="vid")
    assert report.kept == 5 and report.layout == "columns"
    with pytest.raises(ValueError, match="no column 'nope' for the time"):
        read_incidents(path, lat_col="shirota", lon_col="dolgota", time_col="nope")


def _write(df: pd.DataFrame, path: Path) -> Path:
    df.to_csv(path, index=False)
    return path
