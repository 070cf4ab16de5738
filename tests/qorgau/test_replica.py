"""Replicas: each one's name (settings, /healthz, /metrics, logs) and SQLite's one replica per file."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support import JWT_SECRET, TORONTO_XML, Running

from qorgau import Settings
from qorgau.replica import ReplicaConflict, SqliteReplicaLock, default_replica_name, sqlite_file_of

ROOT = Path(__file__).resolve().parents[2]


def test_the_default_replica_name_is_hostname_pid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QORGAU_REPLICA", raising=False)
    name = Settings().replica
    assert name == default_replica_name()
    assert name.endswith(f"-{os.getpid()}")
    assert name.startswith(re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname()).strip("-._")[:48])


def test_the_replica_name_comes_from_the_environment_and_a_flag_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QORGAU_REPLICA", "almaty-b")
    assert Settings().replica == "almaty-b"
    assert Settings.from_flags({"replica": "almaty-c"}).replica == "almaty-c"


@pytest.mark.parametrize("bad", ["", "-a", "a b", "a/b", 'a"b', "x" * 64])
def test_a_replica_name_that_cannot_be_a_label_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="a replica name is 1-63 letters"):
        Settings(replica=bad)


def test_healthz_metrics_and_settings_name_the_replica(start_service: object) -> None:
    running: Running = start_service(replica="replica-x")  # type: ignore[operator]
    health = httpx.get(f"{running.service.base_url}/healthz").json()
    assert health["replica"] == "replica-x"
    text = httpx.get(f"{running.service.base_url}/metrics").text
    samples = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert samples
    assert all('replica="replica-x"' in line for line in samples), [s for s in samples if "replica-x" not in s][:3]


@pytest.mark.parametrize(
    ("url", "file"),
    [
        ("sqlite:///var/q.sqlite3", Path("var/q.sqlite3")),
        ("sqlite:////tmp/q.sqlite3", Path("/tmp/q.sqlite3")),
        ("sqlite://", None),
        ("sqlite:///:memory:", None),
        ("postgresql+psycopg://qorgau@db/qorgau", None),
    ],
)
def test_only_sqlite_files_are_locked(url: str, file: Path | None) -> None:
    assert sqlite_file_of(url) == file


def test_a_second_lock_on_one_sqlite_file_names_the_holder(tmp_path: Path) -> None:
    db = tmp_path / "q.sqlite3"
    first = SqliteReplicaLock(db, "first").acquire()
    with pytest.raises(ReplicaConflict, match=rf"already served by replica 'first' \(pid {os.getpid()} on "):
        SqliteReplicaLock(db, "second").acquire()
    first.release()
    with SqliteReplicaLock(db, "second") as second:  # released: the next one may take it
        assert second.held
        assert '"replica": "second"' in (tmp_path / "q.sqlite3.lock").read_text()
    assert not second.held


# -- two `qorgau serve` processes on one SQLite file ------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(replica: str, db: Path, port: int, mqtt_url: str, topic_root: str, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "QORGAU_JWT_SECRET": JWT_SECRET,
    }
    argv = [sys.executable, "-m", "qorgau", "serve", "--network", str(TORONTO_XML), "--db", f"sqlite:///{db}"]
    argv += ["--mqtt", mqtt_url, "--topic-root", topic_root, "--client-id", f"replica-test-{uuid.uuid4().hex[:8]}"]
    argv += ["--port", str(port), "--replica", replica, "--cache-dir", str(db.parent / "cache")]
    with open(log, "wb") as out:
        return subprocess.Popen(argv, cwd=db.parent, env=env, stdout=out, stderr=subprocess.STDOUT)


def _healthy(proc: subprocess.Popen[bytes], port: int, log: Path, timeout_s: float = 60.0) -> dict[str, object]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"serve exited {proc.returncode}: {log.read_text()}"
        try:
            response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
            if response.status_code == 200:
                body: dict[str, object] = response.json()
                return body
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail(f"serve not healthy within {timeout_s} s: {log.read_text()}")


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def test_a_second_replica_on_one_sqlite_file_refuses_and_a_new_one_starts_after_a_sigkill(
    tmp_path: Path, mqtt_url: str, topic_root: str, processes: list[subprocess.Popen[bytes]]
) -> None:
    db = tmp_path / "q.sqlite3"
    port_a, port_b, port_c = _free_port(), _free_port(), _free_port()
    a = _serve("replica-a", db, port_a, mqtt_url, topic_root, tmp_path / "a.log")
    processes.append(a)
    assert _healthy(a, port_a, tmp_path / "a.log")["replica"] == "replica-a"
    assert " [replica-a] " in (tmp_path / "a.log").read_text()  # the log lines say whose they are

    b = _serve("replica-b", db, port_b, mqtt_url, topic_root, tmp_path / "b.log")
    processes.append(b)
    assert b.wait(timeout=60) == 2
    err = (tmp_path / "b.log").read_text()
    assert f"is already served by replica 'replica-a' (pid {a.pid} on " in err, err
    assert "SQLite allows one replica per database file" in err
    assert a.poll() is None  # the first one is untouched

    a.send_signal(signal.SIGKILL)  # the kernel drops a killed holder's lock: no stale lock file blocks
    a.wait(timeout=10)
    c = _serve("replica-c", db, port_c, mqtt_url, topic_root, tmp_path / "c.log")
    processes.append(c)
    assert _healthy(c, port_c, tmp_path / "c.log")["replica"] == "replica-c"
