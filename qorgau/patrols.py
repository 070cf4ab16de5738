"""Simulated foot patrols that walk the plans a commander issues (issue 14).

:class:`PatrolWalkers` hears the plans the service issues on ``{root}/units/+/plan`` (the retained
payload :meth:`mqtt_bridge.MqttBridge.send_plan` publishes: the stops with their times, the route
along the streets, the walking speed) and, for every foot unit of the registry that gets one, walks
it as an officer carrying a GPS tracker would, reporting ``{"ts", "lat", "lon"}`` on
``{root}/units/{unit_id}/position`` every ``position_every_s`` (5 s) of the clock's time, from the
shift's start until the patrol is back at its booth (:func:`plan_walk`):

- along the plan's route geometry, each leg at the pace that brings the patrol to the next stop at
  its planned arrival, never faster than the plan's walking speed (a leg too long for its time
  arrives late);
- standing at the stop's hot spot from its arrival to its planned departure;
- back to the booth at the plan's speed; nothing after the shift's end.

Positions go over MQTT, the tracker's path (the topic table's "foot and car patrols"), not through
the handheld's ``PUT /api/units/{id}/position``: a shift of 12 patrols is some 35,000 fixes, which
the bridge's units lane takes in batches (one write per batch), where the handheld's API would
make each an HTTP request with its own idempotency record; and MQTT needs no sign-in, so the
walkers also run beside a remote service (``qorgau simulate --walk-plans``) with nothing but the
broker (with ``--credentials``, each unit on its own broker login, as a tracker would).

**Behaviours** (:class:`Behaviour`), so that the dosage report has something to say:
``on_time`` walks the plan as above; ``late`` leaves the booth ``late_min`` (20) minutes late and
keeps every stop's minutes, so everything is that much later and what falls after the shift's end
is lost; ``skip`` skips every second stop (the 2nd, 4th, ...): it stays on at the stop before for
the skipped stop's minutes, then walks past the skipped one without stopping and reaches the next
on time. ``late_share`` and ``skip_share`` (0.25 each) of a plan's patrols behave so, spread evenly
over the patrol numbers from offsets drawn from the seed and the plan (:func:`behaviour_of`; the
late ones among those that do not skip); ``told`` names a unit's or a patrol's behaviour outright.

**An order comes first.** With ``duty`` (the simulated responders,
:class:`qorgau.responders.Responders`), a unit whose officer works on an order sends no plan
positions (the responder reports them along the order's route); once the order is closed the
patrol walks from where the order left it, straight at the plan's speed, to the first stop it can
still reach before that stop's planned departure, and goes on with the plan from there. Without
``duty`` the patrols walk on whatever orders they get (nobody in this process answers them).

A plan received during its shift is taken up the same way, from the booth (or from where the unit's
previous plan left it); a plan whose shift is over is not walked; a newer plan replaces the one a
unit walks; an empty retained message (a plan withdrawn at the broker) stops the walk.

**The clock** gives "now" and waits: :class:`RealClock` in the demo; a test shares a
:class:`ManualClock` with an in-process service (``QorgauService(clock=...)``) and moves it by hand,
so a whole shift is walked in seconds. Every fix's ``ts`` is a step of the clock's time at or before
its "now", never ahead of the service's clock (the service refuses ``ts_in_future``), and a unit's
fixes always go forward in time (it refuses a ``stale_position`` older than the unit's last).
"""

from __future__ import annotations

import bisect
import dataclasses
import json
import logging
import math
import random
import re
import threading
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

import numpy as np

from dispatch import Unit, UnitKind
from geo import great_circle_m
from mqtt_bridge import BrokerAddress, Topics, new_client, parse_mqtt_url
from qorgau.responders import cumulative_m, point_along

__all__ = [
    "Behaviour",
    "Clock",
    "IssuedRoute",
    "ManualClock",
    "OrderDuty",
    "PatrolWalkers",
    "RealClock",
    "Walk",
    "WalkPolicy",
    "WalkReport",
    "behaviour_of",
    "plan_walk",
]

log = logging.getLogger(__name__)

Point = tuple[float, float]


class Behaviour(StrEnum):
    """How a simulated patrol walks its plan (see the module's notes)."""

    ON_TIME = "on_time"
    LATE = "late"
    SKIP = "skip"


