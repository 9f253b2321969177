// Turns a linked SIMD128 module into its relaxed-SIMD variant: every call to the exported
// stand-in function for i32x4.relaxed_dot_i8x16_i7x16_add_s (src/cpu_wasm.c, built with
// -DNBL_WASM_RELAXED) becomes that instruction. The toolchain the build uses (clang 14) knows
// the relaxed-SIMD proposal only from before its dot products and opcode numbers were final, so
// the instruction cannot come from C; the stand-in has the same operands and result on the value
// stack ((a, b, c) -> v128), which makes the swap local to the call.
//
// Usage: node scripts/wasm-relaxed.mjs IN.wasm OUT.wasm [GLUE.mjs]
//        node scripts/wasm-relaxed.mjs IN.js OUT.js   (a -sSINGLE_FILE build: the module inside)
// Optimized Emscripten builds shorten export names; the glue script says which one the stand-in
// got (Module["_name"] = Module["asm"]["xy"]).
// Every function body is decoded instruction by instruction (a byte search could match inside an
// immediate) and must end exactly where its size says; any opcode this decoder does not know is
// an error, never a guess. Exits non-zero when no call was found (the stand-in inlined or renamed).

import { readFileSync, writeFileSync, renameSync } from 'node:fs';
import { RELAXED_PROBE, relaxedSimdAvailable } from '../web/core.js';

const RELAXED_DOT_ADD = 0x113; // i32x4.relaxed_dot_i8x16_i7x16_add_s, final opcode (0xfd prefix)
const DEFAULT_EXPORT = 'nbl_relaxed_dot_i8x16_i7x16_add_s';

class Reader {
  constructor(buf, pos = 0, end = buf.length) { this.buf = buf; this.pos = pos; this.end = end; }
  byte() {
    if (this.pos >= this.end) throw new Error(`unexpected end at byte ${this.pos}`);
    return this.buf[this.pos++];
  }
  u32() {
    let r = 0, shift = 0, b;
    do {
      b = this.byte();
      r += (b & 0x7f) * 2 ** shift;
      shift += 7;
      if (shift > 35) throw new Error(`LEB128 too long at byte ${this.pos}`);
    } while (b & 0x80);
    return r;
  }
  sleb(maxBits) { // skips a signed LEB128 of at most maxBits bits
    const limit = Math.ceil(maxBits / 7);
    for (let n = 1; ; n++) {
      if (n > limit) throw new Error(`signed LEB128 too long at byte ${this.pos}`);
      if (!(this.byte() & 0x80)) return;
    }
  }
  skip(n) {
    if (this.pos + n > this.end) throw new Error(`unexpected end at byte ${this.pos}`);
    this.pos += n;
  }
  name() {
    const n = this.u32();
    const s = new TextDecoder().decode(this.buf.subarray(this.pos, this.pos + n));
    this.skip(n);
    return s;
  }
}

const uleb = (v) => {
  const out = [];
  do {
    let b = v % 128;
    v = Math.floor(v / 128);
    if (v) b |= 0x80;
    out.push(b);
  } while (v);
  return Uint8Array.from(out);
};

const VALTYPES = new Set([0x7f, 0x7e, 0x7d, 0x7c, 0x7b, 0x70, 0x6f]);
const blocktype = (r) => {
  const b = r.buf[r.pos];
  if (b === 0x40 || VALTYPES.has(b)) r.skip(1);
  else r.sleb(33);
};
const memarg = (r) => { r.u32(); r.u32(); };

