"""Errors thrown in minified JavaScript come back with original file, line, column,
function and source line: the app is bundled with esbuild, its maps uploaded with the real
sentry-cli (3.x `sourcemaps inject` + `upload --release`, and 2.x's legacy
`releases files R upload-sourcemaps` without debug ids), then run in Node with @sentry/node
and in headless Chromium with @sentry/browser. Asserted on the stored event."""

import functools
import http.server
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from conftest import WORK, free_port
from sourcemaps import CLI2, CLI3, ESBUILD, api_token, build_app, cli_env, run_cli

HERE = Path(__file__).resolve().parent
NODE = WORK / "node"
NODE_ENV = dict(os.environ, NODE_PATH=str(NODE / "node_modules"))

THROW_LINE = "    throw new Error(`order ${order.id} is too expensive: ${total}`);"

NODE_RUNNER = """
const Sentry = require('@sentry/node');
Sentry.init({ dsn: process.env.FAULTLINE_DSN, release: process.env.FAULTLINE_RELEASE });
require(process.env.FAULTLINE_BUNDLE);
let id = null;
try { globalThis.faultlineDemo.run(); } catch (e) { id = Sentry.captureException(e); }
Sentry.flush(5000).then(() => console.log(JSON.stringify({ id })));
"""

PAGE = """<!doctype html><html><head><meta charset=utf-8><title>shop</title></head><body>
<script src=sdk.js></script>
<script>Sentry.init({dsn: %(dsn)s, release: %(release)s});</script>
<script src=app.min.js></script>
<script>
setTimeout(async () => {
  let id = null;
  try { faultlineDemo.run(); } catch (e) { id = Sentry.captureException(e); }
  await Sentry.flush(5000);
  console.log('FAULTLINE_IDS ' + JSON.stringify({id}));
}, 10);
</script></body></html>"""


def upload(server, cli, dist, release, url_prefix):
    """Uploads `dist` as a CI job would; returns how the maps can be found (debug-id or release)."""
    env = cli_env(server, api_token(server))
    if cli == CLI3:
        run_cli(cli, ["sourcemaps", "inject", str(dist)], env)
        run_cli(cli, ["sourcemaps", "upload", "--release", release, "--url-prefix", url_prefix, str(dist)], env)
        run_cli(cli, ["releases", "new", release], env)
        run_cli(cli, ["releases", "finalize", release], env)
        run_cli(cli, ["deploys", "new", "--release", release, "-e", "production"], env)
        return "debug-id"
    # The legacy path: no debug ids, files of the release named by URL.
    run_cli(cli, ["releases", "new", release], env)
    run_cli(cli, ["releases", "files", release, "upload-sourcemaps", str(dist), "--url-prefix", url_prefix], env)
    run_cli(cli, ["releases", "finalize", release], env)
    return "release"


def assert_original_frames(event, resolved_with):
    """The user-visible checks: original file, line, column, function, source line."""
    exception = event["payload"]["exception"]["values"][-1]
    frames = exception["stacktrace"]["frames"]
    top = next((f for f in frames if (f.get("filename") or "").endswith("src/format.js")), None)
    assert top is not None, json.dumps(frames, indent=1)[:4000]
    assert top["lineno"] == 4
    assert top["colno"] == THROW_LINE.index("new Error") + 1
    assert top["function"] == "describe"
    assert top["context_line"] == THROW_LINE
    assert top["pre_context"][-1] == "  if (total > 100) {"
    assert top["data"]["symbolicator_status"] == "symbolicated"
    assert top["data"]["resolved_with"] == resolved_with
    caller = next(f for f in frames if (f.get("filename") or "").endswith("src/cart.js"))
    assert caller["function"] == "checkout"
    assert caller["lineno"] == 5
    assert caller["context_line"] == "  return describe(order);"
    # The SDK's minified frames are kept.
    raw = exception["raw_stacktrace"]["frames"]
    assert any((f.get("abs_path") or "").endswith("app.min.js") for f in raw)
    # Grouping ran on the mapped frames: the culprit names the original function.
    assert "describe" in (event["culprit"] or ""), event["culprit"]


