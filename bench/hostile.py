"""Hostile input at scale: generated good and bad messages through the real broker into a real service.

A fixed seed generates the messages: good SOS presses and 102 reports mixed with malformed JSON,
random bytes, wrong types, missing fields, oversized payloads, unknown devices, locations outside
the service area, far-future times, replayed event ids, unknown topics and unit messages for
unknown units. They are published (QoS 1) to Mosquitto and consumed by the service's own MQTT
bridge (``MqttBridge`` through ``QorgauService``: only its public interface) with SQLite behind it.
The publisher keeps at most ``window`` messages ahead of what the service has processed, so the
broker's queue limit never drops anything and the figure is the service's sustained rate.

Reported: messages sent by class; exceptions escaping (``internal_error`` rejections plus log
records with a traceback: must be 0); acks and rejections without a reason or detail (must be 0);
good messages stored, counted by event id in the database (must equal those sent); wall time
and throughput.
"""

from __future__ import annotations

import json
import logging
import random
import secrets
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from sqlalchemy import create_engine, text

from dispatch import Device, DeviceSite, write_devices, write_units
from geo import Router, generate_city
from mqtt_bridge import Topics, new_client, parse_mqtt_url
from qorgau import QorgauService, Settings
from qorgau.demo import seed_registry

__all__ = ["Message", "generate", "run"]

log = logging.getLogger(__name__)

MAX_PAYLOAD_BYTES = 16 * 1024
FAR_DEVICE = "far-1"

# class -> share of the messages (sums to 1)
MIX = {
    "good_sos": 0.30,
    "good_102": 0.15,
    "replayed_event": 0.05,
    "malformed_json": 0.06,
    "random_bytes": 0.06,
    "wrong_type": 0.06,
    "missing_field": 0.06,
    "oversized": 0.02,
    "unknown_device": 0.05,
    "outside_area": 0.05,
    "future_ts": 0.05,
    "unknown_topic": 0.04,
    "unknown_unit": 0.05,
}
GOOD = frozenset({"good_sos", "good_102"})
EXPECTED_REASON = {
    "malformed_json": {"malformed_json"},
    "random_bytes": {"malformed_json"},
    "wrong_type": {"wrong_type"},
    "missing_field": {"missing_field"},
    "oversized": {"oversized_payload"},
    "unknown_device": {"unknown_device"},
    "outside_area": {"outside_service_area"},
    "future_ts": {"ts_in_future"},
    "unknown_unit": {"unknown_unit"},
}


@dataclass(frozen=True, slots=True)
class Message:
    """One generated MQTT message."""

    kind: str
    topic: str
    payload: bytes
    event_id: str | None = None
    response_topic: str | None = None
    reaches_service: bool = True


def _ts(now: datetime, rng: random.Random) -> str:
    return (now - timedelta(seconds=rng.uniform(0, 60))).isoformat()


