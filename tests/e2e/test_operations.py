"""Operations: Faultline's own traces reach an OTLP collector with one trace id from the
ingest request through the job, `/metrics` counts what happened, logs are JSON lines on
request, SIGTERM loses nothing acknowledged, `faultline backup` copies a live database,
an older binary refuses a newer schema, and docker-compose.yml and its nginx site
validate."""

import http.server
import json
import os
import re
import shutil
import signal
import sys
import sqlite3
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from prometheus_client.openmetrics import parser as openmetrics_parser
from prometheus_client import parser as prometheus_parser

from conftest import ROOT, WORK, Server, free_port
from test_crash import assert_stored_exactly_once, sender


# --- a small OTLP/HTTP receiver -------------------------------------------------------


class OtlpReceiver:
    """Accepts `POST /v1/traces` (OTLP/HTTP, protobuf) and keeps every span it decodes."""

    def __init__(self):
        self.spans = []
        self.requests = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                ok = self.path == "/v1/traces" and self.headers.get("Content-Type") == "application/x-protobuf"
                if ok:
                    req = trace_service_pb2.ExportTraceServiceRequest()
                    req.ParseFromString(body)
                    with receiver.lock:
                        receiver.requests += 1
                        for rs in req.resource_spans:
                            resource = {a.key: a.value.string_value for a in rs.resource.attributes}
                            for ss in rs.scope_spans:
                                for s in ss.spans:
                                    receiver.spans.append({
                                        "name": s.name,
                                        "trace_id": s.trace_id.hex(),
                                        "span_id": s.span_id.hex(),
                                        "parent": s.parent_span_id.hex(),
                                        "kind": s.kind,
                                        "attrs": {a.key: _any(a.value) for a in s.attributes},
                                        "links": [(l.trace_id.hex(), l.span_id.hex()) for l in s.links],
                                        "service": resource.get("service.name"),
                                    })
                out = trace_service_pb2.ExportTraceServiceResponse().SerializeToString() if ok else b""
                self.send_response(200 if ok else 404)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, predicate, timeout=20):
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self.lock:
                found = [s for s in self.spans if predicate(s)]
            if found:
                return found
            time.sleep(0.1)
        with self.lock:
            names = sorted({(s["name"], s["attrs"].get("faultline.event_id")) for s in self.spans}, key=str)
        raise AssertionError(f"no matching span within {timeout} s; received: {names}")

    def close(self):
        self.server.shutdown()


def _any(v):
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


def new_server(prefix, env=None, platform="python"):
    srv = Server(tempfile.mkdtemp(prefix=prefix), env)
    srv.cli("org", "create", "acme")
    srv.dsn = srv.cli("project", "create", "--org", "acme", "obs", "--platform", platform)
    srv.key = srv.dsn.split("//")[1].split("@")[0]
    srv.project = srv.dsn.rsplit("/", 1)[1]
    return srv


SDK_SCRIPT = """
import sys, sentry_sdk
sentry_sdk.init(dsn=sys.argv[1], default_integrations=False)
kind = {"RuntimeError": RuntimeError, "KeyError": KeyError}[sys.argv[3]]
try:
    raise kind(sys.argv[2])
except Exception:
    print(sentry_sdk.capture_exception())
sentry_sdk.flush(timeout=10)
"""


def send_with_sdk(dsn, message, kind="RuntimeError"):
    """Sends one error with the real Python SDK (in its own process); returns its event id."""
    out = subprocess.run([sys.executable, "-c", SDK_SCRIPT, dsn, message, kind],
                         capture_output=True, text=True, timeout=60, check=True)
    return out.stdout.strip()


def post_envelope(srv, body, key=None, headers=None):
    """Posts raw bytes to the envelope endpoint; returns the status code."""
    h = {"X-Sentry-Auth": f"Sentry sentry_key={key or srv.key}, sentry_version=7"}
    h.update(headers or {})
    req = urllib.request.Request(f"{srv.url}/api/{srv.project}/envelope/", data=body, method="POST", headers=h)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def event_envelope(event_id, message="hello"):
    event = json.dumps({"event_id": event_id, "message": message, "level": "error", "platform": "python"})
    return f'{{"event_id":"{event_id}"}}\n{{"type":"event","length":{len(event)}}}\n{event}\n'.encode()


# --- traces ----------------------------------------------------------------------------


