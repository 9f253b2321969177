// web/sha256.js against published FIPS 180-4 test vectors and node:crypto, including a hash that is
// saved to JSON mid-stream and restored, as the store does across page reloads.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Sha256, sha256Hex } from '../../web/sha256.js';

const ref = (b) => createHash('sha256').update(b).digest('hex');

test('FIPS 180-4 / NIST example vectors', () => {
  const enc = (s) => new TextEncoder().encode(s);
  assert.equal(sha256Hex(enc('')), 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
  assert.equal(sha256Hex(enc('abc')), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  assert.equal(sha256Hex(enc('abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq')),
    '248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1');
  const h = new Sha256();
  const a = new Uint8Array(1000).fill(0x61);
  for (let i = 0; i < 1000; i++) h.update(a); // one million 'a'
  assert.equal(h.hex(), 'cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0');
});

test('every length around block boundaries matches node:crypto', () => {
  const buf = randomBytes(300);
  for (let n = 0; n <= 300; n++) assert.equal(sha256Hex(buf.subarray(0, n)), ref(buf.subarray(0, n)), `length ${n}`);
});

test('random splits, digest mid-stream, and save/restore through JSON', () => {
  const buf = randomBytes(1 << 20);
  for (let trial = 0; trial < 20; trial++) {
    let h = new Sha256();
    let off = 0;
    while (off < buf.length) {
      const n = Math.min(buf.length - off, Math.floor(Math.random() * 70000));
      h.update(buf.subarray(off, off + n));
      off += n;
      if (Math.random() < 0.3) {
        assert.equal(h.hex(), ref(buf.subarray(0, off)), 'digest() does not disturb the stream');
        h = Sha256.restore(JSON.parse(JSON.stringify(h.save())));
      }
    }
    assert.equal(h.hex(), ref(buf));
  }
  // ArrayBuffer and other views are accepted.
  assert.equal(new Sha256().update(buf.buffer.slice(buf.byteOffset, buf.byteOffset + 1000)).hex(), ref(buf.subarray(0, 1000)));
  assert.equal(new Sha256().update(new DataView(buf.buffer, buf.byteOffset, 77)).hex(), ref(buf.subarray(0, 77)));
});

test('lengths past 2^32 bits encode correctly', () => {
  // 513 MiB of zeros: the bit length (just over 2^32) no longer fits in 32 bits.
  const block = new Uint8Array(1 << 20);
  const h = new Sha256();
  const r = createHash('sha256');
  for (let i = 0; i < 513; i++) { h.update(block); r.update(block); }
  assert.equal(h.hex(), r.digest('hex'));
});

test('malformed saved states are refused', () => {
  const good = new Sha256().update(new Uint8Array(70)).save();
  assert.doesNotThrow(() => Sha256.restore(good));
  for (const bad of [null, {}, { ...good, h: 'xyz' }, { ...good, length: -1 }, { ...good, tail: 'abc' }, { ...good, length: 71 }]) {
    assert.throws(() => Sha256.restore(bad), /malformed/);
  }
});
