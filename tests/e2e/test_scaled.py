"""Scaled deployment: two `faultline web` and two `faultline worker` processes against one
PostgreSQL and one Redis process the same load into the same issues and counts as the
all-in-one server on SQLite. The load is spread over both web processes, as a load
balancer would; each worker serves its own /metrics."""

import json
import os
import subprocess
import tempfile
import threading
import time
import urllib.request
import uuid

import pytest

from conftest import BIN, Server, free_port

REDIS_DB = 7  # a database index of the machine's Redis used only by this test


def make_events(n_issues=25, per_issue=40):
    events = []
    for i in range(n_issues):
        for j in range(per_issue):
            event_id = uuid.uuid4().hex
            events.append((event_id, json.dumps({
                "event_id": event_id, "platform": "python", "level": "error",
                "release": f"r{j % 3}",
                "user": {"id": str(j % 5)},
                "exception": {"values": [{"type": f"ScaleError{i}", "value": f"value {j}",
                                          "stacktrace": {"frames": [{"function": f"handler_{i}", "module": "scale", "in_app": True}]}}]},
            })))
    return events


def send_all(urls, dsn, events):
    """Sends every event, spread round-robin over `urls` (one or more web processes)."""
    if isinstance(urls, str):
        urls = [urls]
    key = dsn.split("//")[1].split("@")[0]
    project = dsn.rsplit("/", 1)[1]
    chunks = [events[i::4] for i in range(4)]
    failures = []

    def run(chunk, endpoint):
        for event_id, body in chunk:
            data = f'{{"event_id":"{event_id}"}}\n{{"type":"event","length":{len(body)}}}\n{body}\n'.encode()
            req = urllib.request.Request(endpoint, data=data, method="POST",
                                         headers={"X-Sentry-Auth": f"Sentry sentry_key={key}, sentry_version=7"})
            with urllib.request.urlopen(req, timeout=10) as r:
                if r.status != 200:
                    failures.append(r.status)

    threads = [threading.Thread(target=run, args=(c, f"{urls[i % len(urls)]}/api/{project}/envelope/"))
               for i, c in enumerate(chunks)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures


def summary(rows):
    # Issues are compared by exception type: the title follows the newest event, and which
    # event is newest depends on arrival order.
    return sorted((r[0].split(":")[0], int(r[1]), int(r[2])) for r in rows)


def wait_count(query_count, expected, timeout=90):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if query_count() >= expected:
            return
        time.sleep(0.3)
    raise AssertionError(f"only {query_count()} of {expected} events stored")


def psql(sql, db="test"):
    return subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", db, "-Atc", sql],
                          capture_output=True, text=True, check=True).stdout.strip()


def metric(url, name):
    """One unlabelled sample of a process's /metrics."""
    with urllib.request.urlopen(url + "/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return 0.0


def test_two_webs_and_two_workers_on_postgres_and_redis_match_the_all_in_one_server():
    events = make_events()

    # All-in-one on SQLite.
    single = Server(tempfile.mkdtemp(prefix="faultline-single-"))
    single.cli("org", "create", "acme")
    single.dsn = single.cli("project", "create", "--org", "acme", "web")
    single.start()
    try:
        send_all(single.url, single.dsn, events)

        def single_count():
            with single.db() as c:
                return c.execute("SELECT COUNT(*) FROM events").fetchone()[0]

        wait_count(single_count, len(events))
        with single.db() as c:
            expected = summary(c.execute("SELECT title, times_seen, users_seen FROM issues").fetchall())
    finally:
        single.stop()

    # Scaled: PostgreSQL + Redis, two webs, two workers.
    name = f"faultline_t_{uuid.uuid4().hex}"
    psql(f"CREATE DATABASE {name}")
    subprocess.run(["redis-cli", "-n", str(REDIS_DB), "FLUSHDB"], check=True, capture_output=True)
    data = tempfile.mkdtemp(prefix="faultline-scaled-")
    web_ports = [free_port(), free_port()]
    worker_ports = [free_port(), free_port()]
    env = dict(os.environ, DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{name}",
               REDIS_URL=f"redis://127.0.0.1:6379/{REDIS_DB}", FAULTLINE_DATA_DIR=data,
               FAULTLINE_BIND=f"127.0.0.1:{web_ports[0]}", FAULTLINE_LOG="warn", FAULTLINE_CONFIG="")
    run = lambda *a: subprocess.run([BIN, *a], env=env, capture_output=True, text=True, check=True).stdout.strip()
    run("org", "create", "acme")
    dsn = run("project", "create", "--org", "acme", "web")
    log = open(os.path.join(data, "processes.log"), "ab")
    procs = [subprocess.Popen([BIN, "web"], env=dict(env, FAULTLINE_BIND=f"127.0.0.1:{p}"), stdout=log, stderr=log)
             for p in web_ports]
    procs += [subprocess.Popen([BIN, "worker"], env=dict(env, FAULTLINE_METRICS_BIND=f"127.0.0.1:{p}"),
                               stdout=log, stderr=log) for p in worker_ports]
    try:
        urls = [f"http://127.0.0.1:{p}" for p in web_ports]
        worker_urls = [f"http://127.0.0.1:{p}" for p in worker_ports]
        deadline = time.time() + 30
        for url in urls + worker_urls:
            while True:
                try:
                    with urllib.request.urlopen(url + ("/readyz" if url in urls else "/healthz"), timeout=1):
                        break
                except OSError:
                    assert time.time() < deadline, f"{url} did not become ready"
                    time.sleep(0.2)
        send_all(urls, dsn, events)
        wait_count(lambda: int(psql("SELECT COUNT(*) FROM events", name)), len(events))
        time.sleep(0.5)
        rows = [line.split("|") for line in psql("SELECT title, times_seen, users_seen FROM issues", name).splitlines()]
        scaled = summary(rows)
        assert scaled == expected
        assert int(psql("SELECT COUNT(*) FROM events", name)) == len(events)
        # Each worker counts what it stored; together, every event once.
        per_worker = [metric(u, "faultline_events_stored_total") for u in worker_urls]
        assert sum(per_worker) == len(events), per_worker
        print(f"scaled test on postgres+redis: {len(events)} events, {len(scaled)} issues, same as all-in-one; "
              f"two webs, workers stored {per_worker}")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        log.close()
