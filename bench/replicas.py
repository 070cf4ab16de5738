"""Replicas: SOS press -> first ack with 1, 2 and 3 ``qorgau serve --replica rN`` on one PostgreSQL.

One run, one throwaway PostgreSQL cluster and one Mosquitto of the harness's own
(:class:`bench.chaos.PostgresCluster`, :class:`bench.chaos.Broker`, never the shared servers), a
generated city (:func:`bench.chaos.write_city`). The replicas are real ``python -m qorgau serve``
processes of one group (``--client-id`` the group, ``--replica rN``, each its own ``--port``, one
``--db``, ``--mqtt`` and ``--topic-root``); the schema is made first (what ``qorgau db upgrade`` does).

All the replicas are started at once (a start costs ~10 s of CPU, mostly imports), then measured
from the most down: 3 replicas, then ``r3`` is stopped (SIGTERM) and its broker sessions ended (as a
retired replica's should be, docs/scaling.md), 2, then 1 (the baseline). Before each step the
harness waits until the live replicas are idle (they warm up for seconds after their bridge is up)
and sends a few warm-up presses; then

- **steady**: presses at a fixed rate well below saturation, for the latency: p50 / p99 / max of
  press -> **first** ack (and press -> the N-th ack, every replica's);
- **burst**: presses published as fast as one client can, for the throughput: presses / s until the
  last press had its first ack (and until every replica had acknowledged every press).

Every replica subscribes to every topic with its own persistent session and the database decides
who commits (docs/scaling.md), so a button gets **one ack per live replica**, all naming the same
alert; the figures time the first. The harness checks that each press got exactly N accepted acks
with one alert id, and that the database holds exactly one alert per press.

CPU per process over each measured window (first publish -> last ack) comes from
``/proc/<pid>/stat`` (utime + stime, plus the reaped and live children's, so PostgreSQL's backends
count): each replica, Mosquitto, PostgreSQL (the postmaster and its children), the harness's own
publishing client, and the whole machine's busy share from ``/proc/stat`` (other tenants included).
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from bench.chaos import Broker, PostgresCluster, Service, free_port, stored_events, write_city
from bench.mqtt import _connected

log = logging.getLogger("bench.replicas")

ROOT = Path(__file__).resolve().parents[1]
TOPIC_ROOT = "qorgau-replicas/v1"
GROUP = "qorgau-bench-replicas"
_TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Workload:
    nodes: int
    buttons: int
    warmup: int
    steady_rate_hz: float
    steady_s: float
    burst: int
    replicas: tuple[int, ...] = (1, 2, 3)
    ack_timeout_s: float = 120.0


FULL = Workload(nodes=10_000, buttons=100, warmup=20, steady_rate_hz=5.0, steady_s=30.0, burst=400)
QUICK = Workload(
    nodes=1000, buttons=20, warmup=5, steady_rate_hz=10.0, steady_s=2.0, burst=60, replicas=(1, 2), ack_timeout_s=60.0
)
"""Two replicas only: a start costs ~10 s of CPU (imports), and the quick form is a check, not a measurement."""


# -- CPU from /proc -------------------------------------------------------------------------


def _stat(pid: int) -> tuple[int, float]:
    """``(ppid, utime + stime + cutime + cstime in seconds)`` of ``pid``."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()  # fields 3.. (the name may hold spaces)
    return int(fields[1]), sum(int(x) for x in fields[11:15]) / _TICK


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of ``pid`` and every descendant, live or reaped (reaped ones are in cutime/cstime)."""
    stats: dict[int, tuple[int, float]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stats[int(entry.name)] = _stat(int(entry.name))
            except (OSError, ValueError, IndexError):  # gone meanwhile
                continue
    children: dict[int, list[int]] = {}
    for p, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(p)
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        if p in stats:
            total += stats[p][1]
            todo += children.get(p, [])
    return total


def _machine_ticks() -> tuple[int, int]:
    """``(busy, total)`` jiffies of all CPUs since boot, from /proc/stat."""
    values = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    total = sum(values[:8])  # guest time is already in user
    return total - idle, total


def _self_cpu_s() -> float:
    t = os.times()
    return t.user + t.system  # this process's threads only, not its children (the replicas, the broker)


class CpuWindow:
    """CPU used by each named process tree between ``start()`` and ``stop()``."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids

    def start(self) -> CpuWindow:
        self._t0 = time.perf_counter()
        self._cpu0 = {name: tree_cpu_s(pid) for name, pid in self.pids.items()}
        self._self0 = _self_cpu_s()
        self._machine0 = _machine_ticks()
        return self

    def stop(self) -> dict[str, Any]:
        wall = time.perf_counter() - self._t0
        cpu = {name: round(tree_cpu_s(pid) - self._cpu0[name], 3) for name, pid in self.pids.items()}
        cpu["bench_client"] = round(_self_cpu_s() - self._self0, 3)
        busy1, total1 = _machine_ticks()
        busy = (busy1 - self._machine0[0]) / max(1, total1 - self._machine0[1])
        return {"wall_s": round(wall, 3), "cpu_s": cpu, "machine_busy_share": round(busy, 3)}


