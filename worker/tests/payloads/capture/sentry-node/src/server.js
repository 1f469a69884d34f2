'use strict';
// Sends the events the @sentry/node fixtures were captured from.
const Sentry = require('@sentry/node');
const { orderTotal } = require('./orders');

Sentry.init({
  release: 'api@2.3.0',
  environment: 'production',
  serverName: 'api-7f9c',
  tracesSampleRate: 0,
});

Sentry.setUser({ id: 'u-981', email: 'grace@example.com' });
Sentry.setTag('feature', 'checkout');
Sentry.addBreadcrumb({ category: 'db', message: 'SELECT * FROM orders WHERE id = $1', level: 'info' });

function handleRequest() {
  try {
    try {
      orderTotal({ rows: {} }, 17);
    } catch (err) {
      throw new Error('cannot load order 17', { cause: err });
    }
  } catch (err) {
    Sentry.captureException(err);
  }
}

handleRequest();

setTimeout(() => {
  // Uncaught: the onUncaughtException integration reports it, flushes and exits.
  JSON.parse('{"broken": ');
}, 200);
