"""Cron monitors end to end: sentry-python's `monitor` decorator and `capture_checkin`,
`sentry-cli monitors run` (2.x from PyPI, 3.x from npm) and `monitors list`, curl on the
HTTP check-in endpoint, bad check-ins dropped one by one, and the clock: a monitor whose
job stops running is reported missed and a run that never ends times out, both mailed
through a real SMTP server. The clock works in whole minutes, as Sentry's does, so the
last test waits up to about two and a half minutes."""

import json
import subprocess
import sys
import textwrap
import time
import urllib.parse

import pytest

from conftest import WORK
from sourcemaps import CLI2, CLI3, api_token, cli_env, run_cli
from test_email_alerts import Smtp, start_server


@pytest.fixture(scope="module")
def smtp():
    s = Smtp().start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def srv(smtp):
    s = start_server(smtp)
    yield s
    s.stop()


def rows(server, sql, *args):
    with server.db() as conn:
        return [dict(r) for r in conn.execute(sql, args).fetchall()]


def check_ins(server, slug):
    return rows(
        server,
        "SELECT c.*, e.environment FROM monitor_checkins c JOIN monitors m ON m.id = c.monitor_id "
        "JOIN monitor_environments e ON e.id = c.monitor_environment_id WHERE m.slug = ? ORDER BY c.id",
        slug,
    )


def wait_until(predicate, timeout=30, what="condition", server=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}; log: {server.tail_log() if server else ''}")


def run_python(code, *args):
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


SDK_SCRIPT = """
    import sys, time
    import sentry_sdk
    from sentry_sdk.crons import capture_checkin, monitor
    sentry_sdk.init(dsn=sys.argv[1], environment="production", release="jobs@1.0")
    cfg = {"schedule": {"type": "crontab", "value": "0 3 * * *"}, "checkin_margin": 5,
           "max_runtime": 30, "timezone": "Europe/Vienna", "failure_issue_threshold": 2}

    @monitor(monitor_slug="nightly-report", monitor_config=cfg)
    def report():
        time.sleep(0.3)

    @monitor(monitor_slug="failing-job", monitor_config=cfg)
    def failing():
        raise RuntimeError("disk full")

    report()
    try:
        failing()
    except RuntimeError:
        pass
    cid = capture_checkin(monitor_slug="manual", status="in_progress",
                          monitor_config={"schedule": {"type": "interval", "value": 1, "unit": "day"}})
    capture_checkin(monitor_slug="manual", check_in_id=cid, status="ok", duration=1.5)
    # Bad input: each dropped alone.
    capture_checkin(monitor_slug="broken", status="ok",
                    monitor_config={"schedule": {"type": "crontab", "value": "61 * * * *"}})
    capture_checkin(monitor_slug="nobody-made-me", status="ok")
    capture_checkin(monitor_slug="last-one", status="ok",
                    monitor_config={"schedule": {"type": "crontab", "value": "@hourly"}})
    sentry_sdk.flush(10)
"""


def test_python_sdk_decorator_and_capture_checkin(srv):
    run_python(SDK_SCRIPT, srv.dsn)
    wait_until(lambda: check_ins(srv, "last-one"), what="the last check-in", server=srv)
    report = check_ins(srv, "nightly-report")
    assert [c["status"] for c in report] == ["ok"], "in_progress then ok: one row"
    assert report[0]["duration_ms"] >= 300
    assert report[0]["environment"] == "production"
    assert [c["status"] for c in check_ins(srv, "failing-job")] == ["error"]
    manual = check_ins(srv, "manual")
    assert [(c["status"], c["duration_ms"]) for c in manual] == [("ok", 1500)]
    slugs = {r["slug"] for r in rows(srv, "SELECT slug FROM monitors")}
    assert "broken" not in slugs and "nobody-made-me" not in slugs
    monitor = rows(srv, "SELECT * FROM monitors WHERE slug = 'nightly-report'")[0]
    assert (monitor["schedule"], monitor["timezone"], monitor["checkin_margin"]) == ("0 3 * * *", "Europe/Vienna", 5)


