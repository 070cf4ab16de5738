"""Simulated responders: units that act on their orders as officers would, and a simulated dispatcher.

:class:`Responders` hears every unit's orders on ``{root}/units/+/orders`` (the order the service
sends the unit) and, for every order, plays one officer's part with a random plan drawn from the
run's seed and the order (so a seed gives the same decisions whatever the timing). The officer acts
as the handheld does (``maps/static/handheld.js``): through the unit's own HTTP API, signed in as
the unit's user, so the audit trail names that user as the actor of every step:

1. a share of orders (``miss_share``) is missed on purpose: never acknowledged, so the service's
   deadline escalates the alert;
2. the others are acknowledged after ``ack_delay_s`` (5-25 s):
   ``POST /api/units/{id}/order/status`` ``{"alert_id", "status": "acknowledged"}``;
3. ``en_route`` the same way, then position fixes (``PUT /api/units/{id}/position`` with their
   accuracy) along the order's street route at the unit's speed (foot and booth officers walk; a car
   drives at the speed the order's ETA implies), every ``position_every_s``; booths send none (their
   position is fixed by the registry);
4. ``on_scene`` at the end of the route;
5. after ``close_after_s``, ``closed`` with an outcome and a note (``false_alarm_share`` of them
   false alarms, with a reason); closing frees the unit, and the officer says ``available``
   (``PUT /api/units/{id}/availability``), as the handheld's button does.

Every step carries an ``Idempotency-Key`` made by the officer and is sent again with the same key
if the network fails, as the handheld's offline queue does; a step the service refuses with 409
(the order was re-assigned or withdrawn meanwhile) ends the officer's work on that order.

:class:`SimulatedDispatcher` assigns every open alert nobody holds (``new`` or ``recommended``,
including escalated ones) to the unit the service proposes or recommends, so alerts do not pile up.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import json
import logging
import math
import random
import secrets
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from dispatch import Unit, UnitKind
from geo import great_circle_m
from mqtt_bridge import BrokerAddress, Topics, new_client, parse_mqtt_url

__all__ = [
    "CLOSE_OUTCOMES",
    "FALSE_ALARM_REASONS",
    "ApiClient",
    "ApiError",
    "OrderPlan",
    "ResponderPolicy",
    "ResponderReport",
    "Responders",
    "SimulatedDispatcher",
    "cumulative_m",
    "plan_order",
    "point_along",
    "sign_in_officers",
]

log = logging.getLogger(__name__)

CLOSE_OUTCOMES: dict[str, str] = {
    "resolved": "resolved on scene",
    "nobody_found": "nobody found at the location",
    "handed_over": "handed over to the ambulance",
}
"""Outcomes of a closed alert (other than a false alarm) and the simulated officer's note."""

FALSE_ALARM_REASONS = (
    "button pressed by mistake",
    "pressed by a child playing",
    "staff testing the button",
    "caller says all is well",
)

_DEFAULT_CAR_SPEED_MPS = 11.0


@dataclass(frozen=True, slots=True)
class ResponderPolicy:
    """How the simulated officers behave; the defaults are an ordinary shift, tests shorten them.

    Parameters
    ----------
    ack_delay_s
        An order is acknowledged after a uniform random delay in this range.
    close_after_s
        An alert is closed this long (uniform random) after the unit is on scene.
    miss_share
        Fraction of orders never acknowledged (so that escalation is seen).
    false_alarm_share
        Fraction of closed alerts that were false alarms.
    walk_speed_mps
        Speed of foot and booth officers.
    time_scale
        Travel runs this many times faster than real time (1: real time).
    position_every_s
        Seconds (of wall time) between two published positions while moving.
    """

    ack_delay_s: tuple[float, float] = (5.0, 25.0)
    close_after_s: tuple[float, float] = (120.0, 300.0)
    miss_share: float = 0.1
    false_alarm_share: float = 0.2
    walk_speed_mps: float = 1.4
    time_scale: float = 1.0
    position_every_s: float = 5.0

    def __post_init__(self) -> None:
        for name in ("ack_delay_s", "close_after_s"):
            low, high = getattr(self, name)
            if not 0 <= low <= high:
                msg = f"{name} must be a range 0 <= low <= high, got {(low, high)!r}"
                raise ValueError(msg)
        for name in ("miss_share", "false_alarm_share"):
            share = getattr(self, name)
            if not 0.0 <= share <= 1.0:
                msg = f"{name} must lie in [0, 1], got {share!r}"
                raise ValueError(msg)
        for name in ("walk_speed_mps", "time_scale", "position_every_s"):
            if getattr(self, name) <= 0:
                msg = f"{name} must be positive, got {getattr(self, name)!r}"
                raise ValueError(msg)


