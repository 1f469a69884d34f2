"""Fixtures for the end-to-end suites: a real `faultline serve` on a free port with its
own data directory, an organization and a project created with the real CLI, and helpers
that read what the server stored."""

import json
import os
import socket
import sqlite3
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
import zstandard

ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / "tests" / ".work"
BIN = os.environ.get("FAULTLINE_BIN") or str(
    Path(os.environ.get("CARGO_TARGET_DIR", "/var/tmp/faultline-target")) / "debug" / "faultline"
)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A running Faultline process and the project it was given."""

    def __init__(self, data_dir, extra_env=None):
        self.data_dir = Path(data_dir)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = dict(os.environ)
        self.env.update(
            {
                "FAULTLINE_BIND": f"127.0.0.1:{self.port}",
                "FAULTLINE_DATA_DIR": str(self.data_dir),
                "FAULTLINE_LOG": "warn",
            }
        )
        self.env.pop("DATABASE_URL", None)
        self.env.pop("REDIS_URL", None)
        self.env.update(extra_env or {})
        self.proc = None
        self.log = open(self.data_dir / "server.log", "ab")

    def cli(self, *args, input=None):
        out = subprocess.run(
            [BIN, *args], env=self.env, input=input, capture_output=True, text=True, timeout=60
        )
        if out.returncode != 0:
            raise AssertionError(f"faultline {' '.join(args)} failed: {out.stderr}")
        return out.stdout.strip()

    def start(self):
        self.proc = subprocess.Popen([BIN, "serve"], env=self.env, stdout=self.log, stderr=self.log)
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited: {(self.data_dir / 'server.log').read_text()}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        raise AssertionError("server did not answer /healthz within 60 s")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()

    # What the server stored.
    def db(self):
        conn = sqlite3.connect(self.data_dir / "faultline.db", timeout=10)
        conn.row_factory = sqlite3.Row
        return conn

    def wait_for_event(self, event_id, timeout=30):
        """The stored event row (with its decompressed payload) once the worker stored it."""
        event_id = event_id.replace("-", "")
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self.db() as conn:
                row = conn.execute("SELECT * FROM events WHERE event_id = ?", (event_id,)).fetchone()
            if row is not None:
                event = dict(row)
                event["payload"] = json.loads(zstandard.ZstdDecompressor().decompressobj().decompress(row["payload"]))
                return event
            time.sleep(0.1)
        raise AssertionError(f"event {event_id} was not stored within {timeout} s; log: {self.tail_log()}")

    def tail_log(self):
        try:
            return (self.data_dir / "server.log").read_text()[-3000:]
        except OSError:
            return ""


@pytest.fixture(scope="session")
def server():
    data = tempfile.mkdtemp(prefix="faultline-e2e-")
    srv = Server(data)
    srv.cli("migrate")
    srv.cli("user", "create", "--email", "admin@example.com", "--superuser", "--password-stdin", input="correct horse battery\n")
    srv.cli("org", "create", "acme", "--owner", "admin@example.com")
    srv.dsn = srv.cli("project", "create", "--org", "acme", "web", "--platform", "python")
    srv.start()
    yield srv
    srv.stop()
