"""web.warm_routes: every route's request handling built ahead, in-process, with nothing to show for it."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from support import Running

from web import warm_routes


def _warm(running: Running) -> int:
    """On a thread of its own, as the service's preload runs it (the test thread may hold a running
    event loop: Playwright's sync API leaves one behind after the browser tests)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(warm_routes, running.service.app).result(timeout=60)


def test_warming_the_routes_is_an_unanswered_request_that_changes_nothing(running: Running) -> None:
    before = running.http.get("/api/metrics").json()
    assert _warm(running) == 404  # a path no route answers: it passed them all
    assert _warm(running) == 404  # and again: nothing left to build, nothing broken
    after = running.http.get("/api/metrics").json()
    assert after == before  # no alert, no rejection, no counter moved
    assert running.http.get("/healthz").status_code == 200
    assert running.http.get("/api/alerts").status_code == 200
    assert running.http.get("/api/alerts/999999").status_code == 404
