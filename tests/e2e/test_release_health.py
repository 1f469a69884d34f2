"""Release health with the real sentry-sdk for Python: a WSGI app served for a few
requests (one raising) sends `sessions` aggregates; scripts with start_session() send one
`session` each (healthy, after a handled error, on an unhandled exception). The crash-free
rates the sessions Web API and the releases page show match what was sent. Bad session
items are dropped one by one, the rest of their envelope kept."""

import json
import re
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid


class Browser:
    """A logged-in user of the pages: cookies, CSRF tokens, no redirects followed."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    def __init__(self, base):
        import http.cookiejar

        self.base = base
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()), Browser.NoRedirect()
        )

    def request(self, method, path, fields=None):
        data = urllib.parse.urlencode(fields).encode() if fields is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method)
        try:
            with self.opener.open(req, timeout=10) as r:
                return r.status, r.read().decode(), r.headers.get("Location")
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(), e.headers.get("Location")

    def login(self, email, password):
        status, page, _ = self.request("GET", "/login")
        assert status == 200, status
        token = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
        status, _, _ = self.request("POST", "/login", {"csrf": token, "email": email, "password": password})
        assert status == 303, status

RELEASE = "health-e2e@1.0.0"

WSGI_APP = textwrap.dedent(
    """
    import sys, threading, urllib.request, urllib.error
    from wsgiref.simple_server import make_server, WSGIRequestHandler
    import sentry_sdk
    from sentry_sdk.integrations.wsgi import SentryWsgiMiddleware

    sentry_sdk.init(dsn=sys.argv[1], release=sys.argv[2], environment="production",
                    traces_sample_rate=0)

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/boom":
            raise RuntimeError("request failed")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args):
            pass

    httpd = make_server("127.0.0.1", 0, SentryWsgiMiddleware(app), handler_class=Quiet)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{httpd.server_port}"
    for path in ["/", "/a", "/b", "/boom"]:
        try:
            urllib.request.urlopen(base + path, timeout=10).read()
        except urllib.error.HTTPError:
            pass
    httpd.shutdown()
    sentry_sdk.flush(10)
    """
)

SCRIPT = textwrap.dedent(
    """
    import sys
    import sentry_sdk
    dsn, release, user, how = sys.argv[1:5]
    sentry_sdk.init(dsn=dsn, release=release, environment="production", traces_sample_rate=0)
    sentry_sdk.set_user({"id": user})
    sentry_sdk.start_session(session_mode="application")
    if how == "handled":
        try:
            {}["missing"]
        except KeyError:
            sentry_sdk.capture_exception()
    if how == "unhandled":
        sentry_sdk.flush(10)
        raise RuntimeError("the script died")
    sentry_sdk.end_session()
    sentry_sdk.flush(10)
    """
)


def run(*args):
    out = subprocess.run([sys.executable, "-c", *args], capture_output=True, text=True, timeout=60)
    return out


def api(server, token, query):
    req = urllib.request.Request(
        f"{server.url}/api/0/organizations/acme/sessions/?{query}",
        headers={"Authorization": f"Bearer {token}"},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def counted(server, release):
    with server.db() as conn:
        row = conn.execute(
            "SELECT COALESCE(SUM(healthy), 0), COALESCE(SUM(errored + unhandled), 0), "
            "COALESCE(SUM(crashed), 0), COALESCE(SUM(abnormal), 0) FROM session_counts WHERE release = ?",
            (release,),
        ).fetchone()
    return tuple(row)


def wait_for_counts(server, release, expected, timeout=30):
    deadline = time.time() + timeout
    got = None
    while time.time() < deadline:
        got = counted(server, release)
        if got == expected:
            return
        time.sleep(0.2)
    raise AssertionError(f"{release}: counted {got}, expected {expected}; log: {server.tail_log()}")


def test_python_sdk_sessions_become_crash_free_rates(server):
    # Request mode: 3 requests answered, 1 raising (crashed).
    out = run(WSGI_APP, server.dsn, RELEASE)
    assert out.returncode == 0, out.stderr
    wait_for_counts(server, RELEASE, (3, 0, 1, 0))
    # Application mode: one session per script.
    for user, how in [("u1", "healthy"), ("u2", "handled"), ("u3", "unhandled")]:
        out = run(SCRIPT, server.dsn, RELEASE, user, how)
        if how == "unhandled":
            assert out.returncode != 0 and "the script died" in out.stderr
        else:
            assert out.returncode == 0, out.stderr
    # healthy: 3 requests + u1; errored: u2; crashed: the raising request + u3.
    wait_for_counts(server, RELEASE, (4, 1, 2, 0))

    token = server.cli("token", "create", "--org", "acme")
    fields = "field=sum(session)&field=count_unique(user)&field=crash_free_rate(session)&field=crash_free_rate(user)"
    status, body = api(server, token, f"{fields}&groupBy=release&groupBy=environment&statsPeriod=24h&query=release:{RELEASE}")
    assert status == 200, body
    [group] = body["groups"]
    assert group["by"] == {"release": RELEASE, "environment": "production"}
    totals = group["totals"]
    assert totals["sum(session)"] == 7
    assert totals["count_unique(user)"] == 3
    assert abs(totals["crash_free_rate(session)"] - 5 / 7) < 1e-9
    assert abs(totals["crash_free_rate(user)"] - 2 / 3) < 1e-9
    assert len(group["series"]["sum(session)"]) == len(body["intervals"])
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:00:00Z", t) for t in body["intervals"])

    status, body = api(server, token, f"field=sum(session)&groupBy=session.status&statsPeriod=24h&query=release:{RELEASE}")
    assert status == 200, body
    by_status = {g["by"]["session.status"]: g["totals"]["sum(session)"] for g in body["groups"]}
    assert by_status == {"healthy": 4, "errored": 1, "crashed": 2, "abnormal": 0}

    # The same numbers on the releases page and the release page.
    b = Browser(server.url)
    b.login("admin@example.com", "correct horse battery")
    status, page, _ = b.request("GET", "/organizations/acme/projects/web/releases")
    assert status == 200
    row = page[page.index(RELEASE, page.index("Release health")):]
    row = row[: row.index("</tr>")]
    assert "71.42%" in row and "66.66%" in row, row
    status, page, _ = b.request("GET", "/organizations/acme/release?" + urllib.parse.urlencode({"version": RELEASE, "project": "web"}))
    assert status == 200
    assert "71.42%" in page and "class=\"s-crashed\"" in page


def envelope(items):
    out = b"{}\n"
    for ty, payload in items:
        data = payload.encode()
        out += json.dumps({"type": ty, "length": len(data)}).encode() + b"\n" + data + b"\n"
    return out


def test_bad_session_items_are_dropped_alone(server):
    release = f"bad-input@{uuid.uuid4().hex[:8]}"
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    good = {"sid": uuid.uuid4().hex, "init": True, "started": now, "status": "exited", "attrs": {"release": release}}
    event_id = uuid.uuid4().hex
    items = [
        ("event", json.dumps({"event_id": event_id, "message": "with bad sessions", "release": release})),
        ("session", "{this is not json"),
        ("session", json.dumps({**good, "sid": uuid.uuid4().hex, "status": "sleeping"})),
        ("session", json.dumps({**good, "sid": uuid.uuid4().hex, "started": "2001-01-01T00:00:00Z"})),
        ("session", json.dumps({**good, "sid": uuid.uuid4().hex, "started": "2099-01-01T00:00:00Z"})),
        ("sessions", json.dumps({"aggregates": [{"started": "2001-01-01T00:00:00Z", "exited": 9}], "attrs": {"release": release}})),
        ("session", json.dumps(good)),
    ]
    key = server.dsn.split("//")[1].split("@")[0]
    project = server.dsn.rsplit("/", 1)[1]
    req = urllib.request.Request(
        f"{server.url}/api/{project}/envelope/",
        data=envelope(items),
        headers={"X-Sentry-Auth": f"Sentry sentry_key={key}, sentry_version=7",
                 "Content-Type": "application/x-sentry-envelope"},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 200
        assert json.loads(r.read())["id"] == event_id
    server.wait_for_event(event_id)
    wait_for_counts(server, release, (1, 0, 0, 0))
    with urllib.request.urlopen(server.url + "/metrics", timeout=10) as r:
        metrics = r.read().decode()
    for outcome in ["invalid_json", "unknown_status", "too_old", "in_future"]:
        assert f'item="session",outcome="{outcome}"' in metrics, outcome
    assert 'item="sessions",outcome="too_old"' in metrics


NODE_SCRIPT = r"""
const Sentry = require('@sentry/node');
const how = process.argv[1];
Sentry.init({ dsn: process.env.SENTRY_DSN, release: process.env.RELEASE, environment: 'production' });
Sentry.setUser({ id: 'node-' + how });
if (how === 'handled') {
  try { JSON.parse('{not json'); } catch (e) { Sentry.captureException(e); }
}
if (how === 'uncaught') {
  setTimeout(() => { throw new Error('node script died'); }, 100);
}
"""


def test_node_sdk_process_sessions(server):
    """@sentry/node sends its process session by itself: ended healthy, after a handled
    error (an update on the error, another at exit) and crashed on an uncaught error."""
    from conftest import WORK

    release = f"node-health@{uuid.uuid4().hex[:6]}"
    for how in ["healthy", "handled", "uncaught"]:
        out = subprocess.run(
            ["node", "-e", NODE_SCRIPT, how], cwd=WORK / "node", capture_output=True, text=True,
            timeout=60, env=dict(__import__("os").environ, SENTRY_DSN=server.dsn, RELEASE=release),
        )
        assert (out.returncode != 0) == (how == "uncaught"), out.stderr
    wait_for_counts(server, release, (1, 1, 1, 0))
    token = server.cli("token", "create", "--org", "acme")
    status, body = api(server, token, f"field=crash_free_rate(user)&field=count_unique(user)&statsPeriod=24h&query=release:{release}")
    assert status == 200, body
    assert body["groups"][0]["totals"]["count_unique(user)"] == 3
    assert abs(body["groups"][0]["totals"]["crash_free_rate(user)"] - 2 / 3) < 1e-9


BROWSER_APP = r"""
import * as Sentry from '@sentry/browser';
Sentry.init({ dsn: window.FAULTLINE_DSN, release: window.RELEASE });
if (window.HOW === 'uncaught') {
  setTimeout(() => { throw new Error('page broke'); }, 50);
}
setTimeout(async () => {
  await Sentry.flush(5000);
  console.log('FAULTLINE_IDS {}');
}, 500);
"""


def test_browser_sdk_page_loads_are_sessions(server, tmp_path):
    """@sentry/browser in headless Chromium: a page load is a session; an unhandled error
    that does not end the page marks it `unhandled`: errored in the rates (crash-free
    stays 100 %), counted on its own too."""
    import functools
    import http.server
    import os
    import threading
    from pathlib import Path

    from conftest import WORK, free_port

    node = WORK / "node"
    here = Path(__file__).resolve().parent
    (tmp_path / "src.js").write_text(BROWSER_APP)
    built = subprocess.run(
        [str(node / "node_modules" / ".bin" / "esbuild"), str(tmp_path / "src.js"), "--bundle",
         f"--outfile={tmp_path / 'app.js'}"],
        cwd=node, capture_output=True, text=True, timeout=120,
        env=dict(os.environ, NODE_PATH=str(node / "node_modules")),
    )
    assert built.returncode == 0, built.stderr
    release = f"web-health@{uuid.uuid4().hex[:6]}"
    for how in ["healthy", "uncaught"]:
        (tmp_path / f"{how}.html").write_text(
            "<!doctype html><html><head><meta charset=utf-8><title>shop</title></head><body>"
            f"<script>window.FAULTLINE_DSN = {json.dumps(server.dsn)}; window.RELEASE = {json.dumps(release)};"
            f" window.HOW = {json.dumps(how)};</script><script src=app.js></script></body></html>"
        )
    port = free_port()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        for how in ["healthy", "uncaught"]:
            out = subprocess.run(
                ["node", str(here / "browser" / "run.js"), f"http://localhost:{port}/{how}.html"],
                cwd=node, capture_output=True, text=True, timeout=90,
                env=dict(os.environ, NODE_PATH=str(node / "node_modules")),
            )
            assert out.returncode == 0, out.stderr
    finally:
        httpd.shutdown()
    deadline = time.time() + 30
    while time.time() < deadline:
        with server.db() as conn:
            row = conn.execute(
                "SELECT COALESCE(SUM(healthy), 0), COALESCE(SUM(errored), 0), COALESCE(SUM(unhandled), 0), "
                "COALESCE(SUM(crashed), 0) FROM session_counts WHERE release = ?", (release,)).fetchone()
        if tuple(row) == (1, 0, 1, 0):
            break
        time.sleep(0.2)
    assert tuple(row) == (1, 0, 1, 0), (tuple(row), server.tail_log())
    token = server.cli("token", "create", "--org", "acme")
    status, body = api(server, token, f"field=crash_free_rate(session)&statsPeriod=24h&query=release:{release}")
    assert status == 200 and body["groups"][0]["totals"]["crash_free_rate(session)"] == 1.0, body
    status, body = api(server, token, f"field=sum(session)&groupBy=session.status&statsPeriod=24h&query=release:{release}")
    by_status = {g["by"]["session.status"]: g["totals"]["sum(session)"] for g in body["groups"]}
    assert by_status == {"healthy": 1, "errored": 1, "crashed": 0, "abnormal": 0}, body
