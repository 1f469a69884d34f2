// A tiny browser app: @sentry/browser reports an uncaught error and a handled one.
import * as Sentry from '@sentry/browser';

const ids = {};
Sentry.init({
  dsn: window.FAULTLINE_DSN,
  release: 'web@3.1.0',
  beforeSend(event, hint) {
    const err = hint && hint.originalException;
    ids[err && err.message === 'button exploded' ? 'uncaught' : 'handled'] = event.event_id;
    return event;
  },
});

function renderCart(cart) {
  return cart.items.length;
}

try {
  renderCart(undefined);
} catch (e) {
  Sentry.captureException(e);
}
setTimeout(() => {
  throw new Error('button exploded');
}, 50);
setTimeout(async () => {
  await Sentry.flush(5000);
  console.log('FAULTLINE_IDS ' + JSON.stringify(ids));
}, 500);