def generate(n: int, *, seed: int, topics: Topics, devices: list[Device], now: datetime) -> list[Message]:
    """``n`` messages in the proportions of :data:`MIX`, shuffled, the same for the same seed."""
    rng = random.Random(seed)
    kinds = rng.choices(list(MIX), weights=list(MIX.values()), k=n)
    good_sos: list[tuple[str, str]] = []
    out: list[Message] = []
    in_area = [d for d in devices if d.id != FAR_DEVICE]
    for i, kind in enumerate(kinds):
        device = rng.choice(in_area)
        ts = _ts(now, rng)
        if kind == "good_sos":
            event = f"good-sos-{seed}-{i}"
            good_sos.append((device.id, event))
            body = {"event_id": event, "ts": ts, "kind": rng.choice(["press"] * 9 + ["test"])}
            out.append(Message(kind, topics.sos_alert(device.id), json.dumps(body).encode(), event))
        elif kind == "good_102":
            event = f"good-102-{seed}-{i}"
            body = {
                "event_id": event,
                "ts": ts,
                "lat": device.lat + rng.uniform(-2e-4, 2e-4),
                "lon": device.lon + rng.uniform(-2e-4, 2e-4),
                "accuracy_m": rng.uniform(3, 150),
                "category": rng.choice(["theft", "assault", "noise", "fraud", "сұрақ", "кража"]),
                "text": rng.choice(["", "help", "Помогите!", "Көмектесіңіздер", "x" * 500]),
            }
            response = f"{topics.app102_ack_prefix}bench-{i}" if rng.random() < 0.5 else None
            out.append(Message(kind, topics.app102_report, json.dumps(body).encode(), event, response))
        elif kind == "replayed_event" and good_sos:
            device_id, event = rng.choice(good_sos)
            body = {"event_id": event, "ts": ts, "kind": "press"}
            out.append(Message(kind, topics.sos_alert(device_id), json.dumps(body).encode(), event))
        elif kind == "replayed_event":
            out.append(Message("unknown_topic", f"{topics.root}/sos/{device.id}/alarm", b"{}", reaches_service=False))
        elif kind == "malformed_json":
            good = json.dumps({"event_id": f"bad-{i}", "ts": ts, "kind": "press"})
            cut = rng.randrange(1, len(good) - 1)
            broken = rng.choice([good[:cut], good.replace('"', "'"), good + "}", "{" + good, good.replace(":", "", 1)])
            out.append(Message(kind, topics.sos_alert(device.id), broken.encode()))
        elif kind == "random_bytes":
            junk = b"\xff" + rng.randbytes(rng.randrange(0, 300))  # 0xff never starts valid UTF-8 JSON
            topic = rng.choice([topics.sos_alert(device.id), topics.app102_report])
            out.append(Message(kind, topic, junk))
        elif kind == "wrong_type":
            body = rng.choice(
                [
                    {"event_id": 17, "ts": ts, "kind": "press"},
                    {"event_id": f"wt-{i}", "ts": 1700000000, "kind": "press"},
                    {
                        "event_id": f"wt-{i}",
                        "ts": ts,
                        "lat": "43.2",
                        "lon": 76.9,
                        "accuracy_m": 5,
                        "category": "theft",
                        "text": "",
                    },
                    [1, 2, 3],
                    "press",
                    None,
                ]
            )
            topic = topics.app102_report if isinstance(body, dict) and "lat" in body else topics.sos_alert(device.id)
            out.append(Message(kind, topic, json.dumps(body).encode()))
        elif kind == "missing_field":
            body = rng.choice(
                [
                    {"ts": ts, "kind": "press"},
                    {"event_id": f"mf-{i}", "kind": "press"},
                    {"event_id": f"mf-{i}", "ts": ts, "lat": 43.2, "accuracy_m": 5, "category": "theft", "text": ""},
                ]
            )
            topic = topics.app102_report if "lat" in body else topics.sos_alert(device.id)
            out.append(Message(kind, topic, json.dumps(body).encode()))
        elif kind == "oversized":
            body = {
                "event_id": f"big-{i}",
                "ts": ts,
                "kind": "press",
                "pad": "x" * (MAX_PAYLOAD_BYTES + rng.randrange(1, 4096)),
            }
            out.append(Message(kind, topics.sos_alert(device.id), json.dumps(body).encode()))
        elif kind == "unknown_device":
            body = {"event_id": f"ud-{i}", "ts": ts, "kind": "press"}
            out.append(Message(kind, topics.sos_alert(f"ghost-{rng.randrange(10**6)}"), json.dumps(body).encode()))
        elif kind == "outside_area":
            if rng.random() < 0.5:
                body = {"event_id": f"oa-{i}", "ts": ts, "kind": "press"}
                out.append(Message(kind, topics.sos_alert(FAR_DEVICE), json.dumps(body).encode()))
            else:
                body = {
                    "event_id": f"oa-{i}",
                    "ts": ts,
                    "lat": device.lat + 0.5,
                    "lon": device.lon - 0.5,
                    "accuracy_m": 10,
                    "category": "theft",
                    "text": "far away",
                }
                out.append(Message(kind, topics.app102_report, json.dumps(body).encode()))
        elif kind == "future_ts":
            future = (now + timedelta(days=rng.uniform(1, 3650))).isoformat()
            body = {"event_id": f"ft-{i}", "ts": future, "kind": "press"}
            out.append(Message(kind, topics.sos_alert(device.id), json.dumps(body).encode()))
        elif kind == "unknown_topic":
            topic = rng.choice(
                [
                    f"{topics.root}/sos/{device.id}/alarm",
                    f"{topics.root}/app102/reports",
                    f"{topics.root}/units/car-1/orders",
                    f"{topics.root}/sos//alert",
                    f"{topics.root}/x",
                ]
            )
            # none is processed: the broker drops most (no subscription); ".../sos//alert" matches '+' and the
            # bridge ignores it with a warning
            out.append(Message(kind, topic, b'{"event_id": "nope"}', reaches_service=False))
        elif kind == "unknown_unit":
            ghost = f"ghost-unit-{rng.randrange(10**6)}"
            which = rng.choice(["position", "status", "ack"])
            body: dict[str, Any] = {"ts": ts}
            body.update(
                {
                    "position": {"lat": device.lat, "lon": device.lon},
                    "status": {"status": "available"},
                    "ack": {"alert_id": 1},
                }[which]
            )
            topic = {"position": topics.unit_position, "status": topics.unit_status, "ack": topics.unit_ack}[which](
                ghost
            )
            out.append(Message(kind, topic, json.dumps(body).encode()))
    return out


