// Runs one JS test file under node's test runner and prints the "N passed, N failed" line that
// tests/run.sh sums. Usage: node tests/js/run-one.mjs tests/js/<name>.test.mjs
// Exit status is non-zero when a test fails, is cancelled, or the file cannot run at all.

import { spawn } from 'node:child_process';

const file = process.argv[2];
if (!file) {
  console.error('usage: node tests/js/run-one.mjs <file.test.mjs>');
  process.exit(2);
}

// SwiftShader runs WebGPU on the CPU: a busy 2-core machine needs minutes per model file.
// TAP's closing summary counts tests only (not suites), which is what the C tests report too.
const child = spawn(process.execPath, ['--test', '--test-reporter=tap', '--test-timeout=600000', file], {
  stdio: ['ignore', 'pipe', 'pipe'],
});
let out = '';
child.stdout.on('data', (d) => { out += d; process.stdout.write(d); });
child.stderr.on('data', (d) => process.stderr.write(d));
const code = await new Promise((resolve) => child.on('close', (c, sig) => resolve(c ?? (sig ? 128 : 1))));

const count = (name) => {
  const m = new RegExp(`^# ${name} (\\d+)$`, 'm').exec(out);
  return m ? Number(m[1]) : null;
};
const pass = count('pass');
const fail = count('fail');
if (pass === null || fail === null) {
  console.log(`run-one: no TAP summary from ${file} (exit ${code})`);
  process.exit(code || 1);
}
const failed = fail + (count('cancelled') ?? 0);
console.log(`${pass} passed, ${failed} failed`);
process.exit(failed > 0 || code !== 0 ? 1 : 0);