@pytest.mark.parametrize("cli", [pytest.param(CLI3, id="cli3"), pytest.param(CLI2, id="cli2-legacy")])
def test_node_errors_are_symbolicated(server, tmp_path, cli):
    release = f"node-{cli.parent.name}-{time.time_ns()}"
    dist = build_app(tmp_path, platform="node")
    # Node frames name files by absolute path; the legacy upload names them the same way.
    resolved_with = upload(server, cli, dist, release, url_prefix="~" + str(dist))
    runner = tmp_path / "runner.js"
    runner.write_text(NODE_RUNNER)
    out = subprocess.run(
        ["node", str(runner)], cwd=NODE, capture_output=True, text=True, timeout=90,
        env=dict(NODE_ENV, FAULTLINE_DSN=server.dsn, FAULTLINE_RELEASE=release,
                 FAULTLINE_BUNDLE=str(dist / "app.min.js")),
    )
    assert out.returncode == 0, out.stderr
    event_id = json.loads(out.stdout.strip().splitlines()[-1])["id"]
    assert_original_frames(server.wait_for_event(event_id), resolved_with)


@pytest.mark.parametrize("cli", [pytest.param(CLI3, id="cli3"), pytest.param(CLI2, id="cli2-legacy")])
def test_browser_errors_are_symbolicated(server, tmp_path, cli):
    release = f"web-{cli.parent.name}-{time.time_ns()}"
    dist = build_app(tmp_path, platform="browser")
    resolved_with = upload(server, cli, dist, release, url_prefix="~/")
    # The SDK as its own (unmapped) script, as a site would load it.
    (tmp_path / "sdk-entry.js").write_text("import * as Sentry from '@sentry/browser';\nwindow.Sentry = Sentry;\n")
    built = subprocess.run(
        [str(ESBUILD), str(tmp_path / "sdk-entry.js"), "--bundle", "--format=iife", f"--outfile={dist / 'sdk.js'}"],
        cwd=NODE, capture_output=True, text=True, timeout=120, env=NODE_ENV,
    )
    assert built.returncode == 0, built.stderr
    (dist / "index.html").write_text(PAGE % {"dsn": json.dumps(server.dsn), "release": json.dumps(release)})
    port = free_port()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(dist))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        out = subprocess.run(
            ["node", str(HERE / "browser" / "run.js"), f"http://localhost:{port}/index.html"],
            cwd=NODE, capture_output=True, text=True, timeout=90, env=NODE_ENV,
        )
    finally:
        httpd.shutdown()
    assert out.returncode == 0, out.stderr
    event_id = json.loads(out.stdout.strip().splitlines()[-1])["id"]
    event = server.wait_for_event(event_id)
    assert_original_frames(event, resolved_with)
    # The page's inline script has no map; its frame says why.
    frames = event["payload"]["exception"]["values"][-1]["stacktrace"]["frames"]
    inline = [f for f in frames if (f.get("abs_path") or "").endswith("index.html")]
    assert inline and all(f["data"]["symbolicator_status"] != "symbolicated" for f in inline), frames


def test_event_before_upload_and_broken_map_are_stored_with_reasons(server, tmp_path):
    """An error whose release has no files yet, and one whose map is not JSON: both are
    stored, frames minified, each with the reason."""
    release = f"early-{time.time_ns()}"
    dist = build_app(tmp_path, platform="node")
    runner = tmp_path / "runner.js"
    runner.write_text(NODE_RUNNER)

    def run():
        out = subprocess.run(
            ["node", str(runner)], cwd=NODE, capture_output=True, text=True, timeout=90,
            env=dict(NODE_ENV, FAULTLINE_DSN=server.dsn, FAULTLINE_RELEASE=release,
                     FAULTLINE_BUNDLE=str(dist / "app.min.js")),
        )
        assert out.returncode == 0, out.stderr
        return server.wait_for_event(json.loads(out.stdout.strip().splitlines()[-1])["id"])

    def app_frames(event):
        frames = event["payload"]["exception"]["values"][-1]["stacktrace"]["frames"]
        return [f for f in frames if (f.get("abs_path") or "").endswith("app.min.js")]

    early = app_frames(run())
    assert early and all(f["data"]["symbolicator_status"] == "no_release_artifact" for f in early)
    assert all(f["lineno"] == 1 for f in early), "values kept as sent"

    (dist / "app.min.js.map").write_text("<html>not a map</html>")
    env = cli_env(server, api_token(server))
    # Single-file uploads, as they are (upload-sourcemaps would refuse to rewrite the map).
    for name in ("app.min.js", "app.min.js.map"):
        run_cli(CLI2, ["releases", "files", release, "upload", str(dist / name), f"~{dist}/{name}"], env)
    broken = run()
    frames = app_frames(broken)
    assert frames and all(f["data"]["symbolicator_status"] == "malformed_sourcemap" for f in frames), frames
    assert any(e["type"] == "js_invalid_source" for e in broken["payload"].get("errors", []))
