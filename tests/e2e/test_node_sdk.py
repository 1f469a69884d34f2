"""The real @sentry/node sends a handled error and an uncaught one; both are stored."""

import json
import os
import subprocess

from conftest import WORK

SCRIPT = r"""
const Sentry = require('@sentry/node');
const ids = {};
Sentry.init({
  dsn: process.env.SENTRY_DSN,
  release: 'api@2.0.0',
  beforeSend(event, hint) {
    const err = hint && hint.originalException;
    ids[err && err.message === 'uncaught boom' ? 'uncaught' : 'handled'] = event.event_id;
    return event;
  },
});
process.on('exit', () => { console.log(JSON.stringify(ids)); });
function parseOrder(raw) { return JSON.parse(raw); }
try { parseOrder('{not json'); } catch (e) { Sentry.captureException(e); }
setTimeout(() => { throw new Error('uncaught boom'); }, 100);
"""


def test_node_handled_and_uncaught_errors_are_stored(server):
    node_dir = WORK / "node"
    out = subprocess.run(
        ["node", "-e", SCRIPT], cwd=node_dir, capture_output=True, text=True, timeout=60,
        env=dict(os.environ, SENTRY_DSN=server.dsn),
    )
    # The uncaught error ends the process with a non-zero code after the SDK flushed.
    ids = json.loads(out.stdout.strip().splitlines()[-1])
    handled = server.wait_for_event(ids["handled"])
    assert handled["title"].startswith("SyntaxError")
    assert handled["release"] == "api@2.0.0"
    uncaught = server.wait_for_event(ids["uncaught"])
    assert uncaught["title"] == "Error: uncaught boom"
    mech = uncaught["payload"]["exception"]["values"][-1].get("mechanism", {})
    assert mech.get("handled") is False
