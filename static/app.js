// Progressive enhancement only: every page works without this file.
// Theme toggle, copy buttons, select-all, clickable rows and keyboard shortcuts.
(function () {
  'use strict';
  var root = document.documentElement;

  function currentTheme() {
    var t = root.getAttribute('data-theme');
    if (t) return t;
    return window.matchMedia && window.matchMedia('(prefers-color-scheme: dark)').matches ? 'dark' : 'light';
  }
  function toggleTheme() {
    var next = currentTheme() === 'dark' ? 'light' : 'dark';
    root.setAttribute('data-theme', next);
    try { localStorage.setItem('faultline-theme', next); } catch (e) { /* ignore */ }
  }

  document.querySelectorAll('[data-theme-toggle]').forEach(function (b) {
    b.hidden = false;
    b.addEventListener('click', toggleTheme);
  });
  document.querySelectorAll('.kbd-hint').forEach(function (e) { e.hidden = false; });

  // Copy buttons: data-copy names the element whose text is copied.
  document.querySelectorAll('[data-copy]').forEach(function (b) {
    var target = document.getElementById(b.getAttribute('data-copy'));
    if (!target || !navigator.clipboard) return;
    b.hidden = false;
    b.addEventListener('click', function () {
      navigator.clipboard.writeText(target.textContent).then(function () {
        var old = b.textContent;
        b.textContent = 'Copied';
        setTimeout(function () { b.textContent = old; }, 1200);
      });
    });
  });

  // Select all issues.
  document.querySelectorAll('[data-select-all]').forEach(function (box) {
    box.closest('label').hidden = false;
    box.addEventListener('change', function () {
      document.querySelectorAll('table.issues input[name=issue]').forEach(function (c) { c.checked = box.checked; });
    });
  });

  // Issue rows: a click outside links and checkboxes opens the issue.
  var rows = Array.prototype.slice.call(document.querySelectorAll('tr[data-href]'));
  rows.forEach(function (row) {
    row.addEventListener('click', function (ev) {
      if (ev.target.closest('a, input, button, label')) return;
      window.location.href = row.getAttribute('data-href');
    });
  });

  var selected = -1;
  function select(i) {
    if (!rows.length) return;
    selected = Math.max(0, Math.min(rows.length - 1, i));
    rows.forEach(function (r, j) { r.classList.toggle('kb-selected', j === selected); });
    rows[selected].scrollIntoView({ block: 'nearest' });
  }

  var pendingG = false;
  document.addEventListener('keydown', function (ev) {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    var tag = (ev.target.tagName || '').toLowerCase();
    if (tag === 'input' || tag === 'textarea' || tag === 'select' || ev.target.isContentEditable) {
      if (ev.key === 'Escape') ev.target.blur();
      return;
    }
    var k = ev.key;
    if (pendingG) {
      pendingG = false;
      var link = document.querySelector('[data-key="g' + k + '"]');
      if (link) { ev.preventDefault(); window.location.href = link.href; }
      return;
    }
    if (k === 'g') { pendingG = true; setTimeout(function () { pendingG = false; }, 1000); return; }
    if (k === '/') {
      var s = document.getElementById('search');
      if (s) { ev.preventDefault(); s.focus(); s.select(); }
    } else if (k === 'j') { select(selected + 1); }
    else if (k === 'k') { select(selected - 1); }
    else if ((k === 'o' || k === 'Enter') && selected >= 0) { window.location.href = rows[selected].getAttribute('data-href'); }
    else if (k === 'x' && selected >= 0) {
      var c = rows[selected].querySelector('input[type=checkbox]');
      if (c) c.checked = !c.checked;
    } else if (k === 't') { toggleTheme(); }
    else if (k === '?') {
      var d = document.getElementById('shortcuts');
      if (d && d.showModal) d.showModal();
    } else {
      var el = document.querySelector('[data-shortcut="' + k + '"]');
      if (el) { ev.preventDefault(); el.click(); }
    }
  });
})();
