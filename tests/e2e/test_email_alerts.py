"""Email alerts end to end: a real `faultline serve`, the real Python SDK sending errors,
and a real SMTP server (aiosmtpd) receiving what Faultline mails. Timings (cooldown, cap
window, retry backoff, poll interval) are shortened through the environment."""

import email
import email.policy
import json
import re
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import urllib.error
import urllib.request

import pytest
from aiosmtpd.controller import Controller

from conftest import Server, free_port

ADMIN = "admin@example.com"
JAEGER = "http://jaeger.test:16686"


class Inbox:
    """aiosmtpd handler that keeps every message it accepts."""

    def __init__(self):
        self.lock = threading.Lock()
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.lock:
            self.messages.append({"rcpt": list(envelope.rcpt_tos), "msg": msg, "raw": envelope.content})
        return "250 OK"

    def all(self):
        with self.lock:
            return list(self.messages)


class Smtp:
    """A real SMTP server on a fixed port that can be stopped and started again."""

    def __init__(self):
        self.port = free_port()
        self.inbox = Inbox()
        self.controller = None

    def start(self):
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)
        self.controller.start()
        return self

    def stop(self):
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def wait_for(self, count, timeout=20):
        deadline = time.time() + timeout
        while time.time() < deadline:
            got = self.inbox.all()
            if len(got) >= count:
                return got
            time.sleep(0.1)
        raise AssertionError(f"expected {count} emails, got {len(self.inbox.all())}")

    def settle(self, expected, seconds=2.0):
        """Waits long enough for stray emails to show up, then checks the count."""
        time.sleep(seconds)
        got = self.inbox.all()
        assert len(got) == expected, [m["msg"]["Subject"] for m in got]
        return got


SCRIPT = textwrap.dedent(
    """
    import json, sys
    import sentry_sdk
    dsn, env, title, count, group, typename = sys.argv[1:7]
    count = int(count)
    sentry_sdk.init(dsn=dsn, environment=env, release="shop@1.0", default_integrations=False)
    # A class name is any string to Python, and the SDK reports it as the exception type.
    error_class = type(typename, (ValueError,), {}) if typename else ValueError

    def charge_card(amount):
        raise error_class(title)

    def checkout():
        charge_card(42)

    ids = []
    for _ in range(count):
        with sentry_sdk.new_scope() as scope:
            if group:
                scope.fingerprint = [group]
            try:
                checkout()
            except ValueError:
                ids.append(sentry_sdk.capture_exception())
    sentry_sdk.flush(10)
    print(json.dumps(ids))
    """
)


def send_errors(server, title="payment declined", count=1, env="production", group="", typename=""):
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, server.dsn, env, title, str(count), group, typename],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    ids = json.loads(out.stdout.strip().splitlines()[-1])
    return [server.wait_for_event(i) for i in ids]


def start_server(smtp=None, **env):
    values = {
        "JAEGER_URL": JAEGER,
        "FAULTLINE_EMAIL_FROM": "Faultline <alerts@faultline.test>",
        "FAULTLINE_ALERT_POLL_MS": "100",
        "FAULTLINE_SMTP_RETRY_SECS": "1",
        "FAULTLINE_SMTP_TIMEOUT_SECS": "2",
        "FAULTLINE_ALERT_COOLDOWN_SECS": "0",
    }
    if smtp is not None:
        values["FAULTLINE_SMTP_URL"] = f"smtp://127.0.0.1:{smtp.port}"
    values.update({k: str(v) for k, v in env.items()})
    srv = Server(tempfile.mkdtemp(prefix="faultline-alerts-"), values)
    srv.cli("migrate")
    srv.cli("user", "create", "--email", ADMIN, "--password-stdin", input="correct horse battery\n")
    srv.cli("org", "create", "acme", "--owner", ADMIN)
    srv.dsn = srv.cli("project", "create", "--org", "acme", "web", "--platform", "python")
    srv.start()
    return srv