@dataclass(frozen=True, slots=True)
class OrderPlan:
    """What one simulated officer will do with one order (drawn by :func:`plan_order`)."""

    missed: bool
    ack_delay_s: float
    close_after_s: float
    outcome: str
    """``resolved``, ``nobody_found``, ``handed_over`` or ``false_alarm``."""
    note: str


def plan_order(policy: ResponderPolicy, seed: int | None, *, order_id: int, alert_id: int, unit_id: str) -> OrderPlan:
    """The officer's decisions for one order: the same for the same seed and order, whatever the timing.

    With a seed, the missed orders are spread evenly over the order ids (``miss_share`` of any run
    of consecutive ids, from an offset the seed draws), so a short demo shows its escalations
    instead of leaving them to chance; the other decisions are drawn per order.
    """
    rng = random.Random(f"{seed}/{order_id}/{alert_id}/{unit_id}") if seed is not None else random.Random()
    draw = rng.random()
    if seed is None:
        missed = draw < policy.miss_share
    else:
        offset, share = random.Random(f"{seed}/missed").random(), policy.miss_share
        missed = math.floor(order_id * share + offset) > math.floor((order_id - 1) * share + offset)
    ack = rng.uniform(*policy.ack_delay_s)
    close = rng.uniform(*policy.close_after_s)
    if rng.random() < policy.false_alarm_share:
        outcome, note = "false_alarm", rng.choice(FALSE_ALARM_REASONS)
    else:
        outcome = rng.choice(sorted(CLOSE_OUTCOMES))
        note = CLOSE_OUTCOMES[outcome]
    return OrderPlan(missed=missed, ack_delay_s=ack, close_after_s=close, outcome=outcome, note=note)


@dataclass(slots=True)
class ResponderReport:
    """What the simulated officers did."""

    orders: int = 0
    missed: int = 0
    acknowledged: int = 0
    on_scene: int = 0
    closed: int = 0
    false_alarms: int = 0
    positions: int = 0
    refused: int = 0
    """Steps the service refused (e.g. the alert was re-assigned meanwhile): the officer drops the order."""
    outcomes: dict[int, str] = field(default_factory=dict)
    """alert id -> outcome, for every alert this run closed."""


class ApiError(RuntimeError):
    """The HTTP API answered with an error status."""

    def __init__(self, status: int, detail: str, current: Any = None) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.detail = detail
        self.current = current
        """The body's ``current`` (a 409's state now), if any."""