@dataclass(frozen=True, slots=True)
class WalkPolicy:
    """How the simulated patrols walk; the defaults give a report with something to say.

    Parameters
    ----------
    late_share, skip_share
        Shares of a plan's patrols that leave late / skip every second stop.
    late_min
        How late a late patrol leaves its booth, minutes.
    position_every_s
        Seconds of the clock's time between two fixes (the handheld's rate while moving).
    walk_speed_mps
        Walk at this speed; None: the plan's own (``walk_speed_mps`` of the plan), else ``default_speed_mps``.
    default_speed_mps
        For a plan that does not say its speed.
    """

    late_share: float = 0.25
    skip_share: float = 0.25
    late_min: float = 20.0
    position_every_s: float = 5.0
    walk_speed_mps: float | None = None
    default_speed_mps: float = 1.4

    def __post_init__(self) -> None:
        for name in ("late_share", "skip_share"):
            share = getattr(self, name)
            if not 0.0 <= share <= 1.0:
                msg = f"{name} must lie in [0, 1], got {share!r}"
                raise ValueError(msg)
        if self.late_min < 0:
            msg = f"late_min must not be negative, got {self.late_min!r}"
            raise ValueError(msg)
        for name in ("position_every_s", "default_speed_mps"):
            if getattr(self, name) <= 0:
                msg = f"{name} must be positive, got {getattr(self, name)!r}"
                raise ValueError(msg)
        if self.walk_speed_mps is not None and self.walk_speed_mps <= 0:
            msg = f"walk_speed_mps must be positive, got {self.walk_speed_mps!r}"
            raise ValueError(msg)


def _patrol_number(patrol: str) -> int:
    digits = re.findall(r"\d+", patrol)
    return int(digits[-1]) if digits else sum(patrol.encode()) + 1


def _spread(k: int, share: float, offset: float) -> bool:
    """Whether the k-th of a run is hit when ``share`` of any run of consecutive k are (from ``offset``)."""
    return math.floor(k * share + offset) > math.floor((k - 1) * share + offset)


def behaviour_of(policy: WalkPolicy, seed: int | None, *, plan_id: str, patrol: str) -> Behaviour:
    """The behaviour of one patrol of a plan: the same for the same seed, plan and patrol.

    With a seed, ``skip_share`` of the patrols are spread evenly over the patrol numbers (P01, P02,
    ...) and ``late_share`` over the others, from offsets the seed and the plan draw; without one,
    each is drawn.
    """
    k = _patrol_number(patrol)
    # late among the patrols that do not skip, at the share that makes late_share of them all
    late_share = min(1.0, policy.late_share / (1.0 - policy.skip_share)) if policy.skip_share < 1 else 0.0
    if seed is None:
        rng = random.Random()
        skip, late = rng.random() < policy.skip_share, rng.random() < late_share
    else:
        offset = random.Random(f"{seed}/{plan_id}/skip").random()
        skip = _spread(k, policy.skip_share, offset)
        skipped_so_far = math.floor(k * policy.skip_share + offset) - math.floor(offset)
        late = _spread(k - skipped_so_far, late_share, random.Random(f"{seed}/{plan_id}/late").random())
    return Behaviour.SKIP if skip else Behaviour.LATE if late else Behaviour.ON_TIME


# -- the plan and its walk -------------------------------------------------------------------


def _epoch(text: str) -> float:
    value = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    if value.tzinfo is None:
        msg = f"time {text!r} has no UTC offset"
        raise ValueError(msg)
    return value.timestamp()


def _metres(a: Point, b: Point) -> float:
    return float(great_circle_m(a[0], a[1], b[0], b[1]))


@dataclass(frozen=True, slots=True)
class PlannedStop:
    """One stop of an issued route, its times in seconds since the epoch (UTC)."""

    seq: int
    hot_spot: str
    lat: float
    lon: float
    arrive_s: float
    depart_s: float
    index: int
    """The route vertex the stop is at (the first at or after the previous stop's)."""

    @property
    def point(self) -> Point:
        return (self.lat, self.lon)


