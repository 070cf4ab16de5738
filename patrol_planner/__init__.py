"""patrol_planner: from crime history to foot-patrol routes (hotspots, evaluation, routes, siting).

The commander's room. It reads incidents, estimates where and when crime concentrates, and plans
walking routes on the street graphs of :mod:`geo`. Its algorithms do no I/O of their own.
Built in the patrol-planner issue; nothing is exported yet.
"""

__all__: list[str] = []
