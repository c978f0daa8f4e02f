// Accessibility check of report pages: each page opened from file:// in Debian's headless Chromium (driven by
// playwright-core, never a browser of its own), axe-core run on it at 1280 and 390 px, a full-page screenshot
// at each width. Called by tests/browser.rs; prints one JSON document on stdout and exits 0 unless a page could
// not be checked at all. Judging the results (which impacts fail) is the caller's.
//
//   node tests/axe/run.mjs --out DIR NAME=PATH [NAME=PATH ...]
//
// axe-core goes in through the DevTools protocol (page.evaluate of axe.source), which a page's
// Content-Security-Policy does not govern, so the report's CSP stays as it is: the harness checks, after axe
// ran, that the page's own policy still refuses an inline script, and records every request that was not for
// a file: or data: URL.

import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const require = createRequire(import.meta.url);
const axe = require('axe-core');
const { chromium } = require('playwright-core');

const CHROMIUM = process.env.FLEETAUDIT_CHROMIUM || '/usr/bin/chromium';
const ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];
const WIDTHS = [1280, 390];
// WCAG 2.0, 2.1 and 2.2 at levels A and AA, plus axe's best practices.
const TAGS = ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22a', 'wcag22aa', 'best-practice'];

function usage(message) {
  process.stderr.write(`${message}\nusage: node tests/axe/run.mjs --out DIR NAME=PATH [NAME=PATH ...]\n`);
  process.exit(2);
}

const argv = process.argv.slice(2);
let out = null;
const pages = [];
for (let i = 0; i < argv.length; i++) {
  if (argv[i] === '--out') out = argv[++i];
  else if (argv[i].includes('=')) {
    const at = argv[i].indexOf('=');
    pages.push({ name: argv[i].slice(0, at), path: resolve(argv[i].slice(at + 1)) });
  } else usage(`not NAME=PATH: ${argv[i]}`);
}
if (!out) usage('--out DIR is required');
if (!pages.length) usage('no page given');
for (const { name } of pages) if (!/^[A-Za-z0-9_-]+$/.test(name)) usage(`page name must be [A-Za-z0-9_-]+: ${name}`);
mkdirSync(out, { recursive: true });

const profile = mkdtempSync(join(tmpdir(), 'fleetaudit-axe-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: CHROMIUM,
  headless: true,
  args: ARGS,
  viewport: { width: WIDTHS[0], height: 900 },
  deviceScaleFactor: 1,
  offline: true,
});
const results = [];
try {
  for (const { name, path } of pages) {
    const url = pathToFileURL(path).href;
    for (const width of WIDTHS) {
      const page = await context.newPage();
      const events = { console: [], errors: [], external: [] };
      page.on('console', (m) => events.console.push(`${m.type()}: ${m.text()}`));
      page.on('pageerror', (e) => events.errors.push(String(e)));
      page.on('request', (r) => {
        if (!/^(file|data):/.test(r.url())) events.external.push(r.url());
      });
      await page.setViewportSize({ width, height: 900 });
      const response = await page.goto(url, { waitUntil: 'load' });
      if (response && !response.ok()) throw new Error(`${url}: ${response.status()}`);
      // The page's own console before anything of ours ran: a CSP report here is the page's.
      const consoleOnLoad = [...events.console];

      // The page as it first shows, for review.
      const layout = await page.evaluate(() => ({
        scrollWidth: document.documentElement.scrollWidth,
        innerWidth: window.innerWidth,
      }));
      const screenshot = join(out, `${name}-${width}.png`);
      await page.screenshot({ path: screenshot, fullPage: true });

      // axe checks what is rendered; what a closed <details> holds is checked opened, as a reader opens it.
      const opened = await page.evaluate(() => {
        const closed = [...document.querySelectorAll('details:not([open])')];
        for (const d of closed) d.open = true;
        return closed.length;
      });
      await page.evaluate(axe.source);
      const run = await page.evaluate(
        (tags) => axe.run(document, { runOnly: { type: 'tag', values: tags }, resultTypes: ['violations'] }),
        TAGS,
      );

      // The report's CSP, still in force after axe went in: an inline script added now must not run.
      const csp = await page.evaluate(async () => {
        const meta = document.querySelector('meta[http-equiv="Content-Security-Policy"]');
        let violation = null;
        const seen = new Promise((done) => {
          document.addEventListener('securitypolicyviolation', (e) => {
            violation = e.violatedDirective;
            done();
          }, { once: true });
          setTimeout(done, 500);
        });
        window.__fleetauditInline = false;
        const s = document.createElement('script');
        s.textContent = 'window.__fleetauditInline = true;';
        document.body.appendChild(s);
        await seen;
        s.remove();
        return { meta: meta ? meta.content : null, inlineScriptRan: window.__fleetauditInline, violation };
      });

      results.push({
        page: name,
        url,
        width,
        title: await page.title(),
        axe: run.testEngine.version,
        violations: run.violations.map((v) => ({
          id: v.id,
          impact: v.impact,
          help: v.help,
          helpUrl: v.helpUrl,
          nodes: v.nodes.map((n) => ({ target: n.target, html: n.html, summary: n.failureSummary })),
        })),
        // What axe could not decide (e.g. contrast over a background it cannot compute): for a reviewer.
        incomplete: run.incomplete.map((v) => ({
          id: v.id,
          impact: v.impact,
          help: v.help,
          nodes: v.nodes.map((n) => ({ target: n.target, summary: n.failureSummary })),
        })),
        detailsOpened: opened,
        csp,
        consoleOnLoad,
        pageErrors: events.errors,
        externalRequests: events.external,
        horizontalOverflow: layout.scrollWidth > layout.innerWidth,
        screenshot,
      });
      await page.close();
    }
  }
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
process.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
