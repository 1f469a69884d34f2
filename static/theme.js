// Applies the saved theme before the page paints (loaded synchronously in <head>).
// Without a saved choice the CSS follows prefers-color-scheme.
(function () {
  try {
    var t = localStorage.getItem('faultline-theme');
    if (t === 'light' || t === 'dark') document.documentElement.setAttribute('data-theme', t);
  } catch (e) { /* storage may be disabled */ }
})();
