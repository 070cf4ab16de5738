"""The compiled street-network cache: used on the second load, rebuilt when the file changes or is corrupt."""

from __future__ import annotations

import gzip
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from support import TORONTO_XML

from geo import Router, _readers, load_network
from geo.load import network_cache_path


def _same(a: object, b: object) -> None:
    for name in ("node_lat", "node_lon", "node_x", "node_y", "seg_u", "seg_v", "seg_length_m", "seg_highway"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    for name in (
        "seg_walk",
        "seg_drive",
        "seg_oneway",
        "seg_speed_kmh",
        "node_osm_id",
        "seg_tunnel",
        "seg_bridge",
        "seg_name",
    ):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a.crs == b.crs  # type: ignore[attr-defined]
    assert (np.asarray(a.seg_name) != "").any()  # type: ignore[attr-defined]  # the handheld's street names survive the cache


@pytest.fixture
def source(tmp_path: Path) -> Path:
    copy = tmp_path / "city.osm.gz"
    shutil.copyfile(TORONTO_XML, copy)
    return copy


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every real parse of an OSM file (the cache's misses)."""
    seen: list[Path] = []
    real = _readers.read_osm

    def counting(path: Path, *, label: str) -> object:
        seen.append(path)
        return real(path, label=label)

    monkeypatch.setattr(_readers, "read_osm", counting)
    return seen


def test_the_second_load_comes_from_the_cache_and_equals_the_parse(
    source: Path, tmp_path: Path, parses: list[Path]
) -> None:
    cache = tmp_path / "cache"
    first = load_network(source, cache_dir=cache)
    cached = network_cache_path(source, cache)
    assert cached.is_file() and cached.parent == cache / "networks"
    assert list(cached.parent.iterdir()) == [cached]  # no temporary file left behind
    second = load_network(source, cache_dir=cache, label="Toronto")
    assert parses == [source]  # parsed once
    _same(first, second)
    assert second.label == "Toronto"
    assert second.project_point(43.66, -79.39) == pytest.approx(first.project_point(43.66, -79.39))


def test_a_changed_file_is_parsed_again(source: Path, tmp_path: Path, parses: list[Path]) -> None:
    cache = tmp_path / "cache"
    before = load_network(source, cache_dir=cache)
    old = network_cache_path(source, cache)
    text = gzip.decompress(source.read_bytes()).decode()
    way = text.index("<way ")
    end = text.index("</way>", way) + len("</way>")
    source.write_bytes(gzip.compress((text[:way] + text[end:]).encode()))  # one way fewer, same name
    after = load_network(source, cache_dir=cache)
    assert len(parses) == 2
    assert network_cache_path(source, cache) != old
    assert after.n_segments < before.n_segments
    _same(after, load_network(source))  # what the cache now gives is what a parse gives


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_a_corrupt_cache_file_is_rebuilt_not_fatal(
    source: Path, tmp_path: Path, parses: list[Path], damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    cache = tmp_path / "cache"
    good = load_network(source, cache_dir=cache)
    cached = network_cache_path(source, cache)
    data = cached.read_bytes()
    cached.write_bytes({"truncated": data[: len(data) // 2], "garbage": b"\x00not a zip" * 100, "empty": b""}[damage])
    with caplog.at_level(logging.WARNING, logger="geo.load"):
        again = load_network(source, cache_dir=cache)
    assert "is unreadable" in caplog.text
    assert len(parses) == 2
    _same(good, again)
    _same(good, load_network(source, cache_dir=cache))  # and the rewritten cache is whole again
    assert len(parses) == 2


def test_without_a_cache_dir_nothing_is_written(source: Path, tmp_path: Path, parses: list[Path]) -> None:
    load_network(source)
    load_network(source)
    assert len(parses) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["city.osm.gz"]


def test_the_cache_keeps_each_modes_components_as_a_parse_computes_them(source: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    load_network(source, cache_dir=cache)
    cached = load_network(source, cache_dir=cache)
    parsed = load_network(source)  # no cache: computed when the router asks
    assert sorted(cached.mode_components) == ["drive", "walk"] and parsed.mode_components == {}
    for mode in ("walk", "drive"):
        np.testing.assert_array_equal(cached.components(mode), parsed.components(mode), err_msg=mode)
        a, b = Router(cached).graph(mode), Router(parsed).graph(mode)
        np.testing.assert_array_equal(a.segments, b.segments, err_msg=mode)  # the same largest component
    # one-ways matter for cars only: the drive graph's components are strong, the walk graph's weak
    assert np.unique(cached.components("drive")).size >= np.unique(cached.components("walk")).size


def test_a_cache_file_without_the_components_is_rebuilt(source: Path, tmp_path: Path, parses: list[Path]) -> None:
    cache = tmp_path / "cache"
    load_network(source, cache_dir=cache)
    cached = network_cache_path(source, cache)
    with np.load(cached) as z:
        arrays = {k: z[k] for k in z.files if not k.startswith("components_")}
    with open(cached, "wb") as f:
        np.savez(f, **arrays)  # what a cache of the same name but an older layout would hold
    again = load_network(source, cache_dir=cache)
    assert len(parses) == 2 and sorted(again.mode_components) == ["drive", "walk"]