@pytest.fixture
def smtp():
    s = Smtp().start()
    yield s
    s.stop()


@pytest.fixture
def servers():
    started = []
    yield started
    for s in started:
        s.stop()


def log_rows(server, **where):
    sql = "SELECT * FROM notifications"
    if where:
        sql += " WHERE " + " AND ".join(f"{k} = ?" for k in where)
    with server.db() as conn:
        return [dict(r) for r in conn.execute(sql + " ORDER BY id", tuple(where.values()))]


def wait_log(server, predicate, timeout=20, **where):
    deadline = time.time() + timeout
    while time.time() < deadline:
        rows = log_rows(server, **where)
        if predicate(rows):
            return rows
        time.sleep(0.1)
    raise AssertionError(f"notification log never matched: {log_rows(server)}")


def parts(msg):
    text = msg.get_body(preferencelist=("plain",)).get_content()
    html = msg.get_body(preferencelist=("html",)).get_content()
    return text, html


def test_new_issue_repeats_and_regression(smtp, servers):
    srv = start_server(smtp)
    servers.append(srv)
    [event] = send_errors(srv)
    [mail] = smtp.wait_for(1)
    msg = mail["msg"]
    assert mail["rcpt"] == [ADMIN]
    assert msg["Subject"] == "[web] ValueError: payment declined"
    assert msg["From"] == "Faultline <alerts@faultline.test>"
    assert msg.get_content_type() == "multipart/alternative"
    text, html = parts(msg)
    issue_url = f"{srv.url}/organizations/acme/issues/{event['issue_id']}/"
    trace_id = event["payload"]["contexts"]["trace"]["trace_id"]
    for body in (text, html):
        assert issue_url in body
        assert f"{JAEGER}/trace/{trace_id}" in body
        assert "charge_card" in body and "checkout" in body
        assert "production" in body and "shop@1.0" in body
        assert f"{srv.url}/unsubscribe/" in body
    assert "Level: error" in text and "Events: 1" in text
    # The crashing frame comes first.
    assert text.index("charge_card") < text.index("checkout")
    assert msg["List-Unsubscribe"].startswith(f"<{srv.url}/unsubscribe/")

    # Ten more events of the same issue: no state change, no email.
    more = send_errors(srv, count=10)
    assert {e["issue_id"] for e in more} == {event["issue_id"]}
    smtp.settle(1)

    # Resolved, then seen again: one regression email.
    with srv.db() as conn:
        conn.execute("UPDATE issues SET status = 'resolved', resolved_at = ? WHERE id = ?",
                     (int(time.time() * 1000), event["issue_id"]))
    send_errors(srv)
    mails = smtp.wait_for(2)
    assert mails[1]["msg"]["Subject"] == "[web] Regression: ValueError: payment declined"
    assert "Events: 12" in parts(mails[1]["msg"])[0]
    smtp.settle(2)
    sent = [(r["kind"], r["status"]) for r in log_rows(srv, recipient=ADMIN)]
    assert sent == [("new_issue", "sent"), ("regression", "sent")]