def test_request_and_job_spans_share_one_trace():
    receiver = OtlpReceiver()
    srv = new_server("faultline-otel-", {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
        "OTEL_SERVICE_NAME": "faultline-under-test",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    })
    srv.start()
    try:
        event_id = send_with_sdk(srv.dsn, "traced through the queue")
        srv.wait_for_event(event_id)

        job = receiver.wait_for(lambda s: s["name"] == "job.process"
                                and s["attrs"].get("faultline.event_id") == event_id)[0]
        trace = job["trace_id"]
        request = receiver.wait_for(lambda s: s["trace_id"] == trace and s["attrs"].get("http.route", "").endswith("/envelope"))[0]
        assert request["name"] == "POST /api/{project_id}/envelope"
        assert request["attrs"]["http.response.status_code"] == 200
        assert request["parent"] == "", "the ingest request starts the trace"
        assert request["service"] == "faultline-under-test"
        enqueue = receiver.wait_for(lambda s: s["trace_id"] == trace and s["name"] == "queue.enqueue")[0]
        assert enqueue["parent"] == request["span_id"]
        # The job continues the request's trace across the queue.
        assert job["parent"] == request["span_id"]
        store = receiver.wait_for(lambda s: s["name"] == "db.store_batch"
                                  and (s["trace_id"] == trace or (trace, job["span_id"]) in s["links"]))[0]
        assert store["attrs"]["db.system.name"] == "sqlite"

        # A caller's W3C trace context is continued, not replaced.
        caller_trace, caller_span = uuid.uuid4().hex, uuid.uuid4().hex[:16]
        second = uuid.uuid4().hex
        status = post_envelope(srv, event_envelope(second), headers={"traceparent": f"00-{caller_trace}-{caller_span}-01"})
        assert status == 200
        srv.wait_for_event(second)
        request = receiver.wait_for(lambda s: s["trace_id"] == caller_trace and s["name"].startswith("POST"))[0]
        assert request["parent"] == caller_span
        receiver.wait_for(lambda s: s["trace_id"] == caller_trace and s["name"] == "job.process")

        # Garbage trace context is ignored: the request still gets its own trace.
        third = uuid.uuid4().hex
        assert post_envelope(srv, event_envelope(third), headers={"traceparent": "00-zz-not-a-trace"}) == 200
        srv.wait_for_event(third)
        receiver.wait_for(lambda s: s["name"] == "job.process" and s["attrs"].get("faultline.event_id") == third)
    finally:
        srv.stop()
        receiver.close()


