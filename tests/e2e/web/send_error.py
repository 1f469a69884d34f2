"""Sends one ZeroDivisionError with breadcrumbs, a user and a tag through the real
sentry-sdk; prints the event id. Usage: send_error.py DSN RELEASE"""

import sys

import sentry_sdk

sentry_sdk.init(dsn=sys.argv[1], release=sys.argv[2], environment="production")
sentry_sdk.set_user({"id": "42", "email": "alice@example.com"})
sentry_sdk.set_tag("checkout_step", "payment")
sentry_sdk.add_breadcrumb(category="auth", message="user logged in", level="info")
sentry_sdk.add_breadcrumb(category="http", message="GET /cart", data={"status": 200})


def divide(total, parts):
    ratio = total / parts
    return ratio


def checkout(cart):
    items = len(cart)
    return divide(100, items)


try:
    checkout([])
except Exception:
    print(sentry_sdk.capture_exception())
sentry_sdk.flush()