def test_unsubscribe_link_stops_alerts(smtp, servers):
    srv = start_server(smtp)
    servers.append(srv)
    send_errors(srv, group="first")
    [mail] = smtp.wait_for(1)
    link = re.search(r"(http://\S+/unsubscribe/[A-Za-z0-9_.-]+)", parts(mail["msg"])[0]).group(1)

    # GET only asks (mail scanners fetch links); POST unsubscribes, without logging in.
    with urllib.request.urlopen(link, timeout=5) as r:
        page = r.read().decode()
    assert ADMIN in page and "Unsubscribe" in page
    with srv.db() as conn:
        assert conn.execute("SELECT COUNT(*) FROM alert_unsubscribes").fetchone()[0] == 0
    req = urllib.request.Request(link, data=b"action=unsubscribe", method="POST")
    with urllib.request.urlopen(req, timeout=5) as r:
        assert "Unsubscribed" in r.read().decode()

    send_errors(srv, title="another failure", group="second")
    rows = wait_log(srv, lambda rows: len(rows) == 2)
    assert rows[1]["status"] == "skipped" and "no recipients" in rows[1]["reason"]
    smtp.settle(1)

    # Tampered, truncated, oversized and garbage tokens change nothing.
    token = link.rsplit("/", 1)[1]
    payload, sig = token.split(".")
    bad = [payload + "." + sig[:-2] + ("AA" if not sig.endswith("AA") else "BB"), payload, "garbage", "x" * 3000, "a.b.c"]
    for t in bad:
        for method, data in (("GET", None), ("POST", b"action=unsubscribe")):
            req = urllib.request.Request(f"{srv.url}/unsubscribe/{t}", data=data, method=method)
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(req, timeout=5)
            assert err.value.code in (404, 414), (t[:20], method, err.value.code)
    # An oversized form body is refused.
    req = urllib.request.Request(link, data=b"a=" + b"x" * 10000, method="POST")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=5)
    assert err.value.code == 413


def test_environment_filter_excludes_staging(smtp, servers):
    srv = start_server(smtp)
    servers.append(srv)
    with srv.db() as conn:
        conn.execute("UPDATE alert_rules SET environment = 'production'")
    send_errors(srv, title="staging only", env="staging", group="staging")
    rows = wait_log(srv, lambda rows: len(rows) == 1)
    assert rows[0]["status"] == "skipped"
    assert "no alert rule matches" in rows[0]["reason"] and "staging" in rows[0]["reason"]
    smtp.settle(0, seconds=1.0)
    # The same rule does mail a production issue.
    send_errors(srv, title="production failure", env="production", group="prod")
    [mail] = smtp.wait_for(1)
    assert mail["msg"]["Subject"] == "[web] ValueError: production failure"


def test_smtp_down_is_retried_until_delivered(servers):
    smtp = Smtp()  # not started: its port refuses connections
    srv = start_server(smtp)
    servers.append(srv)
    try:
        send_errors(srv)
        rows = wait_log(srv, lambda rows: rows and rows[0]["status"] == "failed" and rows[0]["attempts"] >= 2)
        assert rows[0]["reason"], rows
        assert rows[0]["next_attempt_at"] is not None
        smtp.start()
        rows = wait_log(srv, lambda rows: rows and rows[0]["status"] == "sent", timeout=30)
        assert rows[0]["attempts"] >= 3
        assert "delivered on attempt" in rows[0]["reason"]
        [mail] = smtp.settle(1, seconds=1.0)
        assert mail["msg"]["Subject"] == "[web] ValueError: payment declined"
    finally:
        smtp.stop()


def test_hourly_cap_sends_one_digest(smtp, servers):
    srv = start_server(smtp, FAULTLINE_ALERT_HOURLY_CAP=2, FAULTLINE_ALERT_CAP_WINDOW_SECS=4)
    servers.append(srv)
    for i in range(5):
        send_errors(srv, title=f"failure number {i}", group=f"group-{i}")
    mails = smtp.wait_for(2)
    rows = wait_log(srv, lambda rows: len(rows) == 5)
    assert sorted(r["status"] for r in rows) == ["queued", "queued", "suppressed", "suppressed", "suppressed"] or \
        sorted(r["status"] for r in rows).count("suppressed") == 3
    assert all(r["throttle"] == "cap" for r in rows if r["status"] == "suppressed")
    # One window later, one digest summarises the three held back.
    mails = smtp.wait_for(3, timeout=15)
    digest = mails[2]["msg"]
    assert digest["Subject"] == "[web] 3 more alerts held back by the hourly limit"
    text, html = parts(digest)
    for i in (2, 3, 4):
        assert f"failure number {i}" in text and f"failure number {i}" in html
    smtp.settle(3, seconds=2.0)
    digests = log_rows(srv, kind="digest")
    assert [d["status"] for d in digests] == ["sent"]
    held = [r for r in log_rows(srv) if r["throttle"] == "cap"]
    assert {r["digest_id"] for r in held} == {digests[0]["id"]}