@pytest.mark.parametrize("cli,slug", [(CLI2, "cli2-job"), (CLI3, "cli3-job")], ids=["sentry-cli-2", "sentry-cli-3"])
def test_sentry_cli_monitors_run_and_list(srv, cli, slug):
    if not cli.exists():
        pytest.skip(f"{cli} is not installed (tests/e2e/setup.sh)")
    env = cli_env(srv, api_token(srv))
    env["SENTRY_DSN"] = srv.dsn
    code, text = run_cli(cli, ["monitors", "run", "--schedule", "*/5 * * * *", "--check-in-margin", "2",
                               "--max-runtime", "3", "-e", "batch", slug, "--", "sh", "-c", "sleep 0.2"], env)
    assert code == 0, text
    done = wait_until(lambda: [c for c in check_ins(srv, slug) if c["status"] == "ok"], what="the ok check-in", server=srv)
    assert len(check_ins(srv, slug)) == 1
    assert done[0]["environment"] == "batch"
    assert done[0]["duration_ms"] >= 200
    code, text = run_cli(cli, ["monitors", "run", slug, "--", "sh", "-c", "exit 3"], env, check=False)
    assert code == 3, text
    wait_until(lambda: [c for c in check_ins(srv, slug) if c["status"] == "error"], what="the error check-in", server=srv)
    code, text = run_cli(cli, ["monitors", "list", "--org", "acme"], env)
    assert slug in text, text


def test_curl_on_the_http_endpoint(srv):
    dsn = urllib.parse.urlsplit(srv.dsn)
    key, project = dsn.username, dsn.path.strip("/")
    base = f"{srv.url}/api/{project}/cron"
    body = json.dumps({"status": "in_progress", "check_in_id": "6f3c2b1a0e9d4c8b7a6f5e4d3c2b1a09",
                       "monitor_config": {"schedule": {"type": "interval", "value": 6, "unit": "hour"}}})
    out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST",
                          "-H", "Content-Type: application/json", "-d", body, f"{base}/curl-job/{key}/"],
                         capture_output=True, text=True, timeout=30)
    assert out.stdout == "202", out.stdout + out.stderr
    out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                          f"{base}/curl-job/{key}/?status=ok&check_in_id=6f3c2b1a0e9d4c8b7a6f5e4d3c2b1a09&duration=4"],
                         capture_output=True, text=True, timeout=30)
    assert out.stdout == "202", out.stdout
    wait_until(lambda: [c for c in check_ins(srv, "curl-job") if c["status"] == "ok"], what="curl's ok", server=srv)
    assert [(c["status"], c["duration_ms"]) for c in check_ins(srv, "curl-job")] == [("ok", 4000)]
    out = subprocess.run(["curl", "-s", "-w", "\n%{http_code}", f"{base}/curl-job/{key}/?status=finished"],
                         capture_output=True, text=True, timeout=30)
    body, code = out.stdout.rsplit("\n", 1)
    assert code == "400" and "unknown status" in body, out.stdout


def test_a_job_that_stops_is_missed_and_a_long_one_times_out_both_mailed(srv, smtp):
    run_python(
        """
        import sys
        import sentry_sdk
        from sentry_sdk.crons import capture_checkin
        sentry_sdk.init(dsn=sys.argv[1], environment="production")
        # Runs once, then never again: every minute it is expected.
        capture_checkin(monitor_slug="heartbeat", status="ok", monitor_config={
            "schedule": {"type": "crontab", "value": "* * * * *"}, "checkin_margin": 1,
            "failure_issue_threshold": 1})
        # Starts and never finishes: max_runtime 1 minute.
        capture_checkin(monitor_slug="long-job", status="in_progress", monitor_config={
            "schedule": {"type": "crontab", "value": "0 4 * * *"}, "max_runtime": 1,
            "failure_issue_threshold": 1})
        sentry_sdk.flush(10)
        """,
        srv.dsn,
    )
    wait_until(lambda: check_ins(srv, "long-job"), what="the opening check-in", server=srv)
    subjects = lambda: [m["msg"]["Subject"] for m in smtp.inbox.all()]
    wait_until(
        lambda: any("Monitor failure: heartbeat missed" in s for s in subjects())
        and any("Monitor failure: long-job timed out" in s for s in subjects()),
        timeout=200,
        what="both monitor failure emails",
        server=srv,
    )
    assert "missed" in [c["status"] for c in check_ins(srv, "heartbeat")]
    assert [c["status"] for c in check_ins(srv, "long-job")] == ["timeout"]
    issues = rows(srv, "SELECT title, status FROM issues WHERE title LIKE 'Monitor failure:%'")
    titles = {i["title"] for i in issues}
    assert {"Monitor failure: heartbeat missed", "Monitor failure: long-job timed out"} <= titles
