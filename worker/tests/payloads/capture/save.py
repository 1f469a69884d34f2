"""Writes captured event items as fixtures (pretty-printed, key order and numbers kept)."""
import json, sys
from collections import OrderedDict
import extract

DEST = "/work/main/worker/tests/payloads/"
jobs = [
    ("out-py/000.bin", "sentry-python/chained_exception.json"),
    ("out-py/001.bin", "sentry-python/capture_message.json"),
    ("out-py/002.bin", "sentry-python/logging_error.json"),
    ("out-py/003.bin", "sentry-python/wsgi_unhandled.json"),
    ("out-node/001.bin", "sentry-node/handled_error_with_cause.json"),
    ("out-node/003.bin", "sentry-node/uncaught_exception.json"),
    ("/srv/inventory-sync/out/000.envelope", "sentry-rust/capture_error.json"),
    ("/srv/inventory-sync/out/001.envelope", "sentry-rust/panic.json"),
]
headers = OrderedDict()
for src, dst in jobs:
    env_header, items = extract.items(open(src, "rb").read())
    (item_header, payload), = [(h, p) for h, p in items if h.get("type") == "event"]
    event = json.loads(payload, object_pairs_hook=OrderedDict)
    with open(DEST + dst, "w") as f:
        json.dump(event, f, indent=2, ensure_ascii=False)
        f.write("\n")
    headers[dst] = env_header
with open(DEST + "envelope_headers.json", "w") as f:
    json.dump(headers, f, indent=2)
    f.write("\n")
