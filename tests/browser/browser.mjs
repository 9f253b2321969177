// Headless Chromium for end-to-end tests: Debian's /usr/bin/chromium driven by playwright-core
// (which never downloads a browser), with a fresh profile that close() deletes.
//   const b = await launchBrowser(); const page = await b.newPage(); ...; await b.close();

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