@dataclass(frozen=True, slots=True)
class IssuedRoute:
    """A unit's plan as it comes over MQTT (``{root}/units/{id}/plan``), read for walking."""

    plan_id: str
    patrol: str
    unit_id: str
    issued_at: str
    shift_start_s: float
    shift_end_s: float
    route: tuple[Point, ...]
    stops: tuple[PlannedStop, ...]
    walk_speed_mps: float | None

    @classmethod
    def from_payload(cls, body: Mapping[str, Any]) -> IssuedRoute:
        """Read the plan payload (README, topic table).

        Raises
        ------
        ValueError, KeyError, TypeError
            If it is not a plan.
        """
        route = tuple((float(lat), float(lon)) for lon, lat, *_ in body["route"]["coordinates"])
        if len(route) < 2:
            msg = "a plan's route needs two points or more"
            raise ValueError(msg)
        lats, lons = np.array([p[0] for p in route]), np.array([p[1] for p in route])
        stops: list[PlannedStop] = []
        at = 0
        for s in sorted(body.get("stops") or [], key=lambda s: int(s["seq"])):
            point = (float(s["lat"]), float(s["lon"]))
            dist = great_circle_m(point[0], point[1], lats[at:], lons[at:])
            at += int(np.flatnonzero(dist <= dist.min() + 1.0)[0])  # the first pass, not a later revisit
            stops.append(
                PlannedStop(
                    int(s["seq"]), str(s["hot_spot"]), *point, _epoch(s["arrive"]), _epoch(s["depart"]), index=at
                )
            )
        speed = body.get("walk_speed_mps")
        return cls(
            plan_id=str(body["plan_id"]),
            patrol=str(body["patrol"]),
            unit_id=str(body["unit_id"]),
            issued_at=str(body.get("issued_at", "")),
            shift_start_s=_epoch(body["shift_start"]),
            shift_end_s=_epoch(body["shift_end"]),
            route=route,
            stops=tuple(stops),
            walk_speed_mps=None if speed is None else float(speed),
        )


@dataclass(frozen=True, slots=True)
class Leg:
    """From ``t0`` to ``t1`` along ``points`` at an even pace; one point: standing there."""

    t0: float
    t1: float
    points: tuple[Point, ...]
    cumulative: tuple[float, ...]
    stop: PlannedStop | None = None
    """The stop a standing leg is at (None: walking, or waiting elsewhere)."""

    @classmethod
    def walking(cls, t0: float, t1: float, points: Sequence[Point]) -> Leg:
        pts = [points[0]]
        for p in points[1:]:
            if p != pts[-1]:
                pts.append(p)
        return cls(t0, t1, tuple(pts), tuple(cumulative_m(pts)))

    @classmethod
    def standing(cls, t0: float, t1: float, point: Point, stop: PlannedStop | None = None) -> Leg:
        return cls(t0, t1, (point,), (0.0,), stop)

    @property
    def length_m(self) -> float:
        return self.cumulative[-1]

    def at(self, t: float) -> Point:
        if len(self.points) == 1 or self.t1 <= self.t0:
            return self.points[-1] if t >= self.t1 else self.points[0]
        f = min(1.0, max(0.0, (t - self.t0) / (self.t1 - self.t0)))
        return point_along(self.points, self.cumulative, f * self.length_m)


class Walk:
    """Where a patrol walking its plan is at each moment (seconds since the epoch, UTC)."""

    def __init__(self, legs: Sequence[Leg], *, end_s: float | None = None) -> None:
        if not legs:
            msg = "a walk needs a leg"
            raise ValueError(msg)
        self.legs = tuple(legs)
        self._starts = [leg.t0 for leg in self.legs]
        self.start_s = self.legs[0].t0
        self.end_s = self.legs[-1].t1 if end_s is None else min(end_s, self.legs[-1].t1)

    def at(self, t: float) -> Point | None:
        """The position at ``t``; None before the walk begins and after it ends."""
        if t < self.start_s or t > self.end_s:
            return None
        i = max(0, bisect.bisect_right(self._starts, t) - 1)
        return self.legs[i].at(t)

    def dwells(self) -> list[tuple[str, float, float]]:
        """``(hot spot, from, to)`` of every stand at a planned stop, within the walk."""
        return [
            (leg.stop.hot_spot, leg.t0, min(leg.t1, self.end_s))
            for leg in self.legs
            if leg.stop is not None and leg.t0 < self.end_s
        ]


def _along(route: Sequence[Point], start: Point, from_index: int | None, to_index: int, end: Point) -> list[Point]:
    """From ``start`` to ``end``: along the route's vertices between the two indices, or straight."""
    if from_index is None:
        return [start, end]
    return [start, *route[from_index + 1 : to_index + 1], end]


