// dequant.wgsl — reads ggml's block formats in place from a u32 array W (declared by the
// including shader), so weights upload straight from the GGUF bytes with no repacking.
// One entry point for every type: dqg(rb, q) returns weight group q of the row starting at byte
// rb, GS consecutive elements (8 for block formats, 4 for float types) as GS/4 vec4s.
// Exactly one W_<TYPE> is defined per pipeline. Blocks whose size is 2 mod 4 (Q4_0, Q5_0, Q8_0,
// Q3_K, Q6_K ...) sit at even byte offsets, which w16/w32 handle.

fn w8(b: u32) -> u32 { return (W[b >> 2u] >> ((b & 3u) << 3u)) & 0xffu; }
fn w16(b: u32) -> u32 { return (W[b >> 2u] >> ((b & 2u) << 3u)) & 0xffffu; }
// 32 bits at an even byte offset. The second word is shifted out entirely when b is 4-aligned.
fn w32(b: u32) -> u32 {
  let i = b >> 2u;
  let s = (b & 2u) << 3u;
  return (W[i] >> s) | ((W[i + 1u] << 16u) << (16u - s));
}
fn h2f(h: u32) -> f32 { return unpack2x16float(h).x; }
fn bytes4(q: u32) -> vec4<u32> { return vec4<u32>(q, q >> 8u, q >> 16u, q >> 24u) & vec4<u32>(255u); }
fn sbytes4(q: u32) -> vec4<i32> {
  return vec4<i32>(bitcast<i32>(q << 24u), bitcast<i32>(q << 16u), bitcast<i32>(q << 8u), bitcast<i32>(q)) >> vec4<u32>(24u);
}
fn bits4(h: u32) -> vec4<u32> { return vec4<u32>(h, h >> 1u, h >> 2u, h >> 3u) & vec4<u32>(1u); }
fn nib4(q: u32, shift: u32) -> vec4<u32> { return (bytes4(q) >> vec4<u32>(shift)) & vec4<u32>(15u); }
fn crumb4(q: u32, shift: u32) -> vec4<u32> { return (bytes4(q) >> vec4<u32>(shift)) & vec4<u32>(3u); }
fn sx8(v: u32) -> i32 { return bitcast<i32>(v << 24u) >> 24u; }

// The 6-bit scale and min j (0..7) of a Q4_K/Q5_K super-block whose 12 scale bytes start at s.
fn scale_min_k4(s: u32, j: u32) -> vec2<f32> {
  if (j < 4u) {
    return vec2<f32>(f32(w8(s + j) & 63u), f32(w8(s + j + 4u) & 63u));
  }
  let a = w8(s + j + 4u);
  return vec2<f32>(f32((a & 15u) | ((w8(s + j - 4u) >> 6u) << 4u)), f32((a >> 4u) | ((w8(s + j) >> 6u) << 4u)));
}

#ifdef W_F32
const GS: u32 = 4u;
fn dqg(rb: u32, q: u32) -> array<vec4<AT>, 1> {
  let i = (rb >> 2u) + q * 4u;
  return array<vec4<AT>, 1>(vec4<AT>(bitcast<vec4<f32>>(vec4<u32>(W[i], W[i + 1u], W[i + 2u], W[i + 3u]))));
}
#endif

#ifdef W_F16
const GS: u32 = 4u;
fn dqg(rb: u32, q: u32) -> array<vec4<AT>, 1> {
  let i = (rb >> 2u) + q * 2u;
  return array<vec4<AT>, 1>(vec4<AT>(vec4<f32>(unpack2x16float(W[i]), unpack2x16float(W[i + 1u]))));
}
#endif

#ifdef W_BF16
const GS: u32 = 4u;
fn bf2(w: u32) -> vec2<f32> { return vec2<f32>(bitcast<f32>(w << 16u), bitcast<f32>(w & 0xffff0000u)); }
fn dqg(rb: u32, q: u32) -> array<vec4<AT>, 1> {
  let i = (rb >> 2u) + q * 2u;
  return array<vec4<AT>, 1>(vec4<AT>(vec4<f32>(bf2(W[i]), bf2(W[i + 1u]))));
}
#endif

// 32-element blocks: group p (0..3) of a block holds elements 8p..8p+7. Elements j and j+16 share
// byte j of qs (low / high nibble), so groups 0,1 read the low nibbles of bytes 0..15 and groups
// 2,3 the high nibbles of the same bytes.

#ifdef W_Q4_0
const GS: u32 = 8u;
fn dqg(rb: u32, q: u32) -> array<vec4<AT>, 2> {
  let b = rb + (q >> 2u) * 18u;
  let p = q & 3u;
  let d = h2f(w16(b));
  let o = b + 2u + 8u * (p & 1u);
  let sh = (p >> 1u) * 4u;
  return array<vec4<AT>, 2>(vec4<AT>((vec4<f32>(nib4(w32(o), sh)) - 8.0) * d),
                            vec4<AT>((vec4<f32>(nib4(w32(o + 4u), sh)) - 8.0) * d));
}
#endif

