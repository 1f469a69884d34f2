"""Uploads kept in an S3-compatible bucket: `faultline serve` configured with
FAULTLINE_ARTIFACT_S3_* against a real S3 server running here (moto's), the real
sentry-cli 3.x uploads the bundle's maps, @sentry/node sends an error from the minified
bundle. Asserted: the stored event is symbolicated, the uploaded files are objects in the
bucket named by their SHA-1, and the database holds no bytes of them."""

import json
import subprocess
import tempfile
import time
import urllib.request

import boto3
import pytest

from conftest import WORK, Server, free_port
from sourcemaps import CLI3, api_token, artifacts, blob, build_app, cli_env, run_cli
from test_sourcemap_symbolication import NODE, NODE_ENV, NODE_RUNNER, assert_original_frames, upload

BUCKET = "faultline-artifacts"
PREFIX = "e2e/"


@pytest.fixture(scope="module")
def s3():
    """moto's S3 server on a free port, with the bucket created; yields a boto3 client."""
    port = free_port()
    log = open(tempfile.mkstemp(prefix="moto-", suffix=".log")[1], "wb")
    proc = subprocess.Popen(
        [str(WORK / "venv" / "bin" / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log, stderr=log,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while True:
        assert proc.poll() is None, "moto_server exited"
        try:
            urllib.request.urlopen(endpoint + "/", timeout=1).close()
            break
        except OSError as e:
            if getattr(e, "code", None):
                break  # it answered (with an HTTP error): it is up
            assert time.time() < deadline, "moto_server did not start"
            time.sleep(0.2)
    client = boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1",
        aws_access_key_id="faultline", aws_secret_access_key="faultline-secret",
    )
    client.create_bucket(Bucket=BUCKET)
    client.endpoint = endpoint
    yield client
    proc.terminate()
    proc.wait(timeout=10)
    log.close()


@pytest.fixture(scope="module")
def s3_server(s3):
    data = tempfile.mkdtemp(prefix="faultline-e2e-s3-")
    srv = Server(data, extra_env={
        "FAULTLINE_ARTIFACT_S3_ENDPOINT": s3.endpoint,
        "FAULTLINE_ARTIFACT_S3_BUCKET": BUCKET,
        "FAULTLINE_ARTIFACT_S3_REGION": "us-east-1",
        "FAULTLINE_ARTIFACT_S3_ACCESS_KEY_ID": "faultline",
        "FAULTLINE_ARTIFACT_S3_SECRET_ACCESS_KEY": "faultline-secret",
        "FAULTLINE_ARTIFACT_S3_PREFIX": PREFIX,
        # The collector every second, for blobs unreferenced for 5 s (not an hour), so the
        # garbage test can watch it; sentry-cli assembles its chunks well within that.
        "FAULTLINE_ARTIFACT_GC_GRACE_SECS": "5",
        "FAULTLINE_ARTIFACT_GC_INTERVAL_SECS": "1",
    })
    srv.cli("migrate")
    srv.cli("org", "create", "acme")
    srv.dsn = srv.cli("project", "create", "--org", "acme", "web", "--platform", "node")
    srv.start()
    yield srv
    srv.stop()


def bucket_keys(s3):
    listed = s3.list_objects_v2(Bucket=BUCKET)
    return {o["Key"]: o for o in listed.get("Contents", [])}


def test_sentry_cli_upload_lands_in_the_bucket_and_maps_events(s3, s3_server, tmp_path):
    release = f"s3-{time.time_ns()}"
    dist = build_app(tmp_path, platform="node", stamp=release)
    resolved_with = upload(s3_server, CLI3, dist, release, url_prefix="~" + str(dist))

    # Every uploaded file is an object named by its SHA-1 holding exactly its bytes, and
    # the database row carries no copy.
    rows = artifacts(s3_server, release=release)
    assert {r["kind"] for r in rows} >= {"minified_source", "source_map"}, rows
    keys = bucket_keys(s3)
    for r in rows:
        key = PREFIX + r["sha1"]
        assert key in keys, f"{key} not in the bucket: {sorted(keys)}"
        body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        assert len(body) == r["size"]
        assert blob(s3_server, r["sha1"]) == b"", "the bytes are in the bucket, not the database"
    minified = next(r for r in rows if r["kind"] == "minified_source")
    assert s3.get_object(Bucket=BUCKET, Key=PREFIX + minified["sha1"])["Body"].read() == (
        dist / "app.min.js"
    ).read_bytes()

    # An error from the bundle is mapped with the files from the bucket.
    runner = tmp_path / "runner.js"
    runner.write_text(NODE_RUNNER)
    out = subprocess.run(
        ["node", str(runner)], cwd=NODE, capture_output=True, text=True, timeout=90,
        env=dict(NODE_ENV, FAULTLINE_DSN=s3_server.dsn, FAULTLINE_RELEASE=release,
                 FAULTLINE_BUNDLE=str(dist / "app.min.js")),
    )
    assert out.returncode == 0, out.stderr
    event_id = json.loads(out.stdout.strip().splitlines()[-1])["id"]
    assert_original_frames(s3_server.wait_for_event(event_id), resolved_with)


def test_a_damaged_object_leaves_frames_unmapped_with_the_reason(s3, s3_server, tmp_path):
    release = f"s3-damaged-{time.time_ns()}"
    dist = build_app(tmp_path, platform="node", stamp=release)
    upload(s3_server, CLI3, dist, release, url_prefix="~" + str(dist))
    source_map = next(r for r in artifacts(s3_server, release=release) if r["kind"] == "source_map")
    s3.put_object(Bucket=BUCKET, Key=PREFIX + source_map["sha1"], Body=b'{"version":3,"mappings":""}')

    runner = tmp_path / "runner.js"
    runner.write_text(NODE_RUNNER)
    out = subprocess.run(
        ["node", str(runner)], cwd=NODE, capture_output=True, text=True, timeout=90,
        env=dict(NODE_ENV, FAULTLINE_DSN=s3_server.dsn, FAULTLINE_RELEASE=release,
                 FAULTLINE_BUNDLE=str(dist / "app.min.js")),
    )
    assert out.returncode == 0, out.stderr
    event = s3_server.wait_for_event(json.loads(out.stdout.strip().splitlines()[-1])["id"])
    frames = event["payload"]["exception"]["values"][-1]["stacktrace"]["frames"]
    app = [f for f in frames if (f.get("abs_path") or "").endswith("app.min.js")]
    assert app and all(f["data"]["symbolicator_status"] == "storage_error" for f in app), frames
    assert all("damaged" in f["data"]["symbolicator_message"] for f in app), app
    # Nothing was rewritten: the frames are the SDK's, so there is no raw copy either.
    assert not event["payload"]["exception"]["values"][-1].get("raw_stacktrace")


def wait_until(check, what, timeout=40):
    deadline = time.time() + timeout
    while not check():
        assert time.time() < deadline, f"timed out waiting until {what}"
        time.sleep(0.5)


def test_objects_no_artifact_names_are_collected_from_the_bucket(s3, s3_server, tmp_path):
    release = f"s3-gc-{time.time_ns()}"
    dist = build_app(tmp_path, platform="node", stamp=release)
    upload(s3_server, CLI3, dist, release, url_prefix="~" + str(dist))
    files = {PREFIX + r["sha1"] for r in artifacts(s3_server, release=release)}
    assert files and files <= set(bucket_keys(s3)), "uploaded files are in the bucket"
    with s3_server.db() as conn:
        referenced = {r[0] for r in conn.execute("SELECT sha1 FROM artifacts")}
        chunks = {PREFIX + r[0] for r in conn.execute("SELECT sha1 FROM blobs")} - {
            PREFIX + s for s in referenced
        }

    assert chunks, "the bundle's chunks are stored until the collector sees them"
    # The bundle's chunks are named by no artifact: row and object go after the grace
    # period; the files stay.
    wait_until(lambda: not (chunks & set(bucket_keys(s3))), "the chunks are collected")
    assert files <= set(bucket_keys(s3)), "files artifacts name stay"

    # Deleting the release drops its artifacts; their objects go with the next collection.
    env = cli_env(s3_server, api_token(s3_server))
    run_cli(CLI3, ["releases", "delete", release], env)
    assert artifacts(s3_server, release=release) == []
    wait_until(lambda: not (files & set(bucket_keys(s3))), "the release's files are collected")
