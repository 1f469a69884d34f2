"""sentry-cli 3.x (npm) and 2.x (PyPI) upload source maps, create and finalize releases
and record deploys against Faultline; `issues list` / `issues resolve` work. Asserted on
what the server stored: one artifact row per file with its URL, kind, debug id, release
and content."""

import hashlib
import json
import subprocess
import time
import urllib.request

import pytest

from conftest import BIN
from sourcemaps import (
    CLI2,
    CLI3,
    api_token,
    artifacts,
    blob,
    build_app,
    cli_env,
    debug_id_of,
    inject_and_upload,
    run_cli,
)

CLIS = [pytest.param(CLI3, id="cli3"), pytest.param(CLI2, id="cli2")]


def release_row(server, version):
    with server.db() as conn:
        row = conn.execute("SELECT * FROM releases WHERE version = ?", (version,)).fetchone()
    return None if row is None else dict(row)


@pytest.mark.parametrize("cli", CLIS)
def test_inject_upload_release_finalize_deploy(server, tmp_path, cli):
    release = f"shop@{cli.parent.name}-{time.time_ns()}"
    dist = build_app(tmp_path, stamp=tmp_path.name)
    minified = (dist / "app.min.js").read_bytes()
    debug_id = inject_and_upload(server, cli, dist, release)
    assert (dist / "app.min.js").read_bytes() != minified, "inject changed the file"

    rows = artifacts(server, release=release)
    assert [(r["name"], r["kind"]) for r in rows] == [
        ("~/app.min.js", "minified_source"),
        ("~/app.min.js.map", "source_map"),
    ]
    for r in rows:
        assert r["debug_id"] == debug_id
        assert r["dist"] is None
    js, smap = rows
    assert js["headers"]["sourcemap"] == "app.min.js.map"
    # The stored content is the file exactly as uploaded, named by its sha1.
    assert blob(server, js["sha1"]) == (dist / "app.min.js").read_bytes()
    assert js["sha1"] == hashlib.sha1((dist / "app.min.js").read_bytes()).hexdigest()
    stored_map = json.loads(blob(server, smap["sha1"]))
    assert stored_map.get("debug_id", stored_map.get("debugId")) == debug_id
    assert any(s.endswith("src/format.js") for s in stored_map["sources"])

    env = cli_env(server, api_token(server))
    run_cli(cli, ["releases", "new", release], env)
    run_cli(cli, ["releases", "finalize", release], env)
    if cli == CLI3:
        run_cli(cli, ["deploys", "new", "--release", release, "-e", "production", "-n", "ci"], env)
        _, listing = run_cli(cli, ["deploys", "list", "--release", release], env)
    else:
        run_cli(cli, ["releases", "deploys", release, "new", "-e", "production", "-n", "ci"], env)
        _, listing = run_cli(cli, ["releases", "deploys", release, "list"], env)
    assert "production" in listing
    row = release_row(server, release)
    assert row["date_released"] is not None
    with server.db() as conn:
        deploys = conn.execute(
            "SELECT environment, name FROM deploys WHERE release_id = ?", (row["id"],)
        ).fetchall()
    assert [tuple(d) for d in deploys] == [("production", "ci")]
    _, info = run_cli(cli, ["releases", "info", release], env)
    assert release in info
    _, listing = run_cli(cli, ["releases", "list"], env)
    assert release in listing

    # Uploading the same files again changes nothing (no duplicates).
    run_cli(cli, ["sourcemaps", "upload", "--release", release, str(dist)], env)
    assert len(artifacts(server, release=release)) == 2


@pytest.mark.parametrize("cli", CLIS)
def test_upload_by_debug_id_without_release(server, tmp_path, cli):
    dist = build_app(tmp_path, platform="browser", stamp=tmp_path.name)
    env = cli_env(server, api_token(server))
    run_cli(cli, ["sourcemaps", "inject", str(dist)], env)
    debug_id = debug_id_of(dist)
    _, out = run_cli(cli, ["sourcemaps", "upload", "--url-prefix", "~/static/js", str(dist)], env)
    rows = artifacts(server, debug_id=debug_id)
    assert sorted((r["name"], r["version"]) for r in rows) == [
        ("~/static/js/app.min.js", None),
        ("~/static/js/app.min.js.map", None),
    ], out


