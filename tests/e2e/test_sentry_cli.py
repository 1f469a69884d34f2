"""`sentry-cli send-event` (2.x from PyPI) reaches Faultline through the DSN."""

import os
import re
import subprocess
from pathlib import Path

from conftest import WORK


def test_sentry_cli_send_event(server):
    cli = WORK / "venv" / "bin" / "sentry-cli"
    env = dict(os.environ, SENTRY_DSN=server.dsn)
    out = subprocess.run(
        [str(cli), "send-event", "-m", "hello from sentry-cli", "--tag", "origin:cli"],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr + out.stdout
    match = re.search(r"([0-9a-f]{32}|[0-9a-f-]{36})", out.stdout + out.stderr)
    assert match, out.stdout + out.stderr
    event = server.wait_for_event(match.group(1))
    assert event["title"] == "hello from sentry-cli"
    assert dict(event["payload"]["tags"]).get("origin") == "cli"


def test_faultline_send_test_event(server):
    out = subprocess.run(
        [os.environ.get("FAULTLINE_BIN", "faultline"), "send-test-event", "--dsn", server.dsn],
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    event = server.wait_for_event(out.stdout.strip())
    assert "test event" in event["title"]