#ifdef W_Q4_1
const GS: u32 = 8u;
fn dqg(rb: u32, q: u32) -> array<vec4<AT>, 2> {
  let b = rb + (q >> 2u) * 20u;
  let p = q & 3u;
  let d = h2f(w16(b));
  let m = h2f(w16(b + 2u));
  let o = b + 4u + 8u * (p & 1u);
  let sh = (p >> 1u) * 4u;
  return array<vec4<AT>, 2>(vec4<AT>(vec4<f32>(nib4(w32(o), sh)) * d + m),
                            vec4<AT>(vec4<f32>(nib4(w32(o + 4u), sh)) * d + m));
}
#endif

#ifdef W_IQ4_NL
const GS: u32 = 8u;
const IQ4: array<f32, 16> = array<f32, 16>(-127.0, -104.0, -83.0, -65.0, -49.0, -35.0, -22.0, -10.0,
                                           1.0, 13.0, 25.0, 38.0, 53.0, 69.0, 89.0, 113.0);
fn iq4v(n: vec4<u32>) -> vec4<f32> {
  var t = IQ4;
  return vec4<f32>(t[n.x], t[n.y], t[n.z], t[n.w]);
}
fn dqg(rb: u32, q: u32) -> array<vec4<AT>, 2> {
  let b = rb + (q >> 2u) * 18u;
  let p = q & 3u;
  let d = h2f(w16(b));
  let o = b + 2u + 8u * (p & 1u);
  let sh = (p >> 1u) * 4u;
  return array<vec4<AT>, 2>(vec4<AT>(iq4v(nib4(w32(o), sh)) * d), vec4<AT>(iq4v(nib4(w32(o + 4u), sh)) * d));
}
#endif

#ifdef W_Q5_0
const GS: u32 = 8u;
fn dqg(rb: u32, q: u32) -> array<vec4<AT>, 2> {
  let b = rb + (q >> 2u) * 22u;
  let p = q & 3u;
  let d = h2f(w16(b));
  let qh = w32(b + 2u) >> (8u * p); // bit 8p+l is the fifth bit of element 8p+l
  let o = b + 6u + 8u * (p & 1u);
  let sh = (p >> 1u) * 4u;
  let v0 = nib4(w32(o), sh) | (bits4(qh) << vec4<u32>(4u));
  let v1 = nib4(w32(o + 4u), sh) | (bits4(qh >> 4u) << vec4<u32>(4u));
  return array<vec4<AT>, 2>(vec4<AT>((vec4<f32>(v0) - 16.0) * d), vec4<AT>((vec4<f32>(v1) - 16.0) * d));
}
#endif

#ifdef W_Q5_1
const GS: u32 = 8u;
fn dqg(rb: u32, q: u32) -> array<vec4<AT>, 2> {
  let b = rb + (q >> 2u) * 24u;
  let p = q & 3u;
  let d = h2f(w16(b));
  let m = h2f(w16(b + 2u));
  let qh = w32(b + 4u) >> (8u * p);
  let o = b + 8u + 8u * (p & 1u);
  let sh = (p >> 1u) * 4u;
  let v0 = nib4(w32(o), sh) | (bits4(qh) << vec4<u32>(4u));
  let v1 = nib4(w32(o + 4u), sh) | (bits4(qh >> 4u) << vec4<u32>(4u));
  return array<vec4<AT>, 2>(vec4<AT>(vec4<f32>(v0) * d + m), vec4<AT>(vec4<f32>(v1) * d + m));
}
#endif

#ifdef W_Q8_0
const GS: u32 = 8u;
fn dqg(rb: u32, q: u32) -> array<vec4<AT>, 2> {
  let b = rb + (q >> 2u) * 34u;
  let d = h2f(w16(b));
  let o = b + 2u + 8u * (q & 3u);
  return array<vec4<AT>, 2>(vec4<AT>(vec4<f32>(sbytes4(w32(o))) * d), vec4<AT>(vec4<f32>(sbytes4(w32(o + 4u))) * d));
}
#endif

// K-quants: 256-element super-blocks of eight 32-element chunks j; group p (0..3) of chunk j holds
// its elements 8p..8p+7. Chunk j = 4h + g of Q2_K/Q3_K/Q6_K takes bits 2g.. of bytes 32h + l.

#ifdef W_Q2_K
const GS: u32 = 8u;
fn dqg(rb: u32, q: u32) -> array<vec4<AT>, 2> {
  let b = rb + (q >> 5u) * 84u;
  let j = (q >> 2u) & 7u;
  let p = q & 3u;
  let h = j >> 2u;
  let g = j & 3u;
  let sc = w8(b + 8u * h + 2u * g + (p >> 1u));
  let dl = h2f(w16(b + 80u)) * f32(sc & 15u);
  let ml = h2f(w16(b + 82u)) * f32(sc >> 4u);
  let o = b + 16u + 32u * h + 8u * p;
  return array<vec4<AT>, 2>(vec4<AT>(vec4<f32>(crumb4(w32(o), 2u * g)) * dl - ml),
                            vec4<AT>(vec4<f32>(crumb4(w32(o + 4u), 2u * g)) * dl - ml));
}
#endif