@dataclass
class _Acks:
    """Acks seen by the publisher's client."""

    total: int = 0
    rejected: Counter = field(default_factory=Counter)
    accepted: int = 0
    without_reason: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        ack = json.loads(msg.payload)
        with self.lock:
            self.total += 1
            if ack.get("status") == "accepted":
                self.accepted += 1
            elif not ack.get("reason") or not str(ack.get("detail") or "").strip():
                self.without_reason += 1
            else:
                self.rejected[ack["reason"]] += 1


class _TracebackCounter(logging.Handler):
    """Counts log records that carry a traceback (an exception that was caught only by a last resort)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.count = 0
        self.samples: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.count += 1
            if len(self.samples) < 5:
                self.samples.append(self.format(record)[:2000])


def _processed(metrics: dict[str, Any]) -> int:
    return sum(metrics["accepted"].values()) + sum(metrics["duplicates"].values()) + sum(metrics["rejected"].values())


def _wait_until_done(
    service: QorgauService, *, good: int, reaching: int, started: float, timeout_s: float, stall_s: float = 60.0
) -> float:
    """Seconds from ``started`` until every good message is stored and as many messages as were sent are processed.

    Processed counts redeliveries too (at least once: the broker redelivers what the bridge had not
    acknowledged when a connection dropped), so "every good one stored" is the real end; the wait
    also ends after ``stall_s`` without progress (what is missing then is reported as such).
    """
    deadline = time.monotonic() + timeout_s
    last, last_change = -1, time.monotonic()
    while time.monotonic() < deadline:
        metrics = service.service.metrics()
        processed = _processed(metrics)
        if sum(metrics["accepted"].values()) >= good and processed >= reaching:
            break
        if processed != last:
            last, last_change = processed, time.monotonic()
        elif time.monotonic() - last_change > stall_s:
            log.error("hostile run stalled at %d processed messages", processed)
            break
        time.sleep(0.05)
    return time.perf_counter() - started


def _registry(router: Router, folder: Path) -> tuple[Path, Path, list[Device]]:
    units, devices = seed_registry(router, booths=4, foot=6, cars=4, devices=12, seed=11)
    min_lat, min_lon, _, _ = router.network.bounds
    devices.append(Device(id=FAR_DEVICE, site=DeviceSite.STREET, lat=min_lat - 0.045, lon=min_lon))
    return write_units(folder / "units.geojson", units), write_devices(folder / "devices.geojson", devices), devices


QUICK: dict[str, Any] = {"n": 2000, "seed": 6, "window": 500, "timeout_s": 120.0}
"""``python -m bench --quick --only hostile``: the short form tests/bench/test_bench_quick.py runs."""


def run(
    url: str, *, n: int = 100_000, seed: int = 6, window: int = 2000, nodes: int = 2000, timeout_s: float = 3600.0
) -> dict:
    """Feed ``n`` generated messages through the broker at ``url`` into a fresh service; return the figures."""
    city = generate_city(n_nodes=nodes, seed=7)
    run_id = uuid.uuid4().hex[:8]
    topics = Topics(f"qorgau-bench-hostile-{run_id}/v1")
    traces = _TracebackCounter()
    logging.getLogger().addHandler(traces)
    # tens of thousands of "rejected ..." warnings are the point of the run, not news: keep errors only
    quiet = {name: logging.getLogger(name).level for name in ("dispatch", "mqtt_bridge")}
    for name in quiet:
        logging.getLogger(name).setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="qorgau-hostile-") as tmp:
        folder = Path(tmp)
        units_path, devices_path, devices = _registry(Router(city), folder)
        db = folder / "hostile.sqlite3"
        settings = Settings(
            db_url=f"sqlite:///{db}",
            mqtt_url=url,
            topic_root=topics.root,
            client_id=f"qorgau-bench-hostile-{run_id}",
            session_expiry_s=600,
            units=units_path,
            devices=devices_path,
            port=0,
            max_payload_bytes=MAX_PAYLOAD_BYTES,
            jwt_secret=secrets.token_urlsafe(48),
        )
        messages = generate(n, seed=seed, topics=topics, devices=devices, now=datetime.now(UTC))
        sent = Counter(m.kind for m in messages)
        reaching = sum(m.reaches_service for m in messages)
        good_ids = {m.event_id for m in messages if m.kind in GOOD}
        service = QorgauService(settings, network=city).start()
        acks = _Acks()
        client = new_client(parse_mqtt_url(url), client_id=f"bench-hostile-pub-{run_id}")
        client.max_inflight_messages_set(window)
        client.max_queued_messages_set(0)
        client.on_message = acks.on_message
        address = parse_mqtt_url(url)
        client.connect(address.host, address.port, clean_start=True)
        client.loop_start()
        try:
            subscribed = threading.Event()
            client.on_subscribe = lambda *a: subscribed.set()
            client.subscribe([(f"{topics.root}/sos/+/ack", 1), (f"{topics.app102_ack_prefix}#", 1)])
            if not subscribed.wait(10):
                msg = f"no SUBACK from {url}"
                raise ConnectionError(msg)
            started = time.perf_counter()
            published = 0
            for m in messages:
                props = None
                if m.response_topic:
                    props = Properties(PacketTypes.PUBLISH)
                    props.ResponseTopic = m.response_topic
                    props.CorrelationData = m.event_id.encode() if m.event_id else b""
                info = client.publish(m.topic, m.payload, qos=1, properties=props)
                published += m.reaches_service
                if published % 200 == 0:  # flow control: stay within `window` of the service
                    info.wait_for_publish(30)
                    while published - _processed(service.service.metrics()) > window:
                        time.sleep(0.005)
            wall_s = _wait_until_done(
                service, good=len(good_ids), reaching=reaching, started=started, timeout_s=timeout_s
            )
            time.sleep(1.0)  # the last acks
            metrics = service.service.metrics()
        finally:
            client.disconnect()
            client.loop_stop()
            service.stop(end_session=True)
            logging.getLogger().removeHandler(traces)
            for name, level in quiet.items():
                logging.getLogger(name).setLevel(level)
        engine = create_engine(f"sqlite:///{db}")
        with engine.connect() as conn:
            stored = {row[0] for row in conn.execute(text("SELECT event_id FROM alerts WHERE event_id LIKE 'good-%'"))}
            stored_rows = conn.execute(text("SELECT count(*) FROM alerts WHERE event_id LIKE 'good-%'")).scalar_one()
        engine.dispose()
    processed = _processed(metrics)
    expected_rejections = Counter()
    for m in messages:
        if m.kind in EXPECTED_REASON:
            expected_rejections[next(iter(EXPECTED_REASON[m.kind]))] += 1
    figures = {
        "messages": n,
        "seed": seed,
        "sent_by_class": dict(sorted(sent.items())),
        "reaching_the_service": reaching,
        "processed": processed,
        "wall_s": round(wall_s, 2),
        "throughput_per_s": round(processed / wall_s, 1) if wall_s else None,
        "accepted": metrics["accepted"],
        "duplicates": metrics["duplicates"],
        "rejected": {k: v for k, v in metrics["rejected"].items() if v},
        "expected_rejections": dict(sorted(expected_rejections.items())),
        "internal_errors": metrics["rejected"].get("internal_error", 0),
        "tracebacks_in_log": traces.count,
        "traceback_samples": traces.samples,
        "store_errors": metrics.get("store_errors", 0),
        "acks_received": acks.total,
        "acks_accepted": acks.accepted,
        "acks_rejected_by_reason": dict(sorted(acks.rejected.items())),
        "acks_without_reason": acks.without_reason,
        "good_sent": len(good_ids),
        "good_stored": len(stored & good_ids),
        "good_stored_rows": int(stored_rows),
        "redeliveries": sum(metrics["duplicates"].values()) - sent.get("replayed_event", 0),
    }
    figures["exceptions_escaping"] = figures["internal_errors"] + figures["tracebacks_in_log"]
    figures["ok"] = (
        figures["exceptions_escaping"] == 0
        and figures["acks_without_reason"] == 0
        and figures["good_stored"] == figures["good_sent"] == figures["good_stored_rows"]
        and processed >= reaching
    )
    return figures


def render(figures: dict) -> list[str]:
    """BENCHMARKS.md lines (a heading first)."""
    f = figures
    rows = [f"| {kind} | {count:,} |" for kind, count in f["sent_by_class"].items()]
    return [
        "## Hostile input: generated good and bad messages through the bridge",
        f"{f['messages']:,} messages (seed {f['seed']}) published at QoS 1 to Mosquitto and consumed by the service's bridge "
        f"(SQLite); see `bench/hostile.py` for the classes and the method.",
        "",
        "| class | sent |",
        "|---|---|",
        *rows,
        "",
        f"- processed by the service: {f['processed']:,} of {f['reaching_the_service']:,} that reach it "
        f"(the rest go to topics the bridge does not subscribe to) in {f['wall_s']:.1f} s: **{f['throughput_per_s']:,.0f} messages/s**",
        f"- exceptions escaping: **{f['exceptions_escaping']}** ({f['internal_errors']} `internal_error` rejections, "
        f"{f['tracebacks_in_log']} tracebacks in the log)",
        f"- rejections by reason: {', '.join(f'{k} {v:,}' for k, v in sorted(f['rejected'].items()))}",
        f"- acks received: {f['acks_received']:,} ({f['acks_accepted']:,} accepted); acks rejecting without a reason or "
        f"detail: **{f['acks_without_reason']}**",
        f"- good messages stored (by event id in the database): **{f['good_stored']:,} of {f['good_sent']:,}** "
        f"({f['good_stored_rows']:,} rows: each once); replays and broker redeliveries answered as duplicates: "
        f"{sum(f['duplicates'].values()):,} ({f['sent_by_class'].get('replayed_event', 0):,} replays sent)",
        f"- verdict: **{'all targets met' if f['ok'] else 'TARGETS NOT MET'}**",
        "",
    ]
