// scripts/wasm-relaxed.mjs on modules assembled here byte by byte: every call to the stand-in
// (and only those) becomes i32x4.relaxed_dot_i8x16_i7x16_add_s wherever it sits (nested blocks,
// after immediates that contain the call opcode's byte), sizes are re-encoded, and malformed
// input is refused with a reason rather than rewritten.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { relaxModule } from '../../scripts/wasm-relaxed.mjs';

const uleb = (v) => { const o = []; do { let b = v & 0x7f; v >>>= 7; if (v) b |= 0x80; o.push(b); } while (v); return o; };
const str = (s) => [...uleb(s.length), ...Buffer.from(s)];
const section = (id, bytes) => [id, ...uleb(bytes.length), ...bytes];
const vec = (items) => [...uleb(items.length), ...items.flat()];
const V128 = 0x7b, I32 = 0x7f;

// Types: 0 (v128 v128 v128) -> v128, 1 () -> i32. nFuncs functions; the stand-in is `target`,
// exported under `name`; bodies[i] is function i's code (without locals and the final end).
function module({ nFuncs, target, name = 'sd', bodies, imports = 0 }) {
  const types = section(1, vec([[0x60, ...vec([[V128], [V128], [V128]]), ...vec([[V128]])], [0x60, 0, ...vec([[I32]])]]));
  const imp = imports ? section(2, vec(Array.from({ length: imports }, (_, i) => [...str('env'), ...str(`f${i}`), 0, 1]))) : [];
  const funcs = section(3, vec(Array.from({ length: nFuncs }, (_, i) => uleb(i === target - imports ? 0 : 1))));
  const mem = section(5, vec([[0, 1]]));
  const exp = section(7, vec([[...str(name), 0, ...uleb(target)]]));
  const code = section(10, vec(Array.from({ length: nFuncs }, (_, i) => {
    const b = [0, ...(bodies[i + imports] ?? (i + imports === target ? [0x20, 0, 0x20, 1, 0xfd, 0x6e, 0x20, 2, 0xfd, 0x6e] : [0x41, 0])), 0x0b];
    return [...uleb(b.length), ...b];
  })));
  return Uint8Array.from([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, ...types, ...imp, ...funcs, ...mem, ...exp, ...code]);
}

const SPLAT3 = [0x41, 0, 0xfd, 0x0f, 0x41, 0, 0xfd, 0x0f, 0x41, 0, 0xfd, 0x0f];
const callOf = (i) => [0x10, ...uleb(i)];
const DOT = [0xfd, 0x93, 0x02];
test('calls to the stand-in become the instruction, in nested blocks and after immediates', () => {
  const body = [
    0x02, 0x40, 0x03, 0x40,                         // block, loop
    0x41, 0x10, 0x1a,                               // i32.const 16 ; drop  (0x10 as an immediate)
    0x41, 0, 0x0e, 2, 0, 1, 0,                      // i32.const 0 ; br_table [0 1] 0
    0x0b, 0x0b,                                     // end loop, end block
    ...SPLAT3, ...callOf(0), 0xfd, 0x1b, 0,         // the stand-in, then i32x4.extract_lane 0
    0xfd, 0x0c, ...Array(16).fill(0x10), 0x1a,      // v128.const of 0x10 bytes ; drop
    0x41, 0, 0x28, 2, 0x10, 0x1a,                   // i32.const 0 ; i32.load offset=16 ; drop
  ];
  const m = module({ nFuncs: 2, target: 0, bodies: { 1: body } });
  assert.equal(WebAssembly.validate(m), true, 'the input module is valid wasm');
  const { bytes, calls } = relaxModule(m, 'sd');
  assert.equal(calls, 1);
  const want = module({ nFuncs: 2, target: 0, bodies: { 1: [...body.slice(0, 28), ...DOT, ...body.slice(30)] } });
  assert.deepEqual([...bytes], [...want]);
});

test('a stand-in with a two-byte index after imports; other calls stay', () => {
  const imports = 2, target = 135;
  // The same bodies with the stand-in's call spelled s.
  const b3 = (s) => [...SPLAT3, ...s, 0x1a, ...callOf(4), 0x1a, 0x41, 0];
  const b7 = (s) => [...SPLAT3, ...s, 0x1a, ...SPLAT3, ...s, 0x1a, 0x41, 0];
  const m = module({ nFuncs: 140 - imports, target, imports, bodies: { 3: b3(callOf(target)), 7: b7(callOf(target)) } });
  assert.equal(WebAssembly.validate(m), true);
  const { bytes, calls } = relaxModule(m, 'sd');
  assert.equal(calls, 3);
  const want = module({ nFuncs: 140 - imports, target, imports, bodies: { 3: b3(DOT), 7: b7(DOT) } });
  assert.deepEqual([...bytes], [...want]);
  assert.ok(Buffer.from(bytes).includes(Buffer.from([0x1a, ...callOf(4)])), 'the call to function 4 is kept');
});

test('the result validates where node knows relaxed SIMD', () => {
  const m = module({ nFuncs: 2, target: 0, bodies: { 1: [...SPLAT3, ...callOf(0), 0xfd, 0x1b, 0] } });
  const { bytes } = relaxModule(m, 'sd');
  const script = `process.exit(WebAssembly.validate(Buffer.from('${Buffer.from(bytes).toString('base64')}', 'base64')) ? 0 : 3)`;
  const r = spawnSync(process.execPath, ['--experimental-wasm-relaxed-simd', '-e', script], { encoding: 'utf8' });
  if (r.status === 9) assert.equal(WebAssembly.validate(bytes), true, 'a node without the flag has relaxed SIMD on');
  else assert.equal(r.status, 0, r.stderr);
});

test('bad input is refused with a reason', () => {
  const good = module({ nFuncs: 2, target: 0, bodies: { 1: [...SPLAT3, ...callOf(0), 0x1a, 0x41, 0] } });
  assert.throws(() => relaxModule(Uint8Array.of(1, 2, 3), 'sd'), /not a wasm module/);
  assert.throws(() => relaxModule(good, 'other'), /no exported function other/);
  assert.throws(() => relaxModule(good.subarray(0, good.length - 3), 'sd'), /unexpected end|ends at byte/);
  const unknown = module({ nFuncs: 2, target: 0, bodies: { 1: [0xff, 0x41, 0] } });
  assert.throws(() => relaxModule(unknown, 'sd'), /unknown opcode 0xff/);
  const imp = module({ nFuncs: 1, target: 0, imports: 1, bodies: {} });
  assert.throws(() => relaxModule(imp, 'sd'), /is an import/);
});

test('the command line writes nothing when there is no call to rewrite', () => {
  const script = fileURLToPath(new URL('../../scripts/wasm-relaxed.mjs', import.meta.url));
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nbl-rewrite-'));
  try {
    const file = path.join(dir, 'm.wasm');
    fs.writeFileSync(file, module({ nFuncs: 2, target: 0, name: 'nbl_relaxed_dot_i8x16_i7x16_add_s', bodies: {} }));
    const r = spawnSync(process.execPath, [script, file, `${file}.out`], { encoding: 'utf8' });
    assert.equal(r.status, 1);
    assert.match(r.stderr, /no call to nbl_relaxed_dot_i8x16_i7x16_add_s/);
    assert.equal(fs.existsSync(`${file}.out`), false);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
