// Loads the page in the machine's headless Chromium and prints the event ids the SDK sent.
const { chromium } = require('playwright-core');

(async () => {
  const [pageUrl] = process.argv.slice(2);
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
           '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
  const page = await browser.newPage();
  const done = new Promise((resolve) => {
    page.on('console', (msg) => {
      const text = msg.text();
      if (text.startsWith('FAULTLINE_IDS ')) resolve(text.slice('FAULTLINE_IDS '.length));
    });
  });
  const failed = [];
  page.on('requestfailed', (r) => failed.push(r.url() + ' ' + (r.failure() || {}).errorText));
  await page.goto(pageUrl);
  const timeout = new Promise((_, reject) => setTimeout(() => reject(new Error('no ids; failed: ' + failed.join(', '))), 20000));
  const ids = await Promise.race([done, timeout]);
  console.log(ids);
  await browser.close();
})().catch((e) => { console.error(e); process.exit(1); });