def plan_walk(
    plan: IssuedRoute,
    *,
    speed_mps: float,
    behaviour: Behaviour = Behaviour.ON_TIME,
    delay_s: float = 0.0,
    since_s: float | None = None,
    start_at: Point | None = None,
) -> Walk:
    """The walk of ``plan`` (see the module's notes).

    ``delay_s`` shifts every planned time (a late patrol). With ``since_s`` the walk is taken up at
    that moment from ``start_at`` (default: the booth): straight to the first stop it can still reach
    before its planned departure, then along the route as planned.
    """
    if speed_mps <= 0:
        msg = f"speed_mps must be positive, got {speed_mps!r}"
        raise ValueError(msg)
    route = plan.route
    legs: list[Leg] = []
    if since_s is None:
        t, here, index = plan.shift_start_s + delay_s, route[0], 0
        stops = list(enumerate(plan.stops))
    else:
        t, here = since_s, start_at or route[0]
        index = None
        stops = [
            (i, s) for i, s in enumerate(plan.stops) if t + _metres(here, s.point) / speed_mps < s.depart_s + delay_s
        ]
    linger = 0.0
    for i, stop in stops:
        if behaviour is Behaviour.SKIP and i % 2 == 1:  # stays on where it is for the skipped stop's minutes
            linger += stop.depart_s - stop.arrive_s
            continue
        if linger > 0:
            legs.append(Leg.standing(t, t + linger, here))
            t += linger
            linger = 0.0
        walking = Leg.walking(t, t, _along(route, here, index, stop.index, stop.point))
        arrive = max(stop.arrive_s + delay_s, t + walking.length_m / speed_mps)
        legs.append(dataclasses.replace(walking, t1=arrive))
        depart = max(stop.depart_s + delay_s, arrive)
        if depart > arrive:
            legs.append(Leg.standing(arrive, depart, stop.point, stop))
        t, here, index = depart, stop.point, stop.index
    if linger > 0:
        legs.append(Leg.standing(t, t + linger, here))
        t += linger
    home = Leg.walking(t, t, _along(route, here, index, len(route) - 1, route[-1]))
    legs.append(dataclasses.replace(home, t1=t + home.length_m / speed_mps))
    return Walk(legs, end_s=plan.shift_end_s)


# -- clocks ----------------------------------------------------------------------------------


class Clock(Protocol):
    """What the walkers ask of a clock: the time, and a wait that a new plan can cut short."""

    def now(self) -> datetime: ...

    def wait(self, until_s: float, seen_s: float, wake: threading.Event) -> None:
        """Return once the time reaches ``until_s`` (seconds since the epoch), ``wake`` is set, or
        (a clock moved by hand) the time is no longer ``seen_s``; returning early is harmless."""
        ...

    def notify(self) -> None:
        """``wake`` was set: a waiting :meth:`wait` should return."""
        ...


