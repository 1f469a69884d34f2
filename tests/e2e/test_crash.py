"""Crash safety: under load the all-in-one server is killed with SIGKILL several times and
restarted; afterwards every event that got a 200 is stored exactly once."""

import json
import signal
import sqlite3
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid

from conftest import Server


def envelope(event_id):
    event = json.dumps({
        "event_id": event_id, "platform": "python", "level": "error",
        "exception": {"values": [{"type": "CrashTestError", "value": f"boom {event_id[:4]}",
                                  "stacktrace": {"frames": [{"function": f"f{int(event_id[0], 16)}", "module": "crash", "in_app": True}]}}]},
    })
    return f'{{"event_id":"{event_id}"}}\n{{"type":"event","length":{len(event)}}}\n{event}\n'.encode()


def sender(srv, acked, stop, lock):
    key = srv.dsn.split("//")[1].split("@")[0]
    project = srv.dsn.rsplit("/", 1)[1]
    url = f"{srv.url}/api/{project}/envelope/"
    while not stop.is_set():
        event_id = uuid.uuid4().hex
        req = urllib.request.Request(url, data=envelope(event_id), method="POST",
                                     headers={"X-Sentry-Auth": f"Sentry sentry_key={key}, sentry_version=7"})
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                if r.status == 200:
                    with lock:
                        acked.append(event_id)
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            time.sleep(0.02)  # server down: keep trying, as SDKs would with new events


def assert_stored_exactly_once(srv, acked, timeout=90):
    """Waits for the worker to drain, then checks every acknowledged id is stored once."""
    assert len(acked) > 100, f"only {len(acked)} events were acknowledged"
    deadline = time.time() + timeout
    while True:
        with srv.db() as conn:
            rows = conn.execute("SELECT event_id, COUNT(*) FROM events GROUP BY event_id").fetchall()
        stored = {r[0]: r[1] for r in rows}
        missing = [e for e in acked if e not in stored]
        if not missing or time.time() > deadline:
            break
        time.sleep(0.5)
    assert not missing, f"{len(missing)} of {len(acked)} acknowledged events were lost: {missing[:5]}"
    duplicated = [e for e, n in stored.items() if n != 1]
    assert not duplicated, f"stored more than once: {duplicated[:5]}"
    return stored


def test_sigkill_loses_no_acknowledged_event():
    srv = Server(tempfile.mkdtemp(prefix="faultline-crash-"))
    srv.cli("org", "create", "acme")
    srv.dsn = srv.cli("project", "create", "--org", "acme", "crash")
    srv.start()
    acked, stop, lock = [], threading.Event(), threading.Lock()
    threads = [threading.Thread(target=sender, args=(srv, acked, stop, lock)) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for _ in range(3):
            time.sleep(1.5)
            srv.proc.send_signal(signal.SIGKILL)
            srv.proc.wait()
            time.sleep(0.3)
            srv.start()
        time.sleep(1.5)
    finally:
        stop.set()
        for t in threads:
            t.join()
    try:
        stored = assert_stored_exactly_once(srv, acked)
        print(f"crash test: {len(acked)} acknowledged, {len(stored)} stored, 3 SIGKILLs")
    finally:
        srv.stop()


def test_sigkill_of_a_separate_worker_loses_nothing():
    """`faultline web` keeps accepting while the `faultline worker` beside it is killed
    with SIGKILL three times; every acknowledged event is stored exactly once."""
    import os
    import subprocess

    from conftest import BIN

    srv = Server(tempfile.mkdtemp(prefix="faultline-crash-worker-"))
    srv.cli("org", "create", "acme")
    srv.dsn = srv.cli("project", "create", "--org", "acme", "crash")
    web = subprocess.Popen([BIN, "web"], env=srv.env, stdout=srv.log, stderr=srv.log)
    srv.proc = web
    deadline = time.time() + 30
    while True:
        try:
            with urllib.request.urlopen(srv.url + "/healthz", timeout=1):
                break
        except OSError:
            assert time.time() < deadline, "web did not start"
            time.sleep(0.1)
    start_worker = lambda: subprocess.Popen([BIN, "worker"], env=srv.env, stdout=srv.log, stderr=srv.log)
    worker = start_worker()
    acked, stop, lock = [], threading.Event(), threading.Lock()
    threads = [threading.Thread(target=sender, args=(srv, acked, stop, lock)) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for _ in range(3):
            time.sleep(1.5)
            worker.send_signal(signal.SIGKILL)
            worker.wait()
            worker = start_worker()
        time.sleep(1.0)
    finally:
        stop.set()
        for t in threads:
            t.join()
    try:
        stored = assert_stored_exactly_once(srv, acked)
        print(f"worker crash test: {len(acked)} acknowledged, {len(stored)} stored, 3 SIGKILLs of the worker")
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        srv.stop()