// Skips the immediates of one instruction whose opcode (and, for prefixes, sub-opcode) was read.
function immediates(r, op) {
  if (op === 0x02 || op === 0x03 || op === 0x04 || op === 0x06) return blocktype(r);
  if (op === 0x0c || op === 0x0d || op === 0x07 || op === 0x08 || op === 0x09 || op === 0x18) return void r.u32();
  if (op === 0x0e) { const n = r.u32(); for (let i = 0; i <= n; i++) r.u32(); return; }
  if (op === 0x10 || op === 0x12) return void r.u32();
  if (op === 0x11 || op === 0x13) { r.u32(); r.u32(); return; }
  if (op === 0x1c) { const n = r.u32(); r.skip(n); return; }
  if (op >= 0x20 && op <= 0x26) return void r.u32();
  if (op >= 0x28 && op <= 0x3e) return memarg(r);
  if (op === 0x3f || op === 0x40) return void r.u32();
  if (op === 0x41) return r.sleb(32);
  if (op === 0x42) return r.sleb(64);
  if (op === 0x43) return r.skip(4);
  if (op === 0x44) return r.skip(8);
  if (op === 0xd0) return r.skip(1);
  if (op === 0xd2) return void r.u32();
  if ((op >= 0x45 && op <= 0xc4) || op === 0xd1 || [0x00, 0x01, 0x05, 0x0b, 0x0f, 0x19, 0x1a, 0x1b].includes(op)) return;
  if (op === 0xfc) {
    const s = r.u32();
    if (s <= 7) return;
    if (s === 8) { r.u32(); r.skip(1); return; }
    if (s === 9 || s === 13 || (s >= 15 && s <= 17)) return void r.u32();
    if (s === 10) return r.skip(2);
    if (s === 11) return r.skip(1);
    if (s === 12 || s === 14) { r.u32(); r.u32(); return; }
    throw new Error(`unknown 0xfc ${s} at byte ${r.pos}`);
  }
  if (op === 0xfd) {
    const s = r.u32();
    if (s <= 11 || s === 92 || s === 93) return memarg(r);
    if (s === 12 || s === 13) return r.skip(16);
    if (s >= 21 && s <= 34) return r.skip(1);
    if (s >= 84 && s <= 91) { memarg(r); r.skip(1); return; }
    if (s <= 0x113) return;
    throw new Error(`unknown 0xfd ${s} at byte ${r.pos}`);
  }
  if (op === 0xfe) {
    const s = r.u32();
    if (s === 3) return r.skip(1);
    if (s <= 2 || (s >= 0x10 && s <= 0x4e)) return memarg(r);
    throw new Error(`unknown 0xfe ${s} at byte ${r.pos}`);
  }
  throw new Error(`unknown opcode 0x${op.toString(16)} at byte ${r.pos - 1}`);
}

// Rewrites one function body (locals and code, without its size); returns [bytes, calls replaced].
function rewriteBody(buf, start, end, target) {
  const r = new Reader(buf, start, end);
  const groups = r.u32();
  for (let i = 0; i < groups; i++) { r.u32(); r.skip(1); }
  const parts = [];
  let copied = start, depth = 1, count = 0;
  while (depth > 0) {
    const at = r.pos;
    const op = r.byte();
    if (op === 0x10) {
      const idx = r.u32();
      if (idx === target) {
        parts.push(buf.subarray(copied, at), Uint8Array.of(0xfd), uleb(RELAXED_DOT_ADD));
        copied = r.pos;
        count++;
      }
      continue;
    }
    immediates(r, op);
    if (op === 0x02 || op === 0x03 || op === 0x04 || op === 0x06) depth++;
    else if (op === 0x0b) depth--;
  }
  if (r.pos !== end) throw new Error(`function body ends at byte ${r.pos}, its size says ${end}`);
  parts.push(buf.subarray(copied, end));
  return [concat(parts), count];
}

function concat(parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) { out.set(p, o); o += p.length; }
  return out;
}

