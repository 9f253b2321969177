// The TypeScript declarations of the public API (web/*.d.ts) compile under strict settings and
// describe how a site uses the modules (tests/types/usage.ts); a use they do not allow is refused.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { REPO_ROOT } from '../server/server.mjs';

const TSC = path.join(REPO_ROOT, 'node_modules/typescript/bin/tsc');

function tsc(args) {
  const r = spawnSync(process.execPath, [TSC, ...args], { cwd: REPO_ROOT, encoding: 'utf8' });
  return { code: r.status, out: `${r.stdout}${r.stderr}` };
}

test('web/*.d.ts and the usage example type-check', () => {
  assert.ok(fs.existsSync(TSC), 'typescript is missing: run npm ci');
  const r = tsc(['-p', 'tests/types']);
  assert.equal(r.code, 0, r.out);
});

test('a misspelt option and a wrong result type are errors', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nbl-types-'));
  try {
    const engine = path.join(REPO_ROOT, 'web/engine.js').replaceAll('\\', '/');
    const file = path.join(dir, 'bad.ts');
    fs.writeFileSync(file, [
      `import { createEngine } from '${engine}';`,
      "export async function f() {",
      "  const e = await createEngine({ model: 'x', remtoe: { url: 'u' } });",
      "  const n: number = await e.tasks.title!([]);",
      "  return n;",
      "}",
    ].join('\n'));
    const r = tsc(['--noEmit', '--strict', '--target', 'ES2022', '--module', 'ES2022', '--moduleResolution', 'bundler',
      '--lib', 'ES2022,DOM,DOM.Iterable', '--types', '@webgpu/types', '--typeRoots', path.join(REPO_ROOT, 'node_modules'), file]);
    assert.notEqual(r.code, 0);
    assert.match(r.out, /remtoe/);
    assert.match(r.out, /'string' is not assignable to type 'number'/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
