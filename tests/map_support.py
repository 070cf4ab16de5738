"""Helpers for the live map's tests: users with passwords, cookie sign-in, reading Server-Sent Events, Chromium."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from dispatch import Role, User
from dispatch.auth import hash_password

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
PASSWORD = "correct horse battery"


def add_user(service: Any, username: str, role: Role | str, *, unit_id: str | None = None) -> str:
    """Register a user with :data:`PASSWORD` in the running service's store; returns the username."""
    service.store.add_user(User(username, Role(role), unit_id), hash_password(PASSWORD), actor="test")
    return username


def sign_in(base_url: str, username: str, password: str = PASSWORD) -> httpx.Client:
    """A client signed in through the map's login form (it holds the session cookie)."""
    client = httpx.Client(base_url=base_url, timeout=5)
    response = client.post("/login", data={"username": username, "password": password, "next": "/map"})
    assert response.status_code == 303, response.text
    return client


def read_events(response: httpx.Response, count: int, *, timeout_s: float = 3.0) -> list[dict[str, str]]:
    """The next ``count`` named events (``{"id", "event", "data"}``) from an open SSE response."""
    events: list[dict[str, str]] = []
    current: dict[str, str] = {}
    deadline = time.monotonic() + timeout_s
    lines = response.iter_lines()
    while len(events) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"only {len(events)} of {count} events within {timeout_s} s: {events}")
        line = next(lines)
        if line == "":
            if "event" in current:
                events.append(current)
            current = {}
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        current[field] = value[1:] if value.startswith(" ") else value
    return events
