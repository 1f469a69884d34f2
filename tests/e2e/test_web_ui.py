"""The web UI in headless Chromium against a fresh `faultline serve`: first-run setup,
login, a project, an event from the real Python sentry-sdk found by search, its stack trace
and breadcrumbs, a Markdown comment with hostile HTML shown inert (with and without the
CSP), resolving it, and a regression reopening it. Screenshots of the issues list
and the issue page land in tests/.work/artifacts/."""

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from conftest import WORK, Server

HERE = Path(__file__).resolve().parent
ARTIFACTS = WORK / "artifacts"
EMAIL = "owner@example.com"
PASSWORD = "correct horse battery"



def send_error(dsn, release):
    # A file, not `-c`: the SDK reads source context and locals from it.
    out = subprocess.run([sys.executable, str(HERE / "web" / "send_error.py"), dsn, release],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1]


def browser(*args, setup_link=""):
    node = WORK / "node"
    out = subprocess.run(
        ["node", str(HERE / "web" / "flow.js"), *args],
        cwd=node, capture_output=True, text=True, timeout=180,
        env=dict(os.environ, NODE_PATH=str(node / "node_modules"), SETUP_LINK=setup_link),
    )
    assert out.returncode == 0, out.stderr + out.stdout
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture()
def fresh_server():
    srv = Server(tempfile.mkdtemp(prefix="faultline-web-"))
    srv.start()
    yield srv
    srv.stop()


def test_setup_login_triage_resolve_and_regression(fresh_server):
    srv = fresh_server
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    base = srv.url
    link = (srv.data_dir / "setup-token").read_text().strip()
    dsn = browser("setup", base, EMAIL, PASSWORD, str(ARTIFACTS), setup_link=link)["dsn"]
    assert dsn.endswith("/1")

    first = send_error(dsn, "shop@1.0.0")
    srv.wait_for_event(first)
    issue_url = browser("triage", base, EMAIL, PASSWORD, str(ARTIFACTS))["issueUrl"]
    with srv.db() as conn:
        assert conn.execute("SELECT status FROM issues").fetchone()["status"] == "resolved"
    assert (ARTIFACTS / "issues-list.png").stat().st_size > 10_000
    assert (ARTIFACTS / "issue-page.png").stat().st_size > 10_000

    # The same error again: a regression.
    again = send_error(dsn, "shop@1.0.1")
    srv.wait_for_event(again)
    deadline = time.time() + 20
    while time.time() < deadline:
        with srv.db() as conn:
            if conn.execute("SELECT status FROM issues").fetchone()["status"] == "unresolved":
                break
        time.sleep(0.1)
    browser("reopened", base, EMAIL, PASSWORD, str(ARTIFACTS), issue_url)

    # A second, different error; then merge the two in the list and unmerge them again.
    out = subprocess.run(
        [sys.executable, "-c",
         "import sys, sentry_sdk; sentry_sdk.init(dsn=sys.argv[1], release='shop@1.0.1');"
         "print(sentry_sdk.capture_message('payment provider timed out', level='error'));"
         "sentry_sdk.flush()", dsn],
        capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    srv.wait_for_event(out.stdout.strip().splitlines()[-1])
    result = browser("merge", base, EMAIL, PASSWORD, str(ARTIFACTS))
    assert len(result["split"]) == 2
    with srv.db() as conn:
        assert conn.execute("SELECT COUNT(*) AS n FROM issues").fetchone()["n"] == 2
        assert conn.execute("SELECT COUNT(*) AS n FROM events").fetchone()["n"] == 3