# -- the buttons ----------------------------------------------------------------------------


class Presses:
    """One MQTT client for every button: publishes presses, records every ack per event."""

    def __init__(self, url: str, devices: list[str], run: str) -> None:
        from mqtt_bridge import Topics

        self.topics = Topics(TOPIC_ROOT)
        self.devices = devices
        self.run = run
        self.sent_at: dict[str, float] = {}
        self.acks: dict[str, list[tuple[float, str, int | None]]] = {}  # event -> [(t, status, alert id)]
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self.client = _connected(url, f"bench-replicas-buttons-{run}", max_inflight=65535)
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.on_message = self._on_ack
        self.client.subscribe(f"{TOPIC_ROOT}/sos/+/ack", qos=1)
        if not subscribed.wait(10):
            msg = "no SUBACK for the ack topics"
            raise TimeoutError(msg)

    def _on_ack(self, client: Any, userdata: Any, msg: Any) -> None:
        t = time.perf_counter()
        try:
            body = json.loads(msg.payload)
            event_id, status, alert_id = body["event_id"], body["status"], body.get("alert_id")
        except (ValueError, KeyError, TypeError):
            with self._lock:
                self.counts["bad_acks"] += 1
            return
        with self._lock:
            self.acks.setdefault(event_id, []).append((t, status, alert_id))

    def press(self, event_id: str, i: int) -> None:
        device = self.devices[i % len(self.devices)]
        body = json.dumps({"event_id": event_id, "ts": datetime.now(UTC).isoformat(), "kind": "press"})
        self.sent_at[event_id] = time.perf_counter()
        self.client.publish(self.topics.sos_alert(device), body, qos=1)

    def complete(self, events: list[str], n: int) -> bool:
        with self._lock:
            return all(len(self.acks.get(e, ())) >= n for e in events)

    def wait(self, events: list[str], n: int, timeout_s: float) -> bool:
        """Until every event has ``n`` acks (one per live replica), or ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.complete(events, n):
                return True
            time.sleep(0.02)
        return self.complete(events, n)

    def tally(self, events: list[str], n: int) -> dict[str, Any]:
        """What the acks of ``events`` say, with press -> first ack and press -> n-th ack in seconds."""
        with self._lock:
            acks = {e: sorted(self.acks.get(e, [])) for e in events}
        per_press = Counter(len(a) for a in acks.values())
        first = [a[0][0] - self.sent_at[e] for e, a in acks.items() if a]
        last = [a[n - 1][0] - self.sent_at[e] for e, a in acks.items() if len(a) >= n]
        return {
            "acks_per_press": {str(k): v for k, v in sorted(per_press.items())},
            "statuses": dict(Counter(s for a in acks.values() for _, s, _ in a)),
            "alert_ids_disagreeing": sum(1 for a in acks.values() if len({x[2] for x in a}) > 1),
            "first_ack_s": first,
            "all_acks_s": last,
            "first_ack_at": max((a[0][0] for a in acks.values() if a), default=None),
            "last_ack_at": max((a[n - 1][0] for a in acks.values() if len(a) >= n), default=None),
            "acked_alert_ids": {e: a[0][2] for e, a in acks.items() if a},
        }

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


_STAMP = r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) "
_LOGGED = {
    # a batch that failed a constraint and was stored one alert per transaction (Store.add_alerts)
    "batch_fallbacks": re.compile(_STAMP + r".*a batch of (\d+) alerts failed a constraint"),
    # presses this replica ranked but another replica committed first (skipped by ON CONFLICT)
    "lost_races": re.compile(_STAMP + r".*: (\d+) of a batch of \d+ new events were committed meanwhile by another"),
    # every press answered with an alert stored before (found before ranking, or a lost race)
    "answered_stored": re.compile(_STAMP + r".*redelivery of event ()"),
}


def logged(logs: list[Path]) -> dict[str, dict[str, list[tuple[float, int]]]]:
    """Per replica log (``rN.log``) and per kind of :data:`_LOGGED`: when, and how many presses.

    With fan-out every replica but the first committer of a press answers it from the stored
    alert: found by the look-up before ranking (cheap), or ranked and then skipped at the insert
    because another replica committed it meanwhile (a lost race: the ranking was in vain). A batch
    stored one by one is the old, expensive path (none expected). The times are the log's local
    wall clock, as ``time.time()`` reads it here.
    """
    out: dict[str, dict[str, list[tuple[float, int]]]] = {}
    for path in logs:
        seen = out.setdefault(path.stem, {kind: [] for kind in _LOGGED})
        for line in path.read_text(errors="replace").splitlines():
            for kind, pattern in _LOGGED.items():
                m = pattern.match(line)
                if m:
                    at = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()  # the log's local time
                    seen[kind].append((at, int(m.group(2) or 1)))
    return out


def _latency(seconds: list[float], sent: int) -> dict[str, Any]:
    a = np.asarray(seconds) * 1e3
    return {
        "n": int(a.size),
        "sent": sent,
        "p50_ms": round(float(np.median(a)), 2) if a.size else None,
        "p99_ms": round(float(np.percentile(a, 99)), 2) if a.size else None,
        "max_ms": round(float(a.max()), 2) if a.size else None,
    }


# -- the run --------------------------------------------------------------------------------


def _env() -> dict[str, str]:
    """The caller's environment without QORGAU_* (the flags say everything), plus what serve needs.

    The same as bench.chaos's ``_service_env`` (copied: that one is private to chaos).
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("QORGAU_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    env["PYTHONUNBUFFERED"] = "1"
    env["QORGAU_JWT_SECRET"] = uuid.uuid4().hex + uuid.uuid4().hex  # one key for the group
    env["QORGAU_SESSION_EXPIRY_S"] = "3600"
    return env


class Bench:
    def __init__(self, w: Workload, folder: Path) -> None:
        self.w = w
        self.folder = folder
        self.run_id = uuid.uuid4().hex[:8]
        self.rng = random.Random(1)
        self.replicas: list[Service] = []
        self.retired: list[Service] = []
        self.start_retries = 0
        self.env = _env()
        self.broker: Broker | None = None
        self.pg: PostgresCluster | None = None
        self.presses: Presses | None = None

    def set_up(self) -> None:
        w, folder = self.w, self.folder
        t0 = time.perf_counter()
        made: dict[str, Any] = {}

        def make_db() -> None:  # initdb and the cluster's start are subprocesses: overlap them with the city
            try:
                made["pg"] = PostgresCluster(folder / "pg")
            except BaseException as e:
                made["error"] = e

        maker = threading.Thread(target=make_db, name="bench-replicas-initdb")
        maker.start()
        self.broker = Broker(folder / "mosquitto")
        self.broker.start()
        self.osm, self.units, self.devices_path, self.devices = write_city(
            folder, nodes=w.nodes, buttons=w.buttons, seed=1
        )
        maker.join()
        if "error" in made:
            raise made["error"]
        self.pg = made["pg"]
        from dispatch import Store

        store = Store(self.pg.url)  # the schema first, so the replicas' own start-up migrations do not race
        try:
            store.upgrade_schema("head")
        finally:
            store.close()
        log.info("replicas: city, broker, PostgreSQL and schema ready in %.1f s", time.perf_counter() - t0)
        self.presses = Presses(self.broker.url, self.devices, self.run_id)

    def postmaster_pid(self) -> int:
        return int((self.pg.data / "postmaster.pid").read_text().split()[0])

    def _args(self, name: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "qorgau",
            "serve",
            "--network",
            str(self.osm),
            "--units",
            str(self.units),
            "--devices",
            str(self.devices_path),
            "--db",
            self.pg.url,
            "--mqtt",
            self.broker.url,
            "--topic-root",
            TOPIC_ROOT,
            "--client-id",
            GROUP,
            "--replica",
            name,
            "--host",
            "127.0.0.1",
            "--port",
            str(free_port()),
            "--log-level",
            "INFO",  # "MQTT bridge up" is how Service knows it is ready; nothing is logged per press
        ]

    def start_replicas(self, n: int) -> float:
        """Start ``r1``..``rn`` at once and wait until every MQTT bridge is up; seconds it took."""
        t0 = time.perf_counter()
        for i in range(1, n + 1):
            service = Service(self._args(f"r{i}"), self.env, self.folder / f"r{i}.log")
            service.start()
            self.replicas.append(service)
        restarted = set()
        while not all(service.ready.is_set() for service in self.replicas):
            if time.perf_counter() - t0 > 600:
                for i, service in enumerate(self.replicas, start=1):
                    if not service.ready.is_set():
                        service.stop()
                        time.sleep(0.5)
                        log.error(
                            "r%d not up; its log ends:\n%s", i, service.log_path.read_text(errors="replace")[-3000:]
                        )
                msg = "replicas not up within 600 s"
                raise RuntimeError(msg)
            for i, service in enumerate(self.replicas, start=1):
                if service.alive() or service.ready.is_set():
                    continue
                service.stop()  # flushes its log
                time.sleep(0.5)  # and its reader reaches the end
                tail = service.log_path.read_text(errors="replace")[-3000:]
                if i in restarted:
                    msg = f"replica r{i} exited twice while starting:\n{tail}"
                    raise RuntimeError(msg)
                log.warning("replica r%d exited while starting; starting it again. Its log ends:\n%s", i, tail)
                restarted.add(i)
                self.start_retries += 1
                service.start()
            time.sleep(0.2)
        return time.perf_counter() - t0

    def retire_last(self) -> None:
        """Stop the last replica (SIGTERM) and end its broker sessions, as a retired replica's should be.

        ``serve`` keeps its persistent sessions on SIGTERM (a restart resumes them); left alone, the
        broker would go on queueing every press for the stopped replica during the next step.
        """
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        from mqtt_bridge import Lane, new_client, parse_mqtt_url

        service = self.replicas.pop()
        name = f"r{len(self.replicas) + 1}"
        service.stop()
        self.retired.append(service)
        address = parse_mqtt_url(self.broker.url)
        session = f"{GROUP}-{name}"
        for lane in Lane:
            client = new_client(address, client_id=session if lane is Lane.SOS else f"{session}-{lane.value}")
            connected = threading.Event()
            client.on_connect = lambda *a, done=connected: done.set()
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 0
            client.connect(address.host, address.port, clean_start=True, properties=props)
            client.loop_start()
            if not connected.wait(10):
                log.warning("could not end the session of %s's %s lane", name, lane.value)
            client.disconnect()
            client.loop_stop()

    def settle(self, quiet_share: float = 0.15, timeout_s: float = 60.0) -> float:
        """Wait until every live replica uses under ``quiet_share`` of a core (a replica keeps warming
        up for seconds after its bridge is up); seconds waited."""
        t0 = time.perf_counter()
        pids = [s.proc.pid for s in self.replicas if s.proc is not None]
        while time.perf_counter() - t0 < timeout_s:
            before = [tree_cpu_s(p) for p in pids]
            time.sleep(1.0)
            if all(tree_cpu_s(p) - b < quiet_share for p, b in zip(pids, before, strict=True)):
                break
        return time.perf_counter() - t0

    def pids(self) -> dict[str, int]:
        pids = {f"r{i}": s.proc.pid for i, s in enumerate(self.replicas, start=1) if s.proc is not None}
        return {**pids, "broker": self.broker.proc.pid if self.broker.proc else -1, "postgres": self.postmaster_pid()}

    def _events(self, n: int, phase: str, count: int) -> list[str]:
        return [f"rb-{self.run_id}-{n}-{phase}-{i:05d}" for i in range(count)]

    def _send_and_wait(self, events: list[str], n: int, rate_hz: float | None) -> tuple[dict[str, Any], float]:
        """Publish ``events`` (paced at ``rate_hz`` or as fast as possible), wait for N acks each."""
        window = CpuWindow(self.pids()).start()
        epoch_from = time.time()
        start = time.perf_counter()
        for i, event_id in enumerate(events):
            if rate_hz is not None:
                delay = start + i / rate_hz - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            self.presses.press(event_id, self.rng.randrange(1 << 30))
        published_s = time.perf_counter() - start
        if not self.presses.wait(events, n, self.w.ack_timeout_s):
            log.warning("not every press has %d acks after %.0f s", n, self.w.ack_timeout_s)
        cpu = window.stop()
        epochs = [epoch_from, time.time()]
        return {"published_in_s": round(published_s, 3), "started_at": start, "epochs": epochs, **cpu}, start

    def step(self, n: int) -> dict[str, Any]:
        """Measure with the ``n`` replicas running now."""
        warm = self._events(n, "warm", self.w.warmup)
        self._send_and_wait(warm, n, rate_hz=20.0)
        steady_events = self._events(n, "steady", int(self.w.steady_rate_hz * self.w.steady_s))
        steady_run, _ = self._send_and_wait(steady_events, n, self.w.steady_rate_hz)
        steady = self.presses.tally(steady_events, n)
        burst_events = self._events(n, "burst", self.w.burst)
        burst_run, t0 = self._send_and_wait(burst_events, n, None)
        burst = self.presses.tally(burst_events, n)
        events = warm + steady_events + burst_events
        rows = [(e, a) for e, a in stored_events(self.pg.url, f"rb-{self.run_id}-{n}-")]
        stored = Counter(e for e, _ in rows)
        acked = {
            **self.presses.tally(warm, n)["acked_alert_ids"],
            **steady["acked_alert_ids"],
            **burst["acked_alert_ids"],
        }
        ids = {e: a for e, a in rows}
        first_s = None if burst["first_ack_at"] is None else burst["first_ack_at"] - t0
        all_s = None if burst["last_ack_at"] is None else burst["last_ack_at"] - t0

        def phase(run: dict[str, Any], tally: dict[str, Any], sent: int) -> dict[str, Any]:
            return {
                "sent": sent,
                "published_in_s": run["published_in_s"],
                "acks_per_press": tally["acks_per_press"],
                "statuses": tally["statuses"],
                "alert_ids_disagreeing": tally["alert_ids_disagreeing"],
                "first_ack": _latency(tally["first_ack_s"], sent),
                "all_acks": _latency(tally["all_acks_s"], sent),
                "window_s": run["wall_s"],
                "cpu_s": run["cpu_s"],
                "machine_busy_share": run["machine_busy_share"],
                "epochs": run["epochs"],  # replaced by the log's counts once the logs are complete (see run)
            }

        return {
            "replicas": n,
            "steady": {"rate_hz": self.w.steady_rate_hz, **phase(steady_run, steady, len(steady_events))},
            "burst": {
                **phase(burst_run, burst, len(burst_events)),
                "first_acks_done_s": None if first_s is None else round(first_s, 3),
                "all_acks_done_s": None if all_s is None else round(all_s, 3),
                "throughput_first_ack_hz": None if not first_s else round(len(burst_events) / first_s, 1),
                "throughput_all_acks_hz": None if not all_s else round(len(burst_events) / all_s, 1),
            },
            "stored": {
                "presses": len(events),
                "alerts": len(rows),
                "events": len(stored),
                "each_once": len(rows) == len(stored) == len(events) and set(stored) == set(events),
                "ack_names_another_alert": sum(1 for e, a in acked.items() if ids.get(e) != a),
            },
        }

    def close(self) -> None:
        for step in (
            *([self.presses.close] if self.presses else []),
            *(s.stop for s in reversed(self.replicas)),
            *([self.broker.stop] if self.broker else []),
            *([self.pg.close] if self.pg else []),
            *(s.close for s in [*self.retired, *self.replicas]),
        ):
            try:
                step()
            except Exception:  # tear the rest down anyway
                log.exception("tear-down step failed")


def run(quick: bool = False, workload: Workload | None = None) -> dict[str, Any]:
    """One run: 1, then 2, then 3 replicas; the figures per step (the first is the baseline)."""
    w = workload or (QUICK if quick else FULL)
    with tempfile.TemporaryDirectory(prefix="qorgau-bench-replicas-") as tmp:
        folder = Path(tmp)
        if os.geteuid() == 0:
            os.chmod(folder, 0o755)  # the throwaway cluster runs as the postgres user
        bench = Bench(w, folder)
        steps = []
        try:
            bench.set_up()
            start_s = bench.start_replicas(max(w.replicas))
            log.info("replicas: %d up in %.1f s", max(w.replicas), start_s)
            for n in sorted(w.replicas, reverse=True):
                while len(bench.replicas) > n:
                    bench.retire_last()
                settle_s = bench.settle()
                log.info("replicas: measuring with %d (settled in %.1f s)", n, settle_s)
                steps.append({**bench.step(n), "settled_in_s": round(settle_s, 1)})
        finally:
            bench.close()
        found = logged(sorted(folder.glob("r*.log")))
    for step in steps:
        for name in ("steady", "burst"):
            a, b = step[name].pop("epochs")
            for kind in _LOGGED:
                step[name][kind] = {
                    r: {
                        "batches": sum(1 for t, _ in seen[kind] if a <= t <= b),
                        "alerts": sum(k for t, k in seen[kind] if a <= t <= b),
                    }
                    for r, seen in found.items()
                    if int(r[1:]) <= step["replicas"]
                }
    steps.sort(key=lambda s: s["replicas"])
    return {
        "workload": asdict(w),
        "quick": quick,
        "cores": os.cpu_count(),
        "started_in_s": round(start_s, 1),
        "start_retries": bench.start_retries,
        "steps": steps,
        "load_average_at_end": list(os.getloadavg()),
    }


def render(f: dict[str, Any]) -> list[str]:
    """BENCHMARKS.md lines (the first is the heading)."""
    steps = f["steps"]
    base = steps[0]
    w = f["workload"]
    ns = [str(s["replicas"]) for s in steps]
    counts = ns[0] if len(ns) == 1 else ", ".join(ns[:-1]) + " and " + ns[-1]

    def pct(cpu_s: float, window_s: float) -> str:
        return f"{100 * cpu_s / window_s:.0f} %" if window_s else "n/a"

    def replicas_cpu(phase: dict[str, Any], n: int) -> float:
        return sum(phase["cpu_s"][f"r{i}"] for i in range(1, n + 1))

    def total(p: dict[str, Any], kind: str, what: str = "alerts") -> int:
        return sum(x[what] for x in p.get(kind, {}).values())

    def fallbacks(p: dict[str, Any]) -> str:
        return (
            f"{total(p, 'batch_fallbacks', 'batches')} ({total(p, 'batch_fallbacks')})"
            if "batch_fallbacks" in p
            else "n/a"
        )

    def answered(p: dict[str, Any]) -> str:
        if "answered_stored" not in p:
            return "n/a"
        return f"{total(p, 'answered_stored')} ({total(p, 'lost_races')})"

    def checked(s: dict[str, Any]) -> str:
        n = str(s["replicas"])
        ok = all(
            s[p]["acks_per_press"] == {n: s[p]["sent"]} and not s[p]["alert_ids_disagreeing"]
            for p in ("steady", "burst")
        )
        db = s["stored"]
        alerts = "1 alert" if db["each_once"] and not db["ack_names_another_alert"] else f"**NOT one alert each: {db}**"
        acks = (
            ("1 ack" if n == "1" else f"{n} acks, one alert id")
            if ok
            else f"**{s['steady']['acks_per_press']} / {s['burst']['acks_per_press']}**"
        )
        return f"{acks}; {alerts}"

    lines = [
        f"## Replicas: SOS press -> first ack with {counts} replicas on one PostgreSQL",
        "",
        "`python -m qorgau serve --replica rN` processes of one group (each its own `--port`; one `--db` PostgreSQL, "
        "`--mqtt`, `--topic-root`, `--client-id`), on a throwaway PostgreSQL cluster and a Mosquitto of the bench's "
        f"own; a generated city of {w['nodes']:,} nodes and {w['buttons']} buttons. All replicas start at once "
        f"(up in {f['started_in_s']:.0f} s), then are measured with {ns[-1]}, one stopped (its sessions ended), and so on "
        "down to 1, the baseline. **Timed: press -> first ack.** Every replica ingests every press (fan-out, "
        "docs/scaling.md), so a button gets one ack per live replica, all naming the one alert the database let the "
        "first committer store; press -> the N-th ack (every replica's) is beside it.",
        "",
        f"| replicas | steady {w['steady_rate_hz']:g}/s, {base['steady']['sent']} presses: first ack p50 (ms) | p99 (ms) "
        "| max (ms) | p99 vs 1 | every replica's ack p99 (ms) "
        f"| burst of {w['burst']:,}: presses/s to first ack | vs 1 | /s to every replica's ack | checked per press |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in steps:
        st, b = s["steady"], s["burst"]
        t, t0 = b["throughput_first_ack_hz"], base["burst"]["throughput_first_ack_hz"]
        p99, p99_0 = st["first_ack"]["p99_ms"], base["steady"]["first_ack"]["p99_ms"]
        lines.append(
            f"| {s['replicas']}{' (baseline)' if s is base else ''} | {st['first_ack']['p50_ms']:.1f} | {p99:.1f} | "
            f"{st['first_ack']['max_ms']:.1f} | {p99 / p99_0:.2f}x | {st['all_acks']['p99_ms']:.1f} | {t:.0f} | "
            f"{t / t0:.2f}x | {b['throughput_all_acks_hz']:.0f} | {checked(s)} |"
        )
    lines += [
        "",
        "CPU per process over each window (first publish -> every replica's last ack) from `/proc/<pid>/stat`, as a "
        f"share of one core ({f['cores']} cores: {100 * f['cores']} % is the whole machine); PostgreSQL is the "
        "postmaster and its backends; machine busy is every process on the host, other tenants included:",
        "",
        "| replicas | phase | window (s) | each replica | Mosquitto | PostgreSQL | bench client | machine busy | "
        "replicas' CPU per press (ms) | presses answered with another's alert (of them ranked in vain) | "
        "batches stored one by one (presses) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in steps:
        n = s["replicas"]
        for name in ("steady", "burst"):
            p = s[name]
            cpu, win = p["cpu_s"], p["window_s"]
            each = ", ".join(pct(cpu[f"r{i}"], win) for i in range(1, n + 1))
            lines.append(
                f"| {n} | {name} | {win:.1f} | {each} | {pct(cpu['broker'], win)} | {pct(cpu['postgres'], win)} | "
                f"{pct(cpu['bench_client'], win)} | {100 * p['machine_busy_share']:.0f} % | "
                f"{1e3 * replicas_cpu(p, n) / p['sent']:.1f} | {answered(p)} | {fallbacks(p)} |"
            )
    last = steps[-1]
    ratio = last["burst"]["throughput_first_ack_hz"] / base["burst"]["throughput_first_ack_hz"]
    cost = (replicas_cpu(last["burst"], last["replicas"]) / last["burst"]["sent"]) / (
        replicas_cpu(base["burst"], 1) / base["burst"]["sent"]
    )
    busy = min(p["machine_busy_share"] for s in steps for p in (s["steady"], s["burst"]))
    steady_share = max(
        s["steady"]["cpu_s"][f"r{i}"] / s["steady"]["window_s"] for s in steps for i in range(1, s["replicas"] + 1)
    )
    starved = (
        f" In the steady windows no replica used more than {100 * steady_share:.0f} % of a core, so the steady tails "
        "are mostly waiting for a CPU on the shared machine, not the replicas' own work."
        if steady_share < 0.5 and busy > 0.9
        else ""
    )
    lost, other = total(last["burst"], "lost_races"), total(last["burst"], "answered_stored")
    vain = (
        f" In the {last['replicas']}-replica burst {other} presses were answered with an alert another replica had "
        f"committed; {lost} of them had been ranked first (a lost race: both replicas took the press at the same "
        f"moment), the rest were found by the look-up before ranking; {total(last['burst'], 'batch_fallbacks', 'batches')} "
        "batches were stored one by one."
        if last["replicas"] > 1 and "answered_stored" in last["burst"]
        else ""
    )
    lines += [
        "",
        f"With {last['replicas']} replicas the burst got its first acks at {ratio:.2f}x the single replica's rate, for "
        f"{cost:.1f}x the replicas' CPU per press. With fan-out every replica validates and acknowledges every press; "
        "only the first committer should rank and store it, the others answer from the stored alert (one look-up per "
        "batch before ranking, `INSERT ... ON CONFLICT DO NOTHING` for a batch that meets another's commit). Here the "
        f"replicas, Mosquitto, PostgreSQL and the publishing client share the same {f['cores']} cores (machine busy at "
        f"least {100 * busy:.0f} % in every window, with other tenants: the absolute figures are this shared "
        "machine's, one run, one burst per step). Replicas are for availability: a press routed to a dead replica is "
        "acknowledged by the survivors within their normal press -> ack time (tests/qorgau/test_replicas.py)."
        f"{starved}{vain}",
        "",
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m bench.replicas", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    print(json.dumps(run(args.quick), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