def test_no_spans_leave_without_an_endpoint_and_bad_otel_settings_stop_the_start():
    srv = new_server("faultline-nootel-")
    srv.env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    bad = dict(srv.env, OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:4318", OTEL_TRACES_SAMPLER_ARG="lots")
    from conftest import BIN
    out = subprocess.run([BIN, "serve"], env=bad, capture_output=True, text=True, timeout=30)
    assert out.returncode != 0
    assert "OTEL_TRACES_SAMPLER_ARG" in out.stderr and "\n" not in out.stderr.strip()
    bad = dict(srv.env, OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:4317", OTEL_EXPORTER_OTLP_PROTOCOL="grpc")
    out = subprocess.run([BIN, "serve"], env=bad, capture_output=True, text=True, timeout=30)
    assert out.returncode != 0 and "http/protobuf" in out.stderr


def test_an_unreachable_collector_does_not_hurt_ingest():
    port = free_port()  # nothing listens here
    srv = new_server("faultline-otel-down-", {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
        "OTEL_BSP_SCHEDULE_DELAY": "50",
    })
    srv.start()
    try:
        ids = [send_with_sdk(srv.dsn, f"collector down {i}") for i in range(3)]
        for event_id in ids:
            srv.wait_for_event(event_id)
    finally:
        srv.stop()


# --- metrics ---------------------------------------------------------------------------


def scrape(srv, token=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    req = urllib.request.Request(srv.url + "/metrics", headers=headers)
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.headers["Content-Type"].startswith("application/openmetrics-text")
        text = r.read().decode()
    # Both parsers Prometheus tooling uses must accept it.
    list(prometheus_parser.text_string_to_metric_families(text))
    samples = {}
    for family in openmetrics_parser.text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def wait_metric(srv, token, name, at_least, timeout=30, **labels):
    deadline = time.time() + timeout
    while True:
        samples = scrape(srv, token)
        if value(samples, name, **labels) >= at_least or time.time() > deadline:
            return samples
        time.sleep(0.2)


def test_metrics_count_what_happened():
    token = "s3cret-metrics-token"
    srv = new_server("faultline-metrics-", {"FAULTLINE_METRICS_TOKEN": token})
    srv.start()
    try:
        for bad in (None, "wrong-token"):
            headers = {"Authorization": f"Bearer {bad}"} if bad else {}
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(urllib.request.Request(srv.url + "/metrics", headers=headers), timeout=5)
            assert err.value.code == 401
            assert "faultline_" not in err.value.read().decode()

        before = scrape(srv, token)
        p = srv.project
        # Three events in two issues, with the real SDK.
        ids = [send_with_sdk(srv.dsn, "first kind"), send_with_sdk(srv.dsn, "first kind"),
               send_with_sdk(srv.dsn, "second kind", kind="KeyError")]
        # Refusals: unknown key, invalid envelope, oversize item.
        assert post_envelope(srv, event_envelope(uuid.uuid4().hex), key="0" * 32) == 403
        # The key (here in X-Sentry-Auth) is checked before the body is read, so both
        # invalid envelopes count for the project.
        assert post_envelope(srv, b"this is not an envelope") == 400
        assert post_envelope(srv, b'{}\n{"type":"event"}\nnot json\n') == 400
        huge = json.dumps({"message": "x" * (1024 * 1024 + 10)})
        assert post_envelope(srv, f'{{}}\n{{"type":"event","length":{len(huge)}}}\n{huge}\n'.encode()) == 413
        for event_id in ids:
            srv.wait_for_event(event_id)

        after = wait_metric(srv, token, "faultline_events_stored_total",
                            value(before, "faultline_events_stored_total") + 3)

        def delta(name, **labels):
            return value(after, name, **labels) - value(before, name, **labels)

        assert delta("faultline_ingest_accepted_events_total", project=p) == 3
        assert delta("faultline_ingest_rejected_requests_total", reason="unknown_key", project="") == 1
        assert delta("faultline_ingest_rejected_requests_total", reason="invalid", project="") == 0
        assert delta("faultline_ingest_rejected_requests_total", reason="invalid", project=p) == 2
        assert delta("faultline_ingest_rejected_requests_total", reason="too_large", project=p) == 1
        assert delta("faultline_events_stored_total") == 3
        assert delta("faultline_issues_created_total") == 2
        assert delta("faultline_event_processing_seconds_count") == 3
        assert delta("faultline_ingest_received_bytes_total") > 1024 * 1024
        assert value(after, "faultline_db_pool_max_connections") > 0
        assert value(after, "faultline_db_pool_connections", state="idle") + value(after, "faultline_db_pool_connections", state="in_use") >= 1
        assert ("faultline_queue_depth", ()) in after
        assert ("faultline_queue_oldest_job_age_seconds", ()) in after
        assert ("faultline_emails_total", (("outcome", "failed"),)) in after
        assert ("faultline_symbolication_frames_total", (("outcome", "hit"),)) in after

        # Sending the same event again is accepted but not stored twice.
        assert post_envelope(srv, event_envelope(ids[0].replace("-", ""))) == 200
        again = wait_metric(srv, token, "faultline_events_duplicate_total",
                            value(after, "faultline_events_duplicate_total") + 1)
        assert value(again, "faultline_events_stored_total") == value(after, "faultline_events_stored_total")
    finally:
        srv.stop()


def test_metrics_are_open_without_a_token_and_the_dashboard_uses_them():
    srv = new_server("faultline-metrics-open-")
    srv.start()
    try:
        # Labelled families appear once something was counted in them.
        event_id = uuid.uuid4().hex
        assert post_envelope(srv, event_envelope(event_id)) == 200
        assert post_envelope(srv, b"garbage") == 400
        srv.wait_for_event(event_id)
        scrape(srv)  # parses
        with urllib.request.urlopen(srv.url + "/metrics", timeout=10) as r:
            text = r.read().decode()
    finally:
        srv.stop()
    # Every series name a family can have, from its TYPE line (labelled families have no
    # samples until something is counted).
    names = set()
    suffixes = {"counter": ["_total"], "gauge": [""], "histogram": ["_bucket", "_sum", "_count"]}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            names.update(name + suffix for suffix in suffixes[kind])
    assert "faultline_ingest_accepted_events_total" in names
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "faultline.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    assert len(exprs) >= 10, "the dashboard lost its queries"
    for expr in exprs:
        used = re.findall(r"faultline_[a-z_]+", expr)
        assert used, expr
        for metric in used:
            assert metric in names, f"the dashboard uses {metric}, which /metrics does not export"


@pytest.mark.parametrize("queue", ["sqlite", "redis"])
def test_queue_depth_and_oldest_job_age_while_no_worker_runs(queue):
    """`faultline web` alone queues events; /metrics shows how many wait and for how long."""
    env = {}
    if queue == "redis":
        db = 9  # a Redis database index used only by this test
        subprocess.run(["redis-cli", "-n", str(db), "FLUSHDB"], check=True, capture_output=True)
        env["REDIS_URL"] = f"redis://127.0.0.1:6379/{db}"
    srv = new_server(f"faultline-queue-{queue}-", env)
    from conftest import BIN
    srv.proc = subprocess.Popen([BIN, "web"], env=srv.env, stdout=srv.log, stderr=srv.log)
    try:
        deadline = time.time() + 30
        while True:
            try:
                with urllib.request.urlopen(srv.url + "/healthz", timeout=1):
                    break
            except OSError:
                assert time.time() < deadline, "web did not start"
                time.sleep(0.1)
        assert scrape(srv).get(("faultline_queue_oldest_job_age_seconds", ()), 0.0) == 0.0
        for _ in range(3):
            assert post_envelope(srv, event_envelope(uuid.uuid4().hex)) == 200
        time.sleep(3.5)  # the gauges refresh every second
        samples = scrape(srv)
        assert value(samples, "faultline_queue_depth") == 3
        age = value(samples, "faultline_queue_oldest_job_age_seconds")
        assert 2.0 <= age <= 30.0, age
    finally:
        srv.stop()
        if queue == "redis":
            subprocess.run(["redis-cli", "-n", "9", "FLUSHDB"], capture_output=True)


def test_symbolication_hits_and_misses_are_counted(tmp_path):
    """One frame whose file has a source map (uploaded with the real sentry-cli 2.x) is a
    hit, one whose file has none is a miss."""
    from sourcemaps import CLI2, api_token, cli_env, run_cli
    srv = new_server("faultline-metrics-symbolicate-", platform="javascript")
    srv.start()
    try:
        dist = tmp_path / "dist"
        dist.mkdir()
        (dist / "app.min.js").write_text("function a(){throw new Error('boom')}\n//# sourceMappingURL=app.min.js.map\n")
        (dist / "app.min.js.map").write_text(json.dumps({
            "version": 3, "file": "app.min.js", "sources": ["src/boom.js"], "names": ["explode"],
            "sourcesContent": ["function explode() {\n  throw new Error('boom');\n}\n"],
            "mappings": "AAAAA",
        }))
        release = f"metrics-{uuid.uuid4().hex[:8]}"
        env = cli_env(srv, api_token(srv), project="obs")
        run_cli(CLI2, ["releases", "new", release], env)
        run_cli(CLI2, ["releases", "files", release, "upload-sourcemaps", str(dist), "--url-prefix", "~/static"], env)

        before = scrape(srv)
        event_id = uuid.uuid4().hex
        frames = [
            {"abs_path": "https://shop.example.com/static/app.min.js", "filename": "app.min.js", "function": "a", "lineno": 1, "colno": 1},
            {"abs_path": "https://shop.example.com/static/unmapped.min.js", "filename": "unmapped.min.js", "function": "b", "lineno": 1, "colno": 5},
        ]
        event = json.dumps({"event_id": event_id, "platform": "javascript", "release": release,
                            "exception": {"values": [{"type": "Error", "value": "boom", "stacktrace": {"frames": frames}}]}})
        body = f'{{"event_id":"{event_id}"}}\n{{"type":"event","length":{len(event)}}}\n{event}\n'.encode()
        assert post_envelope(srv, body) == 200
        stored = srv.wait_for_event(event_id)
        statuses = [f.get("data", {}).get("symbolicator_status")
                    for f in stored["payload"]["exception"]["values"][0]["stacktrace"]["frames"]]
        assert statuses[0] == "symbolicated", statuses
        after = wait_metric(srv, None, "faultline_events_stored_total", value(before, "faultline_events_stored_total") + 1)
        hit = ("faultline_symbolication_frames_total", "hit")
        assert value(after, hit[0], outcome="hit") - value(before, hit[0], outcome="hit") == 1
        assert value(after, hit[0], outcome="miss") - value(before, hit[0], outcome="miss") == 1
    finally:
        srv.stop()


def test_emails_sent_and_failed_are_counted_and_traced():
    """Alert emails through a real SMTP server (aiosmtpd): refused while it is down, then
    delivered; /metrics counts both outcomes and every attempt is an `smtp.send` span."""
    from test_email_alerts import Smtp, send_errors, start_server, wait_log
    receiver = OtlpReceiver()
    smtp = Smtp()  # not started yet: its port refuses connections
    srv = start_server(smtp, OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url, OTEL_BSP_SCHEDULE_DELAY=100)
    try:
        send_errors(srv)
        wait_log(srv, lambda rows: rows and rows[0]["status"] == "failed" and rows[0]["attempts"] >= 2)
        failed = value(scrape(srv), "faultline_emails_total", outcome="failed")
        assert failed >= 2
        smtp.start()
        wait_log(srv, lambda rows: rows and rows[0]["status"] == "sent", timeout=30)
        samples = scrape(srv)
        assert value(samples, "faultline_emails_total", outcome="sent") == 1
        assert value(samples, "faultline_emails_total", outcome="failed") >= failed
        deadline = time.time() + 10
        while True:
            spans = receiver.wait_for(lambda s: s["name"] == "smtp.send")
            if len(spans) >= failed + 1 or time.time() > deadline:
                break
            time.sleep(0.2)
        assert len(spans) >= failed + 1, f"{len(spans)} smtp.send spans for {failed + 1} attempts"
    finally:
        srv.stop()
        smtp.stop()
        receiver.close()


# --- logs ------------------------------------------------------------------------------


def test_json_logs_are_one_object_per_line_with_trace_ids():
    receiver = OtlpReceiver()
    srv = new_server("faultline-jsonlog-", {
        "FAULTLINE_LOG_FORMAT": "json", "FAULTLINE_LOG": "info,faultline_app::telemetry=debug",
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_BSP_SCHEDULE_DELAY": "100",
    })
    srv.start()
    try:
        event_id = uuid.uuid4().hex
        assert post_envelope(srv, event_envelope(event_id)) == 200
        srv.wait_for_event(event_id)
        job = receiver.wait_for(lambda s: s["name"] == "job.process" and s["attrs"].get("faultline.event_id") == event_id)[0]
    finally:
        srv.stop()
        receiver.close()
    lines = [l for l in (srv.data_dir / "server.log").read_text().splitlines() if l.strip()]
    records = [json.loads(l) for l in lines]  # every line is one JSON object
    assert all("level" in r and "timestamp" in r and "message" in r for r in records)
    assert any(r["message"] == "faultline is serving" for r in records)
    access = [r for r in records if r["message"] == "request finished" and r.get("span", {}).get("trace_id") == job["trace_id"]]
    assert access, f"no access log line carries the trace id {job['trace_id']}: {records[-5:]}"
    assert access[0]["status"] == 200


def test_bad_log_format_is_refused():
    srv = new_server("faultline-badlog-")
    from conftest import BIN
    out = subprocess.run([BIN, "serve"], env=dict(srv.env, FAULTLINE_LOG_FORMAT="yaml"), capture_output=True, text=True, timeout=30)
    assert out.returncode != 0 and "FAULTLINE_LOG_FORMAT" in out.stderr


# --- graceful shutdown -----------------------------------------------------------------


def test_sigterm_under_load_loses_no_acknowledged_event():
    srv = new_server("faultline-sigterm-")
    srv.start()
    acked, stop, lock = [], threading.Event(), threading.Lock()
    threads = [threading.Thread(target=sender, args=(srv, acked, stop, lock)) for _ in range(4)]
    for t in threads:
        t.start()
    stop_seconds = []
    try:
        for _ in range(3):
            time.sleep(1.5)
            started = time.time()
            srv.proc.send_signal(signal.SIGTERM)
            code = srv.proc.wait(timeout=60)
            stop_seconds.append(time.time() - started)
            assert code == 0, f"faultline exited with {code} on SIGTERM: {srv.tail_log()}"
            srv.start()
        time.sleep(1.0)
    finally:
        stop.set()
        for t in threads:
            t.join()
    try:
        stored = assert_stored_exactly_once(srv, acked)
        print(f"sigterm test: {len(acked)} acknowledged, {len(stored)} stored, 3 SIGTERMs, "
              f"stops took {', '.join(f'{s:.1f}' for s in stop_seconds)} s")
    finally:
        srv.stop()


def test_sigterm_of_a_busy_worker_releases_its_jobs_at_once():
    """A `faultline worker` stopped with SIGTERM in the middle of a backlog leaves no job
    locked behind (they go back to the queue at once, not after the heartbeat timeout);
    a new worker then stores every event exactly once."""
    from conftest import BIN
    srv = new_server("faultline-sigterm-worker-")
    srv.proc = subprocess.Popen([BIN, "web"], env=srv.env, stdout=srv.log, stderr=srv.log)
    deadline = time.time() + 30
    while True:
        try:
            with urllib.request.urlopen(srv.url + "/healthz", timeout=1):
                break
        except OSError:
            assert time.time() < deadline, "web did not start"
            time.sleep(0.1)
    acked, stop, lock = [], threading.Event(), threading.Lock()
    threads = [threading.Thread(target=sender, args=(srv, acked, stop, lock)) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(3)  # a backlog builds up: no worker runs yet
    worker = subprocess.Popen([BIN, "worker"], env=srv.env, stdout=srv.log, stderr=srv.log)
    try:
        time.sleep(1.5)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == 0
        with sqlite3.connect(srv.data_dir / "queue.db") as q:
            locked = q.execute("SELECT COUNT(*) FROM queue_jobs WHERE lock_by IS NOT NULL").fetchone()[0]
        assert locked == 0, f"{locked} jobs stayed locked by the stopped worker"
        worker = subprocess.Popen([BIN, "worker"], env=srv.env, stdout=srv.log, stderr=srv.log)
        time.sleep(1.0)
    finally:
        stop.set()
        for t in threads:
            t.join()
    try:
        stored = assert_stored_exactly_once(srv, acked, timeout=60)
        print(f"worker sigterm test: {len(acked)} acknowledged, {len(stored)} stored")
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        srv.stop()


# --- backup ----------------------------------------------------------------------------


def test_backup_of_a_live_server_opens_with_its_rows():
    srv = new_server("faultline-backup-")
    srv.start()
    acked, stop, lock = [], threading.Event(), threading.Lock()
    threads = [threading.Thread(target=sender, args=(srv, acked, stop, lock)) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        time.sleep(1.5)
        target = srv.data_dir / "backups" / "copy.db"
        with pytest.raises(AssertionError) as err:
            srv.cli("backup", str(target))
        assert "does not exist" in str(err.value)
        target.parent.mkdir()
        with lock:
            acked_before = list(acked)
        srv.wait_for_event(acked_before[-1])
        out = srv.cli("backup", "--with-queue", str(target))  # while events keep arriving
        assert "backed up" in out
        with pytest.raises(AssertionError) as err:
            srv.cli("backup", str(target))
        assert "already exists" in str(err.value)
    finally:
        stop.set()
        for t in threads:
            t.join()
    try:
        copy = sqlite3.connect(target)
        assert copy.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        stored = {r[0] for r in copy.execute("SELECT event_id FROM events")}
        assert set(acked_before) <= stored, "events stored before the backup are in it"
        assert copy.execute("SELECT COUNT(*) FROM issues").fetchone()[0] >= 1
        assert copy.execute("SELECT slug FROM projects").fetchone()[0] == "obs"
        queue_copy = sqlite3.connect(str(target) + ".queue.db")
        queue_copy.execute("SELECT COUNT(*) FROM queue_jobs").fetchone()
        # The copy is a working Faultline database.
        restored = Server(tempfile.mkdtemp(prefix="faultline-restored-"),
                          {"DATABASE_URL": f"sqlite://{target}"})
        assert restored.cli("project", "create", "--org", "acme", "second").startswith("http://")
        print(f"backup test: {len(stored)} events in a copy taken under load")
    finally:
        srv.stop()


def test_backup_on_postgres_points_to_pg_dump():
    srv = Server(tempfile.mkdtemp(prefix="faultline-backup-pg-"),
                 {"DATABASE_URL": "postgres://postgres@127.0.0.1:5432/test"})
    from conftest import BIN
    out = subprocess.run([BIN, "backup", "/tmp/never-written.db"], env=srv.env, capture_output=True, text=True, timeout=30)
    assert out.returncode != 0 and "pg_dump" in out.stderr
    assert not os.path.exists("/tmp/never-written.db")


# --- docker compose --------------------------------------------------------------------


def compose_command():
    """`docker compose` (the plugin) or `docker-compose` (v1), whichever is installed."""
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def test_docker_compose_file_validates():
    cmd = compose_command()
    if cmd is None:
        pytest.skip("neither `docker compose` (docker client with the compose plugin) nor "
                    "`docker-compose` is installed: the compose file cannot be validated here")
    compose = [*cmd, "-f", str(ROOT / "docker-compose.yml"), "config"]
    env = {k: v for k, v in os.environ.items() if k != "FAULTLINE_SECRET_KEY"}
    # No default secret key: one everybody knows would let anyone forge sessions.
    refused = subprocess.run(compose, capture_output=True, text=True, cwd=ROOT, timeout=60, env=env)
    assert refused.returncode != 0 and "FAULTLINE_SECRET_KEY" in refused.stderr, refused.stderr
    out = subprocess.run(compose, capture_output=True, text=True, cwd=ROOT, timeout=60,
                         env={**env, "FAULTLINE_SECRET_KEY": "0123abcd" * 8})
    assert out.returncode == 0, out.stderr
    for service in ("postgres", "redis", "migrate", "web", "worker", "lb", "jaeger"):
        assert f"\n  {service}:" in out.stdout, f"service {service} missing"
    # What the README promises of it.
    assert "FAULTLINE_SECRET_KEY: 0123abcd" in out.stdout
    assert "OTEL_EXPORTER_OTLP_ENDPOINT: http://jaeger:4318" in out.stdout
    assert "FAULTLINE_METRICS_BIND: 0.0.0.0:9000" in out.stdout
    assert "COLLECTOR_OTLP_ENABLED" in out.stdout
    assert "condition: service_completed_successfully" in out.stdout
    assert "appendonly" in out.stdout
    # The commands and probes are the binary's.
    for command in ("migrate", "web", "worker"):
        assert f"- {command}\n" in out.stdout, f"command {command} missing"
    assert "http://127.0.0.1:8000/readyz" in out.stdout and "http://127.0.0.1:9000/healthz" in out.stdout
    assert "deploy/nginx/faultline.conf:/etc/nginx/conf.d/default.conf" in out.stdout


def test_nginx_example_is_a_valid_nginx_site(tmp_path):
    """The load balancer of the compose file and the README (nginx -t, when nginx is here)."""
    unpacked = WORK / "nginx" / "usr" / "sbin" / "nginx"  # by setup.sh
    nginx = shutil.which("nginx") or next(
        (str(p) for p in (Path("/usr/sbin/nginx"), unpacked) if p.exists()), None)
    assert nginx, "nginx is neither installed nor unpacked by tests/e2e/setup.sh"
    site = (ROOT / "deploy" / "nginx" / "faultline.conf").read_text()
    # `web` resolves only inside compose; the rest is checked as it is.
    assert "server web:8000" in site
    (tmp_path / "site.conf").write_text(site.replace("server web:8000", "server 127.0.0.1:8000"))
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid; error_log {tmp_path}/error.log; events {{}}\n"
        # Logs and temporary files under tmp_path: Debian's defaults are /var/{log,lib}/nginx.
        f"http {{ access_log {tmp_path}/access.log; client_body_temp_path {tmp_path}/body; "
        f"proxy_temp_path {tmp_path}/proxy; fastcgi_temp_path {tmp_path}/fastcgi; "
        f"uwsgi_temp_path {tmp_path}/uwsgi; scgi_temp_path {tmp_path}/scgi; "
        f"include {tmp_path}/site.conf; }}\n")
    out = subprocess.run([nginx, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr


# --- upgrades --------------------------------------------------------------------------


def test_an_older_binary_refuses_a_database_migrated_by_a_newer_one():
    srv = new_server("faultline-downgrade-")
    with sqlite3.connect(srv.data_dir / "faultline.db") as db:
        db.execute("INSERT INTO seaql_migrations VALUES ('m20991231_000001_from_the_future', 1)")
    from conftest import BIN
    out = subprocess.run([BIN, "serve"], env=srv.env, capture_output=True, text=True, timeout=30)
    assert out.returncode != 0
    assert "m20991231_000001_from_the_future" in out.stderr and "missing" in out.stderr
