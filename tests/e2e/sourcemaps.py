"""Reusable steps for source-map suites: write and bundle a small multi-file JavaScript app
with esbuild (minified, with source maps), drive the real sentry-cli 3.x (npm) or 2.x
(PyPI) against a Faultline server, and read back what the server stored.

Import from a test module: `from sourcemaps import build_app, cli_env, run_cli, ...`."""

import json
import os
import re
import subprocess
from pathlib import Path

from conftest import WORK

NODE_BIN = WORK / "node" / "node_modules" / ".bin"
ESBUILD = NODE_BIN / "esbuild"
CLI3 = NODE_BIN / "sentry-cli"
CLI2 = WORK / "venv" / "bin" / "sentry-cli"

# A small app in three modules; `run()` throws from a nested function, so a stack trace
# crosses files and names functions worth mapping back.
APP_SOURCES = {
    "src/format.js": """export function describe(order) {
  const total = order.items.reduce((sum, item) => sum + item.price, 0);
  if (total > 100) {
    throw new Error(`order ${order.id} is too expensive: ${total}`);
  }
  return `order ${order.id}: ${total}`;
}
""",
    "src/cart.js": """import { describe } from "./format.js";

export function checkout(items) {
  const order = { id: 42, items };
  return describe(order);
}
""",
    "src/index.js": """import { checkout } from "./cart.js";

export function run() {
  return checkout([{ price: 70 }, { price: 50 }]);
}

// Runners call `faultlineDemo.run()` (Node: require the bundle; browser: a script tag).
globalThis.faultlineDemo = { run };
""",
}


def build_app(workdir, platform="node", outfile="app.min.js", sources=None, stamp=None):
    """Writes the app under `workdir` and bundles it minified with a source map into
    `workdir/dist/`; returns the dist directory.

    `stamp` ends the bundle with a comment of its own, so the bundle, its map and the debug
    id sentry-cli derives from their contents differ from every other build: tests sharing
    one server then neither find each other's uploads by debug id nor share blobs."""
    workdir = Path(workdir)
    for rel, text in (sources or APP_SOURCES).items():
        path = workdir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if stamp:
            # At the end, so no original line moves; the map carries it in sourcesContent.
            text += f"\n// build {stamp}\n"
        path.write_text(text)
    dist = workdir / "dist"
    dist.mkdir(exist_ok=True)
    out = subprocess.run(
        [
            str(ESBUILD),
            str(workdir / "src" / "index.js"),
            "--bundle",
            "--minify",
            "--sourcemap",
            f"--platform={platform}",
            "--format=iife" if platform == "browser" else "--format=cjs",
            f"--outfile={dist / outfile}",
            *([f"--footer:js=/* build {stamp} */"] if stamp else []),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return dist


def api_token(server):
    """A fresh API token for the server's organization `acme`."""
    return server.cli("token", "create", "--org", "acme")


def cli_env(server, token, project="web", org="acme"):
    """The environment sentry-cli reads: server URL, token, organization, project."""
    env = dict(os.environ)
    for k in list(env):
        if k.startswith("SENTRY_"):
            del env[k]
    env.update(
        {
            "SENTRY_URL": server.url,
            "SENTRY_AUTH_TOKEN": token,
            "SENTRY_ORG": org,
            "SENTRY_LOG_LEVEL": "warn",
            "SENTRY_DISABLE_UPDATE_CHECK": "1",
        }
    )
    if project:
        env["SENTRY_PROJECT"] = project
    return env


def run_cli(cli, args, env, cwd=None, check=True):
    """Runs sentry-cli; returns stdout + stderr. With `check`, a failure fails the test."""
    out = subprocess.run(
        [str(cli), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=180
    )
    text = out.stdout + out.stderr
    if check:
        assert out.returncode == 0, f"sentry-cli {' '.join(args)} failed ({out.returncode}):\n{text}"
    return out.returncode, text


def inject_and_upload(server, cli, dist, release, token=None, url_prefix=None, dist_name=None):
    """`sourcemaps inject` then `sourcemaps upload --release`; returns the debug id the
    minified file now carries."""
    env = cli_env(server, token or api_token(server))
    run_cli(cli, ["sourcemaps", "inject", str(dist)], env)
    args = ["sourcemaps", "upload", "--release", release, str(dist)]
    if url_prefix:
        args += ["--url-prefix", url_prefix]
    if dist_name:
        args += ["--dist", dist_name]
    run_cli(cli, args, env)
    return debug_id_of(dist)


def debug_id_of(dist, name="app.min.js"):
    """The `//# debugId=` that `sourcemaps inject` wrote into a minified file."""
    match = re.search(r"//# debugId=([0-9a-fA-F-]{36})", (Path(dist) / name).read_text())
    assert match, f"{name} carries no debug id"
    return match.group(1).lower()


def artifacts(server, release=None, debug_id=None):
    """Stored artifact rows (with their release version and headers parsed)."""
    sql = (
        "SELECT a.id, a.name, a.kind, a.debug_id, a.dist, a.sha1, a.size, a.headers, r.version "
        "FROM artifacts a LEFT JOIN releases r ON r.id = a.release_id WHERE 1 = 1"
    )
    args = []
    if release is not None:
        sql += " AND r.version = ?"
        args.append(release)
    if debug_id is not None:
        sql += " AND a.debug_id = ?"
        args.append(debug_id)
    with server.db() as conn:
        rows = [dict(r) for r in conn.execute(sql + " ORDER BY a.name, a.id", args)]
    for r in rows:
        r["headers"] = json.loads(r["headers"])
    return rows


def blob(server, sha1):
    """The stored content of a blob."""
    with server.db() as conn:
        row = conn.execute("SELECT data FROM blobs WHERE sha1 = ?", (sha1,)).fetchone()
    return None if row is None else bytes(row[0])