def test_cooldown_holds_back_a_second_alert_for_the_issue(smtp, servers):
    srv = start_server(smtp, FAULTLINE_ALERT_COOLDOWN_SECS=3600)
    servers.append(srv)
    [event] = send_errors(srv)
    smtp.wait_for(1)
    with srv.db() as conn:
        conn.execute("UPDATE issues SET status = 'resolved' WHERE id = ?", (event["issue_id"],))
    send_errors(srv)
    rows = wait_log(srv, lambda rows: len(rows) == 2)
    assert rows[1]["kind"] == "regression" and rows[1]["status"] == "suppressed"
    assert rows[1]["throttle"] == "cooldown" and "cooldown" in rows[1]["reason"]
    smtp.settle(1, seconds=1.0)


def test_hostile_title_cannot_inject_headers(smtp, servers):
    srv = start_server(smtp)
    servers.append(srv)
    # CR/LF in the exception type and a lone CR in its value both reach the issue title.
    typename = "Evil\r\nBcc: victim@evil.test\r\nX-Injected: yes\r\n\r\nbody"
    value = "boom <script>alert(1)</script>\rTo: victim2@evil.test"
    [event] = send_errors(srv, title=value, group="hostile", typename=typename)
    assert "\n" in event["title"] and "\r" in event["title"], event["title"]
    [mail] = smtp.wait_for(1)
    msg = mail["msg"]
    assert mail["rcpt"] == [ADMIN]
    assert msg["Bcc"] is None and msg["X-Injected"] is None
    assert msg.get_all("To") == [ADMIN]
    headers = mail["raw"].split(b"\r\n\r\n", 1)[0].decode()
    assert not re.search(r"^(X-Injected|Bcc):", headers, re.M | re.I), headers
    subject = msg["Subject"]
    assert "\r" not in subject and "\n" not in subject
    assert subject.startswith("[web] Evil Bcc: victim@evil.test X-Injected: yes body: boom"), subject
    text, html = parts(msg)
    assert "<script>alert(1)</script>" not in html
    # askama writes numeric entities (&#60;); either spelling is escaped.
    assert re.search(r"(&lt;|&#60;)script(&gt;|&#62;)alert\(1\)(&lt;|&#60;)/script", html), html
    # Nothing hostile reached the envelope either.
    smtp.settle(1, seconds=1.0)


def test_without_smtp_alerts_are_recorded_not_sent(servers):
    srv = start_server(None)
    servers.append(srv)
    send_errors(srv)
    rows = wait_log(srv, lambda rows: len(rows) == 1)
    assert rows[0]["status"] == "not_sent" and rows[0]["reason"] == "SMTP not configured"
    assert rows[0]["recipient"] == ADMIN


def test_send_test_email_command(smtp, servers):
    srv = start_server(smtp)
    servers.append(srv)
    out = srv.cli("send-test-email", "ops@example.com")
    assert out == "test email sent to ops@example.com"
    [mail] = smtp.wait_for(1)
    assert mail["rcpt"] == ["ops@example.com"]
    assert mail["msg"]["Subject"] == "Faultline test email"

    def fails(env, *args):
        r = subprocess.run([srv_bin(), *args], env={**srv.env, **env}, capture_output=True, text=True, timeout=60)
        assert r.returncode != 0
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
        return lines[0]

    assert "SMTP is not configured" in fails({"FAULTLINE_SMTP_URL": ""}, "send-test-email", "a@b.c")
    assert "FAULTLINE_SMTP_URL" in fails({"FAULTLINE_SMTP_URL": "smtp://h?tls=sometimes"}, "send-test-email", "a@b.c")
    assert "FAULTLINE_EMAIL_FROM" in fails({"FAULTLINE_EMAIL_FROM": "not an address"}, "send-test-email", "a@b.c")
    assert "not an email address" in fails({}, "send-test-email", "nobody")
    dead = free_port()
    assert "failed" in fails({"FAULTLINE_SMTP_URL": f"smtp://127.0.0.1:{dead}"}, "send-test-email", "a@b.c")


