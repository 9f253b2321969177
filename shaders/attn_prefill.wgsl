// attn_prefill.wgsl — causal attention for the step's tokens: one workgroup per (query head,
// block of BQ tokens), TPQ threads per token. Keys come in tiles of BKV through workgroup memory;
// each token keeps an online softmax and HD / TPQ output dimensions. Token t (position pos0 + t)
// sees cache positions 0 .. pos0 + t.
// Constants: HD, NH, NKVH, NCTX, SCALE, QSTRIDE, OSTRIDE (floats), BQ, BKV, TPQ (BQ*TPQ = 256).
#include "common.wgsl"

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> Q: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> KC: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> VC: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> O: array<f32>;

const NEG: f32 = -3.0e38;
const H4: u32 = HD / 4u;
const KS4: u32 = H4 + 1u;        // padded key row (vec4s) against bank conflicts
const DPT: u32 = HD / TPQ;       // output dimensions per thread
var<workgroup> qs: array<vec4<f32>, BQ * H4>;
var<workgroup> kv: array<vec4<f32>, BKV * KS4>;
var<workgroup> sc: array<f32, BQ * BKV>;

fn kvf(k: u32, d: u32) -> f32 { return kv[k * KS4 + d / 4u][d % 4u]; }

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let h = wid.x;
  let t0 = wid.y * BQ;
  let T = P.n_tokens;
  let kvh = h / (NH / NKVH);
  let base = kvh * NCTX;
  let qi = li / TPQ;
  let j = li % TPQ;
  let t = t0 + qi;
  let qpos = P.pos0 + t;
  for (var e = li; e < BQ * H4; e += 256u) {
    let tt = t0 + e / H4;
    var v = vec4<f32>(0.0);
    if (tt < T) { v = Q[(tt * QSTRIDE + h * HD) / 4u + e % H4]; }
    qs[e] = v;
  }
  var m = NEG;
  var l = 0.0;
  var acc: array<f32, DPT>;
  let kend = P.pos0 + min(t0 + BQ, T); // keys seen by the block's last token
  for (var k0 = 0u; k0 < kend; k0 += BKV) {
    workgroupBarrier();
    for (var e = li; e < BKV * H4; e += 256u) {
      let k = e / H4;
      var v = vec4<f32>(0.0);
      if (k0 + k < kend) { v = KC[(base + k0 + k) * H4 + e % H4]; }
      kv[k * KS4 + e % H4] = v;
    }
    workgroupBarrier();
    for (var kk = j; kk < BKV; kk += TPQ) {
      var s = NEG;
      if (k0 + kk <= qpos && t < T) {
        var dt = 0.0;
        for (var i = 0u; i < H4; i++) { dt += dot(qs[qi * H4 + i], kv[kk * KS4 + i]); }
        s = dt * SCALE;
      }
      sc[qi * BKV + kk] = s;
    }
    workgroupBarrier();
    for (var e = li; e < BKV * H4; e += 256u) {
      let k = e / H4;
      var v = vec4<f32>(0.0);
      if (k0 + k < kend) { v = VC[(base + k0 + k) * H4 + e % H4]; }
      kv[k * KS4 + e % H4] = v;
    }
    workgroupBarrier();
    var bm = NEG;
    for (var kk = 0u; kk < BKV; kk++) { bm = max(bm, sc[qi * BKV + kk]); }
    let mn = max(m, bm);
    let alpha = exp(m - mn);
    l *= alpha;
    for (var u = 0u; u < DPT; u++) { acc[u] *= alpha; }
    for (var kk = 0u; kk < BKV; kk++) {
      let s = sc[qi * BKV + kk];
      if (s > NEG) {
        let p = exp(s - mn);
        l += p;
        for (var u = 0u; u < DPT; u++) { acc[u] += p * kvf(kk, j + u * TPQ); }
      }
    }
    m = mn;
  }
  if (t < T) {
    for (var u = 0u; u < DPT; u++) { O[t * OSTRIDE + h * HD + j + u * TPQ] = acc[u] / l; }
  }
}