class RealClock:
    """The real time (UTC)."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now()

    def wait(self, until_s: float, seen_s: float, wake: threading.Event) -> None:
        wake.wait(timeout=min(1.0, max(0.0, until_s - self.now().timestamp())))

    def notify(self) -> None:
        """Nothing to do: :meth:`wait` waits on the event itself."""


class ManualClock:
    """A clock moved by hand (:meth:`advance`, :meth:`set`), for tests and simulations.

    Callable, so that it can be the service's clock too (``QorgauService(clock=ManualClock(...))``).
    """

    def __init__(self, start: datetime | None = None) -> None:
        start = start or datetime.now(UTC)
        if start.tzinfo is None:
            msg = "the clock's start needs its UTC offset"
            raise ValueError(msg)
        self._now = start.astimezone(UTC)
        self._cond = threading.Condition()

    def now(self) -> datetime:
        with self._cond:
            return self._now

    def __call__(self) -> datetime:
        return self.now()

    def set(self, when: datetime) -> datetime:
        """Move the clock to ``when`` (never back: the service's times must not go backwards)."""
        with self._cond:
            if when < self._now:
                msg = f"the clock does not go back: it is {self._now.isoformat()}, asked for {when.isoformat()}"
                raise ValueError(msg)
            self._now = when.astimezone(UTC)
            self._cond.notify_all()
            return self._now

    def advance(self, seconds: float) -> datetime:
        return self.set(self.now() + timedelta(seconds=seconds))

    def wait(self, until_s: float, seen_s: float, wake: threading.Event) -> None:
        with self._cond:
            self._cond.wait_for(
                lambda: wake.is_set() or self._now.timestamp() >= until_s or self._now.timestamp() != seen_s,
                timeout=1.0,
            )

    def notify(self) -> None:
        with self._cond:
            self._cond.notify_all()


# -- the walkers -----------------------------------------------------------------------------


class OrderDuty(Protocol):
    """Who knows whether a unit's officer works on an order (:class:`qorgau.responders.Responders`)."""

    def busy(self, unit_id: str) -> bool:
        """Whether the unit's officer works on an order now (from reading it until it is closed)."""
        ...

    def last_fix(self, unit_id: str) -> Point | None:
        """Where the officer last reported the unit while on an order (None: nowhere)."""
        ...


@dataclass(slots=True)
class WalkReport:
    """What the simulated patrols did."""

    plans: int = 0
    """Plans taken up (a newer plan for a unit counts again)."""
    positions: int = 0
    held_back: int = 0
    """Fixes not sent because the unit's officer worked on an order."""
    resumed: int = 0
    """Walks taken up again after an order."""
    finished: int = 0
    """Walks that reached their end (back at the booth, or the shift's end)."""
    expired: int = 0
    """Plans whose shift was over when they arrived."""
    not_walked: int = 0
    """Plans of units that are no foot patrol of the registry (booths, cars, unknown units)."""
    withdrawn: int = 0
    behaviours: dict[str, str] = field(default_factory=dict)
    """unit id -> the behaviour of the plan it walks (or walked last)."""
    positions_by_unit: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class _Walking:
    plan: IssuedRoute
    behaviour: Behaviour
    speed_mps: float
    delay_s: float
    walk: Walk
    next_s: float | None
    last_s: float | None = None
    last_point: Point | None = None
    held: bool = False


def _ts(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class PatrolWalkers:
    """Simulated foot patrols walking the plans issued to them (see the module's notes).

    Parameters
    ----------
    url, topic_root
        The broker and the service's topic root.
    units
        The unit registry: the foot units among them walk their plans.
    clock
        :class:`RealClock` (default) or a :class:`ManualClock` shared with the service.
    policy
        Shares, lateness, the fix rate, the speed.
    seed
        Behaviours are drawn from it and each plan (None: at random).
    told
        Unit id or patrol id -> the behaviour it walks with, whatever the draw.
    duty
        Who says a unit's officer works on an order (the simulated responders): the order comes first.
    logins
        Each unit's own broker login (``qorgau devices provision``): one connection per foot unit,
        subscribed to its own plan; None: one connection (the URL's login) for all.
    """

    def __init__(
        self,
        *,
        url: str | BrokerAddress,
        topic_root: str,
        units: Iterable[Unit],
        clock: Clock | None = None,
        policy: WalkPolicy | None = None,
        seed: int | None = None,
        told: Mapping[str, Behaviour | str] | None = None,
        duty: OrderDuty | None = None,
        logins: Mapping[str, BrokerAddress] | None = None,
    ) -> None:
        self.address = url if isinstance(url, BrokerAddress) else parse_mqtt_url(url)
        self.topics = Topics(topic_root)
        self.foot = sorted(u.id for u in units if u.kind is UnitKind.FOOT and not u.retired)
        self.clock: Clock = clock or RealClock()
        self.policy = policy or WalkPolicy()
        self.seed = seed
        self.told = {k: Behaviour(v) for k, v in (told or {}).items()}
        self.duty = duty
        self.report = WalkReport()
        if logins is not None:
            missing = [u for u in self.foot if u not in logins]
            if missing:
                msg = f"no broker login for foot units {missing[:5]}: provision them first"
                raise ValueError(msg)
        self._logins = dict(logins) if logins is not None else None
        self._walks: dict[str, _Walking] = {}
        self._inbox: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self._progress = threading.Condition(self._lock)
        self._walked_to = -math.inf
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._clients: dict[str | None, Any] = {}

    # life cycle ---------------------------------------------------------------------------

    def start(self) -> PatrolWalkers:
        """Connect, subscribe to the plans and start walking.

        Raises
        ------
        ConnectionError
            If the broker cannot be reached or refuses the connection or the subscription.
        """
        try:
            if self._logins is None:
                self._clients[None] = self._connect(self.address, f"{self.topics.root}/units/+/plan", "walkers")
            else:
                for unit_id in self.foot:
                    self._clients[unit_id] = self._connect(
                        self._logins[unit_id], self.topics.unit_plan(unit_id), f"walker-{unit_id}"
                    )
        except ConnectionError:
            self.stop()
            raise
        self._thread = threading.Thread(target=self._run, name="qorgau-patrol-walkers", daemon=True)
        self._thread.start()
        return self

    def _connect(self, address: BrokerAddress, topic_filter: str, name: str) -> Any:
        client = new_client(address, client_id=f"qorgau-{name}-{uuid.uuid4().hex[:8]}")
        subscribed, outcome = threading.Event(), list[Any]()

        def on_connect(c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
            outcome[:] = [reason]
            if reason.is_failure:
                subscribed.set()
            else:  # on every (re)connect: the broker hands over the retained plans again
                c.subscribe(topic_filter, qos=1)

        def on_subscribe(_c: Any, _u: Any, _mid: Any, codes: Any, _p: Any) -> None:
            outcome[:] = list(codes)
            subscribed.set()

        client.on_connect = on_connect
        client.on_subscribe = on_subscribe
        client.on_message = self._on_message
        try:
            client.connect(address.host, address.port, keepalive=30)
        except OSError as e:
            msg = f"cannot reach the MQTT broker at {address}: {e}"
            raise ConnectionError(msg) from e
        client.loop_start()
        if not subscribed.wait(10) or any(getattr(r, "is_failure", False) for r in outcome):
            client.disconnect()
            client.loop_stop()
            why = ", ".join(map(str, outcome)) or "no CONNACK/SUBACK within 10 s"
            msg = f"MQTT broker at {address} refused the patrols' subscription to {topic_filter}: {why}"
            raise ConnectionError(msg)
        return client

    def stop(self) -> None:
        """Stop walking and disconnect (fixes not yet due are not sent)."""
        self._stop.set()
        self._poke()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        for client in self._clients.values():
            client.disconnect()
            client.loop_stop()
        self._clients.clear()

    def __enter__(self) -> PatrolWalkers:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # what tests and the CLI read ----------------------------------------------------------

    def walking(self) -> dict[str, Behaviour]:
        """unit id -> behaviour, of the walks not yet finished."""
        with self._lock:
            return {u: w.behaviour for u, w in self._walks.items() if w.next_s is not None}

    def walk_of(self, unit_id: str) -> Walk | None:
        """The walk the unit follows now (None: none)."""
        with self._lock:
            w = self._walks.get(unit_id)
            return None if w is None else w.walk

    def settled(self, until: datetime, *, timeout_s: float = 30.0) -> bool:
        """Wait until every fix due by ``until`` (the clock's time) is sent and acknowledged by the broker,
        and every plan received meanwhile is taken up; False after ``timeout_s``."""
        target = until.timestamp()
        with self._progress:
            return self._progress.wait_for(lambda: self._walked_to >= target and not self._inbox, timeout=timeout_s)

    # plans in -----------------------------------------------------------------------------

    def _on_message(self, _client: Any, _userdata: Any, msg: Any) -> None:
        unit_id = str(msg.topic).rsplit("/", 2)[-2]
        with self._lock:
            self._inbox.append((unit_id, bytes(msg.payload)))
        self._poke()

    def _poke(self) -> None:
        self._wake.set()
        self.clock.notify()

    def _take_up(self, unit_id: str, payload: bytes, now_s: float) -> None:
        """A plan (or its withdrawal) for ``unit_id`` arrived (caller holds the lock)."""
        if not payload:
            if self._walks.pop(unit_id, None) is not None:
                self.report.withdrawn += 1
                log.info("patrols: the plan of %s was withdrawn", unit_id)
            return
        try:
            plan = IssuedRoute.from_payload(json.loads(payload))
        except (ValueError, KeyError, TypeError) as e:
            log.warning("patrols: unreadable plan for %s: %s", unit_id, e)
            return
        if plan.unit_id != unit_id or unit_id not in self.foot:
            self.report.not_walked += 1
            log.info("patrols: %s is no foot patrol of the registry: its plan %s is not walked", unit_id, plan.plan_id)
            return
        before = self._walks.get(unit_id)
        if before is not None and (before.plan.plan_id, before.plan.issued_at) == (plan.plan_id, plan.issued_at):
            return  # the same plan again (a reconnect hands over the retained one)
        told = self.told.get(unit_id) or self.told.get(plan.patrol)
        behaviour = told or behaviour_of(self.policy, self.seed, plan_id=plan.plan_id, patrol=plan.patrol)
        speed = self.policy.walk_speed_mps or plan.walk_speed_mps or self.policy.default_speed_mps
        delay = self.policy.late_min * 60.0 if behaviour is Behaviour.LATE else 0.0
        walk = plan_walk(plan, speed_mps=speed, behaviour=behaviour, delay_s=delay)
        if now_s >= walk.end_s:
            self.report.expired += 1
            log.info("patrols: the shift of plan %s for %s is over: not walked", plan.plan_id, unit_id)
            return
        last_s = before.last_s if before is not None else None
        if now_s > walk.start_s + self.policy.position_every_s:  # joined during the shift
            here = before.last_point if before is not None else None
            walk = plan_walk(plan, speed_mps=speed, behaviour=behaviour, delay_s=delay, since_s=now_s, start_at=here)
        first = max(walk.start_s, now_s if last_s is None else max(now_s, last_s + self.policy.position_every_s))
        self._walks[unit_id] = _Walking(plan, behaviour, speed, delay, walk, first, last_s)
        self.report.plans += 1
        self.report.behaviours[unit_id] = behaviour.value
        log.info(
            "patrols: %s walks %s of plan %s (%s, %d stops, %.1f m/s)",
            unit_id,
            plan.patrol,
            plan.plan_id[:8],
            behaviour.value,
            len(plan.stops),
            speed,
        )

    # walking ------------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            now_s = self.clock.now().timestamp()
            sent: list[Any] = []
            with self._lock:
                inbox, self._inbox = self._inbox, []
                for unit_id, payload in inbox:
                    self._take_up(unit_id, payload, now_s)
                walks = list(self._walks.items())
            for unit_id, w in walks:
                try:
                    sent += self._advance(unit_id, w, now_s)
                except Exception:  # one patrol's failure must not stop the others
                    log.exception("patrols: walking %s failed", unit_id)
                    w.next_s = None
            for info in sent:
                try:
                    info.wait_for_publish(timeout=10)
                except (RuntimeError, ValueError) as e:  # the connection dropped: those fixes are lost
                    log.warning("patrols: a position was not sent: %s", e)
            with self._progress:
                self._walked_to = now_s
                self._progress.notify_all()
                due = [w.next_s for w in self._walks.values() if w.next_s is not None]
            if not self._stop.is_set():
                self.clock.wait(min(due, default=math.inf), now_s, self._wake)

    def _advance(self, unit_id: str, w: _Walking, now_s: float) -> list[Any]:
        """Send every fix of ``w`` due by ``now_s`` (the loop's thread only)."""
        sent = []
        every = self.policy.position_every_s
        while w.next_s is not None and w.next_s <= now_s:
            t = w.next_s
            if self.duty is not None and self.duty.busy(unit_id):
                w.held = True
                self.report.held_back += 1
            else:
                if w.held:  # the order is closed: from where it left the unit, back to the plan
                    here = self.duty.last_fix(unit_id) if self.duty is not None else None
                    w.walk = plan_walk(
                        w.plan,
                        speed_mps=w.speed_mps,
                        behaviour=w.behaviour,
                        delay_s=w.delay_s,
                        since_s=t,
                        start_at=here or w.last_point,
                    )
                    w.held = False
                    self.report.resumed += 1
                    log.info("patrols: %s takes its plan up again after its order", unit_id)
                point = w.walk.at(t)
                if point is not None:
                    sent.append(self._publish(unit_id, t, point))
                    w.last_s, w.last_point = t, point
            if t >= w.walk.end_s:
                w.next_s = None
                self.report.finished += 1
            else:
                w.next_s = min(t + every, w.walk.end_s)
        return sent

    def _publish(self, unit_id: str, t: float, point: Point) -> Any:
        client = self._clients[None if self._logins is None else unit_id]
        body = {"ts": _ts(t), "lat": round(point[0], 7), "lon": round(point[1], 7)}
        info = client.publish(self.topics.unit_position(unit_id), json.dumps(body), qos=1)
        self.report.positions += 1
        self.report.positions_by_unit[unit_id] = self.report.positions_by_unit.get(unit_id, 0) + 1
        return info