def srv_bin():
    from conftest import BIN

    return BIN


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
        import urllib.parse

        data = urllib.parse.urlencode(fields).encode() if fields is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method)
        try:
            with self.opener.open(req, timeout=10) as r:
                return r.status, r.read().decode(), r.headers.get("Location")
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(), e.headers.get("Location")

    def csrf(self, path):
        status, page, _ = self.request("GET", path)
        assert status == 200, (path, status)
        return re.search(r'name="csrf" value="([^"]+)"', page).group(1)

    def submit(self, page, action, fields):
        return self.request("POST", action, {"csrf": self.csrf(page), **fields})

    def login(self, email, password):
        status, _, _ = self.submit("/login", "/login", {"email": email, "password": password})
        assert status == 303, status


SETTINGS = "/organizations/acme/projects/web/settings"
ALERTS = "/organizations/acme/projects/web/alerts"


def test_settings_page_edits_rules_sends_a_test_email_and_shows_the_log(smtp, servers):
    srv = start_server(smtp)
    servers.append(srv)
    b = Browser(srv.url)
    b.login(ADMIN, "correct horse battery")
    status, page, _ = b.request("GET", SETTINGS)
    assert status == 200
    assert 'id="alerts"' in page and "New issues and regressions" in page
    assert "SMTP is not configured" not in page
    with srv.db() as conn:
        rule_id = conn.execute("SELECT id FROM alert_rules").fetchone()[0]

    rule = {"action": "save", "name": "Production", "enabled": "on", "on_new_issue": "on",
            "environment": "production", "min_level": "warning", "release": "",
            "notify_members": "on", "extra_recipients": "Ops@Example.com\noncall@example.com"}
    status, _, location = b.submit(SETTINGS, f"{ALERTS}/rules/{rule_id}", rule)
    assert status == 303 and location.endswith("?done=alerts#alerts")
    with srv.db() as conn:
        row = dict(conn.execute("SELECT * FROM alert_rules").fetchone())
    assert (row["name"], row["on_regression"], row["environment"], row["min_level"]) == ("Production", 0, "production", "warning")
    assert row["extra_recipients"] == "ops@example.com, oncall@example.com"

    # Bad input is refused with a reason and changes nothing.
    for bad, reason in [({"extra_recipients": "ops@example.com, nope"}, "nope"),
                        ({"name": ""}, "name"),
                        ({"min_level": "loud"}, "level"),
                        ({"environment": "a\r\nb"}, "one line")]:
        status, page, _ = b.submit(SETTINGS, f"{ALERTS}/rules/{rule_id}", {**rule, **bad})
        assert status == 400 and reason in page, (bad, status)
    with srv.db() as conn:
        assert dict(conn.execute("SELECT * FROM alert_rules").fetchone()) == row
    assert b.submit(SETTINGS, f"{ALERTS}/rules/999999", rule)[0] == 404
    assert b.submit(SETTINGS, f"{ALERTS}/rules/abc", rule)[0] == 404
    assert b.submit(SETTINGS, f"{ALERTS}/rules/{rule_id}", {**rule, "action": "explode"})[0] == 400
    assert b.request("POST", f"{ALERTS}/rules/{rule_id}", rule)[0] == 403  # no CSRF token
    assert b.submit(SETTINGS, "/organizations/acme/projects/nope/alerts/rules", rule)[0] == 404
    # Logged out: to the login page, nothing changed.
    assert Browser(srv.url).request("POST", f"{ALERTS}/test", {"to": "x@example.com"})[0] in (303, 403)

    # A second rule, then deleted again.
    status, _, _ = b.submit(SETTINGS, f"{ALERTS}/rules", {**rule, "name": "Second"})
    assert status == 303
    with srv.db() as conn:
        second = conn.execute("SELECT id FROM alert_rules WHERE name = 'Second'").fetchone()[0]
    assert b.submit(SETTINGS, f"{ALERTS}/rules/{second}", {"action": "delete"})[0] == 303
    with srv.db() as conn:
        assert conn.execute("SELECT COUNT(*) FROM alert_rules").fetchone()[0] == 1

    # The button sends a test email now, and the log says so.
    status, _, location = b.submit(SETTINGS, f"{ALERTS}/test", {"to": ""})
    assert status == 303 and "done=test" in location
    [mail] = smtp.wait_for(1)
    assert mail["rcpt"] == [ADMIN] and mail["msg"]["Subject"] == "Faultline test email"
    assert b.submit(SETTINGS, f"{ALERTS}/test", {"to": "not an address"})[0] == 400

    # An error in production reaches the members and the extra addresses; the log shows it.
    send_errors(srv, group="ui")
    mails = smtp.wait_for(4)
    assert sorted(r for m in mails[1:] for r in m["rcpt"]) == [ADMIN, "oncall@example.com", "ops@example.com"]
    wait_log(srv, lambda rows: sum(r["status"] == "sent" for r in rows) == 4)
    status, page, _ = b.request("GET", SETTINGS)
    assert page.count(">sent<") == 4 and "test email" in page and "new issue" in page
    assert "oncall@example.com" in page

    # Unsubscribing myself from the page: the next issue skips me.
    assert b.submit(SETTINGS, f"{ALERTS}/subscription", {"action": "unsubscribe"})[0] == 303
    assert "Subscribe again" in b.request("GET", SETTINGS)[1]
    send_errors(srv, title="second problem", group="ui-2")
    mails = smtp.wait_for(6)
    assert ADMIN not in [r for m in mails[4:] for r in m["rcpt"]]
    smtp.settle(6)


