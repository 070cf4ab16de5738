"""The HTTP API's routers, one module per resource; :func:`web.create_app` includes them.

``auth`` (``POST /api/token``), ``alerts``, ``units``, ``reports``, ``admin`` (users, settings,
audit), ``health`` (``/healthz``, ``/metrics``, ``/api/metrics``), ``devices`` (SOS button
supervision), ``plans`` (patrol plans) and ``live_map`` (the dispatcher's map, its sign-in and
event stream). Each module has one ``router``.
"""

from __future__ import annotations

__all__: list[str] = []
