// Drives the web UI in the machine's headless Chromium, one phase per run (the Python test
// sends events with the real sentry-sdk between phases). Prints one JSON line.
//   node flow.js setup   BASE EMAIL PASSWORD ARTIFACTS
//   node flow.js triage  BASE EMAIL PASSWORD ARTIFACTS
//   node flow.js reopened BASE EMAIL PASSWORD ARTIFACTS ISSUE_URL
const { chromium } = require('playwright-core');

function launch() {
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
           '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
}

function check(cond, what) {
  if (!cond) throw new Error('check failed: ' + what);
}

async function login(page, base, email, password) {
  await page.goto(base + '/login');
  await page.fill('input[name=email]', email);
  await page.fill('input[name=password]', password);
  await Promise.all([page.waitForNavigation(), page.click('button[type=submit].primary')]);
}

(async () => {
  const [phase, base, email, password, artifacts, extra] = process.argv.slice(2);
  const browser = await launch();
  const context = await browser.newContext({ viewport: { width: 1360, height: 900 } });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  let out = {};
  if (phase === 'setup') {
    // A fresh server sends the first visitor to the setup page, which wants the link
    // the server printed (SETUP_LINK, read from <data dir>/setup-token by the test).
    await page.goto(base + '/');
    check(page.url().endsWith('/setup'), 'redirected to /setup, got ' + page.url());
    // That page is the expected 403 (no setup link yet), which Chromium logs as an error.
    errors.length = 0;
    const stranger = await (await context.request.get(base + '/setup', { maxRedirects: 0 })).status();
    check(stranger === 403, 'setup without the link is refused, got ' + stranger);
    await page.goto(process.env.SETUP_LINK.replace(/^https?:\/\/[^/]+/, base));
    await page.fill('input[name=email]', email);
    await page.fill('input[name=password]', password);
    await page.fill('input[name=password2]', password);
    await page.fill('input[name=org_name]', 'Acme Shop');
    await Promise.all([page.waitForNavigation(), page.click('button[type=submit].primary')]);
    check(page.url().includes('/organizations/acme-shop/projects'), 'landed on projects: ' + page.url());
    // Setup is a one-time page.
    const again = await (await context.request.get(base + '/setup', { maxRedirects: 0 })).status();
    check(again === 303, 'setup redirects once done, got ' + again);
    // Log out and in again through the login form.
    await Promise.all([page.waitForNavigation(), page.click('form[action="/logout"] button')]);
    check(page.url().endsWith('/login'), 'logged out to /login');
    await login(page, base, email, password);
    await page.goto(base + '/organizations/acme-shop/projects');
    await page.fill('input[name=slug]', 'shop');
    await page.selectOption('select[name=platform]', 'python');
    await Promise.all([page.waitForNavigation(), page.click('form[action$="/projects"] button[type=submit]')]);
    const dsn = (await page.textContent('#dsn-value')).trim();
    check(/^http:\/\/[0-9a-f]{32}@/.test(dsn), 'DSN shown: ' + dsn);
    const snippets = await page.$$eval('details.snippet summary', (s) => s.map((x) => x.textContent.trim()));
    check(JSON.stringify(snippets) === JSON.stringify(['Python', 'Node.js', 'Browser JavaScript', 'Rust']), 'snippets ' + snippets);
    await page.screenshot({ path: artifacts + '/project-settings.png', fullPage: true });
    out = { dsn };
  } else if (phase === 'triage') {
    await login(page, base, email, password);
    await page.goto(base + '/organizations/acme-shop/issues');
    // Find it by search.
    await page.fill('#search', 'is:unresolved ZeroDivisionError');
    await Promise.all([page.waitForNavigation(), page.press('#search', 'Enter')]);
    const titles = await page.$$eval('table.issues a.title', (a) => a.map((x) => x.textContent.trim()));
    check(titles.length === 1 && titles[0].startsWith('ZeroDivisionError'), 'search found the issue: ' + titles);
    // A search that matches nothing shows nothing.
    await page.goto(base + '/organizations/acme-shop/issues?query=' + encodeURIComponent('level:fatal'));
    check((await page.$$('table.issues a.title')).length === 0, 'level:fatal matches nothing');
    await page.goto(base + '/organizations/acme-shop/issues');
    await page.screenshot({ path: artifacts + '/issues-list.png', fullPage: true });
    await page.fill('#search', 'ZeroDivisionError');
    await Promise.all([page.waitForNavigation(), page.press('#search', 'Enter')]);
    await Promise.all([page.waitForNavigation(), page.click('table.issues a.title')]);
    const issueUrl = page.url().split('?')[0];
    // Stack trace and breadcrumbs.
    const frames = await page.$$eval('li.frame .fn', (f) => f.map((x) => x.textContent));
    check(frames.includes('divide') && frames.includes('checkout'), 'frames: ' + frames);
    const source = await page.textContent('li.frame details[open] ol.source li.current');
    check(source.includes('total / parts'), 'source context of the crashing line: ' + source);
    const vars = await page.textContent('li.frame details[open] table.vars');
    check(vars.includes('parts') && vars.includes('0'), 'locals shown: ' + vars);
    const crumbs = await page.$$eval('.crumbs-table .crumb-msg', (c) => c.map((x) => x.textContent));
    check(crumbs.includes('user logged in'), 'breadcrumbs: ' + crumbs);
    const facets = await page.$$eval('.facet h3', (h) => h.map((x) => x.textContent));
    check(facets.some((f) => f.startsWith('release')), 'release facet: ' + facets);
    await page.screenshot({ path: artifacts + '/issue-page.png', fullPage: true });
    // The theme toggle switches to dark; take that too.
    await page.click('[data-theme-toggle]');
    await page.screenshot({ path: artifacts + '/issue-page-dark.png', fullPage: false });
    await page.click('[data-theme-toggle]');
    // A comment in Markdown with hostile bits: the formatting shows, the HTML shows as
    // text, and nothing runs — not even in a context that ignores the page's CSP.
    const comment = 'Looking into it: **checkout** [docs](https://example.com/x)\n\n' +
      '<img src=x onerror="window.__xss=1">\n\n[click](javascript:window.__xss=2) ' +
      '<script>window.__xss=3</script> ![y](x" onerror="window.__xss=4)';
    await page.fill('#comment-text', comment);
    await Promise.all([page.waitForNavigation(), page.click('form.comment-form button[type=submit]')]);
    const noteHtml = await page.innerHTML('.timeline li.note .note-body');
    check(noteHtml.includes('<strong>checkout</strong>'), 'Markdown rendered: ' + noteHtml);
    const noteText = await page.textContent('.timeline li.note .note-body');
    check(noteText.includes('<img src=x onerror='), 'raw HTML shown as text: ' + noteText);
    const who = await page.textContent('.timeline li.note .entry-head');
    check(who.includes(email) && who.includes('commented'), 'comment by its author: ' + who);
    const inert = async (p) => {
      await p.waitForTimeout(150);
      return p.evaluate(() => ({
        flag: window.__xss === undefined ? null : String(window.__xss),
        injected: document.querySelectorAll('.note-body img, .note-body script, .note-body [onerror], .note-body [onload]').length,
        jsLinks: Array.from(document.querySelectorAll('.note-body a[href]')).map((a) => a.getAttribute('href')).filter((h) => /^\s*(javascript|data):/i.test(h)),
      }));
    };
    const here = await inert(page);
    check(here.flag === null && here.injected === 0 && here.jsLinks.length === 0, 'comment inert: ' + JSON.stringify(here));
    const noCsp = await browser.newContext({ bypassCSP: true });
    const raw = await noCsp.newPage();
    await login(raw, base, email, password);
    await raw.goto(page.url());
    const bare = await inert(raw);
    check(bare.flag === null && bare.injected === 0 && bare.jsLinks.length === 0, 'comment inert without CSP: ' + JSON.stringify(bare));
    await noCsp.close();
    await page.screenshot({ path: artifacts + '/issue-activity.png', fullPage: true });
    // Assign it to oneself: the select keeps the choice, the timeline says so, and the
    // issue is in the "Assigned to me" list.
    await page.selectOption('form.assign select[name=assignee]', { label: email });
    await Promise.all([page.waitForNavigation(), page.click('form.assign button[type=submit]')]);
    const chosen = await page.$eval('form.assign select[name=assignee]', (s) => s.options[s.selectedIndex].textContent.trim());
    check(chosen === email, 'assigned to ' + chosen);
    const timeline = await page.textContent('.timeline');
    check(/assigned/i.test(timeline), 'assignment on the timeline: ' + timeline.slice(0, 300));
    await page.goto(base + '/organizations/acme-shop/issues');
    await Promise.all([page.waitForNavigation(), page.click('a.mine')]);
    const mine = await page.$$eval('table.issues a.title', (a) => a.map((x) => x.textContent.trim()));
    check(mine.length === 1 && mine[0].startsWith('ZeroDivisionError'), 'assigned to me: ' + mine);
    await page.goto(issueUrl);
    // Resolve.
    await Promise.all([page.waitForNavigation(), page.click('button[value=resolve]')]);
    const status = (await page.textContent('.statusline .badge')).trim();
    check(status === 'Resolved', 'status after resolving: ' + status);
    out = { issueUrl };
  } else if (phase === 'merge') {
    // Two issues become one from the list (select both, Merge), then split again from
    // the merged issue's "Merged fingerprints" card (check one, Unmerge).
    await login(page, base, email, password);
    await page.goto(base + '/organizations/acme-shop/issues?query=is:unresolved');
    const before = await page.$$eval('table.issues a.title', (a) => a.map((x) => x.textContent.trim()));
    check(before.length === 2, 'two issues to merge: ' + before);
    for (const box of await page.$$('table.issues input[name=issue]')) await box.check();
    await Promise.all([page.waitForNavigation(), page.click('button[value=merge]')]);
    await page.goto(base + '/organizations/acme-shop/issues?query=is:unresolved');
    const merged = await page.$$eval('table.issues a.title', (a) => a.map((x) => x.textContent.trim()));
    check(merged.length === 1, 'one issue after merging: ' + merged);
    await Promise.all([page.waitForNavigation(), page.click('table.issues a.title')]);
    const hashes = await page.$$('#fingerprints input[name=hash]');
    check(hashes.length === 2, 'two fingerprints on the merged issue: ' + hashes.length);
    const timeline = await page.textContent('.timeline');
    check(/merge/i.test(timeline), 'the merge is on the timeline: ' + timeline.slice(0, 300));
    await page.screenshot({ path: artifacts + '/issue-merged.png', fullPage: true });
    await hashes[1].check();
    await Promise.all([page.waitForNavigation(), page.click('#fingerprints button[type=submit]')]);
    await page.goto(base + '/organizations/acme-shop/issues?query=is:unresolved');
    const split = await page.$$eval('table.issues a.title', (a) => a.map((x) => x.textContent.trim()));
    check(split.length === 2, 'two issues after unmerging: ' + split);
    out = { merged: merged[0], split };
  } else if (phase === 'reopened') {
    await login(page, base, email, password);
    await page.goto(extra);
    const status = (await page.textContent('.statusline .badge')).trim();
    check(status === 'Unresolved', 'the regression reopened it: ' + status);
    await page.goto(base + '/organizations/acme-shop/issues?query=is:unresolved');
    const titles = await page.$$eval('table.issues a.title', (a) => a.map((x) => x.textContent.trim()));
    check(titles.some((t) => t.startsWith('ZeroDivisionError')), 'back in the unresolved list');
    out = { status };
  }
  check(errors.length === 0, 'no page errors: ' + errors.join(' | '));
  console.log(JSON.stringify(out));
  await browser.close();
})().catch((e) => { console.error(e); process.exit(1); });
