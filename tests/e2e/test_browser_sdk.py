"""@sentry/browser in headless Chromium, on a page served from another origin: proves CORS
and query-string authentication work for browsers."""

import functools
import http.server
import json
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

from conftest import WORK, free_port

HERE = Path(__file__).resolve().parent


def test_browser_errors_are_stored(server):
    node = WORK / "node"
    site = Path(tempfile.mkdtemp(prefix="faultline-site-"))
    built = subprocess.run(
        [str(node / "node_modules" / ".bin" / "esbuild"), str(HERE / "browser" / "app.js"), "--bundle",
         "--minify", "--sourcemap", f"--outfile={site / 'app.js'}"],
        cwd=node, capture_output=True, text=True, timeout=120,
        # The SDK lives in the work dir's node_modules, not beside app.js.
        env=dict(os.environ, NODE_PATH=str(node / "node_modules")),
    )
    assert built.returncode == 0, built.stderr
    (site / "index.html").write_text(
        "<!doctype html><html><head><meta charset=utf-8><title>shop</title></head><body>"
        f"<script>window.FAULTLINE_DSN = {json.dumps(server.dsn)};</script>"
        "<script src=app.js></script></body></html>"
    )
    port = free_port()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        out = subprocess.run(
            ["node", str(HERE / "browser" / "run.js"), f"http://localhost:{port}/index.html"],
            cwd=node, capture_output=True, text=True, timeout=90,
            env=dict(os.environ, NODE_PATH=str(node / "node_modules")),
        )
        assert out.returncode == 0, out.stderr
        ids = json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        httpd.shutdown()
        shutil.rmtree(site, ignore_errors=True)
    handled = server.wait_for_event(ids["handled"])
    assert handled["title"].startswith("TypeError")
    assert handled["platform"] == "javascript"
    uncaught = server.wait_for_event(ids["uncaught"])
    assert uncaught["title"] == "Error: button exploded"
    frames = uncaught["payload"]["exception"]["values"][-1]["stacktrace"]["frames"]
    assert any("app.js" in (f.get("filename") or "") for f in frames)