export function relaxModule(buf, exportName = DEFAULT_EXPORT) {
  if (buf.length < 8 || buf[0] !== 0 || buf[1] !== 0x61 || buf[2] !== 0x73 || buf[3] !== 0x6d) throw new Error('not a wasm module');
  const r = new Reader(buf, 8);
  const sections = [];
  let importedFuncs = 0, target = -1;
  while (r.pos < buf.length) {
    const id = r.byte(), size = r.u32(), start = r.pos;
    r.skip(size);
    sections.push({ id, start, end: start + size, headerStart: start - 1 - uleb(size).length });
    const s = new Reader(buf, start, start + size);
    if (id === 2) {
      for (let n = s.u32(); n > 0; n--) {
        s.name(); s.name();
        const kind = s.byte();
        if (kind === 0) { s.u32(); importedFuncs++; }
        else if (kind === 1) { s.skip(1); const f = s.byte(); s.u32(); if (f & 1) s.u32(); }
        else if (kind === 2) { const f = s.byte(); s.u32(); if (f & 1) s.u32(); }
        else if (kind === 3) s.skip(2);
        else if (kind === 4) { s.skip(1); s.u32(); }
        else throw new Error(`unknown import kind ${kind}`);
      }
    } else if (id === 7) {
      for (let n = s.u32(); n > 0; n--) {
        const name = s.name(), kind = s.byte(), idx = s.u32();
        if (kind === 0 && name === exportName) target = idx;
      }
    }
  }
  if (target < 0) throw new Error(`no exported function ${exportName}`);
  if (target < importedFuncs) throw new Error(`${exportName} is an import`);
  const out = [buf.subarray(0, 8)];
  let total = 0;
  for (const sec of sections) {
    if (sec.id !== 10) { out.push(buf.subarray(sec.headerStart, sec.end)); continue; }
    const s = new Reader(buf, sec.start, sec.end);
    const n = s.u32();
    const bodies = [uleb(n)];
    for (let i = 0; i < n; i++) {
      const size = s.u32(), start = s.pos;
      s.skip(size);
      const [body, count] = rewriteBody(buf, start, start + size, target);
      total += count;
      bodies.push(uleb(body.length), body);
    }
    if (s.pos !== sec.end) throw new Error('code section has trailing bytes');
    const content = concat(bodies);
    out.push(Uint8Array.of(10), uleb(content.length), content);
  }
  return { bytes: concat(out), calls: total };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [inFile, outFile, glueFile] = process.argv.slice(2);
  if (!inFile || !outFile) {
    console.error('usage: node scripts/wasm-relaxed.mjs IN.wasm OUT.wasm [GLUE.mjs] | IN.js OUT.js');
    process.exit(2);
  }
  try {
    const single = inFile.endsWith('.js');
    const glue = single ? readFileSync(inFile, 'utf8') : glueFile ? readFileSync(glueFile, 'utf8') : null;
    let name = DEFAULT_EXPORT;
    if (glue) {
      const m = new RegExp(`Module\\["_${DEFAULT_EXPORT}"\\]=Module\\["asm"\\]\\["([\\w$]+)"\\]`).exec(glue);
      if (!m) throw new Error(`${glueFile ?? inFile} does not say which export is _${DEFAULT_EXPORT}`);
      name = m[1];
    }
    const PREFIX = 'data:application/octet-stream;base64,';
    let at = -1, stop = -1, input;
    if (single) {
      // The glue also spells the bare prefix (to recognise data URIs): the module is the one
      // followed by data.
      const m = /"data:application\/octet-stream;base64,[A-Za-z0-9+/=]{64,}"/.exec(glue);
      if (!m) throw new Error(`${inFile} holds no embedded module`);
      at = m.index + 1;
      stop = m.index + m[0].length - 1;
      input = Buffer.from(glue.slice(at + PREFIX.length, stop), 'base64');
    } else {
      input = readFileSync(inFile);
    }
    const { bytes, calls } = relaxModule(input, name);
    if (calls === 0) throw new Error(`no call to ${name} in ${inFile}: was it inlined?`);
    // The engine running this checks the result when it knows relaxed SIMD: strictly where it
    // runs the instruction as specified, as a warning where it has an earlier draft (node 20
    // behind --experimental-wasm-relaxed-simd validates the final opcodes but computes otherwise).
    if (WebAssembly.validate(RELAXED_PROBE) && !WebAssembly.validate(bytes)) {
      if (relaxedSimdAvailable()) throw new Error('the rewritten module does not validate');
      console.warn(`wasm-relaxed: this engine's draft of relaxed SIMD does not validate ${outFile}; the browser tests check it`);
    }
    const output = single ? glue.slice(0, at + PREFIX.length) + Buffer.from(bytes).toString('base64') + glue.slice(stop) : bytes;
    writeFileSync(`${outFile}.tmp`, output);
    renameSync(`${outFile}.tmp`, outFile);
    console.log(`${outFile}: ${calls} calls became i32x4.relaxed_dot_i8x16_i7x16_add_s`);
  } catch (e) {
    console.error(`wasm-relaxed: ${e.message}`);
    process.exit(1);
  }
}
