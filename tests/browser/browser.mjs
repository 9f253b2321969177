// Headless Chromium for end-to-end tests: Debian's /usr/bin/chromium driven by playwright-core
// (which never downloads a browser), with a fresh profile that close() deletes.
//   const b = await launchBrowser(); const page = await b.newPage(); ...; await b.close();

import { before, after } from 'node:test';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export const CHROMIUM = process.env.NBL_CHROMIUM ?? '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
  '--no-sandbox', '--headless=new', '--disable-background-networking', '--disable-component-update',
  '--disable-sync', '--no-first-run',
];

/** Starts Chromium; errors say how to install what is missing. Extra args are appended. */
export async function launchBrowser({ args = [] } = {}) {
  if (!fs.existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} not found: run "bash scripts/setup.sh" (installs Debian's chromium) or set NBL_CHROMIUM`);
  }
  let chromium;
  try {
    ({ chromium } = await import('playwright-core'));
  } catch (e) {
    throw new Error(`playwright-core is not installed: run "bash scripts/setup.sh" (npm ci) (${e.message})`);
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nbl-chromium-'));
  let context;
  try {
    context = await chromium.launchPersistentContext(dir, {
      executablePath: CHROMIUM, headless: true, args: [...CHROMIUM_ARGS, ...args],
    });
  } catch (e) {
    fs.rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  const logs = [];
  const watch = (page) => {
    page.on('console', (m) => logs.push(`[${m.type()}] ${m.text()}`));
    page.on('pageerror', (e) => logs.push(`[pageerror] ${e.message}`));
  };
  context.on('page', watch);
  context.pages().forEach(watch);
  return {
    context,
    logs,
    /** The first tab (reused), or a new one. */
    async newPage() { return context.pages()[0] ?? context.newPage(); },
    async close() {
      try { await context.close(); } finally { fs.rmSync(dir, { recursive: true, force: true }); }
    },
  };
}

/**
 * For a test file whose pages load the wasm builds: a plain local server, a cross-origin isolated
 * one (COOP/COEP, which the threaded build needs) and a Chromium tab, started in before() and
 * stopped in after(). Returns the object whose plain, isolated, browser and page fields they
 * fill, and open(site, pagePath, readyFlag) to load a test page and wait for window[readyFlag].
 */
export function browserSites() {
  const s = {};
  before(async () => {
    const { startServer } = await import('../server/server.mjs');
    s.plain = await startServer();
    s.isolated = await startServer({ coopCoep: true });
    s.browser = await launchBrowser();
    s.page = await s.browser.newPage();
  });
  after(async () => {
    await s.browser?.close();
    await s.plain?.close();
    await s.isolated?.close();
  });
  s.open = async (site, pagePath, readyFlag) => {
    await s.page.goto(`${site.url}${pagePath}`);
    await s.page.waitForFunction((f) => window[f] === true, readyFlag, { timeout: 15000 });
  };
  return s;
}
