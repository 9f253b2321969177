// Incremental SHA-256 (FIPS 180-4) whose state can be saved as JSON and restored later.
// WebCrypto's digest() is one-shot, so verifying a multi-hundred-megabyte download that is resumed
// across page reloads needs a hash that can stop at a chunk boundary and carry on in another session.

const K = new Int32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);
const H0 = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];
const W = new Int32Array(64); // scratch shared by all instances: blocks are processed synchronously

// One block per call keeps the function small and hot, so engines optimise it within a few calls
// instead of waiting for on-stack replacement inside one long loop.
function block(h, p, off) {
  for (let i = 0; i < 16; i++) {
    const j = off + i * 4;
    W[i] = (p[j] << 24) | (p[j + 1] << 16) | (p[j + 2] << 8) | p[j + 3];
  }
  for (let i = 16; i < 64; i++) {
    const a = W[i - 15], b = W[i - 2];
    const s0 = ((a >>> 7) | (a << 25)) ^ ((a >>> 18) | (a << 14)) ^ (a >>> 3);
    const s1 = ((b >>> 17) | (b << 15)) ^ ((b >>> 19) | (b << 13)) ^ (b >>> 10);
    W[i] = (W[i - 16] + s0 + W[i - 7] + s1) | 0;
  }
  let a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
  for (let i = 0; i < 64; i++) {
    const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
    const t1 = (hh + S1 + ((e & f) ^ (~e & g)) + K[i] + W[i]) | 0;
    const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
    const t2 = (S0 + ((a & b) ^ (a & c) ^ (b & c))) | 0;
    hh = g; g = f; f = e; e = (d + t1) | 0; d = c; c = b; b = a; a = (t1 + t2) | 0;
  }
  h[0] = (h[0] + a) | 0; h[1] = (h[1] + b) | 0; h[2] = (h[2] + c) | 0; h[3] = (h[3] + d) | 0;
  h[4] = (h[4] + e) | 0; h[5] = (h[5] + f) | 0; h[6] = (h[6] + g) | 0; h[7] = (h[7] + hh) | 0;
}

function compress(h, p, off, end) {
  for (; off < end; off += 64) block(h, p, off);
}

function toHex(bytes) {
  let s = '';
  for (let i = 0; i < bytes.length; i++) s += bytes[i].toString(16).padStart(2, '0');
  return s;
}

export class Sha256 {
  constructor() {
    this.h = new Int32Array(H0);
    this.buf = new Uint8Array(64); // bytes of a block not yet complete
    this.nbuf = 0;
    this.length = 0; // total bytes hashed; a JS number stays exact up to 2^53
  }

  /** Feeds bytes (a Uint8Array or any ArrayBufferView/ArrayBuffer); returns this. */
  update(data) {
    let p = data instanceof Uint8Array ? data
      : ArrayBuffer.isView(data) ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
        : new Uint8Array(data);
    let off = 0;
    const n = p.length;
    this.length += n;
    if (this.nbuf > 0) {
      const take = Math.min(64 - this.nbuf, n);
      this.buf.set(p.subarray(0, take), this.nbuf);
      this.nbuf += take;
      off = take;
      if (this.nbuf < 64) return this;
      compress(this.h, this.buf, 0, 64);
      this.nbuf = 0;
    }
    const whole = off + ((n - off) & ~63);
    if (whole > off) compress(this.h, p, off, whole);
    if (whole < n) {
      this.buf.set(p.subarray(whole), 0);
      this.nbuf = n - whole;
    }
    return this;
  }

  /** The 32-byte digest of everything fed so far; the object can keep being updated afterwards. */
  digest() {
    const h = new Int32Array(this.h);
    const tail = new Uint8Array(this.nbuf < 56 ? 64 : 128);
    tail.set(this.buf.subarray(0, this.nbuf));
    tail[this.nbuf] = 0x80;
    const bits = this.length * 8; // up to 2^56: split into two 32-bit halves without bit operators
    const hi = Math.floor(bits / 0x100000000), lo = bits % 0x100000000;
    const e = tail.length;
    tail[e - 8] = hi >>> 24; tail[e - 7] = hi >>> 16; tail[e - 6] = hi >>> 8; tail[e - 5] = hi;
    tail[e - 4] = lo >>> 24; tail[e - 3] = lo >>> 16; tail[e - 2] = lo >>> 8; tail[e - 1] = lo;
    compress(h, tail, 0, e);
    const out = new Uint8Array(32);
    for (let i = 0; i < 8; i++) {
      out[i * 4] = h[i] >>> 24; out[i * 4 + 1] = h[i] >>> 16; out[i * 4 + 2] = h[i] >>> 8; out[i * 4 + 3] = h[i];
    }
    return out;
  }

  /** The digest as 64 lowercase hex characters. */
  hex() { return toHex(this.digest()); }

  /** A JSON-safe snapshot: { h: 8 words as hex, length, tail: pending bytes as hex }. */
  save() {
    let h = '';
    for (let i = 0; i < 8; i++) h += (this.h[i] >>> 0).toString(16).padStart(8, '0');
    return { h, length: this.length, tail: toHex(this.buf.subarray(0, this.nbuf)) };
  }

  /** Rebuilds a hash from save()'s output; throws on a malformed snapshot. */
  static restore(s) {
    if (!s || typeof s.h !== 'string' || !/^[0-9a-f]{64}$/.test(s.h) || !Number.isSafeInteger(s.length) ||
        s.length < 0 || typeof s.tail !== 'string' || !/^([0-9a-f]{2})*$/.test(s.tail) ||
        s.tail.length / 2 !== s.length % 64) {
      throw new Error('sha256: malformed saved state');
    }
    const x = new Sha256();
    for (let i = 0; i < 8; i++) x.h[i] = parseInt(s.h.slice(i * 8, i * 8 + 8), 16) | 0;
    x.length = s.length;
    x.nbuf = s.tail.length / 2;
    for (let i = 0; i < x.nbuf; i++) x.buf[i] = parseInt(s.tail.slice(i * 2, i * 2 + 2), 16);
    return x;
  }
}

/** One-shot convenience: hex SHA-256 of bytes. */
export function sha256Hex(data) { return new Sha256().update(data).hex(); }

export { toHex };
