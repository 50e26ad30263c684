#!/usr/bin/env node
// Screenshots of the web page for the documentation (not a test): headless Debian
// chromium through playwright-core (tests/web/node_modules, as the tests use it).
//
//   tests/web/screenshot.mjs URL OUT.png [--width 1280] [--height 800]
//
// URL is the page with its state in the fragment (e.g. http://127.0.0.1:7070/#view=charts);
// the shot is taken once the view has drawn: the flows table's first page, the charts'
// panels, the health view's interfaces, and a flow's detail when the URL names one.
import { createRequire } from 'node:module';

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 && args[i + 1] ? args[i + 1] : dflt;
};
const [url, out] = args.filter((a, i) => !a.startsWith('--') && !(i > 0 && args[i - 1].startsWith('--')));
if (!url || !out) {
  console.error('usage: tests/web/screenshot.mjs URL OUT.png [--width 1280] [--height 800]');
  process.exit(2);
}
const width = Number(opt('--width', '1280'));
const height = Number(opt('--height', '800'));
if (!(width >= 200 && width <= 4000 && height >= 200 && height <= 4000)) {
  console.error('screenshot: --width and --height are 200 to 4000 pixels');
  process.exit(2);
}

const require = createRequire(import.meta.url);
let chromium;
try {
  ({ chromium } = require('playwright-core'));
} catch {
  console.error('screenshot: playwright-core is not in tests/web/node_modules (run scripts/install-deps)');
  process.exit(2);
}

const browser = await chromium.launch({
  executablePath: process.env.PODCAP_WEB_CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'],
});
let rc = 0;
try {
  const ctx = await browser.newContext({ viewport: { width, height } });
  const page = await ctx.newPage();
  await page.goto(url);
  const view = /[#&]view=(\w+)/.exec(url)?.[1] || 'flows';
  // What "drawn" means for each view: the marks the page sets, or the elements it builds.
  if (view === 'charts') {
    await page.waitForFunction(() => performance.getEntriesByName('podcap-charts-drawn').length > 0, null,
      { timeout: 60000 });
  } else if (view === 'health') {
    await page.waitForSelector('#interfaces table', { timeout: 30000 });
  } else {
    await page.waitForFunction(() => performance.getEntriesByName('podcap-flows-drawn').length > 0, null,
      { timeout: 30000 });
  }
  if (/[#&]flow=\d/.test(url)) await page.waitForSelector('#detail:not([hidden]) .detail-title', { timeout: 30000 });
  // A moment for the last frame (fonts, the charts' legends) to be painted.
  await page.waitForTimeout(300);
  await page.screenshot({ path: out });
  console.log('screenshot: ' + out);
} catch (e) {
  console.error('screenshot: ' + (e.message || e));
  rc = 1;
} finally {
  await browser.close();
}
process.exitCode = rc;