class ApiClient:
    """The few calls of the HTTP API the simulation makes, with a bearer token (standard library only).

    A dispatcher's client assigns and recommends; a unit user's client moves its own order, reports
    positions and availability (the handheld's calls, ``web/routes/handheld.py``).
    """

    def __init__(self, base_url: str, token: str, *, timeout_s: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self.timeout_s = timeout_s

    def request(
        self, method: str, path: str, body: dict[str, Any] | None = None, *, headers: dict[str, str] | None = None
    ) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.base_url}{path}", data=data, method=method)
        req.add_header("Authorization", f"Bearer {self._token}")
        for name, value in (headers or {}).items():
            req.add_header(name, value)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as e:
            text = e.read().decode(errors="replace")
            try:
                body = json.loads(text)
                detail, current = str(body.get("detail", text)), body.get("current")
            except (ValueError, AttributeError):
                detail, current = text, None
            raise ApiError(e.code, detail, current) from e

    def once(self, method: str, path: str, body: dict[str, Any], *, tries: int = 3) -> Any:
        """A request the service applies once: one ``Idempotency-Key``, sent again on a network failure."""
        key = f"sim-{uuid.uuid4().hex}"
        for attempt in range(1, tries + 1):
            try:
                return self.request(method, path, body, headers={"Idempotency-Key": key})
            except ApiError:
                raise
            except OSError:
                if attempt == tries:
                    raise
                time.sleep(0.5 * attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    # the dispatcher's calls

    def open_alerts(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while True:
            page = self.request("GET", f"/api/alerts?state=open&limit=500&offset={len(out)}")
            out.extend(page)
            if len(page) < 500:
                return out

    def assign(self, alert_id: int, unit_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.request("POST", f"/api/alerts/{alert_id}/assign", {"unit_id": unit_id})
        return result

    def recommend(self, alert_id: int) -> dict[str, Any]:
        result: dict[str, Any] = self.request("POST", f"/api/alerts/{alert_id}/recommend")
        return result

    # the unit's calls (its handheld's)

    def move_order(
        self, unit_id: str, alert_id: int, status: str, *, outcome: str | None = None, note: str | None = None
    ) -> dict[str, Any]:
        """Move the unit's own order: ``acknowledged``, ``en_route``, ``on_scene``, ``closed`` (with an outcome)."""
        body: dict[str, Any] = {"alert_id": alert_id, "status": status}
        if outcome is not None:
            body["outcome"] = outcome
        if note:
            body["note"] = note
        result: dict[str, Any] = self.once("POST", f"/api/units/{unit_id}/order/status", body)
        return result

    def report_position(self, unit_id: str, lat: float, lon: float, accuracy_m: float) -> dict[str, Any]:
        body = {"lat": lat, "lon": lon, "accuracy_m": accuracy_m, "ts": _now()}
        result: dict[str, Any] = self.once("PUT", f"/api/units/{unit_id}/position", body)
        return result

    def set_availability(self, unit_id: str, status: str) -> dict[str, Any]:
        result: dict[str, Any] = self.once("PUT", f"/api/units/{unit_id}/availability", {"status": status})
        return result


def sign_in_officers(
    base_url: str, units: Iterable[Unit], admin_token: str, *, prefix: str = "sim-officer-"
) -> dict[str, ApiClient]:
    """A ``unit`` user per unit (``{prefix}{unit id}``, a fresh random password), each signed in.

    Made with the service's admin token (``POST /api/users``, audited), then signed in as a
    handheld is (``POST /api/token``): the simulated officers are real unit users of the service.

    Raises
    ------
    ApiError
        If the admin token is refused or a sign-in fails.
    """
    admin = ApiClient(base_url, admin_token)
    officers: dict[str, ApiClient] = {}
    for unit in units:
        username, password = f"{prefix}{unit.id}", secrets.token_urlsafe(18)
        admin.request(
            "POST", "/api/users", {"username": username, "password": password, "role": "unit", "unit_id": unit.id}
        )
        form = urllib.parse.urlencode({"username": username, "password": password}).encode()
        req = urllib.request.Request(f"{admin.base_url}/api/token", data=form, method="POST")
        req.add_header("Content-Type", "application/x-www-form-urlencoded")
        try:
            with urllib.request.urlopen(req, timeout=admin.timeout_s) as response:
                token = str(json.loads(response.read())["access_token"])
        except urllib.error.HTTPError as e:
            raise ApiError(e.code, e.read().decode(errors="replace")) from e
        officers[unit.id] = ApiClient(base_url, token)
    return officers


def _route_of(order: dict[str, Any]) -> list[tuple[float, float]]:
    coords = (order.get("route") or {}).get("coordinates") or []
    points = [(float(lat), float(lon)) for lon, lat in coords]
    target = order.get("location") or {}
    if not points and "lat" in target:
        points = [(float(target["lat"]), float(target["lon"]))]
    return points


def cumulative_m(points: Sequence[tuple[float, float]]) -> list[float]:
    """Metres along a polyline at each of its vertices (great-circle legs)."""
    total, out = 0.0, [0.0]
    for (a_lat, a_lon), (b_lat, b_lon) in itertools.pairwise(points):
        total += float(great_circle_m(a_lat, a_lon, b_lat, b_lon))
        out.append(total)
    return out


def point_along(points: Sequence[tuple[float, float]], cumulative: Sequence[float], at_m: float) -> tuple[float, float]:
    """The point ``at_m`` metres along a polyline (its ends beyond it)."""
    if at_m <= 0 or len(points) == 1:
        return points[0]
    if at_m >= cumulative[-1]:
        return points[-1]
    i = max(1, next(k for k, c in enumerate(cumulative) if c >= at_m))
    span = cumulative[i] - cumulative[i - 1]
    f = 0.0 if span <= 0 else (at_m - cumulative[i - 1]) / span
    (a_lat, a_lon), (b_lat, b_lon) = points[i - 1], points[i]
    return a_lat + f * (b_lat - a_lat), a_lon + f * (b_lon - a_lon)


class Responders:
    """Simulated officers of ``units`` answering their orders (see the module docstring).

    Parameters
    ----------
    url, topic_root
        The broker and the service's topic root (orders are heard on ``{root}/units/+/orders``).
    units
        The units (their kinds decide walking or driving; booths send no positions).
    officers
        Each unit's API client, signed in as that unit's user (role ``unit``): the officer acts
        through it as the handheld does. A unit without one answers no order (its orders escalate).
    policy
        Delays, shares and speeds.
    seed
        Decisions are drawn from the seed and each order; None: random.
    clock
        Monotonic seconds (tests may pass their own).
    """

    def __init__(
        self,
        *,
        url: str | BrokerAddress,
        topic_root: str,
        units: Iterable[Unit],
        officers: Mapping[str, ApiClient],
        policy: ResponderPolicy | None = None,
        seed: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.address = url if isinstance(url, BrokerAddress) else parse_mqtt_url(url)
        self.topics = Topics(topic_root)
        self.kinds = {u.id: u.kind for u in units}
        self.officers = dict(officers)
        self.policy = policy or ResponderPolicy()
        self.seed = seed
        self.clock = clock
        self.report = ResponderReport()
        self.plans: dict[int, OrderPlan] = {}
        """order id -> the plan drawn for it."""
        self._rng = random.Random(seed)
        self._current: dict[str, int] = {}  # unit id -> order id it works on
        self._last_fix: dict[str, tuple[float, float]] = {}  # unit id -> its last position on its order
        self._queue: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._client: Any = None

    # life cycle ---------------------------------------------------------------------------

    def start(self) -> Responders:
        """Connect, subscribe to every unit's orders and start acting.

        Raises
        ------
        ConnectionError
            If the broker cannot be reached or refuses the connection.
        """
        client = new_client(self.address, client_id=f"qorgau-responders-{uuid.uuid4().hex[:8]}")
        subscribed, outcome = threading.Event(), []
        orders_filter = f"{self.topics.root}/units/+/orders"

        def on_connect(c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
            outcome[:] = [reason]
            if not reason.is_failure:
                c.subscribe(orders_filter, qos=1)

        def on_subscribe(_c: Any, _u: Any, _mid: Any, _codes: Any, _p: Any) -> None:
            subscribed.set()

        client.on_connect = on_connect
        client.on_subscribe = on_subscribe
        client.on_message = self._on_message
        try:
            client.connect(self.address.host, self.address.port, keepalive=30)
        except OSError as e:
            msg = f"cannot reach the MQTT broker at {self.address}: {e}"
            raise ConnectionError(msg) from e
        client.loop_start()
        self._client = client
        if not subscribed.wait(10):
            why = str(outcome[0]) if outcome else "no CONNACK/SUBACK within 10 s"
            self.stop()
            msg = f"MQTT broker at {self.address} refused the responders' subscription: {why}"
            raise ConnectionError(msg)
        self._thread = threading.Thread(target=self._run, name="qorgau-responders", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop acting and disconnect (steps not yet due are dropped)."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None

    def __enter__(self) -> Responders:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # orders in ----------------------------------------------------------------------------

    def _on_message(self, _client: Any, _userdata: Any, msg: Any) -> None:
        try:
            order = json.loads(msg.payload)
            unit_id = str(order["unit_id"])
            order_id, alert_id = int(order["order_id"]), int(order["alert_id"])
        except (ValueError, KeyError, TypeError) as e:
            log.warning("responders: unreadable order on %s: %s", msg.topic, e)
            return
        if unit_id not in self.officers:
            log.warning("responders: no sign-in for unit %s: its order %d goes unanswered", unit_id, order_id)
            return
        with self._cond:
            if order_id in self.plans:  # a redelivery (QoS 1): already being handled
                return
            plan = plan_order(self.policy, self.seed, order_id=order_id, alert_id=alert_id, unit_id=unit_id)
            self.plans[order_id] = plan
            self._current[unit_id] = order_id
            self._last_fix.pop(unit_id, None)
            self.report.orders += 1
            if plan.missed:
                self.report.missed += 1
                log.info("responders: %s misses order %d (alert %d) on purpose", unit_id, order_id, alert_id)
                return
        self._at(plan.ack_delay_s, lambda: self._acknowledge(unit_id, order_id, alert_id, order, plan))

    # the steps ----------------------------------------------------------------------------

    def _move(self, unit_id: str, order_id: int, alert_id: int, status: str, **close: str) -> dict[str, Any] | None:
        """One tap on the handheld; None (and the order dropped) when the service refuses it."""
        try:
            return self.officers[unit_id].move_order(unit_id, alert_id, status, **close)
        except (ApiError, OSError) as e:
            self.report.refused += 1
            log.info("responders: %s of alert %d by %s refused: %s", status, alert_id, unit_id, e)
            with self._cond:
                if self._current.get(unit_id) == order_id:
                    del self._current[unit_id]
            return None

    def _acknowledge(self, unit_id: str, order_id: int, alert_id: int, order: dict[str, Any], plan: OrderPlan) -> None:
        if not self._still(unit_id, order_id):
            return
        if self._move(unit_id, order_id, alert_id, "acknowledged") is None:
            return
        self.report.acknowledged += 1
        if self._move(unit_id, order_id, alert_id, "en_route") is None:
            return
        route = _route_of(order)
        cumulative = cumulative_m(route) if route else [0.0]
        length_m = cumulative[-1]
        kind = self.kinds.get(unit_id, UnitKind.FOOT)
        speed = self.policy.walk_speed_mps
        eta_s = order.get("eta_s")
        if kind is UnitKind.CAR:
            speed = length_m / eta_s if eta_s and length_m > 0 else _DEFAULT_CAR_SPEED_MPS
            speed = min(max(speed, 3.0), 30.0)
        travel_s = length_m / speed / self.policy.time_scale
        started = self.clock()
        reports = kind is not UnitKind.BOOTH and len(route) > 1

        def step() -> None:
            if not self._still(unit_id, order_id):
                return
            elapsed = self.clock() - started
            done = elapsed >= travel_s
            if reports:
                at_m = length_m if done else elapsed * speed * self.policy.time_scale
                self._report_position(unit_id, *point_along(route, cumulative, at_m))
            if done:
                self._arrive(unit_id, order_id, alert_id, plan)
            else:
                self._at(min(self.policy.position_every_s, travel_s - elapsed), step)

        self._at(min(self.policy.position_every_s, travel_s), step)

    def _report_position(self, unit_id: str, lat: float, lon: float) -> None:
        accuracy_m = round(self._rng.uniform(4.0, 15.0), 1)  # a phone's GPS outdoors
        try:
            self.officers[unit_id].report_position(unit_id, lat, lon, accuracy_m)
        except (ApiError, OSError) as e:
            log.info("responders: position of %s refused: %s", unit_id, e)
            return
        self.report.positions += 1
        with self._cond:
            self._last_fix[unit_id] = (lat, lon)

    def _arrive(self, unit_id: str, order_id: int, alert_id: int, plan: OrderPlan) -> None:
        if self._move(unit_id, order_id, alert_id, "on_scene") is None:
            return
        self.report.on_scene += 1
        self._at(plan.close_after_s, lambda: self._close(unit_id, order_id, alert_id, plan))

    def _close(self, unit_id: str, order_id: int, alert_id: int, plan: OrderPlan) -> None:
        if not self._still(unit_id, order_id):
            return
        answer = self._move(unit_id, order_id, alert_id, "closed", outcome=plan.outcome, note=plan.note)
        if answer is None:
            return
        self.report.closed += 1
        self.report.false_alarms += plan.outcome == "false_alarm"
        self.report.outcomes[alert_id] = plan.outcome
        with self._cond:
            if self._current.get(unit_id) == order_id:
                del self._current[unit_id]
        if (answer.get("unit") or {}).get("status") != "available":  # closing frees the unit; else say so
            try:
                self.officers[unit_id].set_availability(unit_id, "available")
            except (ApiError, OSError) as e:
                log.info("responders: %s could not say available: %s", unit_id, e)

    # what the simulated patrols ask (qorgau.patrols.OrderDuty): an order comes before the plan --

    def busy(self, unit_id: str) -> bool:
        """Whether the unit's officer works on an order: from reading it until it is closed (or the
        service refuses a step); an order missed on purpose was never read, so it keeps nobody busy."""
        with self._cond:
            order_id = self._current.get(unit_id)
            return order_id is not None and not self.plans[order_id].missed

    def last_fix(self, unit_id: str) -> tuple[float, float] | None:
        """Where the officer last reported the unit on its current (or last) order; None: nowhere yet."""
        with self._cond:
            return self._last_fix.get(unit_id)

    # machinery ----------------------------------------------------------------------------

    def _still(self, unit_id: str, order_id: int) -> bool:
        """Whether the unit still works on this order (a newer order replaces it)."""
        with self._cond:
            return self._current.get(unit_id) == order_id

    def _at(self, delay_s: float, action: Callable[[], None]) -> None:
        with self._cond:
            heapq.heappush(self._queue, (self.clock() + max(0.0, delay_s), next(self._seq), action))
            self._cond.notify_all()

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._cond:
                now = self.clock()
                if not self._queue or self._queue[0][0] > now:
                    wait = 1.0 if not self._queue else min(1.0, self._queue[0][0] - now)
                    self._cond.wait(wait)
                    continue
                _, _, action = heapq.heappop(self._queue)
            try:
                action()
            except Exception:  # one officer's failure must not stop the others
                log.exception("responders: a step failed")


class SimulatedDispatcher:
    """Assigns every open alert nobody holds to the unit the service proposes or recommends.

    Parameters
    ----------
    api
        A dispatcher's API client.
    poll_s
        Seconds between two looks at the open alerts.
    """

    def __init__(self, api: ApiClient, *, poll_s: float = 2.0) -> None:
        if poll_s <= 0:
            msg = f"poll_s must be positive, got {poll_s!r}"
            raise ValueError(msg)
        self.api = api
        self.poll_s = poll_s
        self.assigned = 0
        self.refused = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> SimulatedDispatcher:
        self._thread = threading.Thread(target=self._run, name="qorgau-sim-dispatcher", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except (ApiError, OSError) as e:
                log.warning("simulated dispatcher: %s", e)
            self._stop.wait(self.poll_s)

    def tick(self) -> int:
        """Assign what waits for a unit once; the number of assignments made."""
        made = 0
        for alert in self.api.open_alerts():
            if alert["status"] not in ("new", "recommended"):
                continue
            if alert["status"] == "new" or not alert["recommendations"]:
                try:
                    alert = self.api.recommend(alert["id"])
                except ApiError:
                    continue
            candidates = [r["unit_id"] for r in alert["recommendations"]]
            proposed = alert.get("proposed_unit_id")
            if proposed:
                candidates = [proposed, *(c for c in candidates if c != proposed)]
            for unit_id in candidates:
                try:
                    self.api.assign(alert["id"], unit_id)
                except ApiError as e:
                    self.refused += 1
                    log.debug("simulated dispatcher: %s refused for alert %d: %s", unit_id, alert["id"], e)
                    continue
                made += 1
                self.assigned += 1
                break
            else:  # every unit it names is busy now: rank again from the free ones for the next look
                with contextlib.suppress(ApiError):
                    self.api.recommend(alert["id"])
        return made


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
