// Visits every page that renders the hostile event and asserts no script ran and no
// markup from the event reached the DOM. CSP is bypassed on purpose, so escaping alone must
// hold. Usage: node xss.js BASE EMAIL PASSWORD PAGES_JSON ; prints one JSON line.
const { chromium } = require('playwright-core');

(async () => {
  const [base, email, password, pagesJson] = process.argv.slice(2);
  const pages = JSON.parse(pagesJson);
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
           '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
  const context = await browser.newContext({ bypassCSP: true, viewport: { width: 1360, height: 900 } });
  const page = await context.newPage();
  const problems = [];
  page.on('dialog', async (d) => { problems.push('dialog opened: ' + d.message() + ' on ' + page.url()); await d.dismiss(); });
  page.on('pageerror', (e) => problems.push('page error: ' + e + ' on ' + page.url()));
  await page.goto(base + '/login');
  await page.fill('input[name=email]', email);
  await page.fill('input[name=password]', password);
  await Promise.all([page.waitForNavigation(), page.click('button[type=submit].primary')]);
  const report = {};
  for (const p of pages) {
    const resp = await page.goto(base + p.path);
    // Give any injected handler (onerror of a broken image, onload) a moment to fire.
    await page.waitForTimeout(150);
    const state = await page.evaluate(() => ({
      flag: window.__xss === undefined ? null : String(window.__xss),
      injected: document.querySelectorAll('img[src="x"], svg[onload], [onerror], [onload], iframe, object, embed').length,
      inlineScripts: document.querySelectorAll('script:not([src])').length,
      foreignScripts: Array.from(document.querySelectorAll('script[src]')).map((s) => s.getAttribute('src')).filter((s) => !s.startsWith('/static/')),
      jsLinks: Array.from(document.querySelectorAll('a[href]')).map((a) => a.getAttribute('href')).filter((h) => /^\s*javascript:/i.test(h)),
      text: document.body.innerText,
    }));
    if (state.flag !== null) problems.push(p.path + ': window.__xss was set');
    if (state.injected) problems.push(p.path + ': ' + state.injected + ' injected elements');
    if (state.inlineScripts) problems.push(p.path + ': inline script elements');
    if (state.foreignScripts.length) problems.push(p.path + ': foreign scripts ' + state.foreignScripts);
    if (state.jsLinks.length) problems.push(p.path + ': javascript: links ' + state.jsLinks);
    for (const t of p.mustShow || []) {
      if (!state.text.includes(t)) problems.push(p.path + ': the payload is not shown as text: ' + t);
    }
    report[p.path] = resp.status();
    if (p.screenshot) await page.screenshot({ path: p.screenshot, fullPage: true });
  }
  console.log(JSON.stringify({ problems, report }));
  await browser.close();
})().catch((e) => { console.error(e); process.exit(1); });
