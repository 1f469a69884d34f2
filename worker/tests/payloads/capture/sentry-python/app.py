"""Sends the events the Python fixtures were captured from (one envelope each)."""
import logging


import sentry_sdk

from shop import payments

sentry_sdk.init(
    release="shop@1.4.2",
    environment="staging",
    server_name="web-01",
    traces_sample_rate=0,
)

log = logging.getLogger("shop.checkout")

sentry_sdk.set_user({"id": 42, "email": "ada@example.com", "username": "ada"})
sentry_sdk.set_tag("customer_tier", "gold")
sentry_sdk.set_tag("region", "eu-west-1")
sentry_sdk.add_breadcrumb(category="auth", message="user logged in", level="info")
sentry_sdk.add_breadcrumb(category="cart", message="added 3 items", data={"items": 3})
log.warning("slow payment provider: %s ms", 1234)

try:
    payments.charge({"id": 1001, "amount": "12.50 EUR"})
except payments.PaymentError:
    sentry_sdk.capture_exception()

sentry_sdk.capture_message("Inventory sync finished with warnings", level="warning")

payments.refund({"id": 1002})

sentry_sdk.flush()