def test_settings_page_says_when_smtp_is_not_configured(servers):
    srv = start_server(None)
    servers.append(srv)
    b = Browser(srv.url)
    b.login(ADMIN, "correct horse battery")
    page = b.request("GET", SETTINGS)[1]
    assert "SMTP is not configured" in page
    status, page, _ = b.submit(SETTINGS, f"{ALERTS}/test", {"to": ""})
    assert status == 400 and "SMTP not configured" in page
    send_errors(srv)
    wait_log(srv, lambda rows: any(r["status"] == "not_sent" and r["kind"] == "new_issue" for r in rows))
    page = b.request("GET", SETTINGS)[1]
    assert "not sent" in page and "SMTP not configured" in page


def test_smtp_user_and_password_from_the_url(servers):
    """`smtp://USER:PASSWORD@HOST` logs in (the password percent-encoded in the URL); a
    server that requires a login refuses a sender without one, and the log says why."""
    import warnings

    from aiosmtpd.smtp import AuthResult, LoginPassword

    logins = []

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (b"mailer", b"s3cr:et")
        logins.append(ok)
        return AuthResult(success=ok)

    inbox = Inbox()
    port = free_port()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # AUTH without TLS: fine on loopback in a test
        controller = Controller(inbox, hostname="127.0.0.1", port=port, authenticator=authenticator,
                                auth_require_tls=False, auth_required=True)
        controller.start()
    try:
        srv = start_server(None, FAULTLINE_SMTP_URL=f"smtp://mailer:s3cr%3Aet@127.0.0.1:{port}")
        servers.append(srv)
        send_errors(srv)
        rows = wait_log(srv, lambda rows: rows and rows[0]["status"] == "sent")
        assert logins and all(logins)
        assert len(inbox.all()) == 1 and inbox.all()[0]["rcpt"] == [ADMIN]

        anonymous = {**srv.env, "FAULTLINE_SMTP_URL": f"smtp://127.0.0.1:{port}"}
        r = subprocess.run([srv_bin(), "send-test-email", "a@example.com"], env=anonymous,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 1 and "530" in r.stderr and "Authentication required" in r.stderr, r.stderr
    finally:
        controller.stop()
