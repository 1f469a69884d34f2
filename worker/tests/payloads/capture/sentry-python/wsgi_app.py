"""A WSGI app whose unhandled error the Python request fixture was captured from."""
import sys
import threading
import urllib.request
from wsgiref.simple_server import make_server, WSGIRequestHandler

import sentry_sdk
from sentry_sdk.integrations.wsgi import SentryWsgiMiddleware

sentry_sdk.init(release="shop@1.4.2", environment="production",
                send_default_pii=True, traces_sample_rate=0)


def average(values):
    return sum(values) / len(values)


def app(environ, start_response):
    ratio = average([])
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(ratio).encode()]


class Quiet(WSGIRequestHandler):
    def log_message(self, *a):
        pass


server = make_server("127.0.0.1", 0, SentryWsgiMiddleware(app), handler_class=Quiet)
threading.Thread(target=server.handle_request, daemon=True).start()
req = urllib.request.Request(
    f"http://127.0.0.1:{server.server_port}/reports/ratio?team=7&period=week",
    headers={"User-Agent": "curl/8.5.0", "Accept": "application/json", "Cookie": "session=abc; theme=dark"},
)
try:
    urllib.request.urlopen(req, timeout=5)
except Exception:
    pass
sentry_sdk.flush()