def test_legacy_release_files_upload_sourcemaps_without_debug_ids(server, tmp_path):
    release = f"legacy-{time.time_ns()}"
    dist = build_app(tmp_path, stamp=tmp_path.name)
    env = cli_env(server, api_token(server))
    run_cli(CLI2, ["releases", "new", release], env)
    run_cli(
        CLI2,
        ["releases", "files", release, "upload-sourcemaps", str(dist), "--url-prefix", "~/static", "--dist", "web"],
        env,
    )
    rows = artifacts(server, release=release)
    assert [(r["name"], r["kind"], r["debug_id"], r["dist"]) for r in rows] == [
        ("~/static/app.min.js", "minified_source", None, "web"),
        ("~/static/app.min.js.map", "source_map", None, "web"),
    ]
    assert rows[0]["headers"]["sourcemap"] == "app.min.js.map"
    _, listing = run_cli(CLI2, ["releases", "files", release, "list"], env)
    assert "~/static/app.min.js.map" in listing
    # One file, then all of them, deleted through the CLI; their contents go too.
    run_cli(CLI2, ["releases", "files", release, "delete", "~/static/app.min.js.map"], env)
    assert [r["name"] for r in artifacts(server, release=release)] == ["~/static/app.min.js"]
    assert blob(server, rows[1]["sha1"]) is None
    run_cli(CLI2, ["releases", "files", release, "delete", "--all"], env)
    assert artifacts(server, release=release) == []
    assert blob(server, rows[0]["sha1"]) is None


@pytest.mark.parametrize("cli", CLIS)
def test_bad_credentials_are_refused_clearly(server, tmp_path, cli):
    dist = build_app(tmp_path, stamp=tmp_path.name)
    env = cli_env(server, "sntryu_" + "0" * 64)
    code, out = run_cli(cli, ["sourcemaps", "upload", "--release", "nope", str(dist)], env, check=False)
    assert code != 0
    assert "401" in out or "Invalid token" in out or "authentication" in out.lower(), out
    # A token of another organization sees no organization `acme`.
    try:
        server.cli("org", "create", "elsewhere")
    except AssertionError:
        pass  # created by the other parametrization
    other = server.cli("token", "create", "--org", "elsewhere")
    code, out = run_cli(cli, ["releases", "new", "x1"], cli_env(server, other), check=False)
    assert code != 0
    assert "not found" in out.lower(), out
    assert release_row(server, "x1") is None


def _send_event(server, message):
    out = subprocess.run(
        [BIN, "send-test-event", "--dsn", server.dsn, "--message", message],
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return server.wait_for_event(out.stdout.strip())


@pytest.mark.parametrize("cli", CLIS)
def test_issues_list_and_resolve(server, cli):
    message = f"checkout failed {cli.parent.name} {time.time_ns()}"
    event = _send_event(server, message)
    issue_id = str(event["issue_id"])
    env = cli_env(server, api_token(server))
    _, listing = run_cli(cli, ["issues", "list", "--query", "is:unresolved"], env)
    line = next((l for l in listing.splitlines() if message in l), None)
    assert line, listing
    assert f" {issue_id} " in line and "unresolved" in line and "WEB-" in line

    run_cli(cli, ["issues", "resolve", "-i", issue_id], env)
    with server.db() as conn:
        status = conn.execute("SELECT status FROM issues WHERE id = ?", (issue_id,)).fetchone()[0]
    assert status == "resolved"
    _, listing = run_cli(cli, ["issues", "list", "--query", "is:unresolved"], env)
    assert message not in listing
    _, listing = run_cli(cli, ["issues", "list", "--query", "is:resolved"], env)
    assert message in listing

    # The Web API shows the issue with Sentry's fields and its permalink.
    req = urllib.request.Request(
        f"{server.url}/api/0/issues/{issue_id}/", headers={"Authorization": f"Bearer {env['SENTRY_AUTH_TOKEN']}"}
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        issue = json.load(r)
    assert issue["status"] == "resolved"
    assert issue["permalink"].endswith(f"/organizations/acme/issues/{issue_id}/")
    assert issue["title"] == message
