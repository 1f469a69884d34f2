"""The real sentry-sdk for Python, unmodified, sends to Faultline (brotli, as it does by
default when brotli is installed) and every event is stored with what the user set."""

import json
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import sentry_sdk
    ids = {}
    sentry_sdk.init(dsn=sys.argv[1], release="shop@1.2.3", environment="staging",
                    default_integrations=True, traces_sample_rate=0)
    sentry_sdk.set_tag("feature", "checkout")
    sentry_sdk.set_user({"id": "42", "email": "ada@example.com"})
    sentry_sdk.add_breadcrumb(category="auth", message="user logged in", level="info")
    sentry_sdk.add_breadcrumb(category="cart", message="added item 7", level="info")

    def load_price(item):
        return {"apple": 1}[item]

    def checkout():
        try:
            load_price("pear")
        except KeyError as e:
            raise ValueError("price lookup failed") from e

    try:
        checkout()
    except ValueError:
        ids["exception"] = sentry_sdk.capture_exception()
    ids["message"] = sentry_sdk.capture_message("payment provider slow", level="warning")
    sentry_sdk.flush(10)
    print(json.dumps(ids))
    """
)


def run_sdk(dsn):
    out = subprocess.run([sys.executable, "-c", SCRIPT, dsn], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_python_exception_and_message_are_stored(server):
    ids = run_sdk(server.dsn)
    exc = server.wait_for_event(ids["exception"])
    payload = exc["payload"]
    # Chained exception: the cause first, the raised one last (it names the issue).
    types = [e["type"] for e in payload["exception"]["values"]]
    assert types == ["KeyError", "ValueError"], types
    assert exc["title"] == "ValueError: price lookup failed"
    frames = payload["exception"]["values"][-1]["stacktrace"]["frames"]
    assert any(f.get("function") == "checkout" for f in frames)
    assert exc["release"] == "shop@1.2.3" and exc["environment"] == "staging"
    assert dict(payload["tags"]).get("feature") == "checkout"
    assert payload["user"]["id"] == "42"
    crumbs = [b.get("message") for b in payload["breadcrumbs"]["values"]]
    assert crumbs[:2] == ["user logged in", "added item 7"]
    # "sentry.python", or "sentry.python.<framework>" when the SDK finds one installed
    # (the e2e venv has Flask, through moto): the SDK names itself either way.
    assert payload["sdk"]["name"].startswith("sentry.python"), payload["sdk"]

    msg = server.wait_for_event(ids["message"])
    assert msg["level"] == "warning"
    assert msg["title"] == "payment provider slow"


def test_same_error_twice_is_one_issue(server):
    first = run_sdk(server.dsn)
    second = run_sdk(server.dsn)
    a = server.wait_for_event(first["exception"])
    b = server.wait_for_event(second["exception"])
    assert a["issue_id"] == b["issue_id"]
    with server.db() as conn:
        times = conn.execute("SELECT times_seen FROM issues WHERE id = ?", (a["issue_id"],)).fetchone()[0]
    assert times >= 2
