"""An XSS corpus in every rendered field of an event (message, exception type and value,
frame fields, context lines, locals, breadcrumbs, tags, user, request headers, contexts,
release and environment names, SDK) renders as text on every page: headless Chromium with
the Content-Security-Policy bypassed finds no script that ran and no markup from the event
in the DOM."""

import json
import os
import subprocess
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

from conftest import WORK

HERE = Path(__file__).resolve().parent

IMG = '<img src=x onerror="window.__xss=1;alert(1)">'
SCRIPT = "<script>window.__xss=2;alert(2)</script>"
ATTR = '"><svg onload="window.__xss=3;alert(3)">'
JSURL = "javascript:window.__xss=4"
TRACE = "0af7651916cd43dd8448eb211c80319c"
# Release and environment names may not hold '/', so their payload has none.
RELEASE = 'rel<img src=x onerror="window.__xss=5">'


def hostile_event(event_id):
    frame_app = {
        "filename": "app" + IMG, "abs_path": ATTR, "function": "fn" + SCRIPT, "module": ATTR,
        "lineno": 3, "colno": 1, "in_app": True, "package": IMG,
        "pre_context": [SCRIPT, ATTR], "context_line": "ctx" + IMG, "post_context": [JSURL],
        "vars": {"v" + IMG: SCRIPT, "nested": {"k": ATTR}},
    }
    frame_lib = {"filename": "lib" + SCRIPT, "function": "lib" + IMG, "in_app": False, "lineno": 9}
    return {
        "event_id": event_id,
        "platform": "python",
        "level": "error",
        "logger": IMG,
        "release": RELEASE,
        "environment": "env<svg onload=alert(6)>",
        "server_name": SCRIPT,
        "transaction": ATTR,
        "message": {"formatted": "msg" + SCRIPT + IMG},
        "exception": {"values": [
            {"type": "Cause" + IMG, "value": "cause" + ATTR, "stacktrace": {"frames": [frame_lib]}},
            {"type": "Err" + IMG, "value": "val" + SCRIPT + ATTR, "module": IMG,
             "mechanism": {"type": "mech" + IMG, "handled": False},
             "stacktrace": {"frames": [frame_lib, frame_app]}},
        ]},
        "breadcrumbs": {"values": [
            {"category": "cat" + IMG, "message": "crumb" + SCRIPT, "level": "error", "data": {"d" + ATTR: IMG}},
            {"type": "navigation", "message": JSURL, "data": {"from": JSURL, "to": IMG}},
        ]},
        "tags": {"xss": "tag" + IMG, "k" + ATTR: "v", "url2": JSURL},
        "user": {"id": "uid" + IMG, "email": "e" + SCRIPT, "username": ATTR, "ip_address": "10.0.0.1", "name": IMG},
        "request": {
            "url": "http://example.com/p?q=" + urllib.parse.quote(IMG), "method": "GET",
            "headers": {"X-Evil": "hdr" + IMG, "Referer": JSURL, "User-Agent": SCRIPT},
            "query_string": "a=" + IMG, "data": {"f": ATTR}, "cookies": {"c": SCRIPT},
        },
        "contexts": {
            "browser": {"name": "Br" + IMG, "version": SCRIPT},
            "os": {"name": ATTR},
            "trace": {"trace_id": TRACE, "span_id": "b7ad6b7169203331", "op": IMG},
            "custom" + IMG: {"k": SCRIPT},
        },
        "extra": {"x" + IMG: SCRIPT},
        "sdk": {"name": "sdk" + IMG, "version": SCRIPT, "integrations": [IMG]},
        "fingerprint": ["xss-corpus"],
    }


def test_hostile_event_data_renders_as_text_everywhere(server):
    key, rest = server.dsn.split("//", 1)[1].split("@", 1)
    project_id = rest.rsplit("/", 1)[1]
    event_id = uuid.uuid4().hex
    req = urllib.request.Request(
        f"{server.url}/api/{project_id}/store/",
        data=json.dumps(hostile_event(event_id)).encode(),
        headers={"Content-Type": "application/json",
                 "X-Sentry-Auth": f"Sentry sentry_key={key}, sentry_version=7"},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 200
    stored = server.wait_for_event(event_id)
    issue = stored["issue_id"]
    assert stored["payload"]["release"] == RELEASE, "the release name reached storage"

    artifacts = WORK / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    q = urllib.parse.quote
    org = "/organizations/acme"
    pages = [
        {"path": f"{org}/issues?query=" + q("is:all"), "mustShow": ["Err" + IMG]},
        {"path": f"{org}/issues?query=" + q("is:all " + IMG), "mustShow": []},
        {"path": f"{org}/issues?query=" + q("tag:" + SCRIPT)},
        {"path": f"{org}/issues?query=" + q("is:" + IMG), "mustShow": ["\"is:<img\" is unknown"]},
        {"path": f"{org}/projects/web?query=" + q("is:all xss:tag" + IMG)},
        {"path": f"{org}/issues/{issue}", "screenshot": str(artifacts / "xss-issue-page.png"),
         "mustShow": ["Err" + IMG, "val" + SCRIPT + ATTR, "ctx" + IMG, "crumb" + SCRIPT, "hdr" + IMG,
                      "uid" + IMG, "tag" + IMG, "Br" + IMG, "sdk" + IMG, RELEASE]},
        {"path": f"{org}/issues/{issue}?raw=1"},
        {"path": f"{org}/issues/{issue}?period=30d&event=" + q(SCRIPT), "mustShow": ["32 hexadecimal"]},
        {"path": f"{org}/projects/web/releases", "mustShow": [RELEASE]},
        {"path": f"{org}/release?project=web&version=" + q(RELEASE), "mustShow": [RELEASE]},
        {"path": f"{org}/traces/{TRACE}", "mustShow": ["Err" + IMG]},
        {"path": f"{org}/projects"},
        {"path": f"{org}/projects/web/settings"},
        {"path": f"{org}/settings"},
        {"path": "/account"},
        {"path": "/organizations/" + q(IMG) + "/issues"},
        {"path": "/login?next=" + q(JSURL)},
    ]
    node = WORK / "node"
    out = subprocess.run(
        ["node", str(HERE / "web" / "xss.js"), server.url, "admin@example.com", "correct horse battery",
         json.dumps(pages)],
        cwd=node, capture_output=True, text=True, timeout=180,
        env=dict(os.environ, NODE_PATH=str(node / "node_modules")),
    )
    assert out.returncode == 0, out.stderr + out.stdout
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["problems"] == [], "\n".join(result["problems"])
    statuses = result["report"]
    assert statuses[f"{org}/issues/{issue}"] == 200
    assert statuses["/organizations/" + q(IMG) + "/issues"] == 404