#ifdef W_Q3_K
const GS: u32 = 8u;
fn q3k_scale(s: u32, i: u32) -> f32 {
  var lo: u32;
  if (i < 8u) { lo = w8(s + i) & 15u; } else { lo = w8(s + i - 8u) >> 4u; }
  let hi = (w8(s + 8u + (i & 3u)) >> (2u * (i >> 2u))) & 3u;
  return f32(i32(lo | (hi << 4u)) - 32);
}
fn dqg(rb: u32, q: u32) -> array<vec4<AT>, 2> {
  let b = rb + (q >> 5u) * 110u;
  let j = (q >> 2u) & 7u;
  let p = q & 3u;
  let h = j >> 2u;
  let g = j & 3u;
  let dl = h2f(w16(b + 108u)) * q3k_scale(b + 96u, 8u * h + 2u * g + (p >> 1u));
  let o = b + 32u + 32u * h + 8u * p;
  // A clear hmask bit j means the value is q - 4.
  let m0 = vec4<f32>(((bytes4(w32(b + 8u * p)) >> vec4<u32>(j)) & vec4<u32>(1u)) ^ vec4<u32>(1u)) * 4.0;
  let m1 = vec4<f32>(((bytes4(w32(b + 8u * p + 4u)) >> vec4<u32>(j)) & vec4<u32>(1u)) ^ vec4<u32>(1u)) * 4.0;
  return array<vec4<AT>, 2>(vec4<AT>((vec4<f32>(crumb4(w32(o), 2u * g)) - m0) * dl),
                            vec4<AT>((vec4<f32>(crumb4(w32(o + 4u), 2u * g)) - m1) * dl));
}
#endif

#ifdef W_Q4_K
const GS: u32 = 8u;
fn dqg(rb: u32, q: u32) -> array<vec4<AT>, 2> {
  let b = rb + (q >> 5u) * 144u;
  let j = (q >> 2u) & 7u;
  let p = q & 3u;
  let sm = scale_min_k4(b + 4u, j);
  let dl = h2f(w16(b)) * sm.x;
  let ml = h2f(w16(b + 2u)) * sm.y;
  let o = b + 16u + 32u * (j >> 1u) + 8u * p;
  let sh = 4u * (j & 1u);
  return array<vec4<AT>, 2>(vec4<AT>(vec4<f32>(nib4(w32(o), sh)) * dl - ml),
                            vec4<AT>(vec4<f32>(nib4(w32(o + 4u), sh)) * dl - ml));
}
#endif

#ifdef W_Q5_K
const GS: u32 = 8u;
fn dqg(rb: u32, q: u32) -> array<vec4<AT>, 2> {
  let b = rb + (q >> 5u) * 176u;
  let j = (q >> 2u) & 7u;
  let p = q & 3u;
  let sm = scale_min_k4(b + 4u, j);
  let dl = h2f(w16(b)) * sm.x;
  let ml = h2f(w16(b + 2u)) * sm.y;
  let o = b + 48u + 32u * (j >> 1u) + 8u * p;
  let sh = 4u * (j & 1u);
  let h0 = ((bytes4(w32(b + 16u + 8u * p)) >> vec4<u32>(j)) & vec4<u32>(1u)) << vec4<u32>(4u);
  let h1 = ((bytes4(w32(b + 20u + 8u * p)) >> vec4<u32>(j)) & vec4<u32>(1u)) << vec4<u32>(4u);
  return array<vec4<AT>, 2>(vec4<AT>(vec4<f32>(nib4(w32(o), sh) | h0) * dl - ml),
                            vec4<AT>(vec4<f32>(nib4(w32(o + 4u), sh) | h1) * dl - ml));
}
#endif

#ifdef W_Q6_K
const GS: u32 = 8u;
fn dqg(rb: u32, q: u32) -> array<vec4<AT>, 2> {
  let b = rb + (q >> 5u) * 210u;
  let j = (q >> 2u) & 7u;
  let p = q & 3u;
  let h = j >> 2u;
  let g = j & 3u;
  let dl = h2f(w16(b + 208u)) * f32(sx8(w8(b + 192u + 8u * h + 2u * g + (p >> 1u))));
  let ol = b + 64u * h + 32u * (g & 1u) + 8u * p;
  let oh = b + 128u + 32u * h + 8u * p;
  let sh = 4u * (g >> 1u);
  let v0 = nib4(w32(ol), sh) | (crumb4(w32(oh), 2u * g) << vec4<u32>(4u));
  let v1 = nib4(w32(ol + 4u), sh) | (crumb4(w32(oh + 4u), 2u * g) << vec4<u32>(4u));
  return array<vec4<AT>, 2>(vec4<AT>((vec4<f32>(v0) - 32.0) * dl), vec4<AT>((vec4<f32>(v1) - 32.0) * dl));
}
#endif
